//! The real history writer under load: lab-like flows offered to the
//! relay's history queue (`history::feed`, what the merge calls for every
//! flow) and written by `history::writer` (rows → batches, columns encoded
//! on several threads, fsync and publish in a pipeline) into a temporary
//! directory. Goal: ≥ 1,000,000 flows/s sustained for 60 s with 0 lost.
//!
//! Three runs, side by side:
//! 1. baseline: the synchronous path the history task used before (each
//!    flow through `History::ingest`, a `flush` when a batch is full, on
//!    one thread), over `HISTORY_WRITER_BASELINE` flows (default 2,000,000);
//! 2. the writer, flows offered as fast as one thread can (what it can
//!    take, and what it drops), for 10 s;
//! 3. the writer, flows offered at `HISTORY_WRITER_RATE` per second
//!    (default 1,000,000) for `HISTORY_WRITER_SECS` (default 60): flows
//!    written, lost, and the rate achieved.
//!
//! The flows come from a pool of 262,144 generated once (an `Arc` each, as
//! the merge hands them on) and offered round and round, so generating
//! them costs the measured threads nothing.
//!
//! `cargo bench -p benches --bench history_writer`

#[path = "common/lab_flows.rs"]
mod lab_flows;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab_flows::LabFlows;
use observer_proto::observer::GetFlowsResponse;
use relay::history::feed;
use relay::history::writer::Writer;
use relay::history::{History, HistoryConfig};

const POOL: usize = 262_144;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn open(dir: &Path) -> Arc<History> {
    let _ = std::fs::remove_dir_all(dir);
    History::open(HistoryConfig {
        retention_bytes: u64::MAX,
        retention_age: Duration::from_secs(10 * 365 * 86_400),
        compaction: None,
        ..HistoryConfig::new(dir)
    })
    .expect("open history")
}

/// What one run did.
struct Run {
    offered: u64,
    written: u64,
    lost: u64,
    took: Duration,
    bytes: u64,
}

impl Run {
    fn print(&self, name: &str, baseline: f64) {
        let rate = self.written as f64 / self.took.as_secs_f64();
        println!(
            "{name:<52} {rate:>11.0} flows/s {:>6.2}x baseline  offered {:>11} written {:>11} lost {:>9} ({:.1} bytes/flow, {:.1?})",
            rate / baseline,
            self.offered,
            self.written,
            self.lost,
            self.bytes as f64 / self.written.max(1) as f64,
            self.took,
        );
    }
}

fn baseline(dir: &Path, pool: &[Arc<GetFlowsResponse>], n: usize) -> Run {
    let history = open(dir);
    let start = Instant::now();
    for r in pool.iter().cycle().take(n) {
        if history.ingest(r.clone()) {
            history.flush().expect("flush");
        }
    }
    history.flush().expect("flush");
    let took = start.elapsed();
    Run {
        offered: n as u64,
        written: history.written_rows(),
        lost: 0,
        took,
        bytes: history.written_bytes(),
    }
}

/// Offers flows for `secs`, `rate` per second (0: as fast as it can), to
/// the real feed and writer; waits for everything taken to be written.
fn writer(dir: &Path, pool: &[Arc<GetFlowsResponse>], secs: u64, rate: u64) -> Run {
    let history = open(dir);
    let cfg = history.config().clone();
    let (feed, intake) = feed::channel(cfg.queue_flows, history.losses().clone());
    let writer = Writer::start(history.clone(), intake).expect("start the writer");
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut offered: u64 = 0;
    let mut flows = pool.iter().cycle();
    // At a rate: 1,000 flows at a time, each at its due time.
    const STEP: u64 = 1000;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if rate > 0 {
            let due = start + Duration::from_secs_f64(offered as f64 / rate as f64);
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        for r in flows.by_ref().take(STEP as usize) {
            feed.offer(r);
        }
        offered += STEP;
    }
    let offering = start.elapsed();
    feed.stop();
    writer.join();
    let took = start.elapsed();
    let written = history.written_rows();
    let lost = history.losses().total_since_start();
    assert_eq!(written + lost, offered, "every flow is written or counted");
    Run {
        offered,
        written,
        lost,
        // The rate of a paced run is what was offered and kept up with.
        took: if rate > 0 { offering } else { took },
        bytes: history.written_bytes(),
    }
}

fn main() {
    let secs: u64 = env("HISTORY_WRITER_SECS", 60);
    let rate: u64 = env("HISTORY_WRITER_RATE", 1_000_000);
    let base_n: usize = env("HISTORY_WRITER_BASELINE", 2_000_000);
    let dir = std::env::temp_dir().join(format!("history-writer-bench-{}", std::process::id()));
    let mut gen_ = LabFlows::new(7);
    let pool: Vec<Arc<GetFlowsResponse>> = (0..POOL).map(|_| gen_.next_response()).collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "history writer, lab-like flows, {cores} cores, encode threads {}, queue {} flows",
        HistoryConfig::new(&dir).encode_threads,
        relay::history::DEFAULT_QUEUE_FLOWS
    );

    let base = baseline(&dir, &pool, base_n);
    let base_rate = base.written as f64 / base.took.as_secs_f64();
    base.print("baseline: ingest + flush on one thread", base_rate);
    let max = writer(&dir, &pool, 10, 0);
    max.print("writer, offered as fast as possible (10 s)", base_rate);
    let paced = writer(&dir, &pool, secs, rate);
    paced.print(
        &format!("writer, offered at {rate}/s ({secs} s)"),
        base_rate,
    );
    let achieved = paced.written as f64 / paced.took.as_secs_f64();
    let met = paced.lost == 0 && achieved >= 1_000_000.0 * 0.995 && secs >= 60;
    println!(
        "goal >= 1,000,000 flows/s for 60 s with 0 lost: {} ({achieved:.0} flows/s, {} lost)",
        if met { "met" } else { "NOT met" },
        paced.lost
    );
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("removing {}: {e}", dir.display());
    }
}
