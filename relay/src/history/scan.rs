//! Rows of a time range in time order, with bounded memory whatever the
//! range: what GetFlows with `since` and compaction read.
//!
//! Every file holds rows of one hour sorted by time (the writer sorts each
//! batch, compaction merges in order). A [`Merge`] opens a file only when
//! the merged order reaches its first row, reads only the row groups whose
//! time statistics meet the range, in batches, and interleaves the files
//! that overlap (late flows): memory is a few batches per overlapping file.
//! [`last`] answers "the last N that match" from the newest files backwards
//! and stops as soon as older rows cannot be among them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::io;
use std::path::PathBuf;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::parquet::file::statistics::Statistics;
use observer_proto::observer::GetFlowsResponse;

use super::files::HistoryFile;
use super::{read, recent, schema};

/// Rows per batch read.
pub const BATCH_ROWS: usize = 4096;
/// A run of at least this many rows from one source is passed on as a
/// slice of its batch, without a copy.
const SLICE_MIN: usize = 256;

/// Flow times from `from` to `to`, both included (ns since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
}

impl Range {
    pub const ALL: Range = Range {
        from: i64::MIN,
        to: i64::MAX,
    };

    fn meets(&self, first: i64, last: i64) -> bool {
        first <= self.to && last >= self.from
    }
}

/// Where rows come from: a file, or rows in memory (any order).
#[derive(Clone)]
pub enum Source {
    File(HistoryFile),
    Memory(Vec<RecordBatch>),
}

impl Source {
    /// Time of its first and last row (`None`: no rows).
    pub(super) fn bounds(&self) -> Option<(i64, i64)> {
        match self {
            Source::File(f) => Some((f.first, f.last)),
            Source::Memory(batches) => {
                let mut b: Option<(i64, i64)> = None;
                for t in batches.iter().filter_map(schema::times) {
                    for &v in t.values().iter() {
                        b = Some(b.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
                    }
                }
                b
            }
        }
    }
}

/// The sources of a snapshot: its files and its rows in memory.
pub fn sources(files: Vec<HistoryFile>, recent: Vec<RecordBatch>) -> Vec<Source> {
    let mut s: Vec<Source> = files.into_iter().map(Source::File).collect();
    if !recent.is_empty() {
        s.push(Source::Memory(recent));
    }
    s
}

/// A file whose content could not be decoded.
pub(super) fn err(path: &std::path::Path, e: impl std::fmt::Display) -> io::Error {
    read_error(path, e, true)
}

/// A file that could not be opened (its content unknown: the error may
/// pass, as too many open files does).
fn open_err(path: &std::path::Path, e: io::Error) -> io::Error {
    read_error(path, e, false)
}

fn read_error(path: &std::path::Path, e: impl std::fmt::Display, damaged: bool) -> io::Error {
    io::Error::other(ReadError {
        path: path.to_path_buf(),
        why: e.to_string(),
        damaged,
    })
}

/// A history file that could not be read, inside the [`io::Error`]s of a
/// scan: which file it was ([`ReadError::of`]).
#[derive(Debug)]
pub struct ReadError {
    pub path: std::path::PathBuf,
    pub why: String,
    /// Its content could not be decoded (not an error opening it).
    pub damaged: bool,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading {}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for ReadError {}

impl ReadError {
    /// The read error inside `e`, if it is one.
    pub fn of(e: &io::Error) -> Option<&ReadError> {
        e.get_ref()?.downcast_ref()
    }
}

/// The `time` statistics of a row group: `(min, max)`.
fn row_group_times(meta: &ParquetMetaData, rg: usize) -> Option<(i64, i64)> {
    let group = meta.row_group(rg);
    let col = group
        .columns()
        .iter()
        .find(|c| c.column_path().string() == "time")?;
    match col.statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

type Batches = Box<dyn Iterator<Item = io::Result<RecordBatch>> + Send>;

/// Row groups of a file with their `time` statistics (`None` without).
pub(super) type Groups = Vec<(usize, Option<(i64, i64)>)>;

/// A reader of `path` and the row groups `pick` keeps (given their time
/// statistics).
pub(super) fn read_file(
    path: &PathBuf,
    batch_rows: usize,
    pick: impl Fn(Option<(i64, i64)>) -> bool,
) -> io::Result<(Groups, ParquetRecordBatchReaderBuilder<File>)> {
    let file = File::open(path).map_err(|e| open_err(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| err(path, e))?
        .with_batch_size(batch_rows);
    let meta = builder.metadata().clone();
    let groups = (0..meta.num_row_groups())
        .map(|rg| (rg, row_group_times(&meta, rg)))
        .filter(|(_, t)| pick(*t))
        .collect();
    Ok((groups, builder))
}

fn open_forward(source: Source, range: Range, batch_rows: usize) -> io::Result<Batches> {
    match source {
        Source::Memory(batches) => {
            let rows = recent::in_time_order(batches);
            Ok(Box::new(rows.into_iter().map(Ok)))
        }
        // Removed from the disk by hand: its rows are gone; the others are
        // still read (the next retention leaves it out, saying so).
        Source::File(f) if !f.path.exists() => Ok(Box::new(std::iter::empty())),
        Source::File(f) => {
            let (groups, builder) = read_file(&f.path, batch_rows, |t| {
                t.is_none_or(|(lo, hi)| range.meets(lo, hi))
            })?;
            let path = f.path.clone();
            let reader = builder
                .with_row_groups(groups.into_iter().map(|(rg, _)| rg).collect())
                .build()
                .map_err(|e| err(&path, e))?;
            Ok(Box::new(reader.map(move |b| {
                b.and_then(schema::conform).map_err(|e| err(&path, e))
            })))
        }
    }
}

/// One source being read: its current batch and row.
struct Cursor {
    batches: Batches,
    batch: RecordBatch,
    times: ScalarBuffer<i64>,
    row: usize,
    /// This output's index of `batch`, if it has one.
    slot: Option<usize>,
    range: Range,
}

impl Cursor {
    /// A cursor at its first row in range, `None` when it has none.
    fn open(batches: Batches, range: Range) -> io::Result<Option<Cursor>> {
        let mut c = Cursor {
            batches,
            batch: RecordBatch::new_empty(schema::schema()),
            times: ScalarBuffer::from(Vec::<i64>::new()),
            row: 0,
            slot: None,
            range,
        };
        Ok(c.settle()?.then_some(c))
    }

    /// Moves to the next row in range, loading batches; false at the end.
    fn settle(&mut self) -> io::Result<bool> {
        loop {
            if self.row < self.times.len() {
                let t = self.times[self.row];
                if t > self.range.to {
                    return Ok(false);
                }
                if t >= self.range.from {
                    return Ok(true);
                }
                // Sorted: skip to the first row at or after `from`.
                self.row += self.times[self.row..].partition_point(|t| *t < self.range.from);
                continue;
            }
            match self.batches.next() {
                None => return Ok(false),
                Some(b) => {
                    let b = b?;
                    self.times = schema::times(&b)
                        .map(|t| t.values().clone())
                        .unwrap_or_else(|| ScalarBuffer::from(Vec::<i64>::new()));
                    self.batch = b;
                    self.row = 0;
                    self.slot = None;
                }
            }
        }
    }

    fn head(&self) -> i64 {
        self.times[self.row]
    }

    /// Rows from the current one with a time below `limit` (at least one),
    /// within the batch and the range, at most `max`.
    fn run(&self, limit: i64, max: usize) -> usize {
        let rest = &self.times[self.row..];
        let in_range = rest.partition_point(|t| *t <= self.range.to);
        let below = rest[..in_range].partition_point(|t| *t < limit);
        below.max(1).min(in_range).min(max)
    }
}

/// The rows of several sources in time order (ties: the source that
/// started first), in batches of at most `batch_rows`.
pub struct Merge {
    /// Not opened yet, by first row time.
    pending: VecDeque<(i64, Source)>,
    open: Vec<Cursor>,
    range: Range,
    batch_rows: usize,
    failed: bool,
}

impl Merge {
    pub fn new(sources: Vec<Source>, range: Range, batch_rows: usize) -> Merge {
        let mut pending: Vec<(i64, Source)> = sources
            .into_iter()
            .filter_map(|s| {
                let (first, last) = s.bounds()?;
                range.meets(first, last).then_some((first, s))
            })
            .collect();
        pending.sort_by_key(|(first, _)| *first);
        Merge {
            pending: pending.into(),
            open: Vec::new(),
            range,
            batch_rows: batch_rows.max(1),
            failed: false,
        }
    }

    fn min_head(&self) -> Option<(usize, i64)> {
        self.open
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.head()))
            .min_by_key(|(i, t)| (*t, *i))
    }

    /// Opens the sources that start before the rows at hand.
    fn open_due(&mut self) -> io::Result<()> {
        while let Some((first, _)) = self.pending.front() {
            if self.min_head().is_some_and(|(_, t)| t < *first) {
                return Ok(());
            }
            let (_, source) = self.pending.pop_front().expect("a front");
            let batches = open_forward(source, self.range, self.batch_rows)?;
            if let Some(c) = Cursor::open(batches, self.range)? {
                self.open.push(c);
            }
        }
        Ok(())
    }

    fn next_batch(&mut self) -> io::Result<Option<RecordBatch>> {
        let mut slots: Vec<RecordBatch> = Vec::new();
        let mut picks: Vec<(usize, usize)> = Vec::new();
        for c in &mut self.open {
            c.slot = None;
        }
        while picks.len() < self.batch_rows {
            self.open_due()?;
            let Some((i, _)) = self.min_head() else { break };
            // Rows before any other source's next one (on a tie, the
            // source opened first goes first).
            let limit = self
                .open
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, c)| {
                    if j > i {
                        c.head().saturating_add(1)
                    } else {
                        c.head()
                    }
                })
                .chain(self.pending.front().map(|(first, _)| *first))
                .min()
                .unwrap_or(i64::MAX);
            let c = &mut self.open[i];
            let n = c.run(limit, self.batch_rows - picks.len());
            if picks.is_empty() && (n >= SLICE_MIN || n == self.batch_rows) {
                let out = c.batch.slice(c.row, n);
                c.row += n;
                if !c.settle()? {
                    self.open.remove(i);
                }
                return Ok(Some(out));
            }
            let slot = match c.slot {
                Some(s) => s,
                None => {
                    slots.push(c.batch.clone());
                    c.slot = Some(slots.len() - 1);
                    slots.len() - 1
                }
            };
            picks.extend((c.row..c.row + n).map(|r| (slot, r)));
            c.row += n;
            if !c.settle()? {
                self.open.remove(i);
            }
        }
        if picks.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&RecordBatch> = slots.iter().collect();
        interleave_record_batch(&refs, &picks)
            .map(Some)
            .map_err(io::Error::other)
    }
}

impl Iterator for Merge {
    type Item = io::Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_batch() {
            Ok(b) => b.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Past this many rows [`last`] holds no times (8 bytes each): it counts
/// the rows it keeps in one pass and skips all but the last `n` in a
/// second, so memory stays bounded whatever `number` a client asks for.
const LAST_TIMES_MAX: usize = 1 << 20;

/// Every row in `range` that `keep` accepts, in time order, to `emit`, until
/// `emit` returns false or `stop` true (checked at each batch: the client
/// went away).
pub fn each_kept(
    sources: Vec<Source>,
    range: Range,
    keep: &mut dyn FnMut(&GetFlowsResponse) -> bool,
    stop: &dyn Fn() -> bool,
    emit: &mut dyn FnMut(GetFlowsResponse) -> bool,
) -> io::Result<()> {
    for batch in Merge::new(sources, range, BATCH_ROWS) {
        let batch = batch?;
        if stop() {
            return Ok(());
        }
        for r in read::responses(&batch) {
            if keep(&r) && !emit(r) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The newest `n` rows in `range` that `keep` accepts, oldest first, each
/// given to `emit` as it is read (`emit` returns false to stop; `stop`,
/// checked at each batch, returning true stops too: the client went away).
/// Two passes, so memory holds `n` times, not `n` flows:
/// 1. [`newest_times`]: files from the newest back, row groups from the last
///    back, and no further once the rest is older than all `n` kept: the
///    oldest time wanted and how many of its rows are;
/// 2. a [`Merge`] from that time on, in time order.
///
/// Past [`LAST_TIMES_MAX`] rows, the count and skip of [`LAST_TIMES_MAX`].
pub fn last(
    sources: Vec<Source>,
    range: Range,
    n: usize,
    keep: &mut dyn FnMut(&GetFlowsResponse) -> bool,
    emit: &mut dyn FnMut(GetFlowsResponse) -> bool,
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    last_within(sources, range, (n, LAST_TIMES_MAX), keep, emit, stop)
}

/// [`last`], holding times for at most `times_max` rows.
fn last_within(
    sources: Vec<Source>,
    range: Range,
    (n, times_max): (usize, usize),
    keep: &mut dyn FnMut(&GetFlowsResponse) -> bool,
    emit: &mut dyn FnMut(GetFlowsResponse) -> bool,
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    if n == 0 {
        return Ok(());
    }
    if n > times_max {
        let mut kept = 0usize;
        each_kept(sources.clone(), range, keep, stop, &mut |_| {
            kept += 1;
            true
        })?;
        let mut skip = kept.saturating_sub(n);
        return each_kept(sources, range, keep, stop, &mut |r| {
            if skip > 0 {
                skip -= 1;
                return true;
            }
            emit(r)
        });
    }
    let floor = newest_times(&sources, range, n, keep, stop)?;
    if stop() {
        return Ok(());
    }
    let (from, mut at_floor) = match floor {
        Some((t, count)) => (t.max(range.from), count),
        None => (range.from, usize::MAX),
    };
    let floor_time = floor.map(|(t, _)| t);
    for batch in Merge::new(sources, Range { from, to: range.to }, BATCH_ROWS) {
        let batch = batch?;
        if stop() {
            return Ok(());
        }
        let Some(times) = schema::times(&batch) else {
            continue;
        };
        let times = times.values().clone();
        for (row, response) in read::responses(&batch).into_iter().enumerate() {
            let at = Some(times[row]) == floor_time;
            if at && at_floor == 0 {
                continue;
            }
            if !keep(&response) {
                continue;
            }
            if at {
                at_floor -= 1;
            }
            if !emit(response) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Pass 1 of [`last`]: the times of the newest `n` rows in `range` that
/// `keep` accepts; `None` when there are fewer (take them all), else the
/// oldest of those times and how many of the `n` have it.
fn newest_times(
    sources: &[Source],
    range: Range,
    n: usize,
    keep: &mut dyn FnMut(&GetFlowsResponse) -> bool,
    stop: &dyn Fn() -> bool,
) -> io::Result<Option<(i64, usize)>> {
    let mut by_last: Vec<((i64, i64), &Source)> = sources
        .iter()
        .filter_map(|s| Some((s.bounds()?, s)))
        .filter(|((first, last), _)| range.meets(*first, *last))
        .collect();
    by_last.sort_by_key(|((_, last), _)| Reverse(*last));
    let mut heap: BinaryHeap<Reverse<i64>> = BinaryHeap::new();
    // The oldest time still wanted: past `n` kept, rows must be newer.
    let floor = |heap: &BinaryHeap<Reverse<i64>>| {
        (heap.len() >= n).then(|| heap.peek().map_or(i64::MIN, |t| t.0))
    };
    let mut offer = |heap: &mut BinaryHeap<Reverse<i64>>, batch: &RecordBatch| {
        let Some(times) = schema::times(batch) else {
            return;
        };
        let times = times.values().clone();
        for (row, response) in read::responses(batch).into_iter().enumerate() {
            let t = times[row];
            if t < range.from || t > range.to || floor(heap).is_some_and(|f| t < f) {
                continue;
            }
            if !keep(&response) {
                continue;
            }
            heap.push(Reverse(t));
            if heap.len() > n {
                heap.pop();
            }
        }
    };
    for ((_, last), s) in by_last {
        if floor(&heap).is_some_and(|f| last < f) || stop() {
            break;
        }
        match s {
            Source::Memory(batches) => {
                for b in batches {
                    if stop() {
                        return Ok(None);
                    }
                    offer(&mut heap, b);
                }
            }
            Source::File(f) if !f.path.exists() => {} // removed by hand, as above
            Source::File(f) => {
                let (groups, builder) = read_file(&f.path, BATCH_ROWS, |t| {
                    t.is_none_or(|(lo, hi)| range.meets(lo, hi))
                })?;
                let meta = builder.metadata().clone();
                drop(builder);
                for (rg, times) in groups.into_iter().rev() {
                    if let (Some(f), Some((_, hi))) = (floor(&heap), times)
                        && hi < f
                    {
                        continue;
                    }
                    if stop() {
                        return Ok(None);
                    }
                    let file = File::open(&f.path).map_err(|e| open_err(&f.path, e))?;
                    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
                        file,
                        datafusion::parquet::arrow::arrow_reader::ArrowReaderMetadata::try_new(
                            meta.clone(),
                            Default::default(),
                        )
                        .map_err(|e| err(&f.path, e))?,
                    )
                    .with_batch_size(BATCH_ROWS)
                    .with_row_groups(vec![rg])
                    .build()
                    .map_err(|e| err(&f.path, e))?;
                    for b in reader {
                        if stop() {
                            return Ok(None);
                        }
                        let b = b.map_err(|e| err(&f.path, e))?;
                        let b = schema::conform(b).map_err(|e| err(&f.path, e))?;
                        offer(&mut heap, &b);
                    }
                }
            }
        }
    }
    let Some(oldest) = floor(&heap) else {
        return Ok(None);
    };
    let at_oldest = heap.iter().filter(|t| t.0 == oldest).count();
    Ok(Some((oldest, at_oldest)))
}

#[cfg(test)]
mod tests {
    use observer_proto::observer::get_flows_response::ResponseTypes;

    use super::*;
    use crate::history::encode;
    use crate::history::recent::to_batch;

    fn rows(times: &[i64], tag: &str) -> RecordBatch {
        let staged: Vec<_> = times
            .iter()
            .map(|t| crate::history::recent::tests::staged(format!("{tag}{t}"), *t))
            .collect();
        to_batch(&staged)
    }

    fn file(root: &std::path::Path, seq: u64, times: &[i64], tag: &str) -> Source {
        let w = encode::write_file(root, &[rows(times, tag)], 1).unwrap();
        Source::File(w.publish(seq, seq).unwrap())
    }

    fn uuids(batches: &[RecordBatch]) -> Vec<String> {
        batches
            .iter()
            .flat_map(read::flows)
            .map(|f| f.uuid)
            .collect()
    }

    const T: i64 = 1_709_211_600_000_000_000;

    #[test]
    fn overlapping_files_and_memory_merge_in_time_order_within_the_range() {
        let root = test_support::scratch::ScratchDir::new("history-merge");
        let p = root.path();
        let sources = vec![
            file(p, 1, &[T, T + 2, T + 4, T + 6], "a"),
            file(p, 2, &[T + 1, T + 5], "b"),
            file(p, 3, &[T + 10, T + 11], "c"),
            Source::Memory(vec![rows(&[T + 12, T + 3], "m")]),
        ];
        let all: Vec<RecordBatch> = Merge::new(sources, Range::ALL, 3)
            .collect::<io::Result<_>>()
            .unwrap();
        assert!(all.iter().all(|b| b.num_rows() <= 3));
        let want: Vec<String> = [
            "a0", "b1", "a2", "m3", "a4", "b5", "a6", "c10", "c11", "m12",
        ]
        .iter()
        .map(|s| {
            let (tag, n) = s.split_at(1);
            format!("{tag}{}", T + n.parse::<i64>().unwrap())
        })
        .collect();
        assert_eq!(uuids(&all), want);

        let sources = vec![
            file(p, 4, &[T, T + 2, T + 4, T + 6], "a"),
            file(p, 5, &[T + 10, T + 11], "c"),
        ];
        let range = Range {
            from: T + 3,
            to: T + 10,
        };
        let some: Vec<RecordBatch> = Merge::new(sources, range, 100)
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(
            uuids(&some),
            [
                format!("a{}", T + 4),
                format!("a{}", T + 6),
                format!("c{}", T + 10)
            ]
        );
    }

    #[test]
    fn long_runs_pass_as_slices() {
        let root = test_support::scratch::ScratchDir::new("history-slices");
        let times: Vec<i64> = (0..1000).map(|i| T + i).collect();
        let sources = vec![file(root.path(), 1, &times, "a")];
        let out: Vec<RecordBatch> = Merge::new(sources, Range::ALL, 600)
            .collect::<io::Result<_>>()
            .unwrap();
        let sizes: Vec<usize> = out.iter().map(|b| b.num_rows()).collect();
        assert_eq!(sizes, [600, 400]);
    }

    #[test]
    fn the_last_n_that_match_come_from_the_newest_rows() {
        let root = test_support::scratch::ScratchDir::new("history-last");
        let p = root.path();
        let sources = vec![
            file(p, 1, &[T, T + 1, T + 2], "a"),
            file(p, 2, &[T + 3, T + 4, T + 8], "b"),
            Source::Memory(vec![rows(&[T + 6, T + 5], "m")]),
        ];
        let uuid = |r: &GetFlowsResponse| match &r.response_types {
            Some(ResponseTypes::Flow(f)) => f.uuid.clone(),
            _ => String::new(),
        };
        let mut seen = Vec::new();
        let mut keep = |r: &GetFlowsResponse| {
            seen.push(uuid(r));
            !uuid(r).ends_with(&(T + 5).to_string())
        };
        let mut got = Vec::new();
        let range = Range {
            from: T + 1,
            to: T + 7,
        };
        let mut emit = |r: GetFlowsResponse| {
            got.push(uuid(&r));
            true
        };
        last(sources.clone(), range, 3, &mut keep, &mut emit, &|| false).unwrap();
        assert_eq!(
            got,
            [
                format!("b{}", T + 3),
                format!("b{}", T + 4),
                format!("m{}", T + 6)
            ]
        );
        assert!(
            !seen.iter().any(|u| u.starts_with('a')),
            "file a is not read: {seen:?}"
        );

        // Past the times it may hold: the same rows, counted and skipped.
        let mut counted = Vec::new();
        let mut emit = |r: GetFlowsResponse| {
            counted.push(uuid(&r));
            true
        };
        let mut keep = |r: &GetFlowsResponse| !uuid(r).ends_with(&(T + 5).to_string());
        last_within(
            sources.clone(),
            range,
            (3, 2),
            &mut keep,
            &mut emit,
            &|| false,
        )
        .unwrap();
        assert_eq!(counted, got);

        // A client gone: no row is looked at after the first batch.
        let mut looked = 0;
        let mut keep = |_: &GetFlowsResponse| {
            looked += 1;
            false
        };
        for times_max in [2, 3] {
            last_within(
                sources.clone(),
                range,
                (3, times_max),
                &mut keep,
                &mut |_| true,
                &|| true,
            )
            .unwrap();
        }
        each_kept(sources, range, &mut keep, &|| true, &mut |_| true).unwrap();
        assert_eq!(looked, 0);
    }

    /// Rows of the oldest time wanted: only as many as the newest `n` hold,
    /// and `emit` saying stop stops the read.
    #[test]
    fn the_last_n_take_only_their_share_of_the_oldest_time() {
        let root = test_support::scratch::ScratchDir::new("history-last-ties");
        let p = root.path();
        let written: Vec<HistoryFile> = [
            file(p, 1, &[T, T + 1, T + 1, T + 1], "a"),
            file(p, 2, &[T + 2, T + 3], "b"),
        ]
        .into_iter()
        .map(|s| match s {
            Source::File(f) => f,
            Source::Memory(_) => unreachable!(),
        })
        .collect();
        let sources = || written.iter().cloned().map(Source::File).collect();
        let uuids_within = |n: usize, stop_after: usize, times_max: usize| {
            let mut got = Vec::new();
            let mut emit = |r: GetFlowsResponse| {
                if let Some(ResponseTypes::Flow(f)) = r.response_types {
                    got.push(f.uuid);
                }
                got.len() < stop_after
            };
            let all = Range::ALL;
            last_within(
                sources(),
                all,
                (n, times_max),
                &mut |_| true,
                &mut emit,
                &|| false,
            )
            .unwrap();
            got
        };
        let uuids = |n: usize, stop_after: usize| {
            let got = uuids_within(n, stop_after, LAST_TIMES_MAX);
            assert_eq!(got, uuids_within(n, stop_after, 1), "counted and skipped");
            got
        };
        let one = format!("a{}", T + 1);
        assert_eq!(
            uuids(4, usize::MAX),
            [
                one.clone(),
                one.clone(),
                format!("b{}", T + 2),
                format!("b{}", T + 3)
            ]
        );
        assert_eq!(uuids(9, usize::MAX).len(), 6, "fewer than n: all of them");
        assert_eq!(uuids(4, 2), [one.clone(), one]);
    }

    #[test]
    fn a_broken_file_is_an_error() {
        let root = test_support::scratch::ScratchDir::new("history-broken");
        let Source::File(f) = file(root.path(), 1, &[T], "a") else {
            unreachable!()
        };
        std::fs::write(&f.path, b"not parquet").unwrap();
        let mut m = Merge::new(vec![Source::File(f.clone())], Range::ALL, 10);
        let e = m.next().unwrap().unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("reading {}: ", f.path.display())),
            "{e}"
        );
        assert!(m.next().is_none());
    }
}
