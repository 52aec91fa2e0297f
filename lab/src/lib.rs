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
//! each, for flow-probe's `--policy-dir`: [`Lab::policy_dir`]), `services.yaml`
//! (flow-probe's `--services`: [`Lab::services_path`]), `certs/` (mTLS:
//! [`Lab::certs`]) and `state.json` into its state directory.
//! [`run_traffic_once`] and [`run_traffic`] generate the scenario's traffic
//! with sockets opened inside the endpoint namespaces and report exactly what
//! happened.
//!
//! With [`LabOptions::containers`] the same plan is built with Podman
//! instead ([`containers`]): each endpoint a container on an internal
//! network, found by flow-probe through the Docker Engine API.
//!
//! Teardown: dropping the [`Lab`] (even during a panic) stops registered
//! processes and deletes every namespace with the lab's prefix; [`down`] does the
//! same from a state directory in a later process, and [`cleanup_prefix`] sweeps
//! leftovers by prefix.
//!
//! # Layout
//!
//! The modules follow the data, each using only those before it:
//!
//! ```text
//! YAML ─► scenario ─► validate ─► topology ─► setup ──────────┐
//!         (types)     (checked    (the plan)  (namespaces)    ├─► instance ─► lb
//!                      Scenario)              state,          │   (Lab)       traffic
//!                                             probe_files,  ──┘               node_probes
//!                                             teardown
//!                                             (state directory)
//! ```
//!
//! - [`scenario`]: the scenario file's types; `validate` turns text into a
//!   checked [`Scenario`] ([`Scenario::parse`]), every error naming its field.
//! - [`topology`]: the [`Topology`] plan, every name and address, computed without
//!   touching the system; `setup` builds it with `ip` and namespace sysctls.
//! - `state`: the [`LabState`] in `state.json`, for later processes;
//!   `probe_files`: `endpoints.yaml`, `policies/` and `services.yaml` for
//!   flow-probe; `teardown`: stopping processes, deleting namespaces, pins,
//!   the cgroup and those files ([`down`]).
//! - `instance`: the [`Lab`], which runs all of the above in [`Lab::up`] and
//!   takes it down when dropped.
//! - On top of a lab: [`lb`] (its services for flow-probe's socket load
//!   balancer), `traffic` (the scenario's traffic from sockets in the endpoint
//!   namespaces, [`run_traffic`]), [`node_probes`] (one flow-probe per node
//!   and the relay, serving mTLS with the lab's certificates).
//! - [`certs`]: a CA, a server and a client certificate (rcgen), written
//!   owner-only into `<state_dir>/certs` by [`Lab::up`] and by
//!   `observe certs generate`.
//! - [`podman`]: images, internal networks, containers and the Docker
//!   Engine API service of podman, for container labs and tests.
//! - Underneath everything: [`addr`] (the address plan), `ip` (iproute2),
//!   `netns` (running code in a namespace), `procs` (stopping recorded
//!   processes), `cgroup` (the lab's cgroup), `prefix` (unique name prefixes),
//!   [`binaries`] (where the project's executables are), `sys` (is this root),
//!   [`owner_only`] (the state folder 0700, every file the lab writes 0600).
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
pub mod certs;
mod cgroup;
pub mod containers;
mod instance;
mod ip;
pub mod lb;
mod netns;
pub mod node_probes;
pub mod owner_only;
pub mod podman;
mod prefix;
mod probe_files;
mod procs;
pub mod scenario;
mod setup;
mod state;
mod sys;
mod teardown;
pub mod topology;
mod traffic;
mod validate;

#[cfg(test)]
mod tests;

pub use instance::{Lab, LabOptions};
pub use ip::{netns_attach, netns_command, netns_del, netns_list};
pub use netns::{netns_path, run_in as run_in_netns};
pub use owner_only::write_atomically;
pub use prefix::PREFIX_STEM;
pub use probe_files::{ENDPOINTS_FILE, POLICY_DIR, SERVICES_FILE};
pub use procs::{ProcessRecord, stop_child};
pub use scenario::{EndpointSpec, Expect, Family, Protocol, Scenario, ScenarioError, TrafficSpec};
pub use state::{DEFAULT_STATE_DIR, LabState, STATE_FILE};
pub use sys::is_root;
pub use teardown::{DownReport, cleanup_prefix, down};
pub use topology::{EndpointPlan, NodeLink, NodePlan, Topology};
/// `observe lab client`: one traffic item from inside the lab's cgroup.
pub use traffic::run_client;
pub use traffic::{
    BIND_WAIT, DROP_WAIT, ItemReport, OP_TIMEOUT, Outcome, ROUND_PAUSE, TRAFFIC_LOCK, TrafficLock,
    TrafficReport, TrafficSummary, bind_when_free, run_traffic, run_traffic_once, run_traffic_with,
};
