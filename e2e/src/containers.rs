//! A flow-probe that follows Podman containers through the Docker Engine
//! API: a `podman system service` of the test's own, an internal network
//! (198.18.`octet`.0/24), the busybox image, and the probe in this host's
//! network namespace, named `<prefix>-host` so that its pins are the test's
//! own. Everything (probe, containers, network, image tag, service,
//! namespace names, pins) goes when the [`ContainerEnv`] drops, also when a
//! test panics.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use observe_lab::podman::{self, ApiService, ContainerSpec, PodmanSet};
use observer_proto::observe::v1::EndpointStatus;
use observer_proto::observe::v1::endpoint_status::State;
use observer_proto::observer::{ServerStatusRequest, ServerStatusResponse};

use crate::WAIT;
use crate::probe_env::ProbeAddr;

/// The label that marks a test's containers (its prefix), for the probe's
/// `--container-label`; `observe.io/` labels are no part of identities.
pub const TEST_LABEL: &str = "observe.io/test";

/// A probe following a private Podman.
pub struct ContainerEnv {
    /// Prefix of every name the test makes (`obc` and five hex digits).
    pub prefix: String,
    /// The third octet of the network's 198.18.X.0/24.
    pub octet: u8,
    pub network: String,
    pub image: String,
    pub probe: Option<ProbeProcess>,
    pub api: ApiService,
    pub podman: PodmanSet,
    /// `ip netns` names this test made (the probe's and the containers').
    netns_names: Vec<String>,
    pub dir: PathBuf,
}

/// The flow-probe process.
pub struct ProbeProcess {
    pub child: Child,
    pub addr: ProbeAddr,
    pub log: PathBuf,
}

impl ContainerEnv {
    /// The image, the network 198.18.`octet`.0/24 and the API service; no probe yet.
    pub fn new(octet: u8) -> Self {
        test_support::require_root("it runs Podman containers and loads eBPF");
        let prefix = format!(
            "obc{:05x}",
            (std::process::id() << 8 | u32::from(octet)) & 0xfffff
        );
        let dir = std::env::temp_dir().join(format!("observe-{prefix}"));
        std::fs::create_dir_all(&dir).expect("test folder");
        let mut set = PodmanSet::owned();
        let image = format!("localhost/{prefix}:test");
        set.import_busybox(&image).expect("busybox image");
        let network = prefix.clone();
        let subnet = format!("198.18.{octet}.0/24");
        // Each test has its own octet: a network of ours on it is a killed run's.
        for stale in podman::remove_stale_networks("obc", &subnet).expect("podman networks") {
            eprintln!("removed network {stale} (on {subnet}) left by an earlier run");
        }
        set.create_network(&network, &[&subnet])
            .expect("internal network");
        let api = ApiService::start(&dir.join("podman.sock"), &dir.join("podman.log"))
            .expect("podman system service");
        let host = format!("{prefix}-host");
        observe_lab::netns_attach(&host, std::process::id()).expect("naming our netns");
        ContainerEnv {
            prefix,
            octet,
            network,
            image,
            probe: None,
            api,
            podman: set,
            netns_names: vec![host],
            dir,
        }
    }

    /// 198.18.`octet`.`host`.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.octet, host)
    }

    /// Runs container `<prefix>-<name>` at 198.18.`octet`.`host`; returns its name.
    pub fn run(
        &mut self,
        name: &str,
        host: u8,
        labels: &[(&str, &str)],
        command: &[&str],
    ) -> String {
        let full = format!("{}-{name}", self.prefix);
        let spec = ContainerSpec {
            name: full.clone(),
            image: self.image.clone(),
            network: self.network.clone(),
            ipv4: Some(self.ip(host)),
            ipv6: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain([(TEST_LABEL.to_string(), self.prefix.clone())])
                .collect::<BTreeMap<_, _>>(),
            command: command.iter().map(|s| s.to_string()).collect(),
        };
        self.podman.run(&spec).expect("container runs");
        full
    }

    /// Names the network namespace of container `full` as `full`, for
    /// [`observe_lab::run_in_netns`].
    pub fn name_netns(&mut self, full: &str) -> String {
        let pid = podman::pid(full).expect("container pid");
        observe_lab::netns_attach(full, pid).expect("naming the container's netns");
        self.netns_names.push(full.to_string());
        full.to_string()
    }

    /// Starts flow-probe with `--containers` on this env's API and waits
    /// until it serves.
    pub fn start_probe(&mut self, extra: &[&str]) {
        let bin = observe_lab::binaries::binary("flow-probe").expect("flow-probe binary");
        let ready = self.dir.join("probe.addr");
        let log = self.dir.join("probe.log");
        let _ = std::fs::remove_file(&ready);
        let out = std::fs::File::create(&log).expect("probe log");
        let child = Command::new(bin)
            .arg("--containers")
            .arg(self.api.socket())
            .args(["--netns", &format!("{}-host", self.prefix)])
            // Only this test's containers: others may run on the host.
            .args([
                "--container-label",
                &format!("{TEST_LABEL}={}", self.prefix),
            ])
            .args(["--node-name", "node1", "--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "off", "--ready-file"])
            .arg(&ready)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("flow-probe starts");
        let deadline = Instant::now() + WAIT;
        let mut probe = ProbeProcess {
            child,
            addr: ProbeAddr::plaintext(SocketAddr::from(([127, 0, 0, 1], 0))),
            log,
        };
        loop {
            if let Some(addr) = std::fs::read_to_string(&ready)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                probe.addr = ProbeAddr::plaintext(addr);
                break;
            }
            let exited = probe.child.try_wait().expect("probe status");
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "flow-probe did not become ready ({exited:?}):\n{}",
                std::fs::read_to_string(&probe.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.probe = Some(probe);
    }

    pub fn probe(&self) -> &ProbeProcess {
        self.probe.as_ref().expect("the probe was started")
    }

    /// The probe's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.probe().log).unwrap_or_default()
    }

    /// Waits until the probe's log has `count` lines containing `needle`.
    pub async fn wait_log(&self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            if log.lines().filter(|l| l.contains(needle)).count() >= count {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} log lines with {needle:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn status(&self) -> ServerStatusResponse {
        self.probe()
            .addr
            .client()
            .await
            .server_status(ServerStatusRequest {})
            .await
            .expect("ServerStatus")
            .into_inner()
    }

    /// Waits until the probe's endpoints, by name, satisfy `pred`; returns them.
    pub async fn wait_endpoints(
        &self,
        what: &str,
        pred: impl Fn(&BTreeMap<String, EndpointStatus>) -> bool,
    ) -> BTreeMap<String, EndpointStatus> {
        let deadline = Instant::now() + WAIT;
        loop {
            let endpoints: BTreeMap<String, EndpointStatus> = self
                .status()
                .await
                .endpoints
                .into_iter()
                .map(|e| (e.name.clone(), e))
                .collect();
            if pred(&endpoints) {
                return endpoints;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the probe has {endpoints:#?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until exactly the containers `names` are ready (attached, in
    /// the policy in force).
    pub async fn wait_ready(&self, names: &[&str]) -> BTreeMap<String, EndpointStatus> {
        let wanted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.wait_endpoints(&format!("{wanted:?} ready"), |eps| {
            eps.keys().cloned().collect::<Vec<_>>() == wanted
                && eps.values().all(|e| e.state == State::Ready as i32)
        })
        .await
    }

    /// Where the probe pins its maps and links.
    pub fn pin_dir(&self) -> PathBuf {
        Path::new(cluster_spec::pins::PIN_ROOT).join(format!("{}-host", self.prefix))
    }
}

impl Drop for ContainerEnv {
    fn drop(&mut self) {
        if let Some(mut p) = self.probe.take() {
            // SIGTERM first: a clean stop removes its pins.
            observe_lab::stop_child(&mut p.child, "flow-probe");
        }
        for e in self.podman.remove_all() {
            eprintln!("clean-up: {e}");
        }
        self.api.stop();
        for name in &self.netns_names {
            let _ = observe_lab::netns_del(name);
        }
        let _ = std::fs::remove_dir_all(self.pin_dir());
        let _ = std::fs::remove_dir(cluster_spec::pins::PIN_ROOT);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
