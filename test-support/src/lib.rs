//! Fixtures shared by the tests of every crate.
//!
//! - [`frames`]: raw Ethernet frames (IPv4 TCP, ARP) for `BPF_PROG_TEST_RUN`.
//! - [`flows`]: building flows field by field (endpoints, IP, TCP/UDP, flags)
//!   and reading fields back (ports, addresses, flags).
//! - [`graph_flows`]: a hand-built set of flows (a connection seen at two
//!   observation points, a refused one, UDP, world, the host) for the service
//!   graph, the TUI and the output formats.
//! - [`graphviz`]: DOT output rendered by Graphviz, which must accept it.
//! - [`history_flows`]: the known flows the relay's history and SQL tests
//!   ingest, built field by field.
//! - [`netns`]: a named network namespace removed with the test, and a child
//!   process started inside one.
//! - [`root`]: the one way to mark a test that needs root and the real kernel.
//! - [`specs`]: endpoints and services files for their compilers' tests.
//! - [`scratch`]: a folder for one test, removed even when it panics.
//! - [`tls_probe`]: a bare TLS client that returns a server's exact refusal.
//!
//! Binaries: `cgroup-client` (`src/bin/cgroup-client.rs`) joins a cgroup and
//! runs one TCP / UDP / refused client action, for tests of programs attached
//! to a cgroup; tests find it with `observe_lab::binaries::binary`.

pub mod flows;
pub mod frames;
pub mod graph_flows;
pub mod graphviz;
pub mod history_flows;
pub mod netns;
pub mod root;
pub mod scratch;
pub mod specs;
pub mod tls_probe;
pub use root::require_root;
