//! Loads the tc flow probe and attaches it, on a thread that lives in the node's
//! network namespace for as long as the probe is attached.
//!
//! Attaching resolves interface names in the calling thread's namespace, and the
//! clsact fallback detaches through netlink in that namespace too; so one owner
//! thread enters the namespace, loads, attaches, hands the maps back, and at
//! shutdown detaches everything there. The ring buffer and counters it hands back
//! are plain fds, usable from any thread.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use aya::maps::{
    HashMap as BpfHashMap, MapData, PerCpuArray, ProgramArray, RingBuf, lpm_trie::LpmTrie,
};
use aya::programs::SchedClassifier;
use aya::{Ebpf, EbpfLoader};

pub use super::attacher::{AttachMode, Attacher, Attachment};
use super::attacher::{Command, attach, remove_clsact};
use super::btf_layout;
pub use super::config::ProbeConfig;
use super::events::{
    EndpointAddr, EndpointInfo, IpcacheAddr, IpcacheValue, PathTime, PolicyKey, PolicyValue,
    cost_stop, stat, tc_path,
};
use super::features::KernelFeatures;
use super::flow_tables::{
    CT_MAPS, FLOW_MAPS, FlowTables, SLOT_MAPS, SPILL_BITS, slot_count, spill_words,
};
use super::objects::FLOW_OBJECT;
use super::pins;
use super::sysfs;
use super::tracefs;
use super::tracepoints::{self, NetnsFilter};

/// The maps through which flow-probe programs the datapath (identities,
/// endpoints and policy). Pinned: they outlive the process.
pub struct DatapathMaps {
    pub endpoints: BpfHashMap<MapData, u32, EndpointInfo>,
    pub ipcache: LpmTrie<MapData, IpcacheAddr, IpcacheValue>,
    /// Every endpoint's address → its host-side ifindex here, 0 elsewhere.
    pub endpoint_addrs: BpfHashMap<MapData, EndpointAddr, u32>,
    pub policy: BpfHashMap<MapData, PolicyKey, PolicyValue>,
}

/// A loaded and attached probe. Dropping it detaches everything (unless the
/// config says to persist).
pub struct LoadedProbe {
    /// Taken by the reader with [`LoadedProbe::take_ring`].
    ring: Option<RingBuf<MapData>>,
    pub stats: PerCpuArray<MapData, u64>,
    /// Written only with `ProbeConfig::time_paths`.
    path_times: PerCpuArray<MapData, PathTime>,
    pub attached: Vec<Attachment>,
    /// Kernel ids of the loaded programs, by name.
    pub program_ids: Vec<(&'static str, u32)>,
    /// Pinned maps found at start and re-adopted with their content.
    pub adopted_maps: Vec<&'static str>,
    /// Names of the kernel's drop reasons (empty when drop reporting is off).
    pub kernel_drop_reasons: std::collections::BTreeMap<u32, String>,
    /// Taken by the policy syncer with [`LoadedProbe::take_datapath`].
    datapath: Option<DatapathMaps>,
    /// Taken by the pipeline (reports, garbage collection) with
    /// [`LoadedProbe::take_flow_tables`].
    flow_tables: Option<FlowTables>,
    /// The namespaces the tracepoint programs report from, when they do not
    /// report from all; taken with [`LoadedProbe::take_netns_filter`].
    netns_filter: Option<NetnsFilter>,
    /// What it was loaded with.
    pub config: ProbeConfig,
    /// The socket load balancer, when `ProbeConfig::lb_cgroup` is set.
    pub lb: Option<super::sock_lb::LoadedLb>,
    /// Requests to the owner thread: attach, detach, shut down.
    commands: mpsc::Sender<Command>,
    owner: Option<JoinHandle<()>>,
}

/// BPF run-time statistics of one program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramRunStats {
    pub name: &'static str,
    pub run_time: Duration,
    pub run_count: u64,
}

const PROGRAMS: [&str; 2] = ["tc_ingress", "tc_egress"];
/// The program whose instructions `tc_egress` runs too, jumping there
/// through `TC_BODY` (flow.bpf.c): one copy in cache for the two sightings
/// of a packet between two endpoints of the node.
const BODY: &str = "tc_ingress";

/// What the owner thread hands back once loaded and attached.
struct Started {
    ring: RingBuf<MapData>,
    stats: PerCpuArray<MapData, u64>,
    path_times: PerCpuArray<MapData, PathTime>,
    attached: Vec<Attachment>,
    ids: Vec<(&'static str, u32)>,
    adopted: Vec<&'static str>,
    datapath: DatapathMaps,
    flow_tables: FlowTables,
    drop_reasons: std::collections::BTreeMap<u32, String>,
    netns_filter: Option<NetnsFilter>,
}

/// Totals of the per-CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub events_tried: u64,
    pub events_lost: u64,
    /// Connections not tracked because CT4 or CT6 was full.
    pub ct_full: u64,
    /// New flows whose two slots and the neighbouring pair were taken
    /// (counted in FLOWS4/FLOWS6).
    pub slots_taken: u64,
}

impl LoadedProbe {
    /// Loads and attaches to `interfaces` (ingress and egress of each).
    pub fn start(
        cfg: &ProbeConfig,
        interfaces: &[String],
        features: &KernelFeatures,
    ) -> anyhow::Result<Self> {
        if FLOW_OBJECT.is_empty() {
            bail!(
                "flow-probe was built without its eBPF objects (clang-19 was missing); run the README's setup command and rebuild"
            );
        }
        if cfg.cost_stop > cost_stop::BEFORE_EVENTS {
            bail!(
                "cost_stop {}: not a stop the tc programs know (0 to {})",
                cfg.cost_stop,
                cost_stop::BEFORE_EVENTS
            );
        }
        btf_layout::check_embedded()?;

        let (ready_tx, ready_rx) = mpsc::channel();
        let (commands_tx, commands_rx) = mpsc::channel::<Command>();
        let lb_cfg = cfg.clone();
        let cfg = cfg.clone();
        let interfaces = interfaces.to_vec();
        let use_tcx = features.has("tcx");
        let use_drops = features.has("tracepoint:skb:kfree_skb") && features.has("prog:tracepoint");
        let owner = std::thread::Builder::new()
            .name("probe-owner".into())
            .spawn(move || {
                // A pin folder this start made: a failed start removes it
                // again. One an earlier probe left (its links and maps hold
                // enforcement) stays as it was found.
                let mut made_dir = None;
                let loaded = (|| {
                    if let Some(ns) = &cfg.netns {
                        sysfs::enter_netns(ns)?;
                    }
                    let dir = pins::pin_dir(cfg.netns.as_deref());
                    let fresh = std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_none());
                    pins::create_dir(&dir)?;
                    if fresh {
                        made_dir = Some(dir.clone());
                    }
                    let adopted = pins::existing_maps(&dir);
                    // Kernel drops need the tracepoint's format; without it they are off.
                    let drops = if use_drops { tracefs::read_format("skb", "kfree_skb").ok() } else { None };
                    let mut ebpf = load(&cfg, &dir, drops.as_ref())?;
                    let netns_filter = if cfg.drop_netns.is_empty() && !cfg.follow_endpoint_netns {
                        None
                    } else {
                        let mut fixed: Vec<std::path::PathBuf> = cfg
                            .drop_netns
                            .iter()
                            .map(|n| std::path::Path::new("/var/run/netns").join(n))
                            .collect();
                        if cfg.follow_endpoint_netns {
                            // This thread's: the node's (entered above, when named).
                            fixed.push("/proc/thread-self/ns/net".into());
                        }
                        match NetnsFilter::take(&mut ebpf, &fixed) {
                            Ok(f) => Some(f),
                            Err(e) => {
                                log::warn!("kernel drops and TCP lifecycle miss namespaces: {e:#}");
                                None
                            }
                        }
                    };
                    if let Err(e) = tracepoints::attach_lifecycle(&mut ebpf, &dir) {
                        log::warn!("TCP lifecycle reporting disabled: {e:#}");
                    }
                    let drops = match drops {
                        Some(format) => match tracepoints::attach_drops(&mut ebpf, &dir) {
                            Ok(()) => Some(format),
                            Err(e) => {
                                log::warn!("kernel drop reporting disabled: {e:#}");
                                None
                            }
                        },
                        None => {
                            log::warn!("kernel drop reporting disabled: tracepoint skb:kfree_skb is not available");
                            None
                        }
                    };
                    let mut attached = Vec::new();
                    for ifname in &interfaces {
                        attached.push(attach(&mut ebpf, &dir, ifname, use_tcx)?);
                    }
                    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("map EVENTS")?)?;
                    let stats =
                        PerCpuArray::try_from(ebpf.take_map("STATS").context("map STATS")?)?;
                    let path_times = PerCpuArray::try_from(
                        ebpf.take_map("PATH_TIMES").context("map PATH_TIMES")?,
                    )?;
                    let datapath = DatapathMaps {
                        endpoints: BpfHashMap::try_from(ebpf.take_map("ENDPOINTS").context("map ENDPOINTS")?)?,
                        ipcache: LpmTrie::try_from(ebpf.take_map("IPCACHE").context("map IPCACHE")?)?,
                        endpoint_addrs: BpfHashMap::try_from(ebpf.take_map("ENDPOINT_ADDRS").context("map ENDPOINT_ADDRS")?)?,
                        policy: BpfHashMap::try_from(ebpf.take_map("POLICY").context("map POLICY")?)?,
                    };
                    let flow_tables = FlowTables::take_from(&mut ebpf)?;
                    let mut ids = Vec::new();
                    for name in PROGRAMS {
                        let prog: &SchedClassifier =
                            ebpf.program(name).context("program")?.try_into()?;
                        ids.push((name, prog.info()?.id()));
                    }
                    let drop_reasons = drops.map(|f| f.symbols).unwrap_or_default();
                    anyhow::Ok((ebpf, dir, Started { ring, stats, path_times, attached, ids, adopted, datapath, flow_tables, drop_reasons, netns_filter }))
                })();
                match loaded {
                    Ok((mut ebpf, dir, started)) => {
                        let mut attached = started.attached.clone();
                        let _ = ready_tx.send(Ok(started));
                        super::attacher::serve(&mut ebpf, &dir, use_tcx, &commands_rx, &mut attached);
                        let clsact: Vec<String> = attached
                            .iter()
                            .filter(|a| a.mode == AttachMode::Clsact { owns_qdisc: true })
                            .map(|a| a.ifname.clone())
                            .collect();
                        if !cfg.persist {
                            // Without pins, closing our fds detaches the links.
                            if let Err(e) = pins::remove_all(&dir) {
                                log::warn!("could not remove pins in {}: {e}", dir.display());
                            }
                        }
                        drop(ebpf); // detaches clsact filters, in this namespace
                        for ifname in clsact {
                            remove_clsact(&ifname);
                        }
                        if cfg.persist {
                            log::info!(
                                "left the programs attached to {} interfaces and their pins in {} (--persist)",
                                attached.len(),
                                dir.display()
                            );
                        } else {
                            log::info!("detached from {} interfaces, pins removed", attached.len());
                        }
                    }
                    Err(e) => {
                        // The links and maps pinned so far go with their pins.
                        if let Some(dir) = made_dir
                            && let Err(removing) = pins::remove_all(&dir)
                        {
                            log::warn!("could not remove pins in {}: {removing}", dir.display());
                        }
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        let started = ready_rx.recv().context("probe owner thread died")??;
        let mut probe = LoadedProbe {
            ring: Some(started.ring),
            stats: started.stats,
            path_times: started.path_times,
            attached: started.attached,
            program_ids: started.ids,
            adopted_maps: started.adopted,
            kernel_drop_reasons: started.drop_reasons,
            datapath: Some(started.datapath),
            commands: commands_tx,
            flow_tables: Some(started.flow_tables),
            netns_filter: started.netns_filter,
            config: lb_cfg.clone(),
            owner: Some(owner),
            lb: None,
        };
        // Attached after the tc object pinned EVENTS and STATS, which it shares.
        if let Some(cgroup) = &lb_cfg.lb_cgroup {
            let dir = pins::pin_dir(lb_cfg.netns.as_deref());
            let lb = super::sock_lb::LoadedLb::start(&lb_cfg, &dir, cgroup)
                .context("starting the socket load balancer")?;
            probe.lb = Some(lb);
        }
        Ok(probe)
    }

    /// Attaches to and detaches from more interfaces while the probe runs.
    pub fn attacher(&self) -> Attacher {
        Attacher {
            tx: self.commands.clone(),
        }
    }

    /// The datapath maps; `None` once taken.
    pub fn take_datapath(&mut self) -> Option<DatapathMaps> {
        self.datapath.take()
    }

    /// Which namespaces kernel drops and TCP lifecycle are reported from;
    /// `None` when from every one, or once taken.
    pub fn take_netns_filter(&mut self) -> Option<NetnsFilter> {
        self.netns_filter.take()
    }

    /// The flow tables and connection tracking; `None` once taken.
    pub fn take_flow_tables(&mut self) -> Option<FlowTables> {
        self.flow_tables.take()
    }

    /// The ring buffer of events; `None` once taken.
    pub fn take_ring(&mut self) -> Option<RingBuf<MapData>> {
        self.ring.take()
    }

    /// Run time and run count of each program, from the kernel's BPF statistics
    /// (they count only while `kernel.bpf_stats_enabled` is on).
    pub fn run_stats(&self) -> anyhow::Result<Vec<ProgramRunStats>> {
        let mut out = Vec::new();
        for info in aya::programs::loaded_programs() {
            let info = info?;
            if let Some((name, _)) = self.program_ids.iter().find(|(_, id)| *id == info.id()) {
                out.push(ProgramRunStats {
                    name,
                    run_time: info.run_time(),
                    run_count: info.run_count(),
                });
            }
        }
        Ok(out)
    }

    /// Reads the per-CPU counters and sums them.
    pub fn counters(&self) -> anyhow::Result<KernelCounters> {
        read_counters(&self.stats)
    }

    /// Runs and time of the tc programs by `tc_path`, summed over CPUs; all
    /// zero unless loaded with `ProbeConfig::time_paths`.
    pub fn path_times(&self) -> anyhow::Result<[PathTime; tc_path::MAX as usize]> {
        read_path_times(&self.path_times)
    }
}

/// Sums the per-CPU entries of a `PATH_TIMES` map, by `tc_path`.
pub fn read_path_times<T: std::borrow::Borrow<MapData>>(
    map: &PerCpuArray<T, PathTime>,
) -> anyhow::Result<[PathTime; tc_path::MAX as usize]> {
    let mut out = [PathTime::default(); tc_path::MAX as usize];
    for (index, total) in (0u32..).zip(out.iter_mut()) {
        for cpu in map.get(&index, 0)?.iter() {
            *total += *cpu;
        }
    }
    Ok(out)
}

/// Sums the per-CPU counters of a `STATS` map.
pub fn read_counters(stats: &PerCpuArray<MapData, u64>) -> anyhow::Result<KernelCounters> {
    let sum = |i| -> anyhow::Result<u64> { Ok(stats.get(&i, 0)?.iter().sum()) };
    Ok(KernelCounters {
        events_tried: sum(stat::EVENTS_TRIED)?,
        events_lost: sum(stat::EVENTS_LOST)?,
        ct_full: sum(stat::CT_FULL)?,
        slots_taken: sum(stat::SLOTS_TAKEN)?,
    })
}

impl Drop for LoadedProbe {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(owner) = self.owner.take() {
            let _ = owner.join();
        }
    }
}

/// Kernel drop reasons not reported: normal frees and teardown; tc drops, which
/// are our own policy drops, already reported with their verdict; NO_SOCKET,
/// which a refused connection (answered with a RST we already show) or an echo
/// reply consumed by a raw socket also produce; and frames for another host
/// (OTHERHOST, and a neighbour solicitation for another's address), which
/// every endpoint on a bridge discards whenever the bridge floods a frame.
const BENIGN_DROP_REASONS: [&str; 10] = [
    "NOT_SPECIFIED",
    "NO_SOCKET",
    "SOCKET_CLOSE",
    "UNIX_DISCONNECT",
    "UNIX_SKIP_OOB",
    "QUEUE_PURGE",
    "TC_INGRESS",
    "TC_EGRESS",
    "OTHERHOST",
    "IPV6_NDISC_NS_OTHERHOST",
];

/// What the drop tracepoint needs from the running kernel: field offsets and the
/// benign reasons as a 128-bit set. `None` when the format cannot be read.
fn kfree_skb_settings(format: &tracefs::Format) -> Option<(u32, u32, u64, u64)> {
    let skbaddr = *format.offsets.get("skbaddr")?;
    let reason = *format.offsets.get("reason")?;
    let (mut lo, mut hi) = (0u64, 0u64);
    for (n, name) in &format.symbols {
        if BENIGN_DROP_REASONS.contains(&name.as_str()) {
            match n {
                0..=63 => lo |= 1 << n,
                64..=127 => hi |= 1 << (n - 64),
                _ => {}
            }
        }
    }
    Some((skbaddr, reason, lo, hi))
}

fn load(
    cfg: &ProbeConfig,
    pin_dir: &std::path::Path,
    drops: Option<&tracefs::Format>,
) -> anyhow::Result<Ebpf> {
    let filter_netns = u32::from(!cfg.drop_netns.is_empty() || cfg.follow_endpoint_netns);
    let lifecycle_endpoints_only = u32::from(cfg.lifecycle_endpoints_only);
    let (skbaddr_off, reason_off, benign_lo, benign_hi) =
        drops.and_then(kfree_skb_settings).unwrap_or((8, 36, 0, 0));
    let aggregate = u32::from(cfg.aggregate);
    let time_paths = u32::from(cfg.time_paths);
    // A ring smaller than the threshold must still wake the reader before it fills.
    let wakeup = cfg.wakeup_bytes.min(u64::from(cfg.ringbuf_bytes) / 2);
    let slots = slot_count(cfg.flow_table_entries);
    let slot_mask = slots - 1;
    let spill_words = spill_words(slots);
    let mut ebpf = EbpfLoader::new()
        .override_global("aggregate", &aggregate, true)
        .override_global("emit_tcp_flags", &cfg.emit_tcp_flags, true)
        .override_global("cost_stop", &cfg.cost_stop, true)
        .override_global("time_paths", &time_paths, true)
        .override_global("wakeup_bytes", &wakeup, true)
        .override_global("kfree_skbaddr_off", &skbaddr_off, true)
        .override_global("kfree_reason_off", &reason_off, true)
        .override_global("benign_reasons_lo", &benign_lo, true)
        .override_global("benign_reasons_hi", &benign_hi, true)
        .override_global("filter_netns", &filter_netns, true)
        .override_global("lifecycle_endpoints_only", &lifecycle_endpoints_only, true)
        .override_global("flow_slot_mask", &slot_mask, true)
        .override_global("spill_words", &spill_words, true)
        .map_max_entries("EVENTS", cfg.ringbuf_bytes)
        .map_max_entries(SLOT_MAPS[0], slots)
        .map_max_entries(SLOT_MAPS[1], slots)
        .map_max_entries(SPILL_BITS, 2 * spill_words)
        .map_max_entries(FLOW_MAPS[0], cfg.flow_table_entries)
        .map_max_entries(FLOW_MAPS[1], cfg.flow_table_entries)
        .map_max_entries(CT_MAPS[0], cfg.ct_entries)
        .map_max_entries(CT_MAPS[1], cfg.ct_entries)
        .default_map_pin_directory(pin_dir)
        .load(FLOW_OBJECT)
        .context("loading the tc flow probe")?;
    for name in PROGRAMS {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing from the object"))?
            .try_into()?;
        prog.load()
            .with_context(|| format!("verifier rejected {name}"))?;
    }
    // In place before anything is attached, so that tc_egress never runs
    // its own copy while this process holds the array.
    let body: &SchedClassifier = ebpf.program(BODY).context("program")?.try_into()?;
    let body = body.fd()?.try_clone()?;
    ProgramArray::try_from(ebpf.map_mut("TC_BODY").context("map TC_BODY")?)?
        .set(0, &body, 0)
        .with_context(|| format!("putting {BODY} into TC_BODY"))?;
    Ok(ebpf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cost_stop_the_programs_do_not_know_is_refused_before_anything_loads() {
        let cfg = ProbeConfig {
            cost_stop: cost_stop::BEFORE_EVENTS + 1,
            ..ProbeConfig::default()
        };
        let err = LoadedProbe::start(&cfg, &[], &KernelFeatures::default())
            .err()
            .expect("refused");
        assert_eq!(
            err.to_string(),
            "cost_stop 4: not a stop the tc programs know (0 to 3)"
        );
    }
}
