//! The real relay binary at its file-descriptor limit (`prlimit --nofile`):
//! a flood of connections uses every descriptor, so each accept fails with
//! EMFILE. The relay must not spin writing logs (once it wrote 787,000 lines
//! in 3 s): each listener logs the failure once and its recovery once. An
//! established gRPC connection keeps answering meanwhile, and once the flood
//! closes, /metrics and new gRPC connections are served again. And the
//! relay at its connection cap (`--max-connections`): a new client is
//! closed at once, said once in the log, and served once another leaves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use observer_proto::observer::ServerStatusRequest;
use observer_proto::observer::observer_client::ObserverClient;
use test_support::scratch::ScratchDir;
use tonic::transport::Channel;

/// Descriptors the relay may have open.
const NOFILE: usize = 64;

/// Polls `path` until `find` returns something, or fails after 30 s.
fn wait_in_file<T>(path: &Path, what: &str, find: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + e2e::WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(found) = find(&text) {
            return found;
        }
        assert!(Instant::now() < deadline, "no {what} in:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The log's messages, without time, level and module.
fn messages(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| l.split_once("] ").map_or(l, |(_, m)| m).to_string())
        .collect()
}

/// The relay binary with its log (at level info) in `dir` and `args` added,
/// under `prlimit` with `limit` when given: the running process (killed on
/// drop), its gRPC address and its log file. Its peer refuses at once (a
/// listener that never answers would hold a descriptor for the peer's
/// timeout, and free it in the middle of a test).
fn start_relay(
    dir: &ScratchDir,
    limit: Option<&str>,
    args: &[&str],
) -> (e2e::KilledOnDrop, SocketAddr, PathBuf) {
    let (ready, log) = (dir.path().join("relay.addr"), dir.path().join("relay.log"));
    let out = std::fs::File::create(&log).unwrap();
    let relay_binary = observe_lab::binaries::binary("relay").expect("the relay binary");
    let mut cmd = match limit {
        Some(limit) => {
            let mut cmd = Command::new("prlimit");
            cmd.arg(limit).arg(relay_binary);
            cmd
        }
        None => Command::new(relay_binary),
    };
    let relay = cmd
        .args(["--peer", e2e::REFUSING_PEER, "--listen", "127.0.0.1:0"])
        .args(["--history-dir", "off"])
        .args(args)
        .arg("--ready-file")
        .arg(&ready)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("the relay runs");
    let relay = e2e::KilledOnDrop(relay);
    let grpc = wait_in_file(&ready, "address", |t| t.trim().parse().ok());
    (relay, grpc, log)
}

fn count(messages: &[String], pred: impl Fn(&str) -> bool) -> usize {
    messages.iter().filter(|m| pred(m)).count()
}

/// ServerStatus with a 1 s gRPC deadline; the number of unavailable nodes.
async fn status_within_1s(client: &mut ObserverClient<Channel>) -> u32 {
    let mut request = tonic::Request::new(ServerStatusRequest {});
    request.set_timeout(Duration::from_secs(1));
    let status = client.server_status(request).await;
    let status = status.expect("ServerStatus within 1 s").into_inner();
    status.num_unavailable_nodes.unwrap_or_default()
}

fn scrape_answer(mut s: TcpStream) -> String {
    s.set_read_timeout(Some(e2e::WAIT)).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn ask_metrics(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_descriptor_limit_the_relay_logs_once_and_recovers() {
    let dir = ScratchDir::new("fd-limit");
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    let (_relay, grpc, log) =
        start_relay(&dir, Some(&nofile), &["--metrics-listen", "127.0.0.1:0"]);
    let metrics: SocketAddr = wait_in_file(&log, "metrics address", |t| {
        let rest = t.split_once("serving Prometheus metrics on http://")?.1;
        rest.split_once("/metrics")?.0.parse().ok()
    });
    let mut established = ObserverClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    assert_eq!(status_within_1s(&mut established).await, 1);

    let emfile = |listener: &str| {
        format!("{listener}: Too many open files (os error 24); retrying every 100ms")
    };
    // Connections one at a time, each accepted (the server's HTTP/2 SETTINGS
    // arrive) until one is not: then exactly one waits in the backlog.
    let mut flood = Vec::new();
    let refused = emfile("gRPC listener");
    loop {
        let s = TcpStream::connect(grpc).unwrap();
        s.set_nonblocking(true).unwrap();
        let accepted = wait_in_file(&log, "accept or refusal", |t| {
            if s.peek(&mut [0u8; 1]).is_ok_and(|n| n > 0) {
                Some(true)
            } else {
                t.contains(&refused).then_some(false)
            }
        });
        flood.push(s);
        if !accepted {
            break;
        }
        assert!(flood.len() < NOFILE, "{} connections accepted", flood.len());
    }
    let waiting_scrape = ask_metrics(metrics);
    let line = emfile("metrics listener");
    wait_in_file(&log, &line, |t| t.contains(&line).then_some(()));
    // Every descriptor is taken; the connection that was already open is
    // still served, twenty times over.
    for _ in 0..20 {
        assert_eq!(status_within_1s(&mut established).await, 1);
    }

    drop(flood);
    let answer = tokio::task::block_in_place(|| scrape_answer(waiting_scrape));
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer:.200}");
    assert!(answer.contains("\nobserve_relay_peers{"), "{answer}");
    // A new connection is served. It also makes the gRPC listener's recovery
    // certain: the flood's connection left waiting in the backlog may be
    // gone from it by the time a descriptor is free.
    let mut fresh = ObserverClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    assert_eq!(status_within_1s(&mut fresh).await, 1);
    for listener in ["gRPC listener", "metrics listener"] {
        let line = format!("{listener}: accepting again after ");
        wait_in_file(&log, &line, |t| t.contains(&line).then_some(()));
    }
    let again = tokio::task::block_in_place(|| scrape_answer(ask_metrics(metrics)));
    assert!(again.starts_with("HTTP/1.0 200 OK\r\n"), "{again:.200}");

    // The whole log: two lines at start and one for the peer that does not
    // answer (once, not once per retry), one per listener when accepting
    // failed and one when it worked again; nothing else. A retry of the
    // peer that falls while every descriptor is taken fails otherwise, and
    // says so once more: left out here, at most once.
    let peer_emfile = |m: &str| {
        m.starts_with("peer 127.0.0.1:1 (127.0.0.1:1) not connected: ")
            && m.contains("Too many open files")
    };
    let all = messages(&log);
    assert!(count(&all, peer_emfile) <= 1, "{all:#?}");
    let messages: Vec<String> = all.into_iter().filter(|m| !peer_emfile(m)).collect();
    assert_eq!(messages.len(), 7, "{messages:#?}");
    assert_eq!(
        count(&messages, |m| m
            .starts_with("peer 127.0.0.1:1 (127.0.0.1:1) not connected: ")),
        1
    );
    for listener in ["gRPC listener", "metrics listener"] {
        assert_eq!(count(&messages, |m| m == emfile(listener)), 1);
        let again = format!("{listener}: accepting again after ");
        assert_eq!(count(&messages, |m| m.starts_with(&again)), 1);
    }
    assert_eq!(count(&messages, |m| m.starts_with("serving ")), 2);
}

/// ServerStatus from a new client with a 1 s deadline: its unavailable nodes,
/// or why the connection or the call failed.
async fn status_of_a_new_client(addr: SocketAddr) -> Result<u32, String> {
    let call = async {
        let mut client = ObserverClient::connect(format!("http://{addr}"))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut request = tonic::Request::new(ServerStatusRequest {});
        request.set_timeout(Duration::from_secs(1));
        let status = client
            .server_status(request)
            .await
            .map_err(|e| e.to_string())?;
        Ok(status
            .into_inner()
            .num_unavailable_nodes
            .unwrap_or_default())
    };
    tokio::time::timeout(Duration::from_secs(2), call)
        .await
        .map_err(|_| "no answer within 2 s".to_string())?
}

#[tokio::test(flavor = "multi_thread")]
async fn past_its_connection_cap_the_relay_closes_new_clients_until_one_leaves() {
    let dir = ScratchDir::new("conn-cap");
    let (_relay, grpc, log) = start_relay(
        &dir,
        None,
        &["--metrics-listen", "off", "--max-connections", "1"],
    );
    let mut first = ObserverClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    assert_eq!(status_within_1s(&mut first).await, 1);

    for _ in 0..3 {
        let refused = status_of_a_new_client(grpc).await;
        assert!(refused.is_err(), "a second client was served: {refused:?}");
    }
    // The first client is still served.
    assert_eq!(status_within_1s(&mut first).await, 1);
    let at_cap = "gRPC listener: open connections at the cap (1, --max-connections); \
                  closing new ones until one ends";
    wait_in_file(&log, at_cap, |t| t.contains(at_cap).then_some(()));

    drop(first);
    // The relay sees the first connection end a moment later.
    let deadline = Instant::now() + e2e::WAIT;
    loop {
        match status_of_a_new_client(grpc).await {
            Ok(unavailable) => {
                assert_eq!(unavailable, 1);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never served again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = "gRPC listener: taking connections again after closing ";
    wait_in_file(&log, again, |t| t.contains(again).then_some(()));
    let messages = messages(&log);
    assert_eq!(count(&messages, |m| m == at_cap), 1, "{messages:#?}");
    let closed = |m: &str| {
        m.strip_prefix(again)
            .and_then(|rest| rest.strip_suffix(" at the cap"))
            .and_then(|n| n.parse::<u64>().ok())
    };
    let closed: Vec<u64> = messages.iter().filter_map(|m| closed(m)).collect();
    assert_eq!(closed.len(), 1, "{messages:#?}");
    assert!(closed[0] >= 3, "{messages:#?}");
}
