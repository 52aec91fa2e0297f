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

#[test]
fn zero_sizes_and_times_that_would_break_history_or_sql_are_refused() {
    for (flag, value, why) in [
        ("--batch-rows", "0", "0 is not in 1.."),
        ("--history-queue-flows", "0", "0 is not in 1.."),
        ("--ring-capacity", "0", "0 is not in 1.."),
        ("--buffer-capacity", "0", "0 is not in 1.."),
        (
            "--flush-interval",
            "0s",
            "0s is no time at all: give more than 0",
        ),
        (
            "--sql-timeout",
            "0ms",
            "0ms is no time at all: give more than 0",
        ),
        (
            "--sql-memory",
            "0",
            "0 is no memory at all: give more than 0",
        ),
        (
            "--sql-memory-total",
            "0MiB",
            "0MiB is no memory at all: give more than 0",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["--peer", "127.0.0.1:1", "--history-dir", "off"])
            .args([flag, value])
            .stdin(Stdio::null())
            .output()
            .expect("the relay runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.starts_with(&format!("error: invalid value '{value}' for '{flag} <"))
                && err.contains(why),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn a_history_dir_that_is_a_file_is_named_as_such() {
    let dir = ScratchDir::new("relay-history-file");
    let file = dir.path().join("history");
    std::fs::write(&file, "not a folder").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["--listen", "127.0.0.1:0", "--peer", "127.0.0.1:1"])
        .args(["--metrics-listen", "off", "--history-dir"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("the relay runs");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap(),
        format!(
            "relay: history: opening {}: it is a file, not a folder",
            file.display()
        )
    );
}
