//! The real `observe` binary writing into a pipe its reader has closed
//! (`observe flows --last 100 | head -1`): the output ends quietly with exit
//! 0, never "Broken pipe" and never a panic, also when stderr is a closed
//! pipe too; and into a pipe no one reads, a second Ctrl-C ends it. The
//! server is the relay in-process (no root needed) holding known flows.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use e2e::RelayUnderTest;
use observer_proto::flow::Flow;

/// A relay holding 4,000 flows (far more text than a pipe buffers), and the
/// address of its one peer, which cannot be reached.
async fn relay_with_flows() -> (RelayUnderTest, String) {
    let dead = e2e::REFUSING_PEER.to_string();
    let relay = RelayUnderTest::start(vec![dead.clone()]).await;
    let fixture = test_support::graph_flows::flows();
    for i in 0..4_000 {
        let mut flow: Flow = fixture[i % fixture.len()].clone();
        flow.uuid = format!("flow-{i}");
        relay
            .state()
            .store()
            .push(test_support::history_flows::response(flow));
    }
    (relay, dead)
}

fn observe(args: &[&str]) -> Command {
    let mut cmd = Command::new(e2e::observe_binary());
    cmd.args(args).stdin(Stdio::null());
    cmd
}

/// Runs `args` with stdout (and, with `close_stderr`, stderr) a pipe whose
/// reader is closed before `observe` writes a byte; returns the exit code and
/// what reached stderr.
fn into_closed_pipe(args: &[&str], close_stderr: bool) -> (Option<i32>, String) {
    let mut child = observe(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("observe runs");
    drop(child.stdout.take());
    let mut stderr = String::new();
    let err = child.stderr.take().expect("piped stderr");
    if close_stderr {
        drop(err);
    } else {
        BufReader::new(err).read_to_string(&mut stderr).unwrap();
    }
    let status = child.wait().expect("observe ends");
    (status.code(), stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_pipe_ends_every_command_quietly() {
    let (relay, dead) = relay_with_flows().await;
    let server = relay.addr().to_string();
    let dir = test_support::scratch::ScratchDir::new("cli-pipe");
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a}\nspec: {endpointSelector: {}}\n",
    )
    .unwrap();
    let policy = policy.display().to_string();
    let commands: [&[&str]; 7] = [
        &["flows", "--server", &server, "--last", "100"],
        &["flows", "--server", &server, "--last", "100", "-o", "json"],
        &["flows", "--server", &server, "--last", "100", "-o", "table"],
        &["graph", "--server", &server, "--last", "100"],
        &["status", "--server", &server],
        &["nodes", "--server", &server],
        &["policy", "check", &policy],
    ];
    for args in commands {
        let (code, stderr) = tokio::task::block_in_place(|| into_closed_pipe(args, false));
        assert_eq!(code, Some(0), "observe {args:?}: {stderr}");
        // The peer's status goes to stderr, as Hubble prints it (protojson
        // with -o json), and nothing else does.
        let status = if args.contains(&"json") {
            format!("\"node_names\":[\"{dead}\"]")
        } else {
            format!(": 1 nodes are unavailable: {dead}")
        };
        let expected = usize::from(args[0] == "flows");
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.contains(&status) && l.to_lowercase().contains("unavailable"))
                .count(),
            expected,
            "observe {args:?}: {stderr}"
        );
        assert_eq!(
            stderr.lines().count(),
            expected,
            "observe {args:?}: {stderr}"
        );
        let run = tokio::task::block_in_place(|| into_closed_pipe(args, true));
        assert_eq!(run.0, Some(0), "observe {args:?} with stderr closed too");
    }
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flows_into_head_prints_one_line_and_exits_0() {
    let (relay, dead) = relay_with_flows().await;
    let server = relay.addr().to_string();
    // The full answer: the peer's status first, then the flows.
    let all = tokio::task::block_in_place(|| {
        observe(&["flows", "--server", &server, "--last", "4000"])
            .output()
            .expect("observe runs")
    });
    assert_eq!(all.status.code(), Some(0));
    let out = String::from_utf8(all.stdout).unwrap();
    assert_eq!(out.lines().count(), 4_000, "the flows alone on stdout");
    let status = format!(": 1 nodes are unavailable: {dead}");
    let err = String::from_utf8(all.stderr).unwrap();
    assert!(err.lines().next().unwrap().contains(&status), "{err:.300}");
    // As `observe flows --last 4000 2>&1 | head -1`: stderr goes into the
    // same pipe, which closes after one line while most is still unwritten.
    let (code, line) = tokio::task::block_in_place(|| {
        let mut child = observe(&["flows", "--server", &server, "--last", "4000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("observe runs");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        drop(child.stderr.take());
        (child.wait().expect("observe ends").code(), first)
    });
    assert_eq!(code, Some(0));
    // One line, the first flow.
    assert_eq!(line, format!("{}\n", out.lines().next().unwrap()));
    relay.shutdown().await;
}

/// `observe graph -o tui` into a pipe: a full-screen view needs a terminal,
/// so it says so and which formats a pipe takes, before connecting anywhere.
#[test]
fn the_graph_tui_into_a_pipe_names_the_formats_a_pipe_takes() {
    refused_at_once(
        &["graph", "-o", "tui"],
        "observe: -o tui draws on a terminal, and standard output is not one: use -o text, dot, mermaid or json\n",
    );
}

/// `observe ARGS` against a server that cannot be reached: exit 1, nothing
/// on stdout, `stderr` exactly (it never got as far as connecting).
fn refused_at_once(args: &[&str], stderr: &str) {
    let mut all = args.to_vec();
    all.extend(["--server", e2e::REFUSING_PEER]);
    let out = observe(&all).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&out.stderr), stderr);
}

/// `observe graph --follow` draws a live graph only in the TUI: with another
/// format it says so, before connecting anywhere, instead of printing one
/// window's graph as if --follow had not been given.
#[test]
fn graph_follow_without_the_tui_says_what_it_needs() {
    refused_at_once(
        &["graph", "--follow", "-o", "text"],
        "observe: --follow keeps the graph live, which only -o tui draws; the other formats \
         print the graph of one window (--since, 15m by default)\n",
    );
}

/// `observe flows --follow` writing into a pipe no one reads (a paused
/// pager): once the pipe is full its write never returns, so the first
/// Ctrl-C is not heard; the second ends it at once with exit 130.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_ctrl_c_ends_a_follow_whose_output_is_not_read() {
    let (relay, _dead) = relay_with_flows().await;
    let server = relay.addr().to_string();
    let mut child = observe(&[
        "flows", "--server", &server, "--last", "4000", "--follow", "-o", "json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("observe runs");
    let unread = child.stdout.take().expect("piped stdout");
    // Wait until one of its threads sits in write(1, …) for 10 looks in a
    // row: the pipe is full (a write that goes through is over at once).
    let writing = |pid: u32| {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten();
        tasks.flatten().any(|t| {
            std::fs::read_to_string(t.path().join("syscall")).is_ok_and(|s| s.starts_with("1 0x1 "))
        })
    };
    let deadline = std::time::Instant::now() + e2e::WAIT;
    let mut seen = 0;
    while seen < 10 {
        seen = if writing(child.id()) { seen + 1 } else { 0 };
        assert!(
            std::time::Instant::now() < deadline,
            "observe never blocked writing its output"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    for _ in 0..2 {
        // SAFETY: a signal to the child this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let deadline = std::time::Instant::now() + e2e::WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("observe still runs after two SIGINTs");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(130));
    drop(unread);
}
