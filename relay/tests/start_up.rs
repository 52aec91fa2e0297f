//! The relay binary at start-up: its ready file says both servers listen, so
//! a metrics port that is taken stops it, with an error that names the
//! port, before it writes that file.

use std::net::TcpListener;
use std::process::{Command, Stdio};

use test_support::scratch::ScratchDir;

#[test]
fn a_taken_metrics_port_stops_the_relay_before_its_ready_file() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    let dir = ScratchDir::new("relay-start-up");
    let ready = dir.path().join("relay.addr");
    let metrics_ready = dir.path().join("relay.metrics");
    // coreutils' timeout ends a relay that would run on (exit 124).
    let out = Command::new("timeout")
        .arg("30")
        .arg(env!("CARGO_BIN_EXE_relay"))
        .args(["--listen", "127.0.0.1:0", "--peer", "127.0.0.1:1"])
        .args(["--history-dir", "off"])
        .args(["--metrics-listen", &port.to_string()])
        .arg("--metrics-ready-file")
        .arg(&metrics_ready)
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .output()
        .expect("the relay starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("relay: serving metrics on {port}: ")),
        "{stderr}"
    );
    assert!(!ready.exists(), "a ready file, though the relay exited");
    assert!(!metrics_ready.exists());
    drop(taken);
}
