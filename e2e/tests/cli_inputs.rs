//! `observe policy check` (the real binary, the parser flow-probe's watcher
//! uses) on inputs that once hung it or ate memory: a FIFO, a symlink to
//! /dev/zero, a file over 4 MiB, 200 KB of nested `[`. Each is refused at
//! once with exit 1 and an error naming the file. And flags: an error found
//! after the words are parsed shows the usage of its subcommand; an empty
//! HUBBLE_* variable reads as unset, as with the Hubble CLI. And
//! `observe flows --input-file` over a file and standard input, and Ctrl-C
//! during a stream.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use observer_proto::observer;
use test_support::scratch::ScratchDir;
use tokio_stream::StreamExt as _;

/// `observe policy check FILE`: (exit code, stdout, stderr). Fails the test,
/// killing the process, if it has not ended within 20 s (the hang it guards
/// against).
fn check(file: &Path) -> (Option<i32>, String, String) {
    let mut child = Command::new(e2e::observe_binary())
        .args(["policy", "check"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("observe runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("observe policy check {} hangs", file.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.unwrap().read_to_string(&mut out).unwrap();
    child.stderr.unwrap().read_to_string(&mut err).unwrap();
    (status.code(), out, err)
}

fn refused(file: &Path, why: &str) {
    assert_eq!(
        check(file),
        (
            Some(1),
            String::new(),
            format!("observe: policy {}: {why}\n", file.display())
        )
    );
}

#[test]
fn fifos_devices_large_and_deep_files_are_refused_at_once() {
    let dir = ScratchDir::new("cli-inputs");
    refused(
        &dir.fifo("fifo.yaml"),
        "not a regular file but a FIFO; only regular files are read",
    );
    let zero = dir.path().join("zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    refused(
        &zero,
        "not a regular file but a character device; only regular files are read",
    );
    let large = dir.path().join("large.yaml");
    std::fs::File::create(&large)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    refused(
        &large,
        "67108864 bytes: larger than the limit of 4 MiB (4194304 bytes)",
    );
    let nested = dir.path().join("nested.yaml");
    std::fs::write(&nested, "[".repeat(200_000)).unwrap();
    refused(
        &nested,
        "nested deeper than the limit of 32 levels at line 1 column 33",
    );
    // A good file next to them still reads.
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a}\nspec: {endpointSelector: {}}\n",
    )
    .unwrap();
    assert_eq!(
        check(&good),
        (Some(0), "default/a: ok\n".to_string(), String::new())
    );
}

/// The graph TUI follows new flows: a past window is refused before
/// anything connects, naming the formats that print one.
#[test]
fn the_graph_tui_refuses_an_until() {
    let out = Command::new(e2e::observe_binary())
        .args(["graph", "-o", "tui", "--since", "2h", "--until", "1h"])
        .stdin(Stdio::null())
        .output()
        .expect("observe runs");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "observe: -o tui is live: it follows new flows, so it takes no --until; the graph of a \
         past window prints with -o text, dot, mermaid or json\n"
    );
}

/// A what-if window that ends before it begins is refused before anything
/// connects, by the flags given: `--since` in the future without `--until`
/// says so, not that it is after an `--until` never given.
#[test]
fn a_whatif_window_that_ends_before_it_begins_names_its_flags() {
    let dir = test_support::scratch::ScratchDir::new("whatif-window");
    let draft = dir.path().join("draft.yaml");
    std::fs::write(
        &draft,
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a}\nspec: {endpointSelector: {}}\n",
    )
    .unwrap();
    let draft = draft.display().to_string();
    for (window, said) in [
        (
            vec!["--since", "2099-01-01T00:00:00Z"],
            "--since 2099-01-01T00:00:00Z is in the future: no flow is recorded there yet",
        ),
        (
            vec!["--since", "1h", "--until", "2h"],
            "--since 1h is after --until 2h: no flow can be between them",
        ),
    ] {
        let out = Command::new(e2e::observe_binary())
            .args(["policy", "whatif", &draft])
            .args(&window)
            .stdin(Stdio::null())
            .output()
            .expect("observe runs");
        assert_eq!(out.status.code(), Some(1), "{window:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("observe: {said}\n")
        );
    }
}

#[test]
fn a_not_without_a_filter_shows_the_usage_of_its_subcommand() {
    for (sub, args) in [
        ("flows", vec!["flows", "--not"]),
        ("graph", vec!["graph", "-n", "x", "--not"]),
    ] {
        let out = Command::new(e2e::observe_binary())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("observe runs");
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "error: --not must be followed by the filter flag it negates\n\n\
                 Usage: observe {sub} [OPTIONS]\n\n\
                 For more information, try '--help'.\n"
            )
        );
    }
}

/// Every variable the Hubble CLI reads that `observe` reads too.
const HUBBLE_VARIABLES: [&str; 9] = [
    "HUBBLE_SERVER",
    "HUBBLE_TLS",
    "HUBBLE_TLS_CA_CERT_FILES",
    "HUBBLE_TLS_CLIENT_CERT_FILE",
    "HUBBLE_TLS_CLIENT_KEY_FILE",
    "HUBBLE_TLS_SERVER_NAME",
    "HUBBLE_TLS_ALLOW_INSECURE",
    "HUBBLE_TIMEOUT",
    "HUBBLE_REQUEST_TIMEOUT",
];

#[test]
fn an_empty_hubble_variable_reads_as_unset() {
    let status = |extra: &[&str]| {
        let mut cmd = Command::new(e2e::observe_binary());
        cmd.arg("status").args(extra).stdin(Stdio::null());
        for name in HUBBLE_VARIABLES {
            cmd.env(name, "");
        }
        cmd.output().expect("observe runs")
    };
    // Nothing listens on port 1: the one error is that, plaintext, with the
    // default timeouts.
    let out = status(&["--server", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "observe: cannot reach a server (127.0.0.1:1: transport error: tcp connect error: \
         Connection refused (os error 111))\n"
    );
    // Without --server the default addresses are tried, not "".
    let out = status(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("invalid server address"), "{err}");
    assert!(!err.contains("invalid value ''"), "{err}");
}

/// Two saved flows as hubble's `-o jsonpb` writes them, and a line that is none.
const SAVED: &str = r#"{"flow":{"time":"2026-11-26T15:04:06.123Z","uuid":"u1","verdict":"DROPPED","IP":{"source":"198.18.1.10","destination":"198.18.1.11","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":40000,"destination_port":8080,"flags":{"SYN":true}}},"node_name":"node1","Type":"L3_L4"},"node_name":"node1","time":"2026-11-26T15:04:06.123Z"}
not json
{"flow":{"time":"2026-11-26T15:04:07.123Z","uuid":"u2","verdict":"FORWARDED","IP":{"source":"198.18.1.11","destination":"198.18.1.10","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":8080,"destination_port":40000,"flags":{"SYN":true,"ACK":true}}},"node_name":"node1","Type":"L3_L4","is_reply":true},"node_name":"node1","time":"2026-11-26T15:04:07.123Z"}
"#;

#[test]
fn flows_saved_as_json_are_read_back_from_a_file_or_standard_input() {
    let dir = ScratchDir::new("input-file");
    let file = dir.path().join("flows.json");
    std::fs::write(&file, SAVED).unwrap();
    let forwarded = r#"{"flow":{"time":"2026-11-26T15:04:07.123Z","verdict":"FORWARDED","IP":{"source":"198.18.1.11","destination":"198.18.1.10","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":8080,"destination_port":40000,"flags":{"SYN":true,"ACK":true}}},"Type":"L3_L4","node_name":"node1","is_reply":true,"uuid":"u2"},"node_name":"node1","time":"2026-11-26T15:04:07.123Z"}"#;
    let skipped = |name: &str| {
        format!(
            "observe: {name} line 2: not a flow response in JSON (expected ident at column 2); \
             skipped\n"
        )
    };
    let from_file = Command::new(e2e::observe_binary())
        .args([
            "flows",
            "-o",
            "json",
            "--verdict",
            "FORWARDED",
            "--input-file",
        ])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("observe runs");
    assert_eq!(from_file.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&from_file.stdout),
        format!("{forwarded}\n")
    );
    assert_eq!(
        String::from_utf8_lossy(&from_file.stderr),
        skipped(&file.display().to_string())
    );

    let mut child = Command::new(e2e::observe_binary())
        .args(["flows", "-o", "json", "--first", "1", "--input-file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("observe runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), SAVED.as_bytes()).unwrap();
    let from_stdin = child.wait_with_output().unwrap();
    assert_eq!(from_stdin.status.code(), Some(0));
    let first = String::from_utf8_lossy(&from_stdin.stdout);
    assert!(
        first.starts_with(r#"{"flow":{"time":"2026-11-26T15:04:06.123Z","verdict":"DROPPED""#),
        "{first}"
    );
    assert_eq!(first.lines().count(), 1, "{first}");
    assert_eq!(String::from_utf8_lossy(&from_stdin.stderr), "");

    // The field mask as a server applies it: only those fields of the flow.
    let masked = Command::new(e2e::observe_binary())
        .args(["flows", "-o", "json", "--verdict", "FORWARDED", "-s"])
        .args(["--experimental-field-mask", "uuid,verdict", "--input-file"])
        .arg(&file)
        .output()
        .expect("observe runs");
    assert_eq!(
        String::from_utf8_lossy(&masked.stdout),
        "{\"flow\":{\"verdict\":\"FORWARDED\",\"uuid\":\"u2\"},\"node_name\":\"node1\",\
         \"time\":\"2026-11-26T15:04:07.123Z\"}\n"
    );

    // A line over the limit stops the read, but the table shows the rows
    // read before it (they were lost with the error).
    let long = dir.path().join("long.json");
    let over = "x".repeat(observe_cli::flows::input_file::MAX_LINE + 1);
    std::fs::write(&long, format!("{SAVED}{over}\n")).unwrap();
    let table = Command::new(e2e::observe_binary())
        .args(["flows", "-o", "table", "-s", "--input-file"])
        .arg(&long)
        .output()
        .expect("observe runs");
    assert_eq!(table.status.code(), Some(1));
    let rows = String::from_utf8_lossy(&table.stdout);
    assert!(rows.starts_with("TIMESTAMP "), "{rows}");
    assert_eq!(rows.lines().count(), 3, "the header and both flows: {rows}");
    assert_eq!(
        String::from_utf8_lossy(&table.stderr),
        format!(
            "observe: {} line 4: longer than 1 MiB, not a flow: is it a file of `observe \
             flows -o json` lines?\n",
            long.display()
        )
    );

    let missing = Command::new(e2e::observe_binary())
        .args(["flows", "--input-file"])
        .arg(dir.path().join("none.json"))
        .output()
        .expect("observe runs");
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        format!(
            "observe: --input-file {}: No such file or directory (os error 2)\n",
            dir.path().join("none.json").display()
        )
    );
}

#[test]
fn numeric_prints_addresses_and_silent_errors_keeps_stderr_empty() {
    let dir = ScratchDir::new("numeric");
    let file = dir.path().join("flows.json");
    std::fs::write(
        &file,
        r#"{"flow":{"time":"2026-11-26T15:04:06.123Z","verdict":"FORWARDED","IP":{"source":"198.18.1.10","destination":"198.18.1.11","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":40000,"destination_port":8080,"flags":{"SYN":true}}},"source":{"identity":301,"namespace":"default","pod_name":"frontend"},"destination":{"identity":302,"namespace":"default","pod_name":"api"},"Type":"L3_L4","node_name":"node1","event_type":{"type":4},"trace_observation_point":"TO_ENDPOINT"},"node_name":"node1","time":"2026-11-26T15:04:06.123Z"}
garbage
"#,
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Command::new(e2e::observe_binary())
            .args(["flows", "--input-file"])
            .arg(&file)
            .args(extra)
            .output()
            .expect("observe runs")
    };
    let named = run(&[]);
    assert_eq!(
        String::from_utf8_lossy(&named.stdout),
        "Nov 26 15:04:06.123: default/frontend:40000 (ID:301) <> default/api:8080 (ID:302) \
         to-endpoint FORWARDED ()\n"
    );
    assert!(!named.stderr.is_empty());
    let numeric = run(&["--numeric", "-s"]);
    assert_eq!(numeric.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&numeric.stdout),
        "Nov 26 15:04:06.123: 198.18.1.10:40000 (ID:301) <> 198.18.1.11:8080 (ID:302) \
         to-endpoint FORWARDED ()\n"
    );
    assert_eq!(String::from_utf8_lossy(&numeric.stderr), "");
}

/// A warning quotes the file: a field name holding a terminal sequence is
/// shown as text on stderr, as flow text is on stdout.
#[test]
fn warnings_show_control_characters_as_text() {
    let dir = ScratchDir::new("input-escape");
    let file = dir.path().join("crafted.json");
    std::fs::write(
        &file,
        "{\"flow\":{\"\\u001b]0;pwn\\u0007x\":1},\"node_name\":\"node1\"}\n",
    )
    .unwrap();
    let out = Command::new(e2e::observe_binary())
        .args(["flows", "-o", "json", "--input-file"])
        .arg(&file)
        .output()
        .expect("observe runs");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "observe: {} line 1: field '^[]0;pwn^Gx' (and any other this build does not know, \
             here and in later lines) ignored: observe reads the L3/L4 part of flows, without \
             L7 or auth data\n",
            file.display()
        )
    );
}

/// Streams two flows, says so on `sent`, then holds the stream open.
struct TwoThenWait {
    sent: tokio::sync::mpsc::UnboundedSender<()>,
}

#[tonic::async_trait]
impl observer::observer_server::Observer for TwoThenWait {
    type GetFlowsStream = tonic::codegen::BoxStream<observer::GetFlowsResponse>;
    type GetAgentEventsStream = tonic::codegen::BoxStream<observer::GetAgentEventsResponse>;

    async fn get_agent_events(
        &self,
        _: tonic::Request<observer::GetAgentEventsRequest>,
    ) -> Result<tonic::Response<Self::GetAgentEventsStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }

    async fn get_flows(
        &self,
        _: tonic::Request<observer::GetFlowsRequest>,
    ) -> Result<tonic::Response<Self::GetFlowsStream>, tonic::Status> {
        let flow = |port: u32| {
            let flow = observer_proto::flow::Flow {
                time: Some(prost_types::Timestamp {
                    seconds: 1_764_169_446,
                    nanos: 0,
                }),
                verdict: observer_proto::flow::Verdict::Forwarded as i32,
                ip: Some(observer_proto::flow::Ip {
                    source: "198.18.0.1".into(),
                    destination: "198.18.0.2".into(),
                    ip_version: observer_proto::flow::IpVersion::IPv4 as i32,
                    ..Default::default()
                }),
                l4: Some(observer_proto::flow::Layer4 {
                    protocol: Some(observer_proto::flow::layer4::Protocol::Tcp(
                        observer_proto::flow::Tcp {
                            source_port: port,
                            destination_port: 8080,
                            ..Default::default()
                        },
                    )),
                }),
                node_name: "node1".into(),
                ..Default::default()
            };
            Ok(observer::GetFlowsResponse {
                node_name: "node1".into(),
                time: flow.time,
                response_types: Some(observer::get_flows_response::ResponseTypes::Flow(flow)),
            })
        };
        let sent = self.sent.clone();
        let then = tokio_stream::iter([()]).filter_map(move |()| {
            let _ = sent.send(());
            None
        });
        let stream = tokio_stream::iter([flow(40000), flow(40001)])
            .chain(then)
            .chain(tokio_stream::pending());
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn server_status(
        &self,
        _: tonic::Request<observer::ServerStatusRequest>,
    ) -> Result<tonic::Response<observer::ServerStatusResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }

    async fn get_nodes(
        &self,
        _: tonic::Request<observer::GetNodesRequest>,
    ) -> Result<tonic::Response<observer::GetNodesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }

    async fn get_namespaces(
        &self,
        _: tonic::Request<observer::GetNamespacesRequest>,
    ) -> Result<tonic::Response<observer::GetNamespacesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }
}

/// Ctrl-C ends a stream as its end would, as with Hubble: a table, held
/// until the end, is printed, and the exit is a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_prints_the_table_held_so_far() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sent, mut told) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(observer::observer_server::ObserverServer::new(
                TwoThenWait { sent },
            ))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let child = tokio::process::Command::new(e2e::observe_binary())
        .args(["flows", "-o", "table", "--last", "5", "--server"])
        .arg(addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("observe runs");
    tokio::time::timeout(Duration::from_secs(20), told.recv())
        .await
        .expect("observe asked for flows")
        .unwrap();
    // Both flows are on their way; give the client a moment to read them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("observe ends at Ctrl-C")
        .unwrap();
    server.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(rows[0].starts_with("TIMESTAMP"), "{stdout}");
    assert!(
        rows[1].contains("198.18.0.1:40000") && rows[2].contains("198.18.0.1:40001"),
        "{stdout}"
    );
}
