//! Compaction: the small files of an hour merged into large ones, in the
//! background, so a quiet relay's history (one small file per flush) ends
//! as compact on disk as a busy one's.
//!
//! [`plan`] picks, per hour directory, runs of files smaller than
//! [`CompactionConfig::small_bytes`] that are next to each other in sequence
//! number, up to [`CompactionConfig::target_bytes`]. [`History::compact`]
//! merges one run in time order into a new file, then:
//! 1. writes it under a hidden temporary name and fsyncs it;
//! 2. renames it to `<first>-<last>-<lo>-<hi>.parquet`, the commit: from now
//!    on the name says it replaces its inputs (`lo..=hi`, [`super::files`]),
//!    and the next start removes them if they are still there;
//! 3. swaps the inputs for it in the manifest, in one step for readers;
//! 4. deletes the inputs once no reader that may read them is left.
//!
//! A stop at any point leaves each row once: before 2 the inputs hold them
//! (the temporary file is removed at start), after 2 the compacted file
//! does. The thread pauses while the writer has a backlog and works at most
//! half of the time ([`Throttle`]).

use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::History;
use super::encode::FileSink;
use super::files::HistoryFile;
use super::scan::{self, Merge, Range, Source};

/// When and what compaction merges.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// How often compaction looks for work.
    pub interval: Duration,
    /// Files smaller than this are merged.
    pub small_bytes: u64,
    /// A run stops growing past this many bytes of inputs.
    pub target_bytes: u64,
    /// At most this many inputs at once.
    pub max_inputs: usize,
    /// A run's rows span at most this much time, oldest to newest.
    /// Retention deletes whole files once their newest row is past the
    /// retention age, so a file that kept taking new rows would keep its old
    /// ones forever: [`History::compact_now`] caps this at a quarter of the
    /// retention age, so no row outlives it by more than that.
    pub max_span: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            interval: Duration::from_secs(60),
            // A full batch of 65,536 lab flows is about 1.6 MB: files of a
            // busy relay are left alone.
            small_bytes: 1 << 20,
            target_bytes: 16 << 20,
            max_inputs: 512,
            max_span: Duration::MAX,
        }
    }
}

/// Where the compaction thread stops for good, to test a crash there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PausePoint {
    /// The compacted file is written under its temporary name.
    Written,
    /// It is renamed; its inputs are still on disk.
    Renamed,
    /// One input is deleted, the others not yet.
    RemovedOne,
}

impl std::str::FromStr for PausePoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "written" => Ok(PausePoint::Written),
            "renamed" => Ok(PausePoint::Renamed),
            "removed-one" => Ok(PausePoint::RemovedOne),
            _ => Err(format!(
                "{s:?}: the pause points are written, renamed, removed-one"
            )),
        }
    }
}

/// The runs of files to merge now: per directory, neighbours in sequence
/// number smaller than `small_bytes`, at most `target_bytes` and
/// `max_inputs` together, rows spanning at most `max_span`, two or more;
/// never a run whose range would also cover a file outside it.
pub fn plan(all: &[HistoryFile], cfg: &CompactionConfig) -> Vec<Vec<HistoryFile>> {
    let max_span = i64::try_from(cfg.max_span.as_nanos()).unwrap_or(i64::MAX);
    let mut dirs: std::collections::BTreeMap<_, Vec<&HistoryFile>> = Default::default();
    for f in all {
        dirs.entry(f.path.parent()).or_default().push(f);
    }
    let mut runs = Vec::new();
    for mut dir in dirs.into_values() {
        dir.sort_by_key(|f| (f.lo, f.hi));
        let mut run: Vec<HistoryFile> = Vec::new();
        let mut bytes = 0;
        let mut close = |run: &mut Vec<HistoryFile>, bytes: &mut u64| {
            if run.len() >= 2 && covers_only(run, &dir) {
                runs.push(std::mem::take(run));
            }
            run.clear();
            *bytes = 0;
        };
        for f in &dir {
            let small = f.bytes < cfg.small_bytes;
            let first = run.iter().map(|r| r.first).chain([f.first]).min();
            let last = run.iter().map(|r| r.last).chain([f.last]).max();
            let span = last.zip(first).map_or(0, |(l, f)| l.saturating_sub(f));
            let fits = bytes + f.bytes <= cfg.target_bytes
                && run.len() < cfg.max_inputs
                && span <= max_span;
            // Equal single numbers: two files of an older version that started
            // its numbers at 0 on every start; merged together they are safe.
            let after = run.last().is_none_or(|l| f.lo >= l.hi);
            if !(small && fits && after) {
                close(&mut run, &mut bytes);
            }
            if small {
                bytes += f.bytes;
                run.push((*f).clone());
            }
        }
        close(&mut run, &mut bytes);
    }
    runs
}

/// Whether the range of `run` covers no file of `dir` but its own.
fn covers_only(run: &[HistoryFile], dir: &[&HistoryFile]) -> bool {
    let lo = run.iter().map(|f| f.lo).min().unwrap_or(0);
    let hi = run.iter().map(|f| f.hi).max().unwrap_or(0);
    dir.iter()
        .all(|f| run.contains(f) || f.hi < lo || f.lo > hi)
}

/// Keeps compaction from starving ingest: waits while `busy` says the
/// writer has a backlog, and after each step for as long as the step took.
pub struct Throttle<'a> {
    busy: &'a (dyn Fn() -> bool + Send + Sync),
    stop: &'a Stop,
    since: Instant,
}

impl Throttle<'_> {
    /// Between two steps; false when compaction must stop.
    fn pace(&mut self) -> bool {
        let worked = self.since.elapsed();
        if self.stop.wait(worked) {
            return false;
        }
        while (self.busy)() {
            if self.stop.wait(Duration::from_millis(50)) {
                return false;
            }
        }
        self.since = Instant::now();
        true
    }
}

/// The compaction thread's stop signal.
#[derive(Default)]
pub struct Stop {
    flag: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    /// Waits up to `d`; true once stopped.
    fn wait(&self, d: Duration) -> bool {
        let flag = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        if *flag || d.is_zero() {
            return *flag;
        }
        let (flag, _) = self
            .wake
            .wait_timeout_while(flag, d, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *flag
    }

    fn set(&self) {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }
}

impl History {
    fn pause(&self, at: PausePoint) {
        if self.cfg.pause_at == Some(at) {
            log::warn!("history: compaction paused at {at:?} (a crash test's pause point)");
            loop {
                std::thread::park();
            }
        }
    }

    /// Merges `inputs` (files of one directory, a run of [`plan`]) into one
    /// file; `pace` runs between batches and stops the work when false.
    /// Returns the new file, or `None` when stopped or when an input left
    /// the manifest meanwhile.
    pub fn compact(
        &self,
        inputs: &[HistoryFile],
        pace: &mut dyn FnMut() -> bool,
    ) -> io::Result<Option<HistoryFile>> {
        let (Some(first), Some(lo), Some(hi)) = (
            inputs.iter().map(|f| f.first).min(),
            inputs.iter().map(|f| f.lo).min(),
            inputs.iter().map(|f| f.hi).max(),
        ) else {
            return Ok(None);
        };
        // Retention must not delete the inputs while they are read.
        let epoch = self.lock().manifest.lease();
        let result = self.merge_inputs(inputs, first, lo, hi, pace);
        self.lock().manifest.release(epoch);
        let paths = self.lock().manifest.reapable();
        for (i, p) in paths.iter().enumerate() {
            super::remove_unlisted(p);
            if i == 0 && result.as_ref().is_ok_and(Option::is_some) {
                self.pause(PausePoint::RemovedOne);
            }
        }
        result
    }

    fn merge_inputs(
        &self,
        inputs: &[HistoryFile],
        first: i64,
        lo: u64,
        hi: u64,
        pace: &mut dyn FnMut() -> bool,
    ) -> io::Result<Option<HistoryFile>> {
        let sources = inputs.iter().cloned().map(Source::File).collect();
        let mut sink = FileSink::create(&self.cfg.dir, first)?;
        for batch in Merge::new(sources, Range::ALL, scan::BATCH_ROWS * 2) {
            let written = batch.and_then(|b| sink.write(&b));
            if let Err(e) = written {
                sink.abandon();
                return Err(e);
            }
            if !pace() {
                sink.abandon();
                return Ok(None);
            }
        }
        let Some(written) = sink.finish()? else {
            return Ok(None);
        };
        self.pause(PausePoint::Written);
        if !inputs.iter().all(|f| self.lock().manifest.contains(f)) {
            written.discard();
            return Ok(None);
        }
        let file = written.publish(lo, hi)?;
        self.pause(PausePoint::Renamed);
        self.lock().manifest.replace(inputs, Some(file.clone()));
        self.compactions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(file))
    }

    /// One pass: every run [`plan`] picks now, merged. Returns how many.
    pub fn compact_now(
        &self,
        cfg: &CompactionConfig,
        pace: &mut dyn FnMut() -> bool,
    ) -> io::Result<usize> {
        let cfg = CompactionConfig {
            max_span: cfg.max_span.min(self.cfg.retention_age / 4),
            ..cfg.clone()
        };
        let files = self.files();
        let mut done = 0;
        for run in plan(&files, &cfg) {
            let result = self.compact(&run, pace);
            // A damaged input: set aside, and the other hours' runs go on
            // without it (an error opening it may pass: the pass stops and
            // tries again).
            if let Err(e) = &result
                && let Some(bad) = scan::ReadError::of(e)
                    .filter(|r| r.damaged && run.iter().any(|f| f.path == r.path))
            {
                self.set_aside(bad);
                continue;
            }
            match result? {
                Some(f) => {
                    log::info!(
                        "history: compacted {} file(s) into {}",
                        run.len(),
                        f.path.display()
                    );
                    done += 1;
                }
                None => return Ok(done),
            }
        }
        Ok(done)
    }
}

/// The background compaction thread.
pub struct Compactor {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl Compactor {
    /// Starts compacting `history` every `cfg.interval`; `busy` tells when
    /// the writer has a backlog (compaction then waits).
    pub fn start(
        history: Arc<History>,
        cfg: CompactionConfig,
        busy: Box<dyn Fn() -> bool + Send + Sync>,
    ) -> io::Result<Compactor> {
        let stop = Arc::new(Stop::default());
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("history-compact".into())
            .spawn(move || {
                while !s.wait(cfg.interval) {
                    let mut throttle = Throttle {
                        busy: &*busy,
                        stop: &s,
                        since: Instant::now(),
                    };
                    if let Err(e) = history.compact_now(&cfg, &mut || throttle.pace()) {
                        log::error!(
                            "history: compaction in {} failed (files left as they were): {e}",
                            history.config().dir.display()
                        );
                    }
                }
            })?;
        Ok(Compactor {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (a compaction in progress is abandoned) and waits.
    pub fn stop(mut self) {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.stop.set();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::files;
    use super::*;

    fn file(dir: &str, lo: u64, hi: u64, bytes: u64) -> HistoryFile {
        HistoryFile {
            first: lo as i64,
            last: hi as i64,
            path: Path::new(dir).join(files::file_name(lo as i64, hi as i64, lo, hi)),
            bytes,
            lo,
            hi,
        }
    }

    #[test]
    fn runs_of_small_neighbours_up_to_the_target() {
        let cfg = CompactionConfig {
            small_bytes: 10,
            target_bytes: 20,
            max_inputs: 3,
            ..CompactionConfig::default()
        };
        let files = [
            file("/h/a", 1, 1, 5),
            file("/h/a", 2, 2, 5),
            file("/h/a", 3, 3, 50), // large: ends the run
            file("/h/a", 4, 4, 5),
            file("/h/a", 6, 6, 5),
            file("/h/a", 7, 7, 5),
            file("/h/a", 8, 8, 5), // max_inputs: a new run
            file("/h/a", 9, 9, 9),
            file("/h/b", 5, 5, 5), // alone in its directory
        ];
        let runs: Vec<Vec<u64>> = plan(&files, &cfg)
            .iter()
            .map(|r| r.iter().map(|f| f.lo).collect())
            .collect();
        assert_eq!(runs, [vec![1, 2], vec![4, 6, 7], vec![8, 9]]);
    }

    #[test]
    fn a_run_never_covers_a_file_it_does_not_merge() {
        let cfg = CompactionConfig {
            small_bytes: 10,
            ..CompactionConfig::default()
        };
        // Two files of an older version with the same sequence number, one
        // of them large: merging the small one would name a range that
        // also covers the large one.
        let mut files = vec![
            file("/h/a", 0, 0, 50),
            file("/h/a", 0, 0, 5),
            file("/h/a", 1, 1, 5),
        ];
        files[0].path = Path::new("/h/a").join("large");
        assert!(plan(&files, &cfg).is_empty());
        // Both small: merged together.
        files[0].bytes = 5;
        let runs = plan(&files, &cfg);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].len(), 3);
    }

    /// Retention deletes whole files: a file that kept taking the newest
    /// rows would never be old enough to go, and its oldest rows would stay.
    #[test]
    fn a_run_spans_at_most_max_span_of_time() {
        let cfg = CompactionConfig {
            small_bytes: 10,
            max_span: Duration::from_nanos(100),
            ..CompactionConfig::default()
        };
        let at = |lo: u64, first: i64, last: i64| HistoryFile {
            first,
            last,
            ..file("/h/a", lo, lo, 5)
        };
        let files = [
            at(1, 0, 40),
            at(2, 41, 100),  // 0..=100: fits exactly
            at(3, 101, 150), // would span 150: a new run
            at(4, 151, 160),
            at(5, 161, 300), // 101..=300 is 199: alone
        ];
        let runs: Vec<Vec<u64>> = plan(&files, &cfg)
            .iter()
            .map(|r| r.iter().map(|f| f.lo).collect())
            .collect();
        assert_eq!(runs, [vec![1, 2], vec![3, 4]]);
    }

    #[test]
    fn pause_points_parse() {
        assert_eq!("renamed".parse(), Ok(PausePoint::Renamed));
        assert_eq!(
            "later".parse::<PausePoint>(),
            Err(r#""later": the pause points are written, renamed, removed-one"#.to_string())
        );
    }
}
