//! The relay binary at start-up: its ready file says both servers listen, so
//! a metrics port that is taken stops it, with an error that names the
//! port, before it writes that file.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::scratch::ScratchDir;

#[test]
fn a_taken_metrics_port_stops_the_relay_before_its_ready_file() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    let dir = ScratchDir::new("relay-start-up");
    let ready = dir.path().join("relay.addr");
    let metrics_ready = dir.path().join("relay.metrics");
    let mut relay = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["--listen", "127.0.0.1:0", "--peer", "127.0.0.1:1"])
        .args(["--history-dir", "off"])
        .args(["--metrics-listen", &port.to_string()])
        .arg("--metrics-ready-file")
        .arg(&metrics_ready)
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the relay starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = relay.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = relay.kill();
            let _ = relay.wait();
            panic!("the relay kept running without its metrics port");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::io::read_to_string(relay.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("relay: serving metrics on {port}: ")),
        "{stderr}"
    );
    assert!(!ready.exists(), "a ready file, though the relay exited");
    assert!(!metrics_ready.exists());
    drop(taken);
}
