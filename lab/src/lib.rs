//! The lab: real endpoints from a scenario file, on this machine's kernel.
//!
//! A [`Scenario`] (YAML, see [`scenario`] for the format; [`Scenario::builtin_default`]
//! is `scenarios/default.yaml`, [`Scenario::builtin_capture`] the policy-free
//! `scenarios/capture.yaml`) lists endpoints, the traffic between them and the
//! policies flow-probe enforces.
//! [`Lab::up`] builds it with network namespaces (needs root):
//!
//! - one namespace per node, `<prefix>-<node>` (e.g. `obs3f2a1-node1`), holding the
//!   bridge `br0` and the host side `lxc<id>` of every endpoint's veth: this is
//!   where flow-probe runs and attaches its tc programs;
//! - one namespace per endpoint, `<prefix>-<name>`, holding `eth0` with an IPv4 /24
//!   and an IPv6 /64 address from 198.18.0.0/15 and fd42::/16 ([`addr`]).
//!
//! Nothing is created, routed or changed in the root namespace. The lab writes
//! `endpoints.yaml` (the [`cluster_spec::endpoints`] file flow-probe reads),
//! `policies/` (the scenario's CiliumNetworkPolicy documents, one `NN-<name>.yaml`
//! each, for flow-probe's `--policy-dir`: [`Lab::policy_dir`]) and `state.json`
//! into its state directory. [`run_traffic_once`] and [`run_traffic`]
//! generate the scenario's traffic with sockets opened inside the endpoint
//! namespaces and report exactly what happened.
//!
//! Teardown: dropping the [`Lab`] (even during a panic) stops registered
//! processes and deletes every namespace with the lab's prefix; [`down`] does the
//! same from a state directory in a later process, and [`cleanup_prefix`] sweeps
//! leftovers by prefix.
//!
//! ```no_run
//! use observe_lab::{Lab, LabOptions, Scenario, run_traffic_once};
//! # fn main() -> anyhow::Result<()> {
//! let scenario = Scenario::builtin_default();
//! let lab = Lab::up(&scenario, &LabOptions::with_state_dir("/tmp/my-lab"))?;
//! println!("flow-probe goes into {}", lab.node_netns("node1").unwrap());
//! let report = run_traffic_once(&lab, &scenario)?;
//! assert!(report.all_as_expected(), "{report}");
//! # Ok(()) }
//! ```

pub mod addr;
pub mod binaries;
mod cgroup;
mod instance;
mod ip;
pub mod lb;
mod netns;
pub mod node_probes;
mod prefix;
mod procs;
pub mod scenario;
mod setup;
mod state;
mod sys;
pub mod topology;
mod traffic;
mod validate;

#[cfg(test)]
mod tests;

pub use instance::{Lab, LabOptions};
pub use ip::{netns_command, netns_list};
pub use netns::netns_path;
pub use prefix::PREFIX_STEM;
pub use procs::ProcessRecord;
pub use scenario::{EndpointSpec, Expect, Family, Protocol, Scenario, ScenarioError, TrafficSpec};
pub use state::{
    DEFAULT_STATE_DIR, DownReport, ENDPOINTS_FILE, LabState, POLICY_DIR, STATE_FILE,
    cleanup_prefix, down,
};
pub use sys::is_root;
pub use topology::{EndpointPlan, NodeLink, NodePlan, Topology};
/// `observe lab client`: one traffic item from inside the lab's cgroup.
pub use traffic::run_client;
pub use traffic::{
    DROP_WAIT, ItemReport, OP_TIMEOUT, Outcome, ROUND_PAUSE, TrafficReport, TrafficSummary,
    run_traffic, run_traffic_once, run_traffic_with,
};
