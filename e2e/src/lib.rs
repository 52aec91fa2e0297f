//! End-to-end tests: the lab, the real flow-probe and relay binaries, the
//! `observe` CLI and outside clients, together on the real kernel. The tests
//! are in `tests/`; this library is what they share.
//!
//! # Layout
//! - [`probe_env`]: a lab from a scenario with a flow-probe on its first node,
//!   and a client that waits for the flows it expects ([`start`], [`Env`]);
//!   [`probe_metrics`] waits until the probe says a change is in force.
//! - [`relay_harness`]: the relay in-process on 127.0.0.1:0
//!   ([`RelayUnderTest`]); [`follower`] records a following stream;
//!   [`responses`] reads flows, node-status events, ports and times.
//! - [`scenario_graph`]: the service graph of the built-in scenario's traffic.
//! - [`in_process`]: for tests that load the probe in-process, an enricher
//!   that knows its interfaces.

pub mod follower;
pub mod in_process;
pub mod probe_env;
pub mod probe_metrics;
pub mod relay_harness;
pub mod responses;
pub mod scenario_graph;

pub use probe_env::*;
pub use relay_harness::RelayUnderTest;

/// How long a test waits for anything.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The `observe` executable (built by `cargo build --bins`, which
/// `scripts/test.sh` runs first).
pub fn observe_binary() -> std::path::PathBuf {
    observe_lab::binaries::binary("observe").expect("the observe binary")
}
