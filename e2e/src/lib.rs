//! End-to-end tests: the lab, the real flow-probe and relay binaries, the
//! `observe` CLI and outside clients, together on the real kernel. The tests
//! are in `tests/`; this library is what they share.
//!
//! # Layout
//! - [`probe_env`]: a lab from a scenario with a flow-probe on every node,
//!   and a client that waits for the flows it expects ([`start`], [`Env`],
//!   [`ProbeAddr`]); [`containers`]: a flow-probe following Podman containers;
//!   [`probe_metrics`] waits until the probe says a change is in force.
//! - [`relay_harness`]: the relay in-process on 127.0.0.1:0
//!   ([`RelayUnderTest`]); [`relay_process`]: the relay binary with an empty
//!   history, its metrics and a 1 s `ServerStatus` probe;
//!   [`follower`] records a following stream;
//!   [`responses`] reads flows, node-status events, ports and times.
//! - [`scenario_graph`]: the service graph of the built-in scenario's traffic.
//! - [`observe`]: runs the `observe` binary and returns what it printed.
//! - [`firewall_drop_tcp_port`]: a netfilter rule that makes the kernel drop.
//! - [`in_process`]: for tests that load the probe in-process, an enricher
//!   that knows its interfaces.
//! - [`cilium`]: clients generated from Cilium's own .proto files
//!   (`tests/cilium/`, by `build.rs`), to see our servers as Hubble does.

pub mod bpf_maps;
pub mod cilium;
pub mod containers;
pub mod follower;
pub mod in_process;
pub mod probe_env;
pub mod probe_metrics;
pub mod prometheus;
pub mod relay_harness;
pub mod relay_process;
pub mod responses;
pub mod scenario_graph;

pub use probe_env::*;
pub use relay_harness::RelayUnderTest;

/// A peer address nothing listens on, so connecting is refused at once:
/// port 1 is privileged and no test binds it, where a port bound and closed
/// could be taken by a parallel test's server.
pub const REFUSING_PEER: &str = "127.0.0.1:1";

/// How long a test waits for anything.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A child process killed (SIGKILL) and reaped when dropped, also while a
/// failed assertion unwinds.
pub struct KilledOnDrop(pub std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `observe` executable (built by `cargo build --bins`, which
/// `scripts/test.sh` runs first).
pub fn observe_binary() -> std::path::PathBuf {
    observe_lab::binaries::binary("observe").expect("the observe binary")
}

/// The Python of the virtual environment `scripts/setup.sh` fills with
/// clients that are not ours (the ADBC Flight SQL driver, grpcio's health
/// client): `/var/cache/observe-ci/venv`, or `$OBSERVE_VENV`.
pub fn venv_python() -> std::path::PathBuf {
    let venv = std::env::var_os("OBSERVE_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/var/cache/observe-ci/venv"));
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "no Python at {}: run scripts/setup.sh, which installs the outside clients \
         there (or point OBSERVE_VENV at a virtual environment that has them)",
        python.display()
    );
    python
}

/// Runs `observe ARGS` and returns its standard output; panics with its
/// standard error when it fails.
pub fn observe(args: &[&str]) -> String {
    let out = std::process::Command::new(observe_binary())
        .args(args)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run observe");
    assert!(
        out.status.success(),
        "observe {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// An IPv4 TCP socket bound to `port` (0: any) with `SO_REUSEADDR`, in the
/// caller's network namespace: a client port a test can use again.
pub fn tcp_socket_on_port(port: u16) -> socket2::Socket {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("a TCP socket");
    sock.set_reuse_address(true).expect("SO_REUSEADDR");
    sock.bind(&std::net::SocketAddr::from(([0, 0, 0, 0], port)).into())
        .expect("bind the client port");
    sock
}

/// Makes the firewall of network namespace `netns` drop every TCP packet to
/// `port` on input (table `inet obs`, gone with the namespace): a drop that
/// only the kernel's kfree_skb reports.
pub fn firewall_drop_tcp_port(netns: &str, port: u16) {
    firewall_drop(netns, "input", port);
}

/// Adds an nftables rule in `netns` that drops what it sends to TCP `port`
/// (the output hook: the packet never reaches the endpoint's interface).
pub fn firewall_drop_outgoing_tcp_port(netns: &str, port: u16) {
    firewall_drop(netns, "output", port);
}

fn firewall_drop(netns: &str, hook: &str, port: u16) {
    let nft = format!(
        "add table inet obs; add chain inet obs {hook} {{ type filter hook {hook} priority 0; }}; add rule inet obs {hook} tcp dport {port} drop"
    );
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", netns, "nft", &nft])
        .output()
        .expect("run ip netns exec nft");
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
