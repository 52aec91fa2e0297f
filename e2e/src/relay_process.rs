//! The real `relay` binary ([`RelayProcess`]) with an empty history and no
//! flow-probe, for SQL run against it by the real `observe` binary: its
//! address, its `/metrics`, its peak memory, and `ServerStatus` asked with a
//! one-second deadline ([`RelayProcess::answers_within_1s`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use observer_proto::observer::ServerStatusRequest;
use observer_proto::observer::observer_client::ObserverClient;
use test_support::scratch::ScratchDir;

use crate::WAIT;

/// A running relay binary, killed on drop.
pub struct RelayProcess {
    child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    _dir: ScratchDir,
}

impl RelayProcess {
    /// The relay with an empty history in a fresh folder, `args` added.
    pub fn start(tag: &str, args: &[&str]) -> Self {
        let dir = ScratchDir::new(tag);
        let ready = dir.path().join("relay.addr");
        let metrics_ready = dir.path().join("metrics.addr");
        let child = Command::new(observe_lab::binaries::binary("relay").expect("relay binary"))
            // No flow-probe listens there: the SQL is over history only.
            .args(["--listen", "127.0.0.1:0", "--peer", crate::REFUSING_PEER])
            // Any free port: one chosen here could be taken before the relay binds it.
            .args(["--metrics-listen", "127.0.0.1:0"])
            .arg("--metrics-ready-file")
            .arg(&metrics_ready)
            .arg("--history-dir")
            .arg(dir.path().join("history"))
            .arg("--ready-file")
            .arg(&ready)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("relay starts");
        let mut relay = RelayProcess {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            metrics: "0.0.0.0:0".parse().unwrap(),
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        relay.addr = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                break text.trim().parse().expect("an address in the ready file");
            }
            if let Ok(Some(status)) = relay.child.try_wait() {
                panic!("the relay exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "the relay never got ready");
            std::thread::sleep(Duration::from_millis(20));
        };
        // Written before the ready file.
        relay.metrics = std::fs::read_to_string(&metrics_ready)
            .expect("the metrics ready file")
            .trim()
            .parse()
            .expect("an address in the metrics ready file");
        relay
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ServerStatus` answered within one second (a gRPC deadline, and the
    /// same bound on the whole call).
    pub async fn answers_within_1s(&self) -> Result<(), String> {
        let call = async {
            let mut client = ObserverClient::connect(format!("http://{}", self.addr))
                .await
                .map_err(|e| e.to_string())?;
            let mut request = tonic::Request::new(ServerStatusRequest {});
            request.set_timeout(Duration::from_secs(1));
            client
                .server_status(request)
                .await
                .map(|_| ())
                .map_err(|s| s.to_string())
        };
        tokio::time::timeout(Duration::from_secs(1), call)
            .await
            .map_err(|_| "no ServerStatus answer within 1 s".to_string())?
    }

    /// The value of the metric `name` (without labels) now.
    pub fn metric(&self, name: &str) -> f64 {
        let mut s = TcpStream::connect(self.metrics).expect("connect to /metrics");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.metrics).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read /metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    /// Waits (up to [`WAIT`]) until the metric `name` is `value`.
    pub async fn wait_metric(&self, name: &str, value: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = self.metric(name);
            if now == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} stayed {now}, not {value}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The most memory the relay has had resident (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Sends SIGTERM and waits (up to [`WAIT`]) for the relay to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.pid()).unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the relay") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the relay did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
