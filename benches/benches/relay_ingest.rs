//! Relay history ingest: (a) lab-like flows turned into Arrow `RecordBatch`es
//! of the history schema on one core, in batches of the history's default size,
//! against a baseline measured in the same run (cloning the flows into a `Vec`,
//! timed after the batches: freeing a million cloned flows leaves work for the
//! allocator's next large allocations, which would be charged to the batches);
//! goal ≥ 1,000,000 flows/s. (b) Parquet bytes per flow: the same kind of
//! flows written through the relay's real history writer (`History::ingest` +
//! `flush`) into a temporary directory, total file bytes / flows; goal ≤ 30.
//! Baseline in the same run: the same rows written with the parquet crate's
//! default properties (what the history writer used before: no compression,
//! dictionary everywhere).
//!
//! `cargo bench -p benches --bench relay_ingest` (`RELAY_INGEST_N` flows,
//! default 1,000,000).

#[path = "common/lab_flows.rs"]
mod lab_flows;

use std::collections::BTreeMap;
use std::fs::File;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use benches::report;
use lab_flows::LabFlows;
use parquet::arrow::ArrowWriter;
use parquet::file::reader::{FileReader, SerializedFileReader};
use relay::history::schema::{Rec, to_batch};
use relay::history::{DEFAULT_BATCH_ROWS, History, HistoryConfig, files};

fn n_flows() -> usize {
    std::env::var("RELAY_INGEST_N")
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

fn nanos(f: &observer_proto::flow::Flow) -> i64 {
    f.time
        .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
        .unwrap_or_default()
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// (a) flows → batches on this thread.
fn ingest_rate(n: usize) {
    let mut gen_ = LabFlows::new(1);
    let flows: Vec<(String, observer_proto::flow::Flow)> =
        (0..n).map(|_| gen_.next_flow()).collect();

    let start = Instant::now();
    let mut rows = 0;
    for chunk in flows.chunks(DEFAULT_BATCH_ROWS) {
        let recs: Vec<Rec> = chunk
            .iter()
            .map(|(node, f)| Rec {
                node,
                time: nanos(f),
                flow: f,
            })
            .collect();
        let batch = to_batch(&recs);
        rows += batch.num_rows();
        black_box(batch);
    }
    let took = start.elapsed();
    assert_eq!(rows, n);

    // Baseline: a plain copy of the flows (after the batches, see above).
    let start = Instant::now();
    let copy: Vec<_> = flows
        .iter()
        .map(|(node, f)| (node.clone(), f.clone()))
        .collect();
    let copy_took = start.elapsed();
    black_box(&copy);
    drop(copy);

    let copy_rate = n as f64 / copy_took.as_secs_f64();
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "(a) relay ingest, one core, {n} lab-like flows, batches of {DEFAULT_BATCH_ROWS} rows \
         ({took:.2?} for the batches)"
    );
    report("baseline: clone the flows into a Vec", copy_rate, copy_rate);
    report(
        "flows -> RecordBatch (goal >= 1,000,000/s)",
        rate,
        copy_rate,
    );
    println!("goal {}", met(rate >= 1_000_000.0));
}

/// Compressed bytes per column over the Parquet files under `dir`.
fn column_bytes(paths: &[&Path]) -> BTreeMap<String, i64> {
    let mut by_column = BTreeMap::new();
    for path in paths {
        let reader = SerializedFileReader::new(File::open(path).expect("open parquet"))
            .expect("read parquet footer");
        for rg in reader.metadata().row_groups() {
            for c in rg.columns() {
                *by_column.entry(c.column_path().string()).or_insert(0) += c.compressed_size();
            }
        }
    }
    by_column
}

/// (b) Parquet bytes per flow through the real writer.
fn bytes_per_flow(n: usize, dir: &Path) {
    let mut cfg = HistoryConfig::new(dir);
    cfg.retention_bytes = u64::MAX;
    cfg.retention_age = std::time::Duration::from_secs(10 * 365 * 86_400);
    let history = History::open(cfg).expect("open history");
    let mut gen_ = LabFlows::new(2);
    let start = Instant::now();
    let mut writing = std::time::Duration::ZERO;
    let mut flush = || {
        let t = Instant::now();
        history.flush().expect("flush history");
        writing += t.elapsed();
    };
    for _ in 0..n {
        if history.ingest(gen_.next_response()) {
            flush();
        }
    }
    flush();
    let took = start.elapsed();
    assert_eq!(history.written_rows(), n as u64);
    let list = files::list(dir).expect("list history");
    let total: u64 = list.iter().map(|f| f.bytes).sum();
    let per_flow = total as f64 / n as f64;
    println!(
        "(b) Parquet through the history writer: {n} flows, {} files, {total} bytes \
         ({took:.2?} incl. generating the flows; flushes {writing:.2?}, {:.0} flows/s: \
         batches, encoding, ZSTD({}), fsync)",
        list.len(),
        n as f64 / writing.as_secs_f64(),
        relay::history::encode::ZSTD_LEVEL,
    );
    let paths: Vec<&Path> = list.iter().map(|f| f.path.as_path()).collect();
    let written = column_bytes(&paths);
    let mut cols: Vec<(String, i64)> = written.clone().into_iter().collect();
    cols.sort_by_key(|c| std::cmp::Reverse(c.1));
    println!("largest columns (bytes/flow, as written):");
    for (name, bytes) in cols.iter().take(8) {
        println!("  {name:<28} {:>6.1}", *bytes as f64 / n as f64);
    }

    // Baseline: the same rows, one row group per batch (as one file per
    // batch), with the parquet crate's default properties.
    let plain = dir.join("baseline-defaults.parquet");
    let file = File::create(&plain).expect("create");
    let mut writer =
        ArrowWriter::try_new(file, relay::history::schema::schema(), None).expect("writer");
    let mut gen_ = LabFlows::new(2);
    let mut left = n;
    while left > 0 {
        let k = left.min(DEFAULT_BATCH_ROWS);
        let flows: Vec<_> = (0..k).map(|_| gen_.next_flow()).collect();
        let recs: Vec<Rec> = flows
            .iter()
            .map(|(node, f)| Rec {
                node,
                time: nanos(f),
                flow: f,
            })
            .collect();
        writer.write(&to_batch(&recs)).expect("write");
        writer.flush().expect("flush");
        left -= k;
    }
    writer.close().expect("close");
    let base = std::fs::metadata(&plain).expect("stat").len() as f64 / n as f64;
    let bcols = column_bytes(&[plain.as_path()]);
    let col =
        |cols: &BTreeMap<String, i64>, name: &str| *cols.get(name).unwrap_or(&0) as f64 / n as f64;
    println!(
        "{:<44} {base:>14.1} bytes/flow  1.00x baseline (uuid {:.1}, time {:.1})",
        "baseline: same rows, parquet defaults",
        col(&bcols, "uuid"),
        col(&bcols, "time"),
    );
    println!(
        "{:<44} {per_flow:>14.1} bytes/flow  {:.2}x baseline (uuid {:.1}, time {:.1}; goal <= 30)",
        "history writer",
        per_flow / base,
        col(&written, "uuid"),
        col(&written, "time"),
    );
    println!("goal {}", met(per_flow <= 30.0));
}

fn main() {
    let n = n_flows();
    ingest_rate(n);
    let dir = std::env::temp_dir().join(format!("relay-ingest-bench-{}", std::process::id()));
    bytes_per_flow(n, &dir);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("removing {}: {e}", dir.display());
    }
}
