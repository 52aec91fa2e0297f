//! A flood of new flows against one long-lived connection, on the real
//! datapath. `flooder` sends UDP datagrams to ever new ports of `server` as
//! fast as one thread can for `FLOOD_SECS` (default 10): every datagram a new
//! flow, judged by `server`'s ingress policy and allowed. Meanwhile `client`
//! keeps one TCP connection to `server`, writing 1 KiB every millisecond and
//! reading back `server`'s count of bytes received. The probe is loaded
//! in-process with the default configuration (flow tables of 65,536, tracking
//! of 262,144) and the lab's policy in force; a thread reads the ring through
//! the agent's `Pipeline` (decode, enrich, store), puts the kernel's losses in
//! the stream, and another runs the garbage collection on its interval, as
//! flow-probe does.
//!
//! Checked (the run fails if one is false; nothing is asserted about time):
//! the long connection is judged exactly once (one verdict event, from its
//! SYN), never dropped (no drop event, every byte it wrote counted by the
//! server), still tracked after the flood; and the kernel's emitted events
//! equal those read from the ring plus those lost. Printed besides: the
//! flood's rate, events, losses, refusals of a full tracking table, whether
//! the flood evicted the connection's counters (then resumed from tracking),
//! and the connection's round trip during the flood against the baseline
//! measured in the same run: `FLOOD_QUIET_SECS` (default 3) before it.
//!
//! `cargo bench -p benches --bench flood` as root (otherwise it prints
//! "skipped: needs root").

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use flow_probe::datapath::{Datapath, PolicyNames};
use flow_probe::enrich::Enricher;
use flow_probe::kernel::config::GcConfig;
use flow_probe::kernel::events::{self, Event, FlowEvent, kind};
use flow_probe::kernel::features::KernelFeatures;
use flow_probe::kernel::flow_tables::{FlowTables, TableKey};
use flow_probe::kernel::loader::{LoadedProbe, ProbeConfig};
use flow_probe::kernel::sysfs;
use flow_probe::pipeline::Pipeline;
use flow_probe::tables::{self, Collector};
use hdrhistogram::Histogram;
use observe_lab::{Lab, LabOptions, Scenario};
use observer_proto::flow::LostEventSource;
use observer_runtime::store::{DEFAULT_CAPACITY, FlowStore};

/// `server` accepts `client` and `flooder`, nothing else.
const SCENARIO: &str = r#"
description: flood benchmark
endpoints:
  - {name: client, namespace: flood, labels: {app: client}}
  - {name: server, namespace: flood, labels: {app: server}}
  - {name: flooder, namespace: flood, labels: {app: flooder}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: server-allow, namespace: flood}
    spec:
      endpointSelector: {matchLabels: {app: server}}
      ingress:
        - fromEndpoints: [{matchLabels: {app: client}}]
        - fromEndpoints: [{matchLabels: {app: flooder}}]
"#;

const PORT: u16 = 7000;
const CHUNK: usize = 1024;
const STEADY_EVERY: Duration = Duration::from_millis(1);
/// How long the ring reader sleeps when the ring is empty.
const READ_PAUSE: Duration = Duration::from_millis(1);

/// Where the run is: the long connection records its round trips per phase.
const QUIET: u8 = 0;
const FLOOD: u8 = 1;
const STOP: u8 = 2;
/// The connection is closed: the reader reads to the end and stops.
const DONE: u8 = 3;

fn secs_from_env(name: &str, default: f64) -> Duration {
    Duration::from_secs_f64(
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

fn ipv4(lab: &Lab, name: &str) -> anyhow::Result<IpAddr> {
    Ok(IpAddr::V4(lab.endpoint(name).context("endpoint")?.ipv4))
}

fn netns(lab: &Lab, name: &str) -> anyhow::Result<String> {
    Ok(lab.endpoint(name).context("endpoint")?.netns.clone())
}

/// The probe on node1 with the lab's policy in force; its enricher, and the
/// ifindex of `server`'s veth (where its ingress policy is judged).
fn load(lab: &Lab) -> anyhow::Result<(LoadedProbe, Enricher, u32)> {
    let file = lab.endpoints_file();
    let cfg = ProbeConfig {
        netns: Some(lab.node_netns("node1").context("node1")?.to_string()),
        ..ProbeConfig::default()
    };
    let ifaces: Vec<String> = file
        .endpoints
        .iter()
        .filter_map(|e| e.interface.clone())
        .collect();
    let mut probe = LoadedProbe::start(&cfg, &ifaces, &KernelFeatures::probe())?;
    let mut ifindex_of = HashMap::new();
    let mut enricher = Enricher::new("node1", &file);
    for e in &file.endpoints {
        let a = probe
            .attached
            .iter()
            .find(|a| Some(&a.ifname) == e.interface.as_ref())
            .context("an endpoint's veth is not attached")?;
        ifindex_of.insert(e.id, a.ifindex);
        enricher.add_interface(a.ifindex, &a.ifname, e.ipv4.map(IpAddr::V4));
    }
    let server = file.endpoints.iter().find(|e| e.name == "server");
    let server_ifindex = ifindex_of[&server.context("server")?.id];
    let names = Arc::new(PolicyNames::default());
    let policies = cluster_spec::policy::load_dir(&lab.policy_dir())?;
    let compiled = cluster_spec::policy::compile(&policies, &file);
    let maps = probe.take_datapath().context("datapath maps")?;
    Datapath::new(maps, ifindex_of, names.clone()).sync(&compiled, &file)?;
    Ok((probe, enricher.with_policy_names(names), server_ifindex))
}

/// The long connection: the only TCP connection from `client` to `server`.
#[derive(Clone, Copy)]
struct Long {
    client: IpAddr,
    server: SocketAddr,
}

impl Long {
    /// The client's port when `ends` are the long connection's, either way.
    fn client_port(&self, proto: u8, ends: [(IpAddr, u16); 2]) -> Option<u16> {
        let server = (self.server.ip(), self.server.port());
        match ends {
            [(c, p), s] | [s, (c, p)] if proto == 6 && c == self.client && s == server => Some(p),
            _ => None,
        }
    }

    fn of_event(&self, ev: &FlowEvent) -> Option<u16> {
        let k = &ev.key;
        let ends = [
            (flow_probe::flow_builder::addr(k.family, &k.saddr), k.sport),
            (flow_probe::flow_builder::addr(k.family, &k.daddr), k.dport),
        ];
        self.client_port(k.proto, ends)
    }

    fn of_key(&self, k: &TableKey) -> Option<u16> {
        let ends = [(k.addr(0), k.port(0)), (k.addr(1), k.port(1))];
        self.client_port(k.proto(), ends)
    }
}

/// What the ring reader saw.
#[derive(Default)]
struct Seen {
    /// The kernel's counters once nothing more came: events emitted, lost.
    emitted: u64,
    lost: u64,
    delivered: u64,
    decode_errors: u64,
    /// Client ports of the long connection's events (one connection: one port).
    long_ports: std::collections::BTreeSet<u16>,
    /// Events of the long connection by kind (trace, drop, verdict).
    long_traces: u64,
    long_drops: u64,
    long_verdicts: u64,
    stored: u64,
    /// Time spent reading and ingesting records.
    ingesting: Duration,
    /// Most records read in one pass over the ring.
    max_batch: u64,
}

/// Reads the ring through the agent's pipeline until `phase` is DONE, the
/// ring is empty and the kernel's counters stand still; puts the kernel's
/// new losses into the stream every 100 ms.
fn read_ring(
    probe: &mut LoadedProbe,
    mut pipeline: Pipeline,
    long: Long,
    phase: &AtomicU8,
) -> anyhow::Result<Seen> {
    let mut ring = probe.take_ring().context("ring buffer")?;
    let mut read = Seen::default();
    let mut next_lost = Instant::now();
    let mut lost_seen = 0;
    // The counters after an empty pass once done; the same again ends it.
    let mut still = None;
    loop {
        let done = phase.load(Ordering::Acquire) == DONE;
        let mut batch = 0;
        let pass = Instant::now();
        while let Some(record) = ring.next() {
            batch += 1;
            match events::decode(&record) {
                Ok(event) => {
                    if let Event::Flow(ev) = &event
                        && let Some(port) = long.of_event(ev)
                    {
                        read.long_ports.insert(port);
                        match ev.kind {
                            kind::POLICY_VERDICT => read.long_verdicts += 1,
                            kind::DROP => read.long_drops += 1,
                            _ => read.long_traces += 1,
                        }
                    }
                    pipeline.ingest_event(&event);
                }
                Err(_) => read.decode_errors += 1,
            }
        }
        read.ingesting += pass.elapsed();
        read.delivered += batch;
        read.max_batch = read.max_batch.max(batch);
        let now = Instant::now();
        if now >= next_lost || (done && batch == 0) {
            let c = probe.counters()?;
            if c.events_lost > lost_seen {
                pipeline.push_lost(
                    LostEventSource::PerfEventRingBuffer,
                    c.events_lost - lost_seen,
                );
                lost_seen = c.events_lost;
            }
            next_lost = now + Duration::from_millis(100);
            if done && batch == 0 {
                let counted = (c.events_tried, c.events_lost);
                if still == Some(counted) {
                    (read.emitted, read.lost) = counted;
                    break;
                }
                still = Some(counted);
            }
        }
        if batch != 0 {
            still = None;
        }
        if batch == 0 {
            std::thread::sleep(READ_PAUSE);
        }
    }
    read.stored = pipeline.store.seen();
    Ok(read)
}

/// What the garbage collection did.
#[derive(Default)]
struct Collected {
    runs: u64,
    forgotten: usize,
    took: Duration,
}

/// The garbage collection every `gc.interval` until DONE, on a thread of its
/// own as flow-probe runs it (the ring keeps draining meanwhile).
fn collect(tables: &FlowTables, gc: GcConfig, phase: &AtomicU8) -> Collected {
    let mut collector = Collector::new(gc);
    let mut done = Collected::default();
    let mut next = Instant::now() + gc.interval;
    while phase.load(Ordering::Acquire) != DONE {
        if Instant::now() < next {
            std::thread::sleep(READ_PAUSE * 10); // a schedule, not synchronisation
            continue;
        }
        let start = Instant::now();
        done.forgotten += tables::collect(tables, &mut collector).forgotten;
        done.runs += 1;
        done.took += start.elapsed();
        next = start + gc.interval;
    }
    done
}

/// The long connection's server: reads chunks, answers with the total.
fn serve(listener: &TcpListener) -> anyhow::Result<u64> {
    // Polled, so a client that never connects ends the run instead of hanging it.
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e).context("the client did not connect"),
        }
    };
    conn.set_nonblocking(false)?;
    let (mut buf, mut total) = ([0u8; CHUNK], 0u64);
    loop {
        match conn.read_exact(&mut buf) {
            Ok(()) => total += CHUNK as u64,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(total),
            Err(e) => return Err(e.into()),
        }
        conn.write_all(&total.to_be_bytes())?;
    }
}

/// What the long connection's client measured.
struct Steady {
    written: u64,
    /// Round trips (µs) of a chunk and its answer, quiet and flooded.
    rtt: [Histogram<u64>; 2],
}

/// The long connection's client: a chunk every STEADY_EVERY until STOP; every
/// answer must count every byte written so far.
fn steady(mut conn: TcpStream, phase: &AtomicU8) -> anyhow::Result<Steady> {
    let mut out = Steady {
        written: 0,
        rtt: [Histogram::new(3)?, Histogram::new(3)?],
    };
    let chunk = [7u8; CHUNK];
    let mut next = Instant::now();
    loop {
        let p = phase.load(Ordering::Acquire);
        if p == STOP {
            break;
        }
        let start = Instant::now();
        conn.write_all(&chunk)?;
        out.written += CHUNK as u64;
        let mut answer = [0u8; 8];
        conn.read_exact(&mut answer)?;
        let counted = u64::from_be_bytes(answer);
        ensure!(
            counted == out.written,
            "server counted {counted}, {} written",
            out.written
        );
        out.rtt[usize::from(p)].record(start.elapsed().as_micros() as u64)?;
        next += STEADY_EVERY;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait); // pacing, not synchronisation
        }
    }
    conn.shutdown(std::net::Shutdown::Write)?;
    Ok(out)
}

/// UDP datagrams to ever new ports of `to` until STOP: (sent, send errors).
fn flood(to: IpAddr, phase: &AtomicU8) -> anyhow::Result<(u64, u64)> {
    let (mut sent, mut errors) = (0u64, 0u64);
    while phase.load(Ordering::Relaxed) != STOP {
        // A new socket, a new source port: every (sport, dport) is new.
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        for port in 1024..=u16::MAX {
            match sock.send_to(b"flood", (to, port)) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
            if port % 1024 == 0 && phase.load(Ordering::Relaxed) == STOP {
                break;
            }
        }
    }
    Ok((sent, errors))
}

fn quantiles(h: &Histogram<u64>) -> String {
    format!(
        "{:>8} {:>8} {:>8} {:>8}",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    )
}

fn main() -> anyhow::Result<()> {
    if !observe_lab::is_root() {
        println!("flood: skipped: needs root (it builds a lab and loads BPF programs)");
        return Ok(());
    }
    let quiet = secs_from_env("FLOOD_QUIET_SECS", 3.0);
    let flood_for = secs_from_env("FLOOD_SECS", 10.0);
    let scenario = Scenario::parse(SCENARIO, "<flood scenario>")?;
    let state_dir = std::env::temp_dir().join(format!("flood-bench-{}", std::process::id()));
    let lab = Lab::up(&scenario, &LabOptions::with_state_dir(&state_dir))?;
    let result = run(&lab, quiet, flood_for);
    drop(lab);
    let _ = std::fs::remove_dir_all(&state_dir);
    result
}

fn run(lab: &Lab, quiet: Duration, flood_for: Duration) -> anyhow::Result<()> {
    let (mut probe, enricher, server_ifindex) = load(lab)?;
    let flow_tables = probe.take_flow_tables().context("flow tables")?;
    let gc = probe.config.gc;
    let pipeline = Pipeline::new(enricher, Arc::new(FlowStore::new(DEFAULT_CAPACITY)));
    let long = Long {
        client: ipv4(lab, "client")?,
        server: SocketAddr::new(ipv4(lab, "server")?, PORT),
    };
    let (server_ns, client_ns, flood_ns) = (
        netns(lab, "server")?,
        netns(lab, "client")?,
        netns(lab, "flooder")?,
    );
    println!(
        "flood of new flows vs one long-lived connection, lab {} ({quiet:.1?} quiet, then {flood_for:.1?} of flood)",
        lab.prefix()
    );
    let phase = AtomicU8::new(QUIET);
    let (listening_tx, listening) = mpsc::channel();
    let outcome = std::thread::scope(|s| -> anyhow::Result<_> {
        let collector = s.spawn(|| collect(&flow_tables, gc, &phase));
        let reader = s.spawn(|| read_ring(&mut probe, pipeline, long, &phase));
        let server = s.spawn(|| -> anyhow::Result<u64> {
            sysfs::enter_netns(&server_ns)?;
            let listener = TcpListener::bind(long.server)?;
            let _ = listening_tx.send(());
            serve(&listener)
        });
        let (phase_ref, client_ns) = (&phase, &client_ns);
        let client = s.spawn(move || -> anyhow::Result<(u16, Steady)> {
            listening.recv_timeout(Duration::from_secs(10))?;
            sysfs::enter_netns(client_ns)?;
            let conn = TcpStream::connect_timeout(&long.server, Duration::from_secs(5))?;
            Ok((conn.local_addr()?.port(), steady(conn, phase_ref)?))
        });
        std::thread::sleep(quiet);
        phase.store(FLOOD, Ordering::Release);
        let started = Instant::now();
        let flooder = s.spawn(|| -> anyhow::Result<(u64, u64)> {
            sysfs::enter_netns(&flood_ns)?;
            flood(long.server.ip(), &phase)
        });
        std::thread::sleep(flood_for);
        phase.store(STOP, Ordering::Release);
        let flooded = flooder.join().expect("flooder panicked");
        let flood_took = started.elapsed();
        let client = client.join().expect("client panicked");
        let served = server.join().expect("server panicked");
        phase.store(DONE, Ordering::Release);
        let read = reader.join().expect("reader panicked");
        let collected = collector.join().expect("collector panicked");
        Ok((read?, collected, served?, client?, flooded?, flood_took))
    });
    let (read, collected, served, (client_port, steady), (sent, send_errors), flood_took) =
        outcome?;
    let (emitted, lost) = (read.emitted, read.lost);
    let tracked = flow_tables
        .tracked()?
        .iter()
        .filter(|(k, _)| k.ifindex() == server_ifindex && long.of_key(k) == Some(client_port))
        .count();
    let counters = flow_tables
        .flows()?
        .into_iter()
        .find(|(k, _)| k.ifindex() == server_ifindex && long.of_key(k) == Some(client_port));
    let ct_full = probe.counters()?.ct_full;

    let secs = flood_took.as_secs_f64();
    println!(
        "flood: {sent} datagrams from flooder, each a new flow, in {secs:.1} s: {:.0} new flows/s ({send_errors} send errors)",
        sent as f64 / secs
    );
    println!(
        "kernel events: emitted {emitted}, delivered {}, lost {lost}: {}; tracking table full {ct_full} times",
        read.delivered,
        if emitted == read.delivered + lost {
            "adds up"
        } else {
            "DOES NOT add up"
        }
    );
    println!(
        "user space: {} records through decode + enrich + store ({} undecodable) in {:.2?} of reading ({:.0}/s), at most {} in one pass; {} collections in {:.2?}, {} connections forgotten",
        read.stored,
        read.decode_errors,
        read.ingesting,
        read.delivered as f64 / read.ingesting.as_secs_f64().max(1e-9),
        read.max_batch,
        collected.runs,
        collected.took,
        collected.forgotten
    );
    println!(
        "long connection {}:{client_port} -> {}: {} bytes written, all counted by the server ({served}); events: {} verdict, {} drop, {} trace; tracked after the flood: {}; its counters at server's veth: {}",
        long.client,
        long.server,
        steady.written,
        read.long_verdicts,
        read.long_drops,
        read.long_traces,
        tracked == 1,
        match &counters {
            Some((_, st)) if st.resumed != 0 => "evicted by the flood and resumed from tracking",
            Some(_) => "kept through the flood",
            None => "evicted (not in the table at the end)",
        }
    );
    println!("round trip of a {CHUNK}-byte chunk (us)   count      p50      p99      max");
    println!(
        "baseline: before the flood        {}",
        quantiles(&steady.rtt[0])
    );
    println!(
        "during the flood                  {}",
        quantiles(&steady.rtt[1])
    );
    let ratio = steady.rtt[1].value_at_quantile(0.99) as f64
        / steady.rtt[0].value_at_quantile(0.99).max(1) as f64;
    println!("p99 during the flood vs baseline: {ratio:.2}x");

    let mut failed = Vec::new();
    if read.long_ports != std::collections::BTreeSet::from([client_port]) {
        failed.push(format!(
            "events of other connections: {:?}",
            read.long_ports
        ));
    }
    if read.long_verdicts != 1 {
        failed.push(format!("{} verdict events, not one", read.long_verdicts));
    }
    if read.long_drops != 0 || served != steady.written {
        failed.push("the long connection lost packets".into());
    }
    if tracked != 1 {
        failed.push("the long connection is no longer tracked".into());
    }
    if emitted != read.delivered + lost || read.decode_errors != 0 {
        failed.push("emitted != delivered + lost".into());
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    println!("long connection judged once and never dropped; every event accounted for: met");
    Ok(())
}
