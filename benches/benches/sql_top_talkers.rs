//! Top talkers over the flow history: the relay's `SqlEngine` (DataFusion)
//! against DuckDB on the same Parquet files, in the same run.
//!
//! Writes `SQL_BENCH_FLOWS` lab-like flows (default 10,000,000) through the
//! relay's history writer into `SQL_BENCH_DIR` (default: a new temporary
//! directory, removed at the end), then runs the query `SQL_BENCH_ROUNDS` times
//! (default 3) on each engine and reports the best and median times. DuckDB runs
//! when `SQL_BENCH_PYTHON` names a Python with the `duckdb` module (see
//! `benches/run-sql-bench.sh`, which makes one in a venv).
//!
//! `benches/run-sql-bench.sh [flows]`

#[path = "common/lab_flows.rs"]
mod lab_flows;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use benches::history::{bench_dir, env_number, open_history, print_files};
use lab_flows::LabFlows;
use relay::history::{History, files};
use relay::sql::{SqlEngine, SqlLimits};

const QUERY: &str = "SELECT source_pod, destination_pod, sum(fwd_bytes+rev_bytes) AS bytes \
                     FROM flows GROUP BY 1,2 ORDER BY bytes DESC LIMIT 10";

/// Writes `n` flows (in files of the history's batch size) unless `dir`
/// already holds exactly that many rows from an earlier run.
fn generate(dir: &Path, n: u64) -> std::sync::Arc<History> {
    let marker = dir.join(".flows");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(&n.to_string()) {
        println!("reusing the {n} flows already in {}", dir.display());
        return open_history(dir);
    }
    let _ = std::fs::remove_dir_all(dir);
    let history = open_history(dir);
    let mut gen_ = LabFlows::new(3);
    let start = Instant::now();
    for i in 0..n {
        if history.ingest(gen_.next_response()) {
            history.flush().expect("flush history");
        }
        if (i + 1) % 1_000_000 == 0 {
            eprintln!("  {} flows written, {:.0?}", i + 1, start.elapsed());
        }
    }
    history.flush().expect("flush history");
    std::fs::write(&marker, n.to_string()).expect("write marker");
    println!(
        "wrote {n} flows through the history writer in {:.1?}",
        start.elapsed()
    );
    history
}

fn stats(mut t: Vec<Duration>) -> (Duration, Duration) {
    t.sort();
    (t[0], t[t.len() / 2])
}

const DUCKDB: &str = r#"
import sys, time, duckdb
files, rounds, query = sys.argv[1], int(sys.argv[2]), sys.argv[3]
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f"CREATE VIEW flows AS SELECT * FROM read_parquet({files})")
for _ in range(rounds):
    t = time.perf_counter()
    rows = con.execute(query).fetchall()
    print(time.perf_counter() - t, flush=True)
print("top", rows[0][0], rows[0][1], rows[0][2], flush=True)
"#;

fn duckdb(python: &str, paths: &[PathBuf], rounds: usize) -> Option<(Vec<Duration>, String)> {
    let list = format!(
        "[{}]",
        paths
            .iter()
            .map(|p| format!("'{}'", p.display()))
            .collect::<Vec<_>>()
            .join(",")
    );
    let out = Command::new(python)
        .args(["-c", DUCKDB, &list, &rounds.to_string(), QUERY])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("duckdb failed: {}", String::from_utf8_lossy(&o.stderr));
            return None;
        }
        Err(e) => {
            eprintln!("running {python}: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut times = Vec::new();
    let mut top = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("top ") {
            top = rest.to_string();
        } else if let Ok(s) = line.trim().parse::<f64>() {
            times.push(Duration::from_secs_f64(s));
        }
    }
    (!times.is_empty()).then_some((times, top))
}

fn main() {
    let n: u64 = env_number("SQL_BENCH_FLOWS", 10_000_000);
    let rounds: usize = env_number("SQL_BENCH_ROUNDS", 3).max(1);
    let (dir, temporary) = bench_dir("SQL_BENCH_DIR", "sql-bench");
    let history = generate(&dir, n);
    print_files(&dir, n);
    println!("query: {QUERY}");

    let engine = SqlEngine::new(
        Some(history),
        SqlLimits {
            timeout: Duration::from_secs(600),
            memory_bytes: 4 << 30,
            memory_total_bytes: 4 << 30,
            ..SqlLimits::default()
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut ours = Vec::new();
    let mut top = String::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let result = rt.block_on(engine.query(QUERY)).expect("query");
        ours.push(start.elapsed());
        let batch = &result.batches[0];
        top = datafusion_first_row(batch);
    }
    let (best, median) = stats(ours);
    println!(
        "{:<36} best {:>9.1?}  median {:>9.1?}   top {top}",
        "relay SqlEngine (DataFusion)", best, median
    );

    match std::env::var("SQL_BENCH_PYTHON") {
        Ok(python) => {
            let paths: Vec<PathBuf> = files::list(&dir)
                .expect("list history")
                .iter()
                .map(|f| f.path.clone())
                .collect();
            match duckdb(&python, &paths, rounds) {
                Some((times, dtop)) => {
                    let (dbest, dmedian) = stats(times);
                    println!(
                        "{:<36} best {:>9.1?}  median {:>9.1?}   top {dtop}",
                        "DuckDB (same files, 2 threads)", dbest, dmedian
                    );
                    println!(
                        "ratio relay / DuckDB: best {:.2}x, median {:.2}x",
                        best.as_secs_f64() / dbest.as_secs_f64(),
                        median.as_secs_f64() / dmedian.as_secs_f64()
                    );
                }
                None => println!("DuckDB: did not run"),
            }
        }
        Err(_) => println!("DuckDB: not run (set SQL_BENCH_PYTHON, or use run-sql-bench.sh)"),
    }
    if temporary && let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("removing {}: {e}", dir.display());
    }
}

/// `source_pod destination_pod bytes` of the first row.
fn datafusion_first_row(batch: &arrow::array::RecordBatch) -> String {
    use arrow::util::display::array_value_to_string;
    (0..batch.num_columns())
        .map(|c| array_value_to_string(batch.column(c), 0).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
}
