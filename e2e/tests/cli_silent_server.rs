//! `observe` against a server that accepts connections and never answers (a
//! hung process, or something that is not a gRPC server): each command ends
//! with an error naming the address instead of waiting without end. `query`
//! has no deadline on its call (a SQL query runs as long as it needs), so the
//! unanswered HTTP/2 pings end it; `flows` has its call deadline.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};

/// A listener that accepts and keeps every connection, reading nothing.
fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    addr
}

/// `observe ARGS --server ADDR` bounded by coreutils' timeout (124 when it
/// runs on): (exit code, stdout, stderr).
fn observe(args: &[&str], server: impl std::fmt::Display) -> (Option<i32>, String, String) {
    let out = Command::new("timeout")
        .arg("120")
        .arg(e2e::observe_binary())
        .args(args)
        .args(["--server", &server.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("observe runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn no_answer(server: SocketAddr, within: &str) -> String {
    format!(
        "observe: no answer from {server} within {within}: it accepted the connection but \
         answered nothing (is it an observe relay or flow-probe, and is it running?)\n"
    )
}

#[test]
fn query_ends_when_the_server_never_answers() {
    let server = silent_server();
    assert_eq!(
        observe(&["query", "select 1"], server),
        (Some(1), String::new(), no_answer(server, "30s"))
    );
}

#[test]
fn flows_ends_when_the_server_never_answers() {
    let server = silent_server();
    assert_eq!(
        observe(&["flows", "--last", "1"], server),
        (Some(1), String::new(), no_answer(server, "30s"))
    );
}

/// hubble's --request-timeout: the call's deadline, named in the error.
#[test]
fn the_request_timeout_flag_sets_the_calls_deadline() {
    let server = silent_server();
    assert_eq!(
        observe(&["status", "--request-timeout", "1500ms"], server),
        (
            Some(1),
            String::new(),
            no_answer(
                server,
                "1.5s (--request-timeout; the default is 30s, and a busy server may need more)"
            )
        )
    );
    // --timeout bounds the TLS handshake too, not only the TCP connect.
    let (code, _, err) = observe(
        &["status", "--timeout", "1500ms"],
        format!("tls://{server}"),
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "observe: cannot reach a server (tls://{server}: the TLS handshake did not finish \
             within 1.5s (--timeout): is it a TLS server, and is it answering?)\n"
        )
    );
    let (code, _, err) = observe(&["status", "--timeout", "0s"], server);
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with(
            "error: invalid value '0s' for '--timeout <DURATION>': a timeout of 0 would fail \
             every call"
        ),
        "{err}"
    );
}
