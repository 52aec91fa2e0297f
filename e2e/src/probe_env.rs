//! Shared set-up of the end-to-end tests: a real lab of network namespaces, the
//! real flow-probe binary attached to each of its nodes (serving mTLS with
//! the lab's certificates), and gRPC clients and `observe` flags that use
//! them. Everything is torn down when the `Env` drops, also when a test panics.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use observe_cli::connect::ConnectArgs;
use observe_lab::node_probes::{self, ProbeOptions, StartedProbe};
use observe_lab::{Lab, LabOptions, Scenario};
use observer_proto::flow::Flow;
use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::observer::{GetFlowsRequest, get_flows_response::ResponseTypes};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

pub struct Env {
    /// The probe of the first node (`node1`).
    pub probe: StartedProbe,
    /// Every node's probe, in node order (the first is `probe`).
    pub probes: Vec<StartedProbe>,
    pub state_dir: std::path::PathBuf,
    // Dropped after the probe fields: stops the probe and deletes the namespaces.
    pub lab: Lab,
    // Dropped last: the probe's log and address files.
    _dir: RemoveDir,
}

/// Removes a folder when dropped (also during a panic).
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A lab from `scenario`, with a flow-probe on every node given `extra_args`.
pub fn start(scenario: &Scenario, extra_args: &[&str]) -> Env {
    let mut opts = ProbeOptions::new(None).expect("flow-probe binary (cargo build --bins)");
    opts.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
    start_with(scenario, &opts)
}

/// A lab from `scenario`, with a flow-probe on every node started as `opts`
/// say.
pub fn start_with(scenario: &Scenario, opts: &ProbeOptions) -> Env {
    test_support::require_root("it builds a lab of namespaces and loads eBPF");
    let state_dir =
        std::env::temp_dir().join(format!("observe-e2e-{}-{}", std::process::id(), unique()));
    // Made first: a probe that fails to start (its log is in the folder)
    // panics here, and the folder still goes.
    let dir = RemoveDir(state_dir.clone());
    let mut lab = Lab::up(scenario, &LabOptions::with_state_dir(&state_dir)).expect("lab up");
    let probes = node_probes::start(&mut lab, opts).expect("flow-probe starts");
    Env {
        probe: probes[0].clone(),
        probes,
        _dir: dir,
        state_dir,
        lab,
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Env {
    /// SIGKILLs node1's probe (no clean-up of its own runs: its pins stay)
    /// and waits until it is gone.
    pub async fn kill_probe(&self) {
        let pid = self.probe.pid;
        let raw = i32::try_from(pid).expect("a pid");
        // SAFETY: kill(2) on our own child's pid, no memory involved.
        assert_eq!(unsafe { libc::kill(raw, libc::SIGKILL) }, 0, "kill {pid}");
        // Dead once a zombie or reaped.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts node1's probe again on the same address (after it was killed).
    pub fn restart_probe(&mut self) {
        self.restart_probe_with(&ProbeOptions::new(None).expect("flow-probe binary"));
    }

    /// [`Self::restart_probe`] with `opts`.
    pub fn restart_probe_with(&mut self, opts: &ProbeOptions) {
        self.probe = node_probes::start_node(&mut self.lab, "node1", self.probe.addr.port(), opts)
            .expect("probe restarts");
    }

    /// How clients reach `addr`, a server of this lab: with the lab's
    /// certificates when its probes serve mTLS (the default).
    pub fn connect_args(&self, addr: SocketAddr) -> ConnectArgs {
        ConnectArgs {
            lab: self.probe.tls.then(|| self.state_dir.clone()),
            ..ConnectArgs::server(addr.to_string())
        }
    }

    /// `observe`'s flags for `addr`, a server of this lab: `--server ADDR`
    /// and, with mTLS, `--lab STATE_DIR`.
    pub fn server_args(&self, addr: SocketAddr) -> Vec<String> {
        let mut args = vec!["--server".to_string(), addr.to_string()];
        if self.probe.tls {
            args.extend(["--lab".to_string(), self.state_dir.display().to_string()]);
        }
        args
    }

    /// `addr`, a server of this lab (a probe, or a relay over them).
    pub fn server(&self, addr: SocketAddr) -> ProbeAddr {
        ProbeAddr {
            addr,
            connect: self.connect_args(addr),
        }
    }

    /// A client of `addr`, a server of this lab.
    pub async fn client_of(&self, addr: SocketAddr) -> ObserverClient<Channel> {
        self.server(addr).client().await
    }

    /// A client of node1's probe.
    pub async fn client(&self) -> ObserverClient<Channel> {
        self.client_of(self.probe.addr).await
    }

    /// Every flow in node1's probe's ring, oldest first.
    pub async fn all_flows(&self) -> Vec<Flow> {
        self.server(self.probe.addr).all_flows().await
    }

    pub async fn get_flows(&self, req: GetFlowsRequest) -> Result<Vec<Flow>, tonic::Status> {
        self.server(self.probe.addr).get_flows(req).await
    }

    /// Polls node1's probe until `pred` holds (see [`ProbeAddr::wait_for`]).
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Flow]) -> bool) -> Vec<Flow> {
        self.server(self.probe.addr).wait_for(what, pred).await
    }
}

/// A flow-probe's (or a relay's) gRPC address and how to reach it, and what
/// tests ask it.
#[derive(Debug, Clone)]
pub struct ProbeAddr {
    pub addr: SocketAddr,
    pub connect: ConnectArgs,
}

impl ProbeAddr {
    /// A server that speaks plaintext.
    pub fn plaintext(addr: SocketAddr) -> ProbeAddr {
        ProbeAddr {
            addr,
            connect: ConnectArgs::server(addr.to_string()),
        }
    }

    /// A server of the lab in `state_dir`, which serves mTLS with its
    /// certificates when `tls`.
    pub fn of_lab(addr: SocketAddr, state_dir: &std::path::Path, tls: bool) -> ProbeAddr {
        ProbeAddr {
            addr,
            connect: ConnectArgs {
                lab: tls.then(|| state_dir.to_path_buf()),
                ..ConnectArgs::server(addr.to_string())
            },
        }
    }

    /// A channel to the server, for clients of any service on it.
    pub async fn channel(&self) -> Channel {
        self.connect
            .target(&[])
            .expect("connect flags")
            .channel()
            .await
            .expect("connect to the server")
            .0
    }

    pub async fn client(&self) -> ObserverClient<Channel> {
        self.connect
            .target(&[])
            .expect("connect flags")
            .observer()
            .await
            .expect("connect to the server")
            .0
    }

    /// Every flow in the server's ring, oldest first.
    pub async fn all_flows(&self) -> Vec<Flow> {
        self.get_flows(GetFlowsRequest::default())
            .await
            .expect("GetFlows")
    }

    pub async fn get_flows(&self, req: GetFlowsRequest) -> Result<Vec<Flow>, tonic::Status> {
        let mut stream = self.client().await.get_flows(req).await?.into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            if let Some(ResponseTypes::Flow(f)) = item?.response_types {
                out.push(f);
            }
        }
        Ok(out)
    }

    /// Polls until `pred` holds for the ring's flows (the probe reads the ring
    /// buffer asynchronously), or panics after 10 s with what it saw.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Flow]) -> bool) -> Vec<Flow> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let flows = self.all_flows().await;
            if pred(&flows) {
                return flows;
            }
            if Instant::now() > deadline {
                let lines: Vec<String> = flows
                    .iter()
                    .map(observe_cli::flows::output::flow_line)
                    .collect();
                panic!(
                    "timed out waiting for {what}; the probe has:\n{}",
                    lines.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub use test_support::flows::ips;

/// (source port, destination port) of a TCP or UDP flow, as the lab's
/// sockets give them.
pub fn ports(f: &Flow) -> Option<(u16, u16)> {
    test_support::flows::ports(f).map(|(s, d)| (s as u16, d as u16))
}

/// The flows of one connection: both directions of (client, sport) ↔ (server, dport).
pub fn connection(flows: &[Flow], client: (IpAddr, u16), server: (IpAddr, u16)) -> Vec<Flow> {
    flows
        .iter()
        .filter(|f| {
            let (s, d) = ips(f);
            match ports(f) {
                Some((sp, dp)) => {
                    ((s, sp) == client && (d, dp) == server)
                        || ((s, sp) == server && (d, dp) == client)
                }
                None => false,
            }
        })
        .cloned()
        .collect()
}
