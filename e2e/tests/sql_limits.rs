//! Hostile SQL against the real binaries (the debug build, whose stack
//! frames are largest): `observe query` sends it to a `relay` process, and
//! each gets its exact answer or exact refusal while the relay answers
//! `ServerStatus` within a one-second deadline during and after it. A
//! client that goes away stops its query (the running-queries gauge drops
//! to 0); past `--sql-max-concurrent` a query is refused; all queries share
//! `--sql-memory-total`, results stream within it; a reader that closes
//! the pipe (`observe query ... | head`) ends `observe` quietly with success;
//! SIGTERM cancels a running query and the relay exits.

use std::future::Future;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::relay_process::RelayProcess;
use test_support::scratch::ScratchDir;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// Runs `work` while asking `ServerStatus` (1 s deadline) every 50 ms, and
/// once more after it: every answer must come.
async fn while_status<T>(relay: &RelayProcess, what: &str, work: impl Future<Output = T>) -> T {
    let done = AtomicBool::new(false);
    let work = async {
        let out = work.await;
        done.store(true, Ordering::SeqCst);
        out
    };
    let status = async {
        loop {
            let after = done.load(Ordering::SeqCst);
            if let Err(e) = relay.answers_within_1s().await {
                panic!("{what}: {} it: {e}", if after { "after" } else { "during" });
            }
            if after {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::join!(work, status).0
}

fn observe(relay: &RelayProcess, args: &[&str]) -> Command {
    let mut cmd = Command::new(e2e::observe_binary());
    cmd.arg("query")
        .args(["--server", &relay.addr.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn output(mut cmd: Command) -> Output {
    tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("observe query finished")
        .expect("observe query started")
}

/// What `observe query` printed: `Ok(stdout)` on success, `Err(stderr)` else.
fn outcome(out: &Output) -> Result<String, String> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        Err(text(&out.stderr))
    }
}

fn parens(n: usize) -> String {
    format!("SELECT {}1{} AS v", "(".repeat(n), ")".repeat(n))
}

fn or_chain(n: usize) -> String {
    let terms: Vec<String> = (0..n).map(|i| format!("destination_port = {i}")).collect();
    format!(
        "SELECT count(*) AS v FROM flows WHERE {}",
        terms.join(" OR ")
    )
}

fn plus_chain(n: usize) -> String {
    format!("SELECT {}", vec!["1"; n].join("+"))
}

const DEEP: &str = "observe: refused: the query nests deeper than 256 levels (each \
                    parenthesis, subquery, function call and chained operator such as `OR` \
                    or `+` is a level); write a long chain of `x = a OR x = b ...` as `x IN \
                    (a, b, ...)`\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_statements_get_an_answer_or_a_refusal_and_the_relay_stays_up() {
    let relay = RelayProcess::start("sql-hostile", &[]);
    let dir = ScratchDir::new("sql-hostile-files");
    let csv = |header: &str, v: &str| Ok(format!("{header}\n{v}\n"));
    // The header of `SELECT 1+1+...` is the expression itself.
    let sum_header = |n: usize| vec!["Int64(1)"; n].join(" + ");
    let cases: Vec<(&str, String, Result<String, String>)> = vec![
        ("parentheses 10", parens(10), csv("v", "1")),
        ("parentheses 100", parens(100), csv("v", "1")),
        ("parentheses 10000", parens(10_000), Err(DEEP.into())),
        ("OR 10", or_chain(10), csv("v", "0")),
        ("OR 100", or_chain(100), csv("v", "0")),
        (
            "OR 10000",
            or_chain(10_000),
            Err(
                "observe: refused: the statement has 40009 tokens (words, numbers, strings, \
                 operators); at most 20000 are accepted\n"
                    .into(),
            ),
        ),
        ("1+1 10", plus_chain(10), csv(&sum_header(10), "10")),
        ("1+1 100", plus_chain(100), csv(&sum_header(100), "100")),
        ("1+1 10000", plus_chain(10_000), Err(DEEP.into())),
    ];
    for (name, sql, want) in cases {
        let file = dir.path().join(format!("{}.sql", name.replace(' ', "-")));
        std::fs::write(&file, &sql).unwrap();
        let cmd = observe(&relay, &["-o", "csv", "-f", file.to_str().unwrap()]);
        let out = while_status(&relay, name, output(cmd)).await;
        assert_eq!(outcome(&out), want, "{name}");
    }

    // A statement of 1 MB, from stdin: answered.
    let head = "SELECT length('";
    let tail = "') AS v";
    let fill = 1_000_000 - head.len() - tail.len();
    let sql = format!("{head}{}{tail}", "x".repeat(fill));
    let mut cmd = observe(&relay, &["-o", "csv", "-"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let out = while_status(&relay, "1 MB", async {
        tokio::io::AsyncWriteExt::write_all(&mut stdin, sql.as_bytes())
            .await
            .unwrap();
        drop(stdin);
        child.wait_with_output().await.unwrap()
    })
    .await;
    assert_eq!(outcome(&out), csv("v", &fill.to_string()));

    // Over 1 MiB: `observe` does not read it all, the relay refuses it.
    let file = dir.path().join("big.sql");
    std::fs::write(&file, "x".repeat((1 << 20) + 1)).unwrap();
    let out = output(observe(&relay, &["-f", file.to_str().unwrap()])).await;
    assert_eq!(
        outcome(&out),
        Err(format!(
            "observe: the SQL in {} is longer than 1048576 bytes (1 MiB), the longest \
             statement the relay accepts\n",
            file.display()
        ))
    );
    let big = format!("{head}{}{tail}", "x".repeat(2 << 20));
    let err = while_status(
        &relay,
        "2 MiB",
        observe_cli::query_command::query(
            &observe_cli::connect::ConnectArgs::server(relay.addr.to_string())
                .target(&[])
                .unwrap(),
            &big,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "refused: the statement is {} bytes long; at most 1048576 (1 MiB) are accepted",
            big.len()
        )
    );
    assert_eq!(relay.metric("observe_relay_sql_queries_running"), 0.0);
}

/// A cross join of 30^6 rows, under the relay's limit on joins without an
/// equality (10^9 pairs): minutes of work unless stopped.
fn endless() -> String {
    let values: Vec<String> = (0..30).map(|i| format!("('{i}')")).collect();
    let tables: Vec<String> = (0..6)
        .map(|t| format!("(VALUES {}) t{t}(c)", values.join(", ")))
        .collect();
    format!(
        "SELECT sum(length(t0.c || t5.c)) FROM {}",
        tables.join(", ")
    )
}

async fn spawn_endless(relay: &RelayProcess) -> Child {
    let mut cmd = observe(relay, &[&endless()]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Executing, not still being described (planning counts as running too).
    relay
        .wait_metric("observe_relay_sql_queries_total", 1.0)
        .await;
    relay
        .wait_metric("observe_relay_sql_queries_running", 1.0)
        .await;
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_its_query_and_past_the_limit_one_waits_then_is_refused() {
    let relay = RelayProcess::start(
        "sql-cancel",
        &[
            "--sql-max-concurrent",
            "1",
            "--sql-queue-wait",
            "300ms",
            "--sql-timeout",
            "15m",
        ],
    );
    let mut heavy = spawn_endless(&relay).await;
    let out = while_status(&relay, "busy", output(observe(&relay, &["SELECT 1 AS v"]))).await;
    assert_eq!(
        outcome(&out),
        Err(
            "observe: the relay is already running 1 SQL queries, its limit \
             (--sql-max-concurrent); this one waited 300ms for a place and was refused: try \
             again later\n"
                .into()
        )
    );
    assert_eq!(relay.metric("observe_relay_sql_queries_busy_total"), 1.0);
    relay.answers_within_1s().await.unwrap();
    // The client goes away; its query stops.
    heavy.kill().await.unwrap();
    relay
        .wait_metric("observe_relay_sql_queries_running", 0.0)
        .await;
    let out = output(observe(&relay, &["-o", "csv", "SELECT 1 AS v"])).await;
    assert_eq!(outcome(&out), Ok("v\n1\n".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_queries_share_one_memory_limit_and_results_stream_within_it() {
    let relay = RelayProcess::start(
        "sql-memory",
        &["--sql-memory-total", "16MiB", "--sql-timeout", "10m"],
    );
    let strings = |n: usize| {
        let v: Vec<String> = (0..n).map(|i| format!("('{i:040}')")).collect();
        v.join(", ")
    };
    // A sort of 10^6 rows needs more than 16 MiB; each query may use 512 MiB.
    let sorted = format!(
        "SELECT a.c || b.c || d.c AS v FROM (VALUES {0}) a(c), (VALUES {0}) b(c), \
         (VALUES {0}) d(c) ORDER BY v DESC",
        strings(100)
    );
    let out = while_status(&relay, "sort", output(observe(&relay, &[&sorted]))).await;
    let err = outcome(&out).unwrap_err();
    assert!(
        err.starts_with(
            "observe: the running SQL queries together reached the relay's limit of 16777216 \
             bytes (--sql-memory-total), and this one was stopped: "
        ),
        "{err}"
    );
    relay
        .wait_metric("observe_relay_sql_memory_reserved_bytes", 0.0)
        .await;

    // A cross join with LIMIT 10000000: about 900 MB of CSV, streamed.
    let before = relay.peak_rss_kib();
    let rows = format!(
        "SELECT a.c, b.c FROM (VALUES {0}) a(c), (VALUES {0}) b(c), (VALUES {1}) d(c) \
         LIMIT 10000000",
        strings(100),
        strings(1000)
    );
    let mut cmd = observe(&relay, &["-o", "csv", &rows]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let lines = while_status(&relay, "cross join", async {
        let mut buf = vec![0u8; 1 << 16];
        let mut lines = 0u64;
        loop {
            let n = stdout.read(&mut buf).await.unwrap();
            if n == 0 {
                return lines;
            }
            lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        }
    })
    .await;
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lines, 10_000_001, "the header and every row");
    let peak = relay.peak_rss_kib();
    assert!(
        peak < before + 128 * 1024,
        "the relay's peak memory grew from {before} KiB to {peak} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_a_running_query_and_the_relay_exits() {
    let mut relay = RelayProcess::start("sql-sigterm", &["--sql-timeout", "15m"]);
    let heavy = spawn_endless(&relay).await;
    let status = relay.terminate();
    assert!(status.success(), "{status}");
    let out = tokio::time::timeout(Duration::from_secs(60), heavy.wait_with_output())
        .await
        .expect("observe query ended")
        .unwrap();
    assert_eq!(
        outcome(&out),
        Err("observe: the relay is shutting down: the query was cancelled\n".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_observe_quietly_and_cancels_the_query() {
    let relay = RelayProcess::start("sql-pipe", &["--sql-timeout", "15m"]);
    let values = |n: usize| {
        let v: Vec<String> = (0..n).map(|i| format!("({i})")).collect();
        v.join(", ")
    };
    // 10^9 rows, streamed: far more than a pipe holds.
    let endless = format!(
        "SELECT a.c, b.c, d.c FROM (VALUES {0}) a(c), (VALUES {0}) b(c), (VALUES {0}) d(c)",
        values(1000)
    );
    // 10^5 rows: a table printed at once, larger than a pipe holds.
    let table = format!(
        "SELECT a.c, b.c FROM (VALUES {}) a(c), (VALUES {}) b(c)",
        values(1000),
        values(100)
    );
    for (format, rows) in [("csv", &endless), ("json", &endless), ("table", &table)] {
        // stdout and stderr both into the pipe whose reader goes away, as
        // `observe query ... 2>&1 | head -1`.
        let (reader, writer) = std::io::pipe().unwrap();
        let mut cmd = observe(&relay, &["-o", format, rows]);
        cmd.stdout(writer.try_clone().unwrap()).stderr(writer);
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let mut reader = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).unwrap();
        if format != "table" {
            // The first rows arrive before the query ends.
            let mut first = [0u8; 1];
            reader.read_exact(&mut first).await.unwrap();
        }
        drop(reader);
        let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
            .await
            .expect("observe ends once its reader is gone")
            .unwrap();
        assert!(status.success(), "-o {format}: {status}");
        relay
            .wait_metric("observe_relay_sql_queries_running", 0.0)
            .await;
    }
}
