//! Library side of the `observe` command.
//!
//! - [`flows`]: `observe flows`: filter flags → `GetFlowsRequest`, stream → lines.
//! - [`tui`]: `observe flows --follow` on a terminal: live table, filter bar,
//!   detail pane with datapath hops, service map (and its changes) and top
//!   talkers tabs.
//! - [`graph_command`]: the service dependency graph (`service_graph`) with
//!   each edge's datapath hops, `observe graph -o tui|dot|mermaid|json|text`;
//!   with `--diff`/`--against` ([`graph_command::diff_args`]), what changed
//!   between two windows.
//! - [`status`]: `observe status` and `observe nodes`.
//! - [`query_command`]: `observe query`, SQL over the relay's Flight SQL.
//! - [`policy_commands`]: `observe policy check|apply|delete`.
//! - [`lab_commands`]: `observe lab up|traffic|down` and `observe demo`, over
//!   the `observe_lab` crate (namespaces, traffic, one flow-probe per lab node).

pub mod flows;
pub mod graph_command;
pub mod lab_commands;
pub mod policy_commands;
pub mod query_command;
pub mod status;
pub mod tui;
