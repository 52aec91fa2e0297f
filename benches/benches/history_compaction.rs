//! Bytes per flow on disk of a quiet relay's history, before and after
//! compaction. Lab-like flows at lab rates are written as the relay's
//! history writer writes them with the default 5 s flush, for 10 minutes
//! of flow time: one file per flush. Then compaction, as the relay's
//! compaction thread does it. Goal: ≤ 30 bytes/flow on disk after
//! compaction (issue 13 measured 99 on a live lab, without compaction).
//!
//! Flow time is simulated, so the run takes seconds, not 10 minutes: the
//! flows get times `1 / rate` apart (plus a random part below that), and
//! the bench drives the history through the calls its writer threads make,
//! in their order, with the writer's rules on flow time instead of the
//! clock: flows gather in a `history::chunk::Chunk` (the writer's, with
//! flow time for its clock: `COALESCE`, 100 ms, after the first) and then
//! become one batch in memory (`History::add_rows`, as `history-rows`
//! does), and every 5 s `History::flush` seals the rows in memory, encodes
//! them into one file and publishes it (what `history-rows`,
//! `history-encode` and `history-commit` do at the flush deadline). The
//! files are the ones a live relay writes at that rate: one per flush
//! interval with that interval's flows. Compaction is
//! `History::compact_now` with the default `CompactionConfig`, the call
//! the compaction thread makes every minute, repeated until it finds
//! nothing to merge, without the thread's throttle.
//!
//! Baseline in the same run: the files before compaction (what the relay
//! kept before compaction existed). Reported per rate: files, bytes/flow
//! (file sizes) and allocated bytes/flow (the filesystem's blocks), before
//! and after, and the time compaction took. Rows are counted in the
//! compacted files' footers and must equal the flows written.
//!
//! `HISTORY_COMPACTION_RATES` (flows/s, default `36,360,3600`: 36 is the
//! live lab of issue 13, 9,049 flows in 50 flushes of 5 s),
//! `HISTORY_COMPACTION_MINUTES` (default 10).
//!
//! `cargo bench -p benches --bench history_compaction`

#[path = "common/lab_flows.rs"]
#[expect(
    dead_code,
    reason = "flows are built with their own times here, not with next_response"
)]
mod lab_flows;

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::history::{env_number, open_history};
use lab_flows::{LabFlows, START_NS};
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use parquet::file::reader::{FileReader, SerializedFileReader};
use relay::history::History;
use relay::history::chunk::{CHUNK_FLOWS, Chunk};
use relay::history::compact::CompactionConfig;
use relay::history::files::HistoryFile;

const GOAL: f64 = 30.0;

fn rates() -> Vec<u64> {
    let s = std::env::var("HISTORY_COMPACTION_RATES").unwrap_or_else(|_| "36,360,3600".into());
    s.split(',')
        .map(|r| {
            r.trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("HISTORY_COMPACTION_RATES: {r:?} is not a rate"))
        })
        .collect()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Files, file bytes and allocated bytes of what readers see now.
#[derive(Debug, Clone, Copy)]
struct Disk {
    files: usize,
    bytes: u64,
    allocated: u64,
}

fn disk(files: &[HistoryFile]) -> Disk {
    Disk {
        files: files.len(),
        bytes: files.iter().map(|f| f.bytes).sum(),
        allocated: files
            .iter()
            .map(|f| std::fs::metadata(&f.path).map_or(0, |m| m.blocks() * 512))
            .sum(),
    }
}

/// Rows in the files, from their footers.
fn rows_in(files: &[HistoryFile]) -> u64 {
    files
        .iter()
        .map(|f| {
            let r = SerializedFileReader::new(File::open(&f.path).expect("open a history file"))
                .expect("read a footer");
            r.metadata().file_metadata().num_rows() as u64
        })
        .sum()
}

/// What one rate gave.
struct Outcome {
    rate: u64,
    flows: u64,
    before: Disk,
    after: Disk,
    writing: Duration,
    compacting: Duration,
    passes: usize,
}

/// The writer's `history-rows` thread, on flow time: flows gather in a
/// [`Chunk`] (with flow time as its clock) until it holds `CHUNK_FLOWS` (or
/// the rows a file still takes) or `COALESCE` has passed since its first
/// flow, then become one batch in memory; at each flush deadline the chunk
/// goes in and everything in memory is written (`History::flush`: seal,
/// encode, publish, retention, what the three threads do).
struct Rows {
    history: Arc<History>,
    chunk: Chunk<Duration>,
    open: usize,
    /// Flow time since the epoch.
    deadline: Duration,
    interval: Duration,
}

impl Rows {
    fn take_chunk(&mut self) {
        if let Some(batch) = self.chunk.take() {
            self.open = self.history.add_rows(batch);
        }
    }

    fn flush(&mut self) {
        self.take_chunk();
        self.history.flush().expect("flush");
        self.open = 0;
    }

    /// What happens before flow time `t`: chunks that come due, flushes.
    fn until(&mut self, t: Duration) {
        loop {
            let chunk_due = self.chunk.due().unwrap_or(Duration::MAX);
            if t < chunk_due.min(self.deadline) {
                return;
            }
            if self.deadline <= chunk_due {
                self.flush();
                self.deadline += self.interval;
            } else {
                self.take_chunk();
            }
        }
    }

    fn flow(&mut self, t: i64, r: Arc<GetFlowsResponse>) {
        let now = Duration::from_nanos(u64::try_from(t).expect("flow time after 1970"));
        self.until(now);
        self.chunk.push(t, r);
        let batch_rows = self.history.config().batch_rows;
        let room = batch_rows.saturating_sub(self.open).clamp(1, CHUNK_FLOWS);
        if self.chunk.ready(room, now) {
            self.take_chunk();
            if self.open >= batch_rows {
                self.flush();
            }
        }
    }
}

/// `rate` flows a second for `secs` seconds of flow time, written as the
/// writer writes them; then compaction.
fn run(dir: &Path, rate: u64, secs: u64) -> Outcome {
    let _ = std::fs::remove_dir_all(dir);
    // Compaction is driven below, after the writing.
    let history = open_history(dir);
    let interval = history.config().flush_interval;
    let mut rows = Rows {
        history: history.clone(),
        chunk: Chunk::default(),
        open: 0,
        deadline: Duration::from_nanos(START_NS as u64) + interval,
        interval,
    };
    let flows = rate * secs;
    let spacing = 1_000_000_000 / rate.max(1);
    let mut lab = LabFlows::new(13);
    let started = Instant::now();
    for i in 0..flows {
        let t = START_NS + (i * spacing + splitmix(i) % spacing.max(1)) as i64;
        let (node, mut flow) = lab.next_flow();
        let time = Some(observer_proto::time::timestamp(i128::from(t)));
        flow.time = time;
        rows.flow(
            t,
            Arc::new(GetFlowsResponse {
                node_name: node,
                time,
                response_types: Some(ResponseTypes::Flow(flow)),
            }),
        );
    }
    // The next deadline, or the relay's stop.
    rows.flush();
    let writing = started.elapsed();
    assert_eq!(history.written_rows(), flows, "every flow is in a file");
    let before = disk(&history.files());

    let cfg = CompactionConfig::default();
    let started = Instant::now();
    let mut passes = 0;
    while history.compact_now(&cfg, &mut || true).expect("compaction") > 0 {
        passes += 1;
    }
    let compacting = started.elapsed();
    let files = history.files();
    assert_eq!(rows_in(&files), flows, "compaction keeps every row once");
    Outcome {
        rate,
        flows,
        before,
        after: disk(&files),
        writing,
        compacting,
        passes,
    }
}

fn main() {
    let minutes: u64 = env_number("HISTORY_COMPACTION_MINUTES", 10);
    let secs = minutes * 60;
    let dir = std::env::temp_dir().join(format!("history-compaction-bench-{}", std::process::id()));
    let flush = relay::history::DEFAULT_FLUSH_INTERVAL;
    println!(
        "history of a quiet relay: lab-like flows, {minutes} min of flow time (simulated), \
         a file per {flush:?} flush, then compaction (default CompactionConfig)"
    );
    println!(
        "{:>8} {:>9} | {:>6} {:>10} {:>10} | {:>5} {:>10} {:>10} | {:>6} {:>9} {:>9}",
        "flows/s",
        "flows",
        "files",
        "bytes/flow",
        "alloc/flow",
        "files",
        "bytes/flow",
        "alloc/flow",
        "ratio",
        "write",
        "compact",
    );
    println!(
        "{:>18} | {:^28} | {:^28} |",
        "", "before (baseline)", "after compaction"
    );
    let mut worst: f64 = 0.0;
    for rate in rates() {
        let o = run(&dir, rate, secs);
        let per = |d: Disk| {
            (
                d.bytes as f64 / o.flows as f64,
                d.allocated as f64 / o.flows as f64,
            )
        };
        let (b, ba) = per(o.before);
        let (a, aa) = per(o.after);
        worst = worst.max(a);
        println!(
            "{:>8} {:>9} | {:>6} {b:>10.1} {ba:>10.1} | {:>5} {a:>10.1} {aa:>10.1} | {:>5.2}x {:>9.2?} {:>9.2?} ({} pass(es))",
            o.rate,
            o.flows,
            o.before.files,
            o.after.files,
            a / b,
            o.writing,
            o.compacting,
            o.passes,
        );
    }
    println!(
        "goal <= {GOAL} bytes/flow after compaction: {} (worst {worst:.1})",
        if worst <= GOAL { "met" } else { "NOT met" }
    );
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("removing {}: {e}", dir.display());
    }
}
