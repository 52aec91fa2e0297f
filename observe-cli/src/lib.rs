//! Library side of the `observe` command.
//!
//! - [`flows`]: `observe flows`: filter flags → `GetFlowsRequest`, stream → lines.
//! - [`tui`]: `observe flows --follow` on a terminal: live table, filter bar,
//!   detail pane with datapath hops, service map and top talkers tabs.
//! - [`graph`] and [`graph_command`]: the service dependency graph (petgraph)
//!   with each edge's datapath hops; `observe graph -o tui|dot|mermaid|json`.
//! - [`status`]: `observe status` and `observe nodes`.
//! - [`policy_commands`]: `observe policy check|apply|delete`.
//! - [`lab_commands`]: `observe lab up|traffic|down` and `observe demo`, over
//!   [`lab`] and [`node_probes`] (one flow-probe per lab node).
//! - [`pipe`]: stdout and stderr that end quietly when the reader goes away
//!   (`observe flows | head -1` exits 0), for every command.
//! - [`lab`]: builds real endpoints (network namespaces, veths, a bridge per node)
//!   from a scenario file, writes the endpoints file flow-probe enriches flows with,
//!   and generates the scenario's traffic from inside the endpoint namespaces.

pub mod flows;
pub mod graph_command;
pub mod lab_commands;
pub mod pipe;
pub mod policy_commands;
pub mod query_command;
pub mod status;
pub mod tui;
