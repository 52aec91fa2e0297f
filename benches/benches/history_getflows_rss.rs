//! Memory of GetFlows with an old `since` over a large history: 10 M
//! lab-like flows stored as a busy relay stores them (files of 65,536 rows),
//! asked for with `since` an hour before the first flow and `number = 10`,
//! through the relay's real GetFlows path: `relay::server::run` on a
//! loopback listener, a tonic client, the answer read to its end. Goal: the
//! process's peak RSS grows by less than 64 MiB.
//!
//! Each measurement runs in a process of its own (this binary, started
//! again with `HISTORY_GETFLOWS_RSS_CASE`), so what one case allocated and
//! freed cannot hide another's growth. The process opens the history, sets
//! up the relay's state (an empty ring, as after a restart: all of `since`
//! comes from history) and its server, connects the client, resets its peak
//! RSS to the current RSS (`5` into `/proc/self/clear_refs`), asks, and
//! reports `VmHWM` after the answer minus `VmRSS` before.
//!
//! Cases (GetFlows):
//! - `last`: `number = 10` (Hubble's default: the last 10 of the range);
//! - `first`: `number = 10, first = true`;
//! - `last-none`, `first-none`: the same with a filter no flow matches
//!   (`source_pod` of a pod that does not exist), so the whole range is
//!   read, 10 M rows, and the answer is empty.
//!
//! Baselines, in the same run, on the same history:
//! - `sql-top10`: the same question through the relay's SQL engine,
//!   `SELECT * FROM flows WHERE time >= <since> ORDER BY time DESC LIMIT
//!   10` (DataFusion's top-k), the whole result read;
//! - `old`: what GetFlows did before issue 13: the whole range through SQL
//!   (`SqlEngine::flows_between`, `ORDER BY time`), turned into flows, then
//!   `number` applied; over 10 M flows the SQL memory limit (512 MiB)
//!   refuses it;
//! - `old-5s`: the same over the first 5 s of flows only (about 100,000),
//!   an answer it can give, to show what it costs per flow.
//!
//! The SQL baselines run with the relay's default SQL memory limits and a
//! time limit of 10 minutes (the default 30 s is not about memory).
//!
//! The answers are checked: `last` and `sql-top10` give the same 10 UUIDs,
//! `first` 10, the `-none` cases 0.
//!
//! `HISTORY_GETFLOWS_RSS_FLOWS` (default 10,000,000);
//! `HISTORY_GETFLOWS_RSS_DIR`: keep the history there and reuse it on the
//! next run (otherwise a temporary directory, removed at the end);
//! `HISTORY_GETFLOWS_RSS_CASES` (default all, comma-separated).
//!
//! `cargo bench -p benches --bench history_getflows_rss`

#[path = "common/lab_flows.rs"]
mod lab_flows;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::history::{env_number, open_history};
use lab_flows::{LabFlows, START_NS};
use observer_proto::flow::FlowFilter;
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use observer_runtime::store::FlowStore;
use relay::RelayState;

use relay::peer::Peers;
use relay::sql::{SqlEngine, SqlLimits};

const GOAL_MIB: f64 = 64.0;
const CASE: &str = "HISTORY_GETFLOWS_RSS_CASE";
const DIR: &str = "HISTORY_GETFLOWS_RSS_HISTORY";
const CASES: [&str; 7] = [
    "last",
    "first",
    "last-none",
    "first-none",
    "sql-top10",
    "old",
    "old-5s",
];
const NUMBER: u64 = 10;
/// An hour before the first flow.
const SINCE: i64 = START_NS - 3_600_000_000_000;

/// `n` lab-like flows written as the relay writes them at full rate:
/// a file per 65,536 rows.
fn generate(dir: &Path, n: u64) {
    let _ = std::fs::remove_dir_all(dir);
    let started = Instant::now();
    let history = open_history(dir);
    let mut lab = LabFlows::new(17);
    for _ in 0..n {
        if history.ingest(lab.next_response()) {
            history.flush().expect("flush");
        }
    }
    history.flush().expect("flush");
    assert_eq!(history.written_rows(), n);
    let (files, bytes) = history.disk_usage().expect("disk usage");
    println!(
        "wrote {n} flows in {files} files, {:.1} MiB, in {:.1?}",
        bytes as f64 / (1 << 20) as f64,
        started.elapsed()
    );
}

/// A field of `/proc/self/status` in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// The flows of an answer, as UUIDs, or what ended it.
type Answer = Result<Vec<String>, String>;

fn uuid(r: &GetFlowsResponse) -> Option<String> {
    match &r.response_types {
        Some(ResponseTypes::Flow(f)) => Some(f.uuid.clone()),
        _ => None,
    }
}

fn request(case: &str) -> GetFlowsRequest {
    let none = FlowFilter {
        source_pod: vec!["lab-ns-0/no-such-pod".into()],
        ..Default::default()
    };
    GetFlowsRequest {
        number: NUMBER,
        first: case.starts_with("first"),
        since: Some(observer_proto::time::timestamp(i128::from(SINCE))),
        whitelist: if case.ends_with("-none") {
            vec![none]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

async fn getflows(client: &mut ObserverClient<tonic::transport::Channel>, case: &str) -> Answer {
    let mut stream = client
        .get_flows(request(case))
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    let mut uuids = Vec::new();
    while let Some(r) = stream.message().await.map_err(|s| s.to_string())? {
        uuids.extend(uuid(&r));
    }
    Ok(uuids)
}

async fn sql_top10(engine: &SqlEngine) -> Answer {
    let sql = format!(
        "SELECT * FROM flows WHERE CAST(time AS BIGINT) >= {SINCE} ORDER BY time DESC LIMIT {NUMBER}"
    );
    let r = engine.query(&sql).await.map_err(|e| e.to_string())?;
    let mut uuids: Vec<String> = r
        .batches
        .iter()
        .flat_map(relay::history::read::responses)
        .filter_map(|r| uuid(&r))
        .collect();
    uuids.reverse();
    Ok(uuids)
}

/// The GetFlows of before: everything from `SINCE` (to `before`) loaded,
/// then the last `NUMBER` kept.
async fn old(engine: &SqlEngine, before: Option<i64>) -> Answer {
    let all = engine
        .flows_between(i128::from(SINCE), before.map(i128::from))
        .await
        .map_err(|e| e.to_string())?;
    let keep = all.len().saturating_sub(NUMBER as usize);
    Ok(all[keep..].iter().filter_map(uuid).collect())
}

/// In the child: one case, measured; prints one `RESULT` line.
fn measure(case: &str, dir: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let history = open_history(dir);
        let limits = SqlLimits {
            timeout: Duration::from_secs(600),
            ..SqlLimits::default()
        };
        let state = Arc::new(RelayState::new(
            FlowStore::new(relay::config::DEFAULT_RING_CAPACITY),
            Peers::new(&[]),
        ));
        state.set_sql(SqlEngine::new(Some(history), limits));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("an address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(relay::server::run(
            tonic::transport::Server::builder(),
            listener,
            state.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        let mut client = ObserverClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        // Everything is set up: from here on, growth is the answer's.
        let reset = std::fs::write("/proc/self/clear_refs", "5");
        let before = status_kib("VmRSS:");
        let hwm_before = status_kib("VmHWM:");
        let started = Instant::now();
        let answer = match case {
            "sql-top10" => sql_top10(&state.sql()).await,
            "old" => old(&state.sql(), None).await,
            "old-5s" => old(&state.sql(), Some(START_NS + 5_000_000_000)).await,
            _ => getflows(&mut client, case).await,
        };
        let took = started.elapsed();
        let peak = status_kib("VmHWM:");
        // Without the reset, the peak so far is the floor.
        let floor = if reset.is_ok() { before } else { hwm_before };
        let answer = match answer {
            Ok(uuids) => format!("ok\t{}", uuids.join(",")),
            Err(e) => format!("error\t{}", e.replace(['\t', '\n'], " ")),
        };
        println!(
            "RESULT\t{floor}\t{peak}\t{:.3}\t{}\t{answer}",
            took.as_secs_f64(),
            reset.is_ok()
        );
        drop(client);
        let _ = stop.send(());
        let _ = server.await;
    });
}

/// What a child reported.
struct Measured {
    case: String,
    floor_kib: u64,
    peak_kib: u64,
    secs: f64,
    reset: bool,
    answer: Answer,
}

impl Measured {
    fn growth_mib(&self) -> f64 {
        self.peak_kib.saturating_sub(self.floor_kib) as f64 / 1024.0
    }
}

fn run_case(case: &str, dir: &Path) -> Measured {
    let exe = std::env::current_exe().expect("this binary");
    let out = Command::new(exe)
        .env(CASE, case)
        .env(DIR, dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run a case");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT\t"))
        .unwrap_or_else(|| panic!("case {case}: no result ({}): {stdout}", out.status));
    let f: Vec<&str> = line.splitn(6, '\t').collect();
    let num = |i: usize| f[i].parse::<u64>().expect("a number");
    let answer = match (f[4], f.get(5).copied().unwrap_or("")) {
        ("ok", "") => Ok(Vec::new()),
        ("ok", uuids) => Ok(uuids.split(',').map(str::to_string).collect()),
        (_, why) => Err(why.to_string()),
    };
    Measured {
        case: case.to_string(),
        floor_kib: num(0),
        peak_kib: num(1),
        secs: f[2].parse().expect("seconds"),
        reset: f[3] == "true",
        answer,
    }
}

fn main() {
    if let Ok(case) = std::env::var(CASE) {
        let dir = PathBuf::from(std::env::var(DIR).expect("the history directory"));
        measure(&case, &dir);
        return;
    }
    let n: u64 = env_number("HISTORY_GETFLOWS_RSS_FLOWS", 10_000_000);
    let cases: Vec<String> = std::env::var("HISTORY_GETFLOWS_RSS_CASES").map_or_else(
        |_| CASES.iter().map(|c| c.to_string()).collect(),
        |s| s.split(',').map(|c| c.trim().to_string()).collect(),
    );
    if let Some(bad) = cases.iter().find(|c| !CASES.contains(&c.as_str())) {
        panic!("HISTORY_GETFLOWS_RSS_CASES: unknown case {bad:?}; the cases are {CASES:?}");
    }
    let kept = std::env::var_os("HISTORY_GETFLOWS_RSS_DIR").map(PathBuf::from);
    let root = kept.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("history-getflows-rss-{}", std::process::id()))
    });
    let dir = root.join("history");
    let marker = root.join("flows");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(n.to_string().as_str()) {
        println!("reusing the history of {n} flows in {}", dir.display());
    } else {
        let _ = std::fs::remove_file(&marker);
        generate(&dir, n);
        std::fs::write(&marker, n.to_string()).expect("write the marker");
    }
    println!(
        "GetFlows since = first flow - 1 h, number = {NUMBER}, over {n} stored flows; \
         peak RSS growth per case, each in a fresh process"
    );
    let mut results = Vec::new();
    for case in &cases {
        let m = run_case(case, &dir);
        let outcome = match &m.answer {
            Ok(u) => format!("{} flows", u.len()),
            Err(e) => format!("failed: {e}"),
        };
        println!(
            "{:<11} peak RSS +{:>8.1} MiB (from {:>7.1} MiB){}  {:>8.2}s  {outcome}",
            m.case,
            m.growth_mib(),
            m.floor_kib as f64 / 1024.0,
            if m.reset { "" } else { " [peak not reset]" },
            m.secs,
        );
        results.push(m);
    }
    let get = |c: &str| results.iter().find(|m| m.case == c);
    let flows = |c: &str| get(c).and_then(|m| m.answer.as_ref().ok()).map(Vec::len);
    for (c, want) in [
        ("last", NUMBER as usize),
        ("first", NUMBER as usize),
        ("last-none", 0),
        ("first-none", 0),
    ] {
        if get(c).is_some() {
            assert_eq!(flows(c), Some(want), "{c}: flows in the answer");
        }
    }
    if let (Some(a), Some(b)) = (get("last"), get("sql-top10"))
        && let (Ok(a), Ok(b)) = (&a.answer, &b.answer)
    {
        assert_eq!(a, b, "GetFlows and SQL name the same last 10 flows");
        println!("last and sql-top10 return the same {} flows", a.len());
    }
    let getflows: Vec<&Measured> = results
        .iter()
        .filter(|m| !["sql-top10", "old", "old-5s"].contains(&m.case.as_str()))
        .collect();
    if !getflows.is_empty() {
        let worst = getflows.iter().map(|m| m.growth_mib()).fold(0.0, f64::max);
        println!(
            "goal: peak RSS grows < {GOAL_MIB} MiB for GetFlows: {} (worst +{worst:.1} MiB)",
            if worst < GOAL_MIB { "met" } else { "NOT met" }
        );
    }
    if kept.is_none()
        && let Err(e) = std::fs::remove_dir_all(&root)
    {
        eprintln!("removing {}: {e}", root.display());
    }
}
