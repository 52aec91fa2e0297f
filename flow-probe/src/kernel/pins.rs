//! What the probe leaves in bpffs so that enforcement and reporting outlive
//! the process: the policy, flow, connection-tracking and socket maps (pinned
//! by name by the loader), one tcx link per interface and direction, and the
//! tracepoint programs' links (`super::tracepoints`). A restarted probe
//! re-adopts them: it reuses the maps with their content and swaps its new
//! program into each pinned tcx link atomically, so no packet ever passes
//! unjudged.

use std::path::{Path, PathBuf};

use anyhow::Context;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType, tc::SchedClassifierLink, tc::TcAttachOptions,
};

pub use cluster_spec::pins::{PIN_ROOT, pin_dir};

/// Maps pinned by name (see `ebpf-probes/src/lib/maps.h`).
pub const PINNED_MAPS: [&str; 12] = [
    "FLOW_SLOTS4",
    "FLOW_SLOTS6",
    "FLOWS4",
    "FLOWS6",
    "SLOT_SPILLS",
    "CT4",
    "CT6",
    "ENDPOINTS",
    "IPCACHE",
    "ENDPOINT_ADDRS",
    "POLICY",
    "SOCKS",
];

/// Creates a pin folder, mounting bpffs first when the folder lives there, so
/// every caller (the agent, tests, benchmarks) works on a machine without it.
/// Another probe that stops meanwhile removes [`PIN_ROOT`] once it is empty
/// ([`remove_all`]), possibly between the creation of the root and of `dir`:
/// then the root is made again: once for each probe that stops meanwhile.
pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.starts_with(super::sysfs::BPFFS) {
        super::sysfs::ensure_bpffs().context("pins live in bpffs")?;
    }
    let mut attempts = 0;
    loop {
        match std::fs::create_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 100 => attempts += 1,
            done => {
                return done.with_context(|| format!("creating pin folder {}", dir.display()));
            }
        }
    }
}

/// Which pinned maps already exist (and so will be re-adopted with their content).
pub fn existing_maps(dir: &Path) -> Vec<&'static str> {
    PINNED_MAPS
        .iter()
        .copied()
        .filter(|m| dir.join(m).exists())
        .collect()
}

/// Where the tcx link of `ifname` in direction `dir_name` (`ingress`, `egress`) is pinned.
pub(super) fn link_pin(dir: &Path, ifname: &str, dir_name: &str) -> PathBuf {
    dir.join(format!("link_{ifname}_{dir_name}"))
}

/// Attaches `prog` to `ifname` in `attach_type` with tcx, re-adopting the pinned
/// link if one exists, else creating and pinning one. Returns whether it adopted.
pub fn attach_pinned(
    prog: &mut SchedClassifier,
    dir: &Path,
    ifname: &str,
    attach_type: TcAttachType,
) -> anyhow::Result<bool> {
    let name = if attach_type == TcAttachType::Ingress {
        "ingress"
    } else {
        "egress"
    };
    let pin = link_pin(dir, ifname, name);
    if pin.exists() {
        let old = PinnedLink::from_pin(&pin)
            .with_context(|| format!("opening pinned link {}", pin.display()))?;
        let link: SchedClassifierLink = FdLink::from(old).try_into()?;
        prog.attach_to_link(link)
            .with_context(|| format!("replacing the program of {}", pin.display()))?;
        return Ok(true);
    }
    let id = prog
        .attach_with_options(
            ifname,
            attach_type,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .with_context(|| format!("attaching to {ifname} ({name})"))?;
    let fd_link: FdLink = prog.take_link(id)?.try_into()?;
    // The pinned link keeps the program attached after our fd closes.
    fd_link
        .pin(&pin)
        .with_context(|| format!("pinning {}", pin.display()))?;
    Ok(false)
}

/// Removes every pin of a probe (its links detach once no fd holds them), and
/// the root folder when no other probe's pins remain in it.
pub fn remove_all(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        other => other?,
    }
    let _ = std::fs::remove_dir(PIN_ROOT); // fails while not empty, as intended
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[test]
    fn a_pin_folder_is_made_while_other_probes_stop_and_remove_the_empty_root() {
        let root = std::env::temp_dir().join(format!("pins-race-{}", std::process::id()));
        let stop = Arc::new(AtomicBool::new(false));
        let round = Arc::new(AtomicUsize::new(0));
        // A probe stops during each creation: its remove_all removes the root
        // once, whenever it finds it empty (at the start, or between the
        // creation of the root and of the folder). Without the retry 121 to
        // 337 of 2,000 creations failed so.
        let stopping = {
            let (root, stop, round) = (root.clone(), Arc::clone(&stop), Arc::clone(&round));
            std::thread::spawn(move || {
                let mut removed_in = usize::MAX;
                while !stop.load(Ordering::Relaxed) {
                    let now = round.load(Ordering::Acquire);
                    if now != removed_in && std::fs::remove_dir(&root).is_ok() {
                        removed_in = now;
                    }
                }
            })
        };
        let made = (0..2_000)
            .map(|i| {
                round.store(i, Ordering::Release);
                let dir = root.join(format!("probe-{i}"));
                let made = super::create_dir(&dir).map(|()| dir.is_dir());
                let _ = std::fs::remove_dir(&dir);
                made
            })
            .filter(|made| matches!(made, Ok(true)))
            .count();
        stop.store(true, Ordering::Relaxed);
        stopping.join().unwrap();
        let _ = std::fs::remove_dir(&root);
        assert_eq!(made, 2_000);
    }
}
