//! The standard gRPC health service, as a client that is not ours sees it
//! (grpcio's, from PyPI: `e2e/clients/health_check.py`) and as `observe
//! status` (like `hubble status`) checks it first: flow-probe serves while it
//! runs; the relay only while it follows a node, as Hubble Relay. No kernel
//! needed: the probe is flow-probe's service in-process.

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::in_process::serve_probe;
use e2e::relay_harness::RelayUnderTest;
use observer_runtime::store::FlowStore;
use serde_json::{Value, json};

/// grpcio's answers of `addr` for `services` (the first also watched).
async fn grpcio_health(addr: &str, services: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/health_check.py");
    let out = tokio::process::Command::new(e2e::venv_python())
        .arg(script)
        .arg(addr)
        .args(services)
        .kill_on_drop(true)
        .output()
        .await
        .expect("the health client ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn observe_status(addr: &str) -> Output {
    std::process::Command::new(e2e::observe_binary())
        .args(["status", "--server", addr])
        .output()
        .expect("observe runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_serves_and_the_relay_serves_once_it_follows_a_node() {
    let (probe, stop_probe) = serve_probe("n1", Arc::new(FlowStore::new(16)), None).await;
    assert_eq!(
        grpcio_health(&probe, &["observer.Observer", "", "peer.Peer", "no.Such"]).await,
        json!({
            "observer.Observer": "SERVING",
            "": "SERVING",
            "peer.Peer": "SERVING",
            "no.Such": "NOT_FOUND",
            "watch": "SERVING",
        })
    );

    // A relay whose one peer refuses: not serving, and `observe status`
    // says so and fails, as hubble status does (before, it printed Ok).
    let lonely = RelayUnderTest::start(vec![e2e::REFUSING_PEER.into()]).await;
    let addr = lonely.addr().to_string();
    assert_eq!(
        grpcio_health(&addr, &["observer.Observer"]).await,
        json!({"observer.Observer": "NOT_SERVING", "watch": "NOT_SERVING"})
    );
    let status = tokio::task::block_in_place(|| observe_status(&addr));
    assert_eq!(status.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        format!("Healthcheck (via {addr}): Unavailable: NOT_SERVING\n")
    );
    assert_eq!(
        String::from_utf8_lossy(&status.stderr),
        "observe: not healthy\n"
    );
    lonely.shutdown().await;

    // Following the probe: serving, the Flight SQL service too.
    let relay = RelayUnderTest::start(vec![probe.clone()]).await;
    let addr = relay.addr().to_string();
    let deadline = Instant::now() + e2e::WAIT;
    let services = ["observer.Observer", "arrow.flight.protocol.FlightService"];
    loop {
        let answers = grpcio_health(&addr, &services).await;
        if answers["observer.Observer"] == "SERVING" {
            assert_eq!(
                answers,
                json!({
                    "observer.Observer": "SERVING",
                    "arrow.flight.protocol.FlightService": "SERVING",
                    "watch": "SERVING",
                })
            );
            break;
        }
        assert!(Instant::now() < deadline, "still {answers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = tokio::task::block_in_place(|| observe_status(&addr));
    assert_eq!(status.status.code(), Some(0));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.starts_with(&format!("Healthcheck (via {addr}): Ok\n")),
        "{text}"
    );
    relay.shutdown().await;
    let _ = stop_probe.send(true);
}
