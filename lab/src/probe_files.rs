//! The files a lab writes for flow-probe into its state directory, from its
//! topology and scenario:
//!
//! - `endpoints.yaml`: the [`cluster_spec::endpoints`] file (`--endpoints`);
//! - `policies/`: one `NN-<name>.yaml` per policy of the scenario, NN its index
//!   (`--policy-dir`; `observe policy apply` adds more);
//! - `services.yaml`: the [`cluster_spec::services`] file (`--services`).
//!
//! Also the names of the files the processes and `node_probes` add: the
//! relay's metrics address and the Prometheus targets.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cluster_spec::services::ServicesFile;

use super::owner_only::{self, write_atomically};
use super::scenario::Scenario;
use super::topology::Topology;
use super::validate::POLICY_KIND;

/// Name of the endpoints file in a state directory.
pub const ENDPOINTS_FILE: &str = "endpoints.yaml";
/// Name of the policy directory in a state directory.
pub const POLICY_DIR: &str = "policies";
/// Name of the services file in a state directory.
pub const SERVICES_FILE: &str = "services.yaml";
/// Where the relay writes its metrics address.
pub const RELAY_METRICS_FILE: &str = "relay.metrics";
/// Every metrics address of the lab, for Prometheus' file-based discovery.
pub const PROMETHEUS_TARGETS_FILE: &str = "prometheus-targets.json";

/// Path of the endpoints file in `state_dir`.
pub fn endpoints_path(state_dir: &Path) -> PathBuf {
    state_dir.join(ENDPOINTS_FILE)
}

/// Path of the policy directory in `state_dir`.
pub fn policy_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(POLICY_DIR)
}

/// Path of the services file in `state_dir`.
pub fn services_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SERVICES_FILE)
}

/// Paths of the scenario's policy files, in scenario order:
/// `<policy_dir>/NN-<name>.yaml`.
pub fn policy_paths(state_dir: &Path, scenario: &Scenario) -> Vec<PathBuf> {
    let dir = policy_dir(state_dir);
    scenario
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = p
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or("policy");
            dir.join(format!("{i:02}-{name}.yaml"))
        })
        .collect()
}

/// Writes the endpoints file, the policy directory and the services file of the
/// lab `topology` plans for `scenario`.
pub fn write_all(state_dir: &Path, topology: &Topology, scenario: &Scenario) -> Result<()> {
    write_endpoints_file(state_dir, topology)?;
    write_policy_files(state_dir, &topology.prefix, scenario)?;
    write_services_file(state_dir, &topology.prefix, scenario)
}

fn write_endpoints_file(state_dir: &Path, topology: &Topology) -> Result<()> {
    let yaml = cluster_spec::yaml::to_string(&topology.endpoints_file())
        .context("encoding the endpoints file")?;
    let text = format!(
        "# Endpoints of lab {} (written by the lab; flow-probe reads it).\n{yaml}",
        topology.prefix
    );
    write_atomically(&endpoints_path(state_dir), &text)
}

/// Creates the policy directory afresh (whatever an earlier lab left there
/// goes) and writes one file per policy of the scenario.
fn write_policy_files(state_dir: &Path, prefix: &str, scenario: &Scenario) -> Result<()> {
    let dir = policy_dir(state_dir);
    remove_policy_dir(state_dir)?;
    owner_only::create_dir(&dir)?;
    let paths = policy_paths(state_dir, scenario);
    for (i, (policy, path)) in scenario.policies.iter().zip(paths).enumerate() {
        let yaml = cluster_spec::yaml::to_string(policy)
            .with_context(|| format!("encoding policies[{i}]"))?;
        let text = format!(
            "# {POLICY_KIND} policies[{i}] of lab {prefix} (written by the lab from the \
             scenario; flow-probe reads this directory).\n{yaml}"
        );
        owner_only::write_file(&path, &text)?;
    }
    Ok(())
}

/// Writes the services file from the scenario (atomically).
fn write_services_file(state_dir: &Path, prefix: &str, scenario: &Scenario) -> Result<()> {
    let file = ServicesFile {
        services: scenario.services.clone(),
    };
    let yaml = cluster_spec::yaml::to_string(&file).context("encoding the services file")?;
    let text =
        format!("# Services of lab {prefix} (written by the lab; flow-probe reads it).\n{yaml}");
    write_atomically(&services_path(state_dir), &text)
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
