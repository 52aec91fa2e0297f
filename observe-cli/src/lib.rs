//! Library side of the `observe` command.
//!
//! - [`lab`]: builds real endpoints (network namespaces, veths, a bridge per node)
//!   from a scenario file, writes the endpoints file flow-probe enriches flows with,
//!   and generates the scenario's traffic from inside the endpoint namespaces.

pub mod flows;
pub mod lab;
pub mod lab_commands;
pub mod node_probes;
