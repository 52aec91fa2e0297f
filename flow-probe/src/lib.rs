//! flow-probe: the per-node agent.
//!
//! # Layout
//! Data moves top to bottom:
//! - [`sources`]: where endpoints come from (the endpoints file, the
//!   containers of Docker or Podman), merged into one endpoint set that the
//!   stages below follow; keeps the programs attached to this node's endpoints.
//! - [`kernel`]: loads `ebpf-probes/` into the kernel and attaches it ([`kernel::loader`]),
//!   after checking the event layout and enums against the object's BTF ([`kernel::btf_layout`]);
//!   probes kernel features ([`kernel::features`]); decodes ring-buffer records
//!   ([`kernel::events`]).
//! - [`pipeline`]: drains the ring buffer, decodes, and hands each event to
//!   [`enrich`], which builds a Hubble `Flow` with endpoints and identities from the
//!   endpoint set, written into the memory of a flow the store let go of
//!   (a full store turns over without allocating); lost-event counts become
//!   records in the stream.
//!   [`flow_builder`] builds what every flow shares (time, UUID, node, IP,
//!   endpoints, ports) for [`enrich`], [`lifecycle`] and [`services`].
//!   On timers it reads the kernel's flow tables for [`tables`]: periodic
//!   reports and the garbage collection of connection tracking.
//! - [`observer_runtime::store`]: the ring of recent flows (4095 by default) and the broadcast to
//!   followers.
//! - [`server`]: the `observer.Observer` gRPC service over the store, and
//!   `peer.Peer` listing this node, served plaintext or (m)TLS (`--tls-*`
//!   flags, `observer_runtime::tls`).
//! - [`cluster_spec::policy`] → [`datapath`]: policy files compiled to identity-based rules and
//!   written to the pinned maps the tc programs enforce; [`policy_watch`] applies
//!   every change of the policy directory, woken by [`file_watch`]; each
//!   distinct policy in force advances a [`generation`] (also on `/metrics`)
//!   and is recorded in the [`policy_log`] with the files and endpoints it
//!   came from: flows are stamped with it, and the relay fetches it
//!   (`observe.v1.PolicyStates`) for its history.
//! - [`services`]: the services file compiled to the socket load balancer's maps,
//!   kept in step with the files; SOCK flows of its translations.
//!   Both watchers tell [`config_status`] whether each file is in force or
//!   was refused, for `observe status`.
//! - [`metrics`]: Prometheus metrics (Hubble's names) counted per flow, served
//!   on `/metrics`.
//! - [`agent_events`]: what the watchers and sources changed (policies,
//!   ipcache entries, endpoints, services) and the probe's start, told as
//!   Hubble's agent events (`GetAgentEvents`).
//! - [`agent`]: wires them together for the `flow-probe` binary.

pub mod agent;
pub mod agent_events;
pub mod config_status;
pub mod datapath;
pub mod enrich;
pub mod file_watch;
pub mod flow_builder;
pub mod generation;
pub mod kernel;
pub mod lifecycle;
pub mod metrics;
pub mod pipeline;
pub mod policy_log;
pub mod policy_watch;
pub mod server;
pub mod services;
pub mod sources;
pub mod tables;
