//! Library side of the `observe` command.
//!
//! - [`flows`]: `observe flows`: filter flags → `GetFlowsRequest`, stream → lines.
//! - [`status`]: `observe status` and `observe nodes`.
//! - [`lab_commands`]: `observe lab up|traffic|down` and `observe demo`, over
//!   [`lab`] and [`node_probes`] (one flow-probe per lab node).
//! - [`lab`]: builds real endpoints (network namespaces, veths, a bridge per node)
//!   from a scenario file, writes the endpoints file flow-probe enriches flows with,
//!   and generates the scenario's traffic from inside the endpoint namespaces.

pub mod flows;
pub mod lab;
pub mod lab_commands;
pub mod node_probes;
pub mod status;
