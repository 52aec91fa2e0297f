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
//! The queue holds `HISTORY_WRITER_QUEUE` flows (default the relay's,
//! `DEFAULT_QUEUE_FLOWS`, 65,536).
//!
//! For each writer run it also prints where the CPU went: the CPU time of
//! each of the writer's threads (`/proc/self/task/*/stat`, sampled during
//! the run; encoder helper threads that ended between two samples are
//! counted from the process's total) per flow written, and the cores used;
//! and the queue's greatest depth and, per second of the run, the flows lost
//! (a stall shows as the seconds it cost).
//!
//! The flows come from a pool of 262,144 generated once (an `Arc` each, as
//! the merge hands them on) and offered round and round, so generating
//! them costs the measured threads nothing. Each round moves their times
//! on by the pool's span (the flow is changed in place: the writer has let
//! go of it long before), so they come in time order, as the merge
//! releases them, and the writer never has to sort a batch.
//!
//! `cargo bench -p benches --bench history_writer`

#[path = "common/lab_flows.rs"]
mod lab_flows;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::history::{env_number, open_history};
use lab_flows::LabFlows;
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use relay::history::feed;
use relay::history::writer::Writer;
use relay::history::{History, HistoryConfig};

const POOL: usize = 262_144;

fn open(dir: &Path) -> Arc<History> {
    let _ = std::fs::remove_dir_all(dir);
    open_history(dir)
}

/// CPU ticks (`CLK_TCK`, 100 a second on Linux) of a `stat` file's line.
fn ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_string();
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

fn process_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks(&s))
        .map_or(0, |(_, t)| t)
}

/// CPU time by thread, sampled while a run goes on.
struct Cpu {
    start_total: u64,
    start: BTreeMap<u32, u64>,
    seen: BTreeMap<u32, (String, u64)>,
    last_sample: Instant,
}

impl Cpu {
    fn threads() -> BTreeMap<u32, (String, u64)> {
        let mut out = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return out;
        };
        for e in dir.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            if let Some(t) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| ticks(&s))
            {
                out.insert(tid, t);
            }
        }
        out
    }

    fn start() -> Cpu {
        Cpu {
            start_total: process_ticks(),
            start: Self::threads()
                .into_iter()
                .map(|(tid, (_, t))| (tid, t))
                .collect(),
            seen: BTreeMap::new(),
            last_sample: Instant::now(),
        }
    }

    /// Samples the threads at most every 50 ms.
    fn sample(&mut self) {
        if self.last_sample.elapsed() < Duration::from_millis(50) {
            return;
        }
        self.last_sample = Instant::now();
        for (tid, t) in Self::threads() {
            self.seen.insert(tid, t);
        }
    }

    /// CPU seconds by part of the work, after the run.
    fn finish(self) -> Vec<(String, f64)> {
        let total = process_ticks() - self.start_total;
        let main = std::process::id();
        let mut parts: BTreeMap<String, u64> = BTreeMap::new();
        let mut attributed = 0;
        for (tid, (name, t)) in self.seen {
            let t = t.saturating_sub(self.start.get(&tid).copied().unwrap_or(0));
            attributed += t;
            let part = if tid == main {
                "bench: offers flows (the merge)".to_string()
            } else {
                name
            };
            *parts.entry(part).or_default() += t;
        }
        *parts.entry("history-encode".into()).or_default() += total.saturating_sub(attributed);
        let tck = 100.0;
        parts
            .into_iter()
            .map(|(name, t)| (name, t as f64 / tck))
            .collect()
    }
}

/// The pool, offered round after round with times moving on.
struct Flows {
    pool: Vec<Arc<GetFlowsResponse>>,
    next: usize,
    round: i64,
    /// Flow time from one round to the next.
    span: i64,
}

fn shift(t: &mut Option<prost_types::Timestamp>, by: i64) {
    if let Some(t) = t {
        let ns = t.seconds * 1_000_000_000 + i64::from(t.nanos) + by;
        *t = prost_types::Timestamp {
            seconds: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        };
    }
}

impl Flows {
    fn new(pool: Vec<Arc<GetFlowsResponse>>) -> Flows {
        let times: Vec<i64> = pool
            .iter()
            .filter_map(|r| observer_proto::time::event_time(r))
            .map(|t| t as i64)
            .collect();
        let (lo, hi) = (
            times.iter().copied().min().unwrap_or(0),
            times.iter().copied().max().unwrap_or(0),
        );
        Flows {
            pool,
            next: 0,
            round: 0,
            span: hi - lo + 50_000,
        }
    }

    fn next(&mut self) -> &Arc<GetFlowsResponse> {
        if self.next == self.pool.len() {
            self.next = 0;
            self.round += 1;
        }
        let i = self.next;
        self.next += 1;
        if self.round > 0 {
            let r = Arc::make_mut(&mut self.pool[i]);
            shift(&mut r.time, self.span);
            if let Some(ResponseTypes::Flow(f)) = &mut r.response_types {
                shift(&mut f.time, self.span);
            }
        }
        &self.pool[i]
    }
}

/// What one run did.
struct Run {
    offered: u64,
    written: u64,
    lost: u64,
    took: Duration,
    bytes: u64,
    /// CPU seconds by thread name.
    cpu: Vec<(String, f64)>,
    /// The deepest the queue was seen, and the seconds of the run (from
    /// its start) in which flows were lost, with how many.
    max_depth: u64,
    lost_by_second: BTreeMap<u64, u64>,
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
        if self.cpu.is_empty() {
            return;
        }
        let seconds: Vec<String> = self
            .lost_by_second
            .iter()
            .map(|(sec, n)| format!("{sec}: {n}"))
            .collect();
        println!(
            "    queue depth at most {} (the writer's chunk of up to {} included); \
             flows lost by second of the run: {}",
            self.max_depth,
            relay::history::chunk::CHUNK_FLOWS,
            if seconds.is_empty() {
                "none".to_string()
            } else {
                seconds.join(", ")
            }
        );
        let total: f64 = self.cpu.iter().map(|(_, s)| s).sum();
        let per_flow = |s: f64| s * 1e6 / self.written.max(1) as f64;
        let parts: Vec<String> = self
            .cpu
            .iter()
            .filter(|(_, s)| *s > 0.0)
            .map(|(name, s)| format!("{name} {:.2}", per_flow(*s)))
            .collect();
        println!(
            "    CPU µs per flow written: {} = {:.2} in all; {:.2} cores over {:.1?}",
            parts.join(", "),
            per_flow(total),
            total / self.took.as_secs_f64(),
            self.took,
        );
    }
}

fn baseline(dir: &Path, flows: &mut Flows, n: usize) -> Run {
    let history = open(dir);
    let start = Instant::now();
    for _ in 0..n {
        if history.ingest(flows.next().clone()) {
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
        cpu: Vec::new(),
        max_depth: 0,
        lost_by_second: BTreeMap::new(),
    }
}

/// Offers flows for `secs`, `rate` per second (0: as fast as it can), to
/// the real feed and writer; waits for everything taken to be written.
fn writer(dir: &Path, flows: &mut Flows, queue: usize, secs: u64, rate: u64) -> Run {
    let history = open(dir);
    let (feed, intake) = feed::channel(queue, history.losses().clone());
    let mut cpu = Cpu::start();
    let writer = Writer::start(history.clone(), intake).expect("start the writer");
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut offered: u64 = 0;
    let mut max_depth = 0;
    let mut lost_by_second = BTreeMap::new();
    let mut lost_before = 0;
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
        for _ in 0..STEP {
            feed.offer(flows.next());
        }
        offered += STEP;
        cpu.sample();
        max_depth = max_depth.max(feed.depth());
        let lost_now = history.losses().total_since_start();
        if lost_now > lost_before {
            *lost_by_second.entry(start.elapsed().as_secs()).or_default() += lost_now - lost_before;
            lost_before = lost_now;
        }
    }
    let offering = start.elapsed();
    feed.stop();
    // Until the writer is done: the threads are gone after the join.
    while feed.depth() > 0 || history.rows_in_memory() > 0 {
        cpu.sample();
        std::thread::sleep(Duration::from_millis(5));
    }
    cpu.sample();
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
        cpu: cpu.finish(),
        max_depth,
        lost_by_second,
    }
}

fn main() {
    let secs: u64 = env_number("HISTORY_WRITER_SECS", 60);
    let rate: u64 = env_number("HISTORY_WRITER_RATE", 1_000_000);
    let base_n: usize = env_number("HISTORY_WRITER_BASELINE", 2_000_000);
    let queue: usize = env_number("HISTORY_WRITER_QUEUE", relay::history::DEFAULT_QUEUE_FLOWS);
    let dir = std::env::temp_dir().join(format!("history-writer-bench-{}", std::process::id()));
    let mut gen_ = LabFlows::new(7);
    let mut flows = Flows::new((0..POOL).map(|_| gen_.next_response()).collect());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "history writer, lab-like flows, {cores} cores, encode threads {}, queue {queue} flows",
        HistoryConfig::new(&dir).encode_threads,
    );

    let base = baseline(&dir, &mut flows, base_n);
    let base_rate = base.written as f64 / base.took.as_secs_f64();
    base.print("baseline: ingest + flush on one thread", base_rate);
    let max = writer(&dir, &mut flows, queue, 10, 0);
    max.print("writer, offered as fast as possible (10 s)", base_rate);
    let paced = writer(&dir, &mut flows, queue, secs, rate);
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
