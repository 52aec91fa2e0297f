//! [`Lab`]: a lab that is up, and the guard that takes it down.

use std::path::{Path, PathBuf};
use std::process::Child;

use anyhow::{Context, Result, bail};
use cluster_spec::endpoints::EndpointsFile;

use super::certs::{self, CertFiles, CertOptions};
use super::containers::{self, ContainerLab};
use super::ip::netns_list;
use super::procs::{self, ProcessRecord};
use super::scenario::Scenario;
use super::state::{self, DEFAULT_STATE_DIR, LabState};
use super::teardown::{self, DownReport};
use super::topology::{EndpointPlan, NodePlan, Topology};
use super::{cgroup, prefix, probe_files, setup, sys};

/// Options of [`Lab::up`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabOptions {
    /// Where `state.json`, `endpoints.yaml` and `policies/` go (default
    /// [`DEFAULT_STATE_DIR`]).
    pub state_dir: PathBuf,
    /// Namespace name prefix; a fresh `obsXXXXX` when `None`.
    pub prefix: Option<String>,
    /// Each endpoint a Podman container that the probes find through the
    /// Docker Engine API (see [`super::containers`]), not a bare namespace.
    pub containers: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            prefix: None,
            containers: false,
        }
    }
}

impl LabOptions {
    /// Default options with another state directory.
    pub fn with_state_dir(state_dir: impl Into<PathBuf>) -> Self {
        LabOptions {
            state_dir: state_dir.into(),
            ..LabOptions::default()
        }
    }
}

/// A lab that is up.
///
/// A lab made by [`Lab::up`] owns what it built: dropping it (also while a panic
/// unwinds) stops the processes registered with it, deletes its namespaces and
/// removes its state files. [`Lab::detach`] leaves the lab up instead (for
/// `observe lab up`); [`Lab::attach`] gives a non-owning view of a lab from its
/// state directory, and [`super::down`] takes such a lab down.
#[derive(Debug)]
pub struct Lab {
    topology: Topology,
    scenario: Scenario,
    state_dir: PathBuf,
    processes: Vec<ProcessRecord>,
    children: Vec<(Child, String)>,
    /// What a container lab made besides namespace names.
    containers: Option<ContainerLab>,
    owned: bool,
}

impl Lab {
    /// Builds the lab for `scenario` and writes its state directory.
    ///
    /// Writes the endpoints file and the policy directory ([`Lab::policy_dir`]:
    /// one `NN-<name>.yaml` per policy of the scenario, NN its index; empty when
    /// the scenario has none), and a new set of certificates ([`Lab::certs`]).
    ///
    /// Does not start flow-probe: start it in each node namespace
    /// ([`Lab::node_netns`], [`super::netns_command`]) with the endpoints file
    /// ([`Lab::endpoints_path`]) and the policy directory, then hand it over with
    /// [`Lab::adopt_child`] or [`Lab::register_pid`]. Fails if `state_dir` holds a
    /// lab that is still up.
    pub fn up(scenario: &Scenario, opts: &LabOptions) -> Result<Lab> {
        scenario.validate()?;
        if !sys::is_root() {
            bail!("the lab needs root: it creates network namespaces");
        }
        let prefix = match &opts.prefix {
            Some(p) => {
                prefix::check(p)?;
                if netns_list()?
                    .iter()
                    .any(|n| n.starts_with(&format!("{p}-")))
                {
                    bail!("network namespaces with prefix {p}- already exist");
                }
                p.clone()
            }
            None => prefix::generate()?,
        };
        refuse_busy_state_dir(&opts.state_dir)?;
        let topology = Topology::plan(scenario, &prefix)?;
        let mut lab = Lab {
            topology,
            scenario: scenario.clone(),
            state_dir: opts.state_dir.clone(),
            processes: Vec::new(),
            children: Vec::new(),
            containers: opts.containers.then(ContainerLab::default),
            owned: true,
        };
        // From here on a crash leaves a state file that `down` can use.
        lab.save_state()?;
        // A fresh CA per lab: the probes, the relay and `observe` talk mTLS.
        // Made before the namespaces: a state folder whose parents others
        // could change is refused before anything is built.
        certs::generate(
            &lab.certs().dir,
            &CertOptions {
                replace: true,
                ..CertOptions::default()
            },
        )
        .with_context(|| format!("lab {prefix}'s certificates"))?;
        match lab.containers.take() {
            Some(mut made) => {
                let built = containers::build(&mut lab.topology, &lab.state_dir, &mut made);
                lab.containers = Some(made);
                let api = built.with_context(|| format!("building container lab {prefix}"))?;
                if let Some(child) = api.into_child() {
                    lab.adopt_child(child, "podman system service")?;
                }
            }
            None => {
                setup::build(&lab.topology).with_context(|| format!("building lab {prefix}"))?
            }
        }
        probe_files::write_all(&lab.state_dir, &lab.topology, &lab.scenario)?;
        // The cgroup is needed only for services; without them a failure is no error.
        let nodes = lab.topology.nodes.iter().map(|n| n.name.as_str());
        match cgroup::create(&prefix, nodes) {
            Ok(_) => {}
            Err(e) if lab.scenario.services.is_empty() => log::debug!("no lab cgroup: {e:#}"),
            Err(e) => return Err(e),
        }
        log::info!(
            "lab {prefix} is up: {} endpoints on {} node(s)",
            lab.topology.endpoints.len(),
            lab.topology.nodes.len()
        );
        Ok(lab)
    }

    /// A non-owning view of the lab recorded in `state_dir` (dropping it leaves
    /// the lab up).
    pub fn attach(state_dir: &Path) -> Result<Lab> {
        let state = LabState::load(state_dir)?;
        Ok(Lab {
            topology: state.topology,
            scenario: state.scenario,
            state_dir: state_dir.to_path_buf(),
            processes: state.processes,
            children: Vec::new(),
            containers: state.containers,
            owned: false,
        })
    }

    /// Prefix of every namespace of the lab.
    pub fn prefix(&self) -> &str {
        &self.topology.prefix
    }

    /// The full plan: nodes, endpoints, names, interfaces, addresses.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The scenario the lab was built from.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The nodes (flow-probe runs once per node, in its namespace).
    pub fn nodes(&self) -> &[NodePlan] {
        &self.topology.nodes
    }

    /// Network namespace of the node with this scenario name (e.g. "node1").
    pub fn node_netns(&self, node: &str) -> Option<&str> {
        self.topology.node(node).map(|n| n.netns.as_str())
    }

    /// The endpoint with this scenario name.
    pub fn endpoint(&self, name: &str) -> Option<&EndpointPlan> {
        self.topology.endpoint(name)
    }

    /// What a container lab made (`None` for a namespace lab).
    pub fn containers(&self) -> Option<&ContainerLab> {
        self.containers.as_ref()
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The endpoints file written for flow-probe (`<state_dir>/endpoints.yaml`).
    pub fn endpoints_path(&self) -> PathBuf {
        probe_files::endpoints_path(&self.state_dir)
    }

    /// The services file written for flow-probe's `--services`
    /// (`<state_dir>/services.yaml`; no services when the scenario has none).
    pub fn services_path(&self) -> PathBuf {
        probe_files::services_path(&self.state_dir)
    }

    /// The lab's cgroup (`<cgroup v2 mount>/<prefix>`), the parent of its
    /// nodes' ([`Lab::node_cgroup_path`]).
    pub fn cgroup_path(&self) -> PathBuf {
        cgroup::path_for(self.prefix())
    }

    /// A node's cgroup (`<prefix>/<node>`), where its flow-probe attaches the
    /// socket load balancer and the clients of its endpoints' service items
    /// run.
    pub fn node_cgroup_path(&self, node: &str) -> PathBuf {
        self.cgroup_path().join(node)
    }

    /// The policy directory written for flow-probe's `--policy-dir`
    /// (`<state_dir>/policies`): one `NN-<name>.yaml` per policy of the scenario.
    pub fn policy_dir(&self) -> PathBuf {
        probe_files::policy_dir(&self.state_dir)
    }

    /// Paths of the policy files [`Lab::up`] writes, in scenario order:
    /// `<policy_dir>/NN-<name>.yaml`.
    pub fn policy_paths(&self) -> Vec<PathBuf> {
        probe_files::policy_paths(&self.state_dir, &self.scenario)
    }

    /// The lab's certificates (`<state_dir>/certs`): its CA, the server
    /// certificate of the probes and the relay, and the client certificate of
    /// the relay and `observe`.
    pub fn certs(&self) -> CertFiles {
        CertFiles::of_lab(&self.state_dir)
    }

    /// The content of the endpoints file.
    pub fn endpoints_file(&self) -> EndpointsFile {
        self.topology.endpoints_file()
    }

    /// Whether dropping this value takes the lab down.
    pub fn is_owned(&self) -> bool {
        self.owned
    }

    /// The lab's state as written to `state.json`.
    pub fn state(&self) -> LabState {
        LabState {
            prefix: self.topology.prefix.clone(),
            node_netns: self
                .topology
                .nodes
                .iter()
                .map(|n| n.netns.clone())
                .collect(),
            endpoint_netns: self
                .topology
                .endpoints
                .iter()
                .map(|e| e.netns.clone())
                .collect(),
            processes: self.processes.clone(),
            endpoints_file: self.endpoints_path(),
            topology: self.topology.clone(),
            scenario: self.scenario.clone(),
            containers: self.containers.clone(),
        }
    }

    /// Writes `<state_dir>/state.json`.
    pub fn save_state(&self) -> Result<()> {
        self.state().save(&self.state_dir)
    }

    /// Registers a running process (by pid) to stop when the lab goes down, here
    /// or through [`super::down`]; saves the state.
    pub fn register_pid(&mut self, pid: u32, what: &str) -> Result<()> {
        self.processes.push(ProcessRecord::new(pid, what));
        self.save_state()
    }

    /// Takes a child process to stop (and reap) when the lab goes down; saves the
    /// state, so [`super::down`] stops it too after [`Lab::detach`].
    pub fn adopt_child(&mut self, child: Child, what: &str) -> Result<()> {
        self.processes.push(ProcessRecord::new(child.id(), what));
        self.children.push((child, what.to_string()));
        self.save_state()
    }

    /// Stops the processes recorded as `what` (those still running) and
    /// forgets them; saves the state. Returns how many were recorded.
    pub fn stop_process(&mut self, what: &str) -> Result<usize> {
        let (gone, kept): (Vec<ProcessRecord>, Vec<ProcessRecord>) =
            std::mem::take(&mut self.processes)
                .into_iter()
                .partition(|p| p.what == what);
        for p in &gone {
            procs::stop(p);
        }
        self.children.retain(|(_, w)| w != what);
        self.processes = kept;
        self.save_state()?;
        Ok(gone.len())
    }

    /// Leaves the lab up after this value is gone; returns its saved state.
    /// Adopted children keep running.
    pub fn detach(mut self) -> Result<LabState> {
        self.owned = false;
        self.children.clear();
        self.save_state()?;
        Ok(self.state())
    }

    /// Takes the lab down now, reporting what went wrong (dropping does the same
    /// but can only log problems).
    pub fn down(mut self) -> Result<DownReport> {
        let report = self.teardown();
        self.owned = false;
        if !report.errors.is_empty() {
            bail!(
                "taking down lab {}: {}",
                report.prefix,
                report.errors.join("; ")
            );
        }
        Ok(report)
    }

    fn teardown(&mut self) -> DownReport {
        let mut report = DownReport {
            prefix: self.prefix().to_string(),
            ..DownReport::default()
        };
        for (child, what) in &mut self.children {
            procs::stop_child(child, what);
        }
        self.children.clear();
        let mut netns: Vec<String> = self
            .topology
            .endpoints
            .iter()
            .map(|e| e.netns.clone())
            .collect();
        netns.extend(self.topology.nodes.iter().map(|n| n.netns.clone()));
        let prefix = self.topology.prefix.clone();
        teardown::teardown(
            &prefix,
            &netns,
            &self.processes,
            self.containers.as_mut(),
            &mut report,
        );
        // Leave a state directory that another lab has taken over alone.
        let ours = LabState::load(&self.state_dir).is_ok_and(|s| s.prefix == self.prefix());
        if ours {
            teardown::remove_state_files(&self.state_dir, &mut report);
        }
        report
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let report = self.teardown();
        for e in &report.errors {
            log::warn!("lab {}: {e}", report.prefix);
        }
    }
}

/// Refuses a state directory that records a lab that is still up.
fn refuse_busy_state_dir(state_dir: &Path) -> Result<()> {
    if !state::state_path(state_dir).exists() {
        return Ok(());
    }
    match LabState::load(state_dir) {
        Ok(old) if old.is_up() => bail!(
            "{} holds lab {}, which is still up: take it down first",
            state_dir.display(),
            old.prefix
        ),
        Ok(_) => Ok(()),
        Err(e) => Err(e.context(format!(
            "{} holds an unreadable lab state; remove it or take that lab down",
            state_dir.display()
        ))),
    }
}
