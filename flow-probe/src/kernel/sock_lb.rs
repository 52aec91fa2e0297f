//! Loads the socket-level load balancer (`ebpf-probes/src/sock_lb.bpf.c`) and
//! attaches its programs to a cgroup (v2).
//!
//! The object shares the probe's pin folder: its `EVENTS` and `STATS` are the
//! tc probe's (pinned by name), and its `SERVICES`, `BACKENDS` and `REVNAT` are
//! pinned there too. Each program's cgroup link is pinned as
//! `link_cgroup_<program>`, so the load balancer keeps working while no probe
//! runs. A new probe attaches its programs first and only then releases the
//! previous probe's links, so no connect ever goes untranslated; while both are
//! attached the first translates and the second sees a backend, which is no VIP.
//! Without `persist`, a clean exit removes the pins and the links detach.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSockAddr};
use aya::{Ebpf, EbpfLoader};

use super::config::ProbeConfig;
use super::events::{LbBackend, LbBackendKey, LbService, LbServiceKey};
use super::objects::SOCK_LB_OBJECT;

/// The programs of the object, one per socket hook.
pub const PROGRAMS: [&str; 8] = [
    "sock_connect4",
    "sock_connect6",
    "sock_sendmsg4",
    "sock_sendmsg6",
    "sock_recvmsg4",
    "sock_recvmsg6",
    "sock_getpeername4",
    "sock_getpeername6",
];

/// Maps pinned by name by this object besides the shared ones.
pub const PINNED_MAPS: [&str; 3] = ["SERVICES", "BACKENDS", "REVNAT"];

/// The maps through which flow-probe programs the services.
pub struct LbMaps {
    pub services: BpfHashMap<MapData, LbServiceKey, LbService>,
    pub backends: BpfHashMap<MapData, LbBackendKey, LbBackend>,
}

/// Opens the pinned service maps of a probe's pin folder (for tools and tests
/// that look at what a running probe programmed).
pub fn open_pinned_maps(pin_dir: &Path) -> anyhow::Result<LbMaps> {
    let open = |name: &str| {
        let path = pin_dir.join(name);
        MapData::from_pin(&path).with_context(|| format!("opening pinned map {}", path.display()))
    };
    Ok(LbMaps {
        services: BpfHashMap::try_from(aya::maps::Map::HashMap(open("SERVICES")?))?,
        backends: BpfHashMap::try_from(aya::maps::Map::HashMap(open("BACKENDS")?))?,
    })
}

/// The cgroup (v2) id of a cgroup folder: what `bpf_get_current_cgroup_id()`
/// reports for tasks in it.
pub fn cgroup_id(cgroup: &Path) -> std::io::Result<u64> {
    Ok(std::fs::metadata(cgroup)?.ino())
}

/// The load balancer, loaded and attached.
pub struct LoadedLb {
    /// Holds the programs; the links live on in their pins.
    _ebpf: Ebpf,
    maps: Option<LbMaps>,
    pub cgroup: PathBuf,
    pub cgroup_id: u64,
    /// Whether a previous probe's links were found and replaced.
    pub adopted: bool,
    /// Kernel ids of the loaded programs, by name.
    pub program_ids: Vec<(&'static str, u32)>,
    pin_dir: PathBuf,
    persist: bool,
}

fn link_pin(pin_dir: &Path, program: &str) -> PathBuf {
    pin_dir.join(format!("link_cgroup_{program}"))
}

impl LoadedLb {
    /// Loads the object with the probe's pin folder and attaches every program
    /// to `cgroup`.
    pub fn start(cfg: &ProbeConfig, pin_dir: &Path, cgroup: &Path) -> anyhow::Result<Self> {
        if SOCK_LB_OBJECT.is_empty() {
            anyhow::bail!(
                "flow-probe was built without its eBPF objects (clang-19 was missing); run the README's setup command and rebuild"
            );
        }
        let cgroup_id = cgroup_id(cgroup)
            .with_context(|| format!("cgroup {} (a cgroup v2 folder)", cgroup.display()))?;
        super::pins::create_dir(pin_dir)?;
        // Same sizes as the tc object, which shares these maps through their pins.
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", cfg.ringbuf_bytes)
            .default_map_pin_directory(pin_dir)
            .load(SOCK_LB_OBJECT)
            .context("loading the socket load balancer")?;
        let cg = std::fs::File::open(cgroup)
            .with_context(|| format!("opening cgroup {}", cgroup.display()))?;
        let mut adopted = false;
        let mut program_ids = Vec::new();
        for name in PROGRAMS {
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing from the object"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("verifier rejected {name}"))?;
            program_ids.push((name, prog.info()?.id()));
            let pin = link_pin(pin_dir, name);
            let old = if pin.exists() {
                Some(
                    PinnedLink::from_pin(&pin)
                        .with_context(|| format!("opening pinned link {}", pin.display()))?,
                )
            } else {
                None
            };
            let id = prog
                .attach(&cg, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {name} to {}", cgroup.display()))?;
            let link: FdLink = prog.take_link(id)?.try_into()?;
            if old.is_some() {
                adopted = true;
                std::fs::remove_file(&pin)
                    .with_context(|| format!("replacing {}", pin.display()))?;
            }
            // The pinned link keeps the program attached after our fd closes.
            link.pin(&pin)
                .with_context(|| format!("pinning {}", pin.display()))?;
            drop(old); // the previous probe's link: no pin, no fd, detached
        }
        log::info!(
            "socket load balancer attached to cgroup {} (id {cgroup_id}){}",
            cgroup.display(),
            if adopted {
                ", replacing the pinned links of a previous probe"
            } else {
                ""
            }
        );
        let maps = LbMaps {
            services: BpfHashMap::try_from(ebpf.take_map("SERVICES").context("map SERVICES")?)?,
            backends: BpfHashMap::try_from(ebpf.take_map("BACKENDS").context("map BACKENDS")?)?,
        };
        Ok(LoadedLb {
            _ebpf: ebpf,
            maps: Some(maps),
            cgroup: cgroup.to_path_buf(),
            cgroup_id,
            adopted,
            program_ids,
            pin_dir: pin_dir.to_path_buf(),
            persist: cfg.persist,
        })
    }

    /// The service maps; `None` once taken.
    pub fn take_maps(&mut self) -> Option<LbMaps> {
        self.maps.take()
    }
}

impl Drop for LoadedLb {
    fn drop(&mut self) {
        if self.persist {
            return;
        }
        // The probe removes its whole pin folder too; this covers a load
        // balancer used on its own.
        for name in PROGRAMS {
            let _ = std::fs::remove_file(link_pin(&self.pin_dir, name));
        }
        for name in PINNED_MAPS {
            let _ = std::fs::remove_file(self.pin_dir.join(name));
        }
    }
}
