//! Starts one flow-probe per lab node, inside that node's network namespace, and
//! the relay that fans them in, and waits until each is attached and serving.
//! By default every one serves mTLS with the lab's certificates
//! ([`crate::Lab::certs`]) and the relay follows the probes over mTLS.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::certs::CertFiles;
use crate::instance::Lab;
use crate::probe_files::{PROMETHEUS_TARGETS_FILE, RELAY_METRICS_FILE};

/// Hubble's ports, which `observe lab up` serves on (other labs take free
/// ones): the first node's probe, its metrics, the relay, its metrics.
pub const PROBE_PORT: u16 = 4244;
pub const PROBE_METRICS_PORT: u16 = 9965;
pub const RELAY_PORT: u16 = 4245;
pub const RELAY_METRICS_PORT: u16 = 9966;
pub const HUBBLE_PORTS: [u16; 4] = [
    PROBE_PORT,
    PROBE_METRICS_PORT,
    RELAY_PORT,
    RELAY_METRICS_PORT,
];

/// Where the probes listen and what extra flags they get.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The flow-probe binary.
    pub binary: PathBuf,
    /// Port of the first node's probe (4244 as Hubble's agent); `None` or later
    /// nodes take any free port, written to `probe-<node>.addr` in the state dir.
    pub first_port: Option<u16>,
    /// More flags for every probe, e.g. `--ringbuf-size 4096`.
    pub extra_args: Vec<String>,
    /// Serve mTLS with the lab's certificates (the default); plaintext without.
    pub tls: bool,
    /// `--persist` (the default): a stopped probe leaves its programs and
    /// tables in place for the next one.
    pub persist: bool,
}

impl ProbeOptions {
    pub fn new(first_port: Option<u16>) -> anyhow::Result<Self> {
        Ok(ProbeOptions {
            binary: crate::binaries::binary("flow-probe")?,
            first_port,
            extra_args: Vec::new(),
            tls: true,
            persist: true,
        })
    }
}

/// A probe (or the relay) that is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedProbe {
    pub node: String,
    pub addr: SocketAddr,
    pub pid: u32,
    pub log: PathBuf,
    /// Serving mTLS with the lab's certificates: clients need its CA and
    /// client certificate ([`crate::Lab::certs`]).
    pub tls: bool,
}

/// Starts a probe per node and registers each with the lab, which stops them on
/// teardown.
pub fn start(lab: &mut Lab, opts: &ProbeOptions) -> anyhow::Result<Vec<StartedProbe>> {
    let nodes: Vec<String> = lab.nodes().iter().map(|n| n.name.clone()).collect();
    let mut started = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let port = if i == 0 {
            opts.first_port.unwrap_or(0)
        } else {
            0
        };
        started.push(start_node(lab, node, port, opts)?);
    }
    lab.save_state()?;
    Ok(started)
}

/// Starts the probe of one node, listening on `port` (0: any free port).
pub fn start_node(
    lab: &mut Lab,
    node: &str,
    port: u16,
    opts: &ProbeOptions,
) -> anyhow::Result<StartedProbe> {
    let netns = lab
        .node_netns(node)
        .with_context(|| format!("no node {node} in the lab"))?
        .to_string();
    let ready = lab.state_dir().join(format!("probe-{node}.addr"));
    let log = lab.state_dir().join(format!("probe-{node}.log"));
    let _ = std::fs::remove_file(&ready);
    let log_file = crate::owner_only::open_file(&log, true)?;
    // A container lab's probes find the endpoints through the runtime's API.
    let endpoints: Vec<std::ffi::OsString> = match lab.containers() {
        Some(c) => c.probe_args(lab.prefix()),
        None => vec![
            "--attach-endpoints".into(),
            "--endpoints".into(),
            lab.endpoints_path().into(),
        ],
    };
    let child = Command::new(&opts.binary)
        .args(["--netns", &netns, "--node-name", node, "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(endpoints)
        .arg("--policy-dir")
        .arg(lab.policy_dir())
        .args(crate::lb::probe_args(lab, node))
        .arg("--ready-file")
        .arg(&ready)
        // As Cilium's datapath outlives its agent: a probe stopped (`observe
        // lab restart`) leaves enforcement in place for the next one; the
        // lab's teardown removes the pins.
        .args(opts.persist.then_some("--persist"))
        .args(metrics_args(lab, node, port, opts))
        .args(if opts.tls {
            server_tls_args(&lab.certs())
        } else {
            Vec::new()
        })
        .args(&opts.extra_args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", opts.binary.display()))?;
    let pid = child.id();
    lab.adopt_child(child, &format!("flow-probe {node}"))?;
    let addr = wait_ready(&ready, &log, pid)?;
    Ok(StartedProbe {
        node: node.to_string(),
        addr,
        pid,
        log,
        tls: opts.tls,
    })
}

/// Metrics on Hubble's port 9965 for the node on the default gRPC port, any free
/// port otherwise (parallel labs must not collide); callers may choose their own.
fn metrics_args(lab: &Lab, node: &str, port: u16, opts: &ProbeOptions) -> Vec<OsString> {
    if opts.extra_args.iter().any(|a| a == "--metrics-listen") {
        return Vec::new();
    }
    let listen = format!(
        "127.0.0.1:{}",
        if port == PROBE_PORT {
            PROBE_METRICS_PORT
        } else {
            0
        }
    );
    let ready = lab.state_dir().join(format!("probe-{node}.metrics"));
    vec![
        "--metrics-listen".into(),
        listen.into(),
        "--metrics-ready-file".into(),
        ready.into(),
    ]
}

/// The flags of a server (flow-probe or relay) serving mTLS with `certs`.
pub fn server_tls_args(certs: &CertFiles) -> Vec<OsString> {
    vec![
        "--tls-cert-file".into(),
        certs.server_cert.clone().into(),
        "--tls-key-file".into(),
        certs.server_key.clone().into(),
        "--tls-client-ca-files".into(),
        certs.ca_cert.clone().into(),
    ]
}

/// The relay's flags for following its peers over mTLS with `certs`.
pub fn relay_peer_tls_args(certs: &CertFiles) -> Vec<OsString> {
    vec![
        "--tls-hubble-server-ca-files".into(),
        certs.ca_cert.clone().into(),
        "--tls-hubble-client-cert-file".into(),
        certs.client_cert.clone().into(),
        "--tls-hubble-client-key-file".into(),
        certs.client_key.clone().into(),
    ]
}

/// `observe`'s flags for talking to the lab's servers over mTLS with `certs`.
pub fn client_tls_args(certs: &CertFiles) -> Vec<OsString> {
    vec![
        "--tls".into(),
        "--tls-ca-cert-files".into(),
        certs.ca_cert.clone().into(),
        "--tls-client-cert-file".into(),
        certs.client_cert.clone().into(),
        "--tls-client-key-file".into(),
        certs.client_key.clone().into(),
    ]
}

/// Starts the relay in the root namespace, fanning in `probes`, listening on
/// `port` (4245 as Hubble's relay; 0 = any free port); the lab stops it. It
/// serves and follows the probes over mTLS when they serve it.
pub fn start_relay(
    lab: &mut Lab,
    probes: &[StartedProbe],
    port: u16,
) -> anyhow::Result<StartedProbe> {
    let tls = probes.first().is_some_and(|p| p.tls);
    if probes.iter().any(|p| p.tls != tls) {
        bail!("the relay cannot follow probes with TLS and probes without at once");
    }
    let binary = crate::binaries::binary("relay")?;
    // The relay's address file is replaced only once the new relay serves:
    // a client reading it meanwhile finds the relay's address (and no
    // answer), not no relay, which would send it to a probe instead.
    let address = lab.state_dir().join("relay.addr");
    let ready = lab.state_dir().join("relay.addr.starting");
    let metrics_ready = lab.state_dir().join(RELAY_METRICS_FILE);
    let log = lab.state_dir().join("relay.log");
    let _ = std::fs::remove_file(&ready);
    let _ = std::fs::remove_file(&metrics_ready);
    let log_file = crate::owner_only::open_file(&log, true)?;
    let mut cmd = Command::new(&binary);
    for p in probes {
        cmd.arg("--peer").arg(p.addr.to_string());
    }
    let child = cmd
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--metrics-listen")
        .arg(format!(
            "127.0.0.1:{}",
            if port == RELAY_PORT {
                RELAY_METRICS_PORT
            } else {
                0
            }
        ))
        .arg("--metrics-ready-file")
        .arg(&metrics_ready)
        // Each lab keeps its own history, removed with the lab.
        .arg("--history-dir")
        .arg(lab.state_dir().join("history"))
        .arg("--ready-file")
        .arg(&ready)
        .args(if tls {
            let certs = lab.certs();
            [server_tls_args(&certs), relay_peer_tls_args(&certs)].concat()
        } else {
            Vec::new()
        })
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id();
    lab.adopt_child(child, "relay")?;
    let addr = wait_ready(&ready, &log, pid)?;
    std::fs::rename(&ready, &address)
        .with_context(|| format!("publishing the relay's address in {}", address.display()))?;
    lab.save_state()?;
    let relay_metrics = wait_ready(&metrics_ready, &log, pid)?;
    let nodes: Vec<String> = probes.iter().map(|p| p.node.clone()).collect();
    write_prometheus_targets(lab.state_dir(), &nodes, relay_metrics)?;
    Ok(StartedProbe {
        node: "relay".to_string(),
        addr,
        pid,
        log,
        tls,
    })
}

/// The address a ready file (`--ready-file`, `--metrics-ready-file`) holds;
/// errors name the file.
fn read_addr(path: &Path) -> anyhow::Result<SocketAddr> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("bad address in {}", path.display()))
}

fn wait_ready(ready: &Path, log: &Path, pid: u32) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Written whole, through a rename: once there, it is complete.
        if ready.exists() {
            return read_addr(ready);
        }
        let alive = Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "));
        if !alive || Instant::now() > deadline {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "process {pid} {}; its log {} ends with:\n{}",
                if alive {
                    "did not become ready in 30 s"
                } else {
                    "exited"
                },
                log.display(),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes the lab's metrics endpoints as a Prometheus `file_sd_configs` file:
/// the probe of each of `nodes` under job `flow-probe` (only node1's has a
/// fixed port) and the relay under job `relay`. Probes without a metrics
/// address file (metrics off) are left out.
pub fn write_prometheus_targets(
    state_dir: &Path,
    nodes: &[String],
    relay_metrics: SocketAddr,
) -> anyhow::Result<PathBuf> {
    let mut groups = Vec::new();
    for node in nodes {
        let Ok(addr) = read_addr(&state_dir.join(format!("probe-{node}.metrics"))) else {
            continue;
        };
        // The node names the series: a probe's instance (its address) tells
        // nothing of which node it is.
        groups.push(serde_json::json!({
            "targets": [addr.to_string()],
            "labels": {"job": "flow-probe", "node": node},
        }));
    }
    groups.push(serde_json::json!({
        "targets": [relay_metrics.to_string()],
        "labels": {"job": "relay"},
    }));
    let path = state_dir.join(PROMETHEUS_TARGETS_FILE);
    let text = serde_json::to_string_pretty(&groups)? + "\n";
    crate::write_atomically(&path, &text)?;
    Ok(path)
}

/// Restarts one of the lab's processes on the address it served: `name` is
/// a node (its probe) or `relay`. The recorded process is stopped if it
/// still runs, another is started and recorded in its place (so `observe
/// lab down` stops it), and the Prometheus targets follow. The relay
/// reconnects to a restarted probe by itself.
pub fn restart(lab: &mut Lab, name: &str) -> anyhow::Result<StartedProbe> {
    let state_dir = lab.state_dir().to_path_buf();
    let addr_in = |file: &str| read_addr(&state_dir.join(file));
    let tls = lab.certs().ca_cert.exists();
    let nodes: Vec<String> = lab.nodes().iter().map(|n| n.name.clone()).collect();
    if name == "relay" {
        let port = addr_in("relay.addr")
            .context("the relay's address is unknown")?
            .port();
        let probes = nodes
            .iter()
            .map(|node| {
                let addr = addr_in(&format!("probe-{node}.addr"))
                    .with_context(|| format!("{node}'s probe address is unknown"))?;
                Ok(StartedProbe {
                    node: node.clone(),
                    addr,
                    pid: 0,
                    log: state_dir.join(format!("probe-{node}.log")),
                    tls,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        lab.stop_process("relay")?;
        return start_relay(lab, &probes, port);
    }
    if !nodes.iter().any(|n| n == name) {
        bail!(
            "no node {name} in the lab: restart one of {} or relay",
            nodes.join(", ")
        );
    }
    let port = addr_in(&format!("probe-{name}.addr"))
        .with_context(|| format!("{name}'s probe address is unknown"))?
        .port();
    // Metrics on the address they were served on too, so the series of
    // the node's target stay the same ones.
    let metrics_file = state_dir.join(format!("probe-{name}.metrics"));
    let metrics = read_addr(&metrics_file).ok();
    lab.stop_process(&format!("flow-probe {name}"))?;
    let mut opts = ProbeOptions {
        tls,
        ..ProbeOptions::new(None)?
    };
    if let Some(m) = metrics {
        opts.extra_args = vec![
            "--metrics-listen".into(),
            m.to_string(),
            "--metrics-ready-file".into(),
            metrics_file.display().to_string(),
        ];
    }
    let started = start_node(lab, name, port, &opts)?;
    if let Ok(relay_metrics) = addr_in(RELAY_METRICS_FILE) {
        write_prometheus_targets(&state_dir, &nodes, relay_metrics)?;
    }
    Ok(started)
}
