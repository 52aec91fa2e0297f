//! Library side of the `observe` command.
//!
//! - [`flows`]: `observe flows`: filter flags → `GetFlowsRequest`, stream → lines.
//! - [`tui`]: `observe flows --follow` on a terminal: live table, filter bar,
//!   detail pane with datapath hops, service map and top talkers tabs.
//! - [`graph`] and [`graph_command`]: the service dependency graph (petgraph)
//!   with each edge's datapath hops; `observe graph -o tui|dot|mermaid|json`.
//! - [`status`]: `observe status` and `observe nodes`.
//! - [`connect`]: the one place every command above (and `query`) gets its
//!   channel from: `--server`, the TLS flags (Hubble's), `--lab`.
//! - [`certs_command`]: `observe certs generate` (the lab's certificate maker).
//! - [`policy_commands`]: `observe policy check|apply|delete`.
//! - [`lab_commands`]: `observe lab up|traffic|down` and `observe demo`, over
//!   [`lab`] and [`node_probes`] (one flow-probe per lab node).
//! - [`lab`]: builds real endpoints (network namespaces, veths, a bridge per node)
//!   from a scenario file, writes the endpoints file flow-probe enriches flows with,
//!   and generates the scenario's traffic from inside the endpoint namespaces.

pub mod certs_command;
pub mod connect;
pub mod flows;
pub mod graph_command;
pub mod lab_commands;
pub mod policy_commands;
pub mod query_command;
pub mod status;
pub mod tui;
