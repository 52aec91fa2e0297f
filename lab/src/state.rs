//! The state directory of a lab that is up: `<state_dir>/state.json` holds a
//! [`LabState`], everything a later process needs to find, use and remove the
//! lab. flow-probe's files sit next to it ([`super::probe_files`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::containers::ContainerLab;
use super::ip::netns_exists;
use super::prefix;
use super::procs::ProcessRecord;
use super::scenario::Scenario;
use super::topology::Topology;

/// Default state directory of `observe lab up`.
pub const DEFAULT_STATE_DIR: &str = "/run/observe-lab";
/// Name of the state file in a state directory.
pub const STATE_FILE: &str = "state.json";

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
    /// What a container lab made in podman and the host namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<ContainerLab>,
}

/// Path of the state file in `state_dir`.
pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

impl LabState {
    /// Reads `<state_dir>/state.json`.
    pub fn load(state_dir: &Path) -> Result<LabState> {
        let path = state_path(state_dir);
        let text = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no lab state at {}: is a lab up there? (`observe lab up` starts one; \
                 a lab in another folder: give its --state-dir)",
                path.display()
            ),
            read => read.with_context(|| format!("reading lab state {}", path.display()))?,
        };
        let mut state: LabState =
            serde_json::from_str(&text).with_context(|| format!("lab state {}", path.display()))?;
        state.scenario.origin = path.display().to_string();
        prefix::check(&state.prefix)?;
        Ok(state)
    }

    /// Writes `<state_dir>/state.json` (atomically: temp file, then rename),
    /// the folder 0700 and the file 0600.
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        super::owner_only::create_dir(state_dir).context("the state directory")?;
        let text = serde_json::to_string_pretty(self).context("encoding lab state")?;
        super::owner_only::write_atomically(&state_path(state_dir), &(text + "\n"))
    }

    /// Whether any namespace of this lab still exists.
    pub fn is_up(&self) -> bool {
        self.node_netns
            .iter()
            .chain(&self.endpoint_netns)
            .any(|ns| netns_exists(ns))
    }

    /// Every namespace of the lab: endpoints first, then nodes (the order they
    /// are deleted in).
    pub(crate) fn all_netns(&self) -> Vec<String> {
        self.endpoint_netns
            .iter()
            .chain(&self.node_netns)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command aimed at a folder without a lab says so and how to aim it
    /// (it said only "No such file or directory").
    #[test]
    fn no_lab_in_the_folder_is_named_as_such() {
        let dir = test_support::scratch::ScratchDir::new("lab-state-missing");
        let err = LabState::load(dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "no lab state at {}/state.json: is a lab up there? (`observe lab up` starts one; \
                 a lab in another folder: give its --state-dir)",
                dir.path().display()
            )
        );
    }
}
