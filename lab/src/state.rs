//! The state directory of a lab that is up, and taking labs down from it.
//!
//! `<state_dir>/state.json` holds a [`LabState`]; `<state_dir>/endpoints.yaml` is
//! the endpoints file for flow-probe, `<state_dir>/policies/` its policy directory
//! (one `NN-<name>.yaml` per policy of the scenario). A later process (`observe lab down`) removes
//! the lab with [`down`]; [`cleanup_prefix`] sweeps namespaces by prefix alone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::ip::{netns_del, netns_exists, netns_list};
use super::prefix;
use super::procs::{self, ProcessRecord};
use super::scenario::Scenario;
use super::topology::Topology;

/// Default state directory of `observe lab up`.
pub const DEFAULT_STATE_DIR: &str = "/run/observe-lab";
/// Name of the state file in a state directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the endpoints file in a state directory.
pub const ENDPOINTS_FILE: &str = "endpoints.yaml";
/// Name of the policy directory in a state directory.
pub const POLICY_DIR: &str = "policies";

/// Everything needed to find, use and remove a lab from another process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    /// Prefix of every namespace of the lab.
    pub prefix: String,
    /// Node namespaces (flow-probe attaches in these).
    pub node_netns: Vec<String>,
    /// Endpoint namespaces.
    pub endpoint_netns: Vec<String>,
    /// Processes to stop when the lab goes down.
    pub processes: Vec<ProcessRecord>,
    /// The endpoints file.
    pub endpoints_file: PathBuf,
    /// Full plan: names, interfaces, addresses.
    pub topology: Topology,
    /// The scenario the lab was built from (for `lab traffic` in a later process).
    pub scenario: Scenario,
}

/// Path of the state file in `state_dir`.
pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

impl LabState {
    /// Reads `<state_dir>/state.json`.
    pub fn load(state_dir: &Path) -> Result<LabState> {
        let path = state_path(state_dir);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading lab state {}", path.display()))?;
        let mut state: LabState =
            serde_json::from_str(&text).with_context(|| format!("lab state {}", path.display()))?;
        state.scenario.origin = path.display().to_string();
        prefix::check(&state.prefix)?;
        Ok(state)
    }

    /// Writes `<state_dir>/state.json` (atomically: temp file, then rename).
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;
        let path = state_path(state_dir);
        let tmp = state_dir.join(format!(".{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).context("encoding lab state")?;
        std::fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Whether any namespace of this lab still exists.
    pub fn is_up(&self) -> bool {
        self.node_netns
            .iter()
            .chain(&self.endpoint_netns)
            .any(|ns| netns_exists(ns))
    }
}

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
    let state = LabState::load(state_dir)?;
    let mut report = DownReport {
        prefix: state.prefix.clone(),
        ..DownReport::default()
    };
    teardown(
        &state.prefix,
        &state.all_netns(),
        &state.processes,
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

impl LabState {
    fn all_netns(&self) -> Vec<String> {
        self.endpoint_netns
            .iter()
            .chain(&self.node_netns)
            .cloned()
            .collect()
    }
}

/// Stops processes, deletes the listed namespaces, then sweeps the prefix.
pub(crate) fn teardown(
    prefix: &str,
    netns: &[String],
    processes: &[ProcessRecord],
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
    if let Err(e) = super::cgroup::remove(prefix) {
        report.errors.push(e);
    }
}

/// Path of the policy directory in `state_dir`.
pub fn policy_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(POLICY_DIR)
}

/// Removes the policy directory of `state_dir` with everything in it (the lab's
/// policy files and whatever `observe policy apply` added); a missing directory
/// is fine.
pub(crate) fn remove_policy_dir(state_dir: &Path) -> Result<()> {
    let dir = policy_dir(state_dir);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Removes the state and endpoints files and the policy directory, and the state
/// directory if then empty.
pub(crate) fn remove_state_files(state_dir: &Path, report: &mut DownReport) {
    if let Err(e) = remove_policy_dir(state_dir) {
        report.errors.push(format!("{e:#}"));
    }
    for file in [STATE_FILE, ENDPOINTS_FILE, super::lb::SERVICES_FILE] {
        let path = state_dir.join(file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report
                .errors
                .push(format!("removing {}: {e}", path.display())),
        }
    }
    // Only succeeds when empty, which is what we want.
    let _ = std::fs::remove_dir(state_dir);
}
