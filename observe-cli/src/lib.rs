//! Library side of the `observe` command: a client of flow-probe and the relay.
//! It depends on wire types (`observer-proto`), the filter semantics the servers
//! apply (`observer-runtime`), the file formats (`cluster-spec`), the one graph
//! builder (`service-graph`) and the lab (`observe-lab`), never on the agent's
//! kernel loader.
//!
//! # Layout
//! - [`flows`]: `observe flows`: filter flags → `GetFlowsRequest`, stream → lines
//!   (compact, dict, json, jsonpb, table).
//! - [`tui`]: `observe flows --follow` on a terminal: live table, filter bar,
//!   detail pane with datapath hops, service map (and its changes) and top
//!   talkers tabs.
//! - [`graph_command`]: the service dependency graph of a GetFlows answer,
//!   built by `service_graph`, with each edge's datapath hops,
//!   `observe graph -o tui|dot|mermaid|json|text`; with `--diff`/`--against`
//!   ([`graph_command::diff_args`]), what changed between two windows.
//! - [`query_command`]: `observe query`: read-only SQL over a relay's history
//!   through Arrow Flight SQL.
//! - [`status`]: `observe status` and `observe nodes`.
//! - [`agent_events_command`]: `observe agent-events`, what changed in the
//!   agents (start, policies, endpoints, ipcache, services).
//! - [`connect`]: the one place every command above (and `query`) gets its
//!   channel from: `--server`, the TLS flags (Hubble's), `--lab`.
//! - [`certs_command`]: `observe certs generate` (the lab's certificate maker).
//! - [`policy_commands`]: `observe policy check|apply|delete`;
//!   [`policy_whatif`]: `observe policy whatif`, the relay's replay of its
//!   history against draft policies, as a report, JSON or a coloured graph.
//! - [`lab_commands`]: `observe lab up|traffic|restart|down` and `observe demo`, over
//!   the `observe_lab` crate (namespaces, traffic, one flow-probe per lab node).
//! - [`go_switches`]: switches written as Go flags (`--follow=false`), as a
//!   pasted `hubble observe` line has them, rewritten before clap reads them.
//! - [`pipe`]: stdout and stderr that end quietly when the reader goes away
//!   (`observe flows | head -1` exits 0), for every command.

pub mod agent_events_command;
pub mod certs_command;
pub mod connect;
pub mod flows;
pub mod go_switches;
pub mod graph_command;
pub mod lab_commands;
pub mod pipe;
pub mod policy_commands;
pub mod policy_whatif;
pub mod query_command;
pub mod status;
pub mod tui;
