//! Taking a lab down: stopping its processes, deleting its namespaces, pins and
//! cgroup, then removing its state directory's files. [`down`] does it from a
//! state directory in a later process (`observe lab down`), a dropped
//! [`super::Lab`] from what it holds; [`cleanup_prefix`] sweeps namespaces by
//! prefix alone.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::certs::CertFiles;
use super::cgroup;
use super::containers::ContainerLab;
use super::ip::{netns_del, netns_exists, netns_list};
use super::prefix;
use super::probe_files::{self, ENDPOINTS_FILE, PROMETHEUS_TARGETS_FILE, SERVICES_FILE};
use super::procs::{self, ProcessRecord};
use super::state::{LabState, STATE_FILE};

/// What [`down`] or a lab teardown removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DownReport {
    pub prefix: String,
    /// Namespaces deleted.
    pub deleted_netns: Vec<String>,
    /// Processes that were still running and were stopped.
    pub stopped_processes: Vec<ProcessRecord>,
    /// Problems met on the way (the rest was still removed).
    pub errors: Vec<String>,
}

/// Takes down the lab recorded in `state_dir`: stops its processes, deletes its
/// namespaces (and any other namespace with its prefix), then removes the state
/// and endpoints files and the policy directory.
///
/// Fails if the state cannot be read, or if some part could not be removed (the
/// state files then stay, so `down` can be tried again).
pub fn down(state_dir: &Path) -> Result<DownReport> {
    let mut state = LabState::load(state_dir)?;
    let mut report = DownReport {
        prefix: state.prefix.clone(),
        ..DownReport::default()
    };
    let netns = state.all_netns();
    teardown(
        &state.prefix,
        &netns,
        &state.processes,
        state.containers.as_mut(),
        &mut report,
    );
    if !report.errors.is_empty() {
        anyhow::bail!(
            "taking down lab {}: {}",
            state.prefix,
            report.errors.join("; ")
        );
    }
    remove_state_files(state_dir, &mut report);
    Ok(report)
}

/// Deletes every network namespace named `<prefix>-...`; returns their names.
pub fn cleanup_prefix(prefix: &str) -> Result<Vec<String>> {
    prefix::check(prefix)?;
    let stem = format!("{prefix}-");
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for name in netns_list()?.into_iter().filter(|n| n.starts_with(&stem)) {
        match netns_del(&name) {
            Ok(()) => deleted.push(name),
            Err(e) if !netns_exists(&name) => log::debug!("{name} went away meanwhile: {e:#}"),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("removing namespaces of lab {prefix}: {}", errors.join("; "));
    }
    Ok(deleted)
}

/// Stops processes, deletes the listed namespaces, then sweeps the prefix;
/// a container lab's containers, networks, image and links go after.
pub(crate) fn teardown(
    prefix: &str,
    netns: &[String],
    processes: &[ProcessRecord],
    containers: Option<&mut ContainerLab>,
    report: &mut DownReport,
) {
    for record in processes {
        if record.is_running() {
            procs::stop(record);
            report.stopped_processes.push(record.clone());
        }
    }
    for name in netns {
        if !netns_exists(name) {
            continue;
        }
        match netns_del(name) {
            Ok(()) => report.deleted_netns.push(name.clone()),
            Err(e) => report.errors.push(format!("{e:#}")),
        }
    }
    match cleanup_prefix(prefix) {
        Ok(more) => report.deleted_netns.extend(more),
        Err(e) => report.errors.push(format!("{e:#}")),
    }
    if let Some(c) = containers {
        report.errors.extend(c.remove());
    }
    // The probes pin their links and maps per node namespace; a killed probe
    // leaves them, so they go with the lab.
    let root = std::path::Path::new(cluster_spec::pins::PIN_ROOT);
    let stem = format!("{prefix}-");
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&stem)
            && let Err(e) = std::fs::remove_dir_all(entry.path())
        {
            report
                .errors
                .push(format!("removing pins {}: {e}", entry.path().display()));
        }
    }
    let _ = std::fs::remove_dir(root); // only when no other probe's pins remain
    // The lab's cgroup (service load balancing), once its processes are gone.
    if let Err(e) = cgroup::remove(prefix) {
        report.errors.push(e);
    }
}

/// Removes the state and endpoints files, the policy directory, the
/// certificates, the relay's history, the processes' address files and the
/// traffic lock (logs stay), and the state directory if then empty.
pub(crate) fn remove_state_files(state_dir: &Path, report: &mut DownReport) {
    if let Err(e) = probe_files::remove_policy_dir(state_dir) {
        report.errors.push(format!("{e:#}"));
    }
    // A later lab in the same folder must not show this one's flows.
    for dir in [CertFiles::of_lab(state_dir).dir, state_dir.join("history")] {
        note_removal(&dir, std::fs::remove_dir_all(&dir), report);
    }
    let ready_files = std::fs::read_dir(state_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.ends_with(".addr") || n.ends_with(".addr.starting") || n.ends_with(".metrics")
        });
    let fixed = [
        STATE_FILE,
        ENDPOINTS_FILE,
        SERVICES_FILE,
        PROMETHEUS_TARGETS_FILE,
        crate::TRAFFIC_LOCK,
    ]
    .map(str::to_string);
    for file in fixed.into_iter().chain(ready_files) {
        let path = state_dir.join(file);
        note_removal(&path, std::fs::remove_file(&path), report);
    }
    // Only succeeds when empty, which is what we want.
    let _ = std::fs::remove_dir(state_dir);
}

/// Reports a failed removal of `path`; one already gone is fine.
fn note_removal(path: &Path, removed: std::io::Result<()>, report: &mut DownReport) {
    match removed {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => report
            .errors
            .push(format!("removing {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::scratch::ScratchDir;

    #[test]
    fn down_removes_history_and_address_files_and_keeps_logs() {
        let scratch = ScratchDir::new("lab-state-files");
        let dir = scratch.path();
        std::fs::create_dir_all(dir.join("history/flows")).unwrap();
        for f in [
            "history/flows/a.parquet",
            STATE_FILE,
            "relay.addr",
            "relay.addr.starting",
            "probe-node1.addr",
            "probe-node1.metrics",
            "relay.metrics",
            "prometheus-targets.json",
            "traffic.lock",
            "relay.log",
            "probe-node1.log",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let mut report = DownReport::default();
        remove_state_files(dir, &mut report);
        assert_eq!(report.errors, Vec::<String>::new());
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["probe-node1.log", "relay.log"]);
    }
}
