//! History end to end: a relay with history records what its store receives,
//! and `observe query` asks it over Arrow Flight SQL on the relay's own port;
//! refusals and unknown columns arrive as clean messages.

use test_support::history_flows as flows;

use std::path::PathBuf;
use std::time::Duration;

use arrow::util::pretty::pretty_format_batches;
use observe_cli::connect::ConnectArgs;
use observe_cli::query_command::query;
use observer_proto::flow::Flow;
use observer_proto::observer::GetFlowsRequest;
use observer_proto::observer::get_flows_response::ResponseTypes;
use relay::RelayConfig;
use relay::history::HistoryConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_query_answers_over_flight_sql_on_the_relay_port() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flight");
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = RelayConfig {
        history: Some(HistoryConfig {
            flush_interval: Duration::from_millis(100),
            retention_age: Duration::from_secs(100 * 365 * 86_400),
            ..HistoryConfig::new(&dir)
        }),
        // The ring keeps only the last 3 flows: older ones come from history.
        ring_capacity: 3,
        // No flow-probe answers here: flows are pushed into the store below.
        ..RelayConfig::new(vec![e2e::REFUSING_PEER.into()])
    };
    let relay = e2e::relay_harness::RelayUnderTest::start_config(cfg).await;
    let addr = relay.addr().to_string();
    // The relay in-process serves plaintext.
    let target = ConnectArgs::server(&addr).target(&[]).unwrap();
    // `Relay::start` subscribed the history to the store before returning.
    for f in flows::golden() {
        relay.state().publish(flows::response(f));
    }
    let sql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../relay/tests/golden/top_talkers.sql"
    ))
    .unwrap();
    let want = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../relay/tests/golden/top_talkers.out"
    ))
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, batches) = query(&target, &sql).await.unwrap();
        let got = pretty_format_batches(&batches).unwrap().to_string() + "\n";
        if got == want {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "got {got}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Written to files by the flush interval.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while relay::history::files::list(&dir).unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no files written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = query(&target, "DROP TABLE flows").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "refused: DROP is not allowed: history is read-only, only SELECT, WITH, EXPLAIN, \
         DESCRIBE, SHOW TABLES and SHOW COLUMNS run"
    );
    let err = query(&target, "SELECT nope FROM flows").await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unknown column `nope`; the columns of `flows` are: time, node"),
        "{err}"
    );
    // GetFlows since 10:00 gets all nine: six from history, three from the ring.
    let (mut client, _) = target.observer().await.unwrap();
    let mut stream = client
        .get_flows(GetFlowsRequest {
            since: Some(prost_types::Timestamp {
                seconds: flows::T0,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        if let Some(ResponseTypes::Flow(f)) = r.response_types {
            got.push(f);
        }
    }
    let mut want = flows::golden();
    want.sort_by_key(|f| f.time.map(|t| t.seconds));
    let uuids = |fs: &[Flow]| fs.iter().map(|f| f.uuid.clone()).collect::<Vec<_>>();
    assert_eq!(uuids(&got), uuids(&want));
    // What a row keeps comes back: the first flow is whole.
    assert_eq!(got[0], want[0]);
    relay.shutdown().await;
}

/// `observe` run to the end: (exit success, stdout, stderr).
fn observe(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(e2e::observe_binary())
        .args(args)
        .output()
        .expect("run observe");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_says_what_history_is_missing_and_fails_when_it_cannot_read_it() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flight-missing");
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = RelayConfig {
        history: Some(HistoryConfig {
            flush_interval: Duration::from_millis(100),
            retention_age: Duration::from_secs(100 * 365 * 86_400),
            ..HistoryConfig::new(&dir)
        }),
        ring_capacity: 3,
        ..RelayConfig::new(vec![e2e::REFUSING_PEER.into()])
    };
    let relay = e2e::relay_harness::RelayUnderTest::start_config(cfg).await;
    let addr = relay.addr().to_string();
    for f in flows::golden() {
        relay.state().publish(flows::response(f));
    }
    let history = relay.state().sql().history().unwrap().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while history.written_rows() < 9 {
        assert!(tokio::time::Instant::now() < deadline, "not written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The writer fell behind at 10:00:30 on n1 (counted as the feed does).
    let at = (flows::T0 + 30) * 1_000_000_000;
    history.losses().record("n1", at, 1_234);

    let query = |sql: &str| {
        let (addr, sql) = (addr.clone(), sql.to_string());
        tokio::task::spawn_blocking(move || observe(&["query", "--server", &addr, &sql]))
    };
    let (ok, out, err) = query(
        "SELECT count(*) AS n FROM flows WHERE time >= '2024-05-01T10:00:00Z' \
         AND time < '2024-05-01T10:01:00Z'",
    )
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "+---+\n| n |\n+---+\n| 4 |\n+---+\n");
    assert_eq!(err, "history is missing 1,234 flows of n1 in this range\n");
    // A range without losses: nothing to say.
    let (ok, _, err) = query("SELECT count(*) FROM flows WHERE time >= '2024-05-01T10:01:00Z'")
        .await
        .unwrap();
    assert!(ok);
    assert_eq!(err, "");
    // The graph of that minute says so too.
    let graph = |since: &str, until: &str| {
        let args = [
            "graph", "--server", &addr, "--since", since, "--until", until, "-o", "json",
        ]
        .map(String::from);
        tokio::task::spawn_blocking(move || observe(&args.each_ref().map(String::as_str)))
    };
    let (ok, _, err) = graph("2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z")
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert_eq!(
        err,
        "observe: note: history lost 1234 flows of n1 in the window: its counts there are low\n"
    );
    let (ok, _, err) = graph("2024-05-01T10:01:00Z", "2024-05-01T10:02:00Z")
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert_eq!(err, "");

    // History's UTC times print in every format (the CLI's arrow needs
    // chrono-tz to read the zone's name).
    let first = "SELECT min(time) AS first FROM flows WHERE time >= '2024-05-01T10:01:00Z'";
    let (ok, out, err) = query(first).await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("| 2024-05-01T10:01:10Z |"), "{out}");
    for (format, want) in [
        ("csv", "first\n2024-05-01T10:01:10Z\n"),
        ("json", "{\"first\":\"2024-05-01T10:01:10Z\"}\n"),
    ] {
        let addr = addr.clone();
        let (ok, out, err) = tokio::task::spawn_blocking(move || {
            observe(&["query", "--server", &addr, "-o", format, first])
        })
        .await
        .unwrap();
        assert!(ok, "{format}: {err}");
        assert_eq!(out, want, "{format}");
    }

    // A table past --max-rows: its first rows, and a word on stderr (the
    // whole range has the losses above).
    let sql = "SELECT uuid FROM flows ORDER BY time, uuid";
    let (ok, limited, err) = query(&format!("{sql} LIMIT 2")).await.unwrap();
    assert!(ok, "{err}");
    let cut = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            observe(&["query", "--server", &addr, "--max-rows", "2", sql])
        })
    };
    let (ok, out, err) = cut.await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, limited);
    assert_eq!(
        err,
        "showing the first 2 rows; the answer has more: add a LIMIT, raise --max-rows \
         (0: all), or print them as they come with -o csv or -o json\n\
         history is missing 1,234 flows of n1 in this range\n"
    );

    // A history file that cannot be read: `observe flows --since` fails,
    // it does not print the ring alone.
    let oldest = history.files()[0].path.clone();
    std::fs::write(&oldest, b"not parquet").unwrap();
    let flows_since = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            observe(&[
                "flows",
                "--server",
                &addr,
                "--since",
                "2024-05-01T10:00:00Z",
            ])
        })
    };
    let (ok, out, err) = flows_since.await.unwrap();
    assert!(!ok, "must fail; printed {out}");
    assert!(
        err.contains("reading the flow history failed, the answer is incomplete: reading "),
        "{err}"
    );
    relay.shutdown().await;
}
