//! Rows in memory, not yet in a file: Arrow batches grouped by hour into
//! segments. A segment is open (still growing) until it is sealed for
//! writing; it leaves memory in the same step its file joins the manifest
//! ([`crate::history`]), so a reader sees its rows once. A write that fails
//! leaves the segment in memory, failed, and the next seal takes it again.

use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::{
    concat_batches, filter_record_batch, sort_to_indices, take_record_batch,
};
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;

use super::files::hour_index;
use super::schema::{self, Rec};

/// Rows of one hour in memory.
#[derive(Debug, Clone)]
pub struct Segment {
    pub id: u64,
    pub hour: i64,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub state: SegmentState,
}

/// Where a segment is on its way to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// New rows of its hour join it.
    Open,
    /// Taken by a writer.
    Writing,
    /// Its write failed: the next seal takes it again.
    Failed,
}

/// A flow taken one at a time (see [`Recent::stage`]).
type Staged = (i64, Arc<GetFlowsResponse>);

/// Every row in memory.
#[derive(Default)]
pub struct Recent {
    /// Flows added one by one, turned into a batch when read or sealed.
    staged: Vec<Staged>,
    segments: Vec<Segment>,
    next_id: u64,
}

/// `responses` (flows only) at their times as one batch.
pub fn to_batch(responses: &[Staged]) -> RecordBatch {
    let recs: Vec<Rec> = responses
        .iter()
        .filter_map(|(time, r)| match &r.response_types {
            Some(ResponseTypes::Flow(f)) => Some(Rec {
                node: if f.node_name.is_empty() {
                    &r.node_name
                } else {
                    &f.node_name
                },
                time: *time,
                flow: f,
            }),
            _ => None,
        })
        .collect();
    schema::to_batch(&recs)
}

/// `batch` split by hour: `(hour, rows of that hour)`, hours in order of
/// first appearance.
fn by_hour(batch: RecordBatch) -> Vec<(i64, RecordBatch)> {
    let Some(times) = schema::times(&batch) else {
        return Vec::new();
    };
    if times.is_empty() {
        return Vec::new();
    }
    let first = hour_index(times.value(0));
    if times.values().iter().all(|t| hour_index(*t) == first) {
        return vec![(first, batch)];
    }
    let mut hours: Vec<i64> = Vec::new();
    for t in times.values().iter() {
        let h = hour_index(*t);
        if !hours.contains(&h) {
            hours.push(h);
        }
    }
    hours
        .into_iter()
        .map(|h| {
            let mask: BooleanArray = times
                .values()
                .iter()
                .map(|t| Some(hour_index(*t) == h))
                .collect();
            let part = filter_record_batch(&batch, &mask).expect("a mask of the batch's length");
            (h, part)
        })
        .collect()
}

/// Whether the rows of `batches`, in order, are sorted by time.
pub fn is_time_ordered(batches: &[RecordBatch]) -> bool {
    let mut last = i64::MIN;
    for b in batches {
        let Some(times) = schema::times(b) else {
            continue;
        };
        for &t in times.values().iter() {
            if t < last {
                return false;
            }
            last = t;
        }
    }
    true
}

/// The rows of `batches` sorted by time: as they are when already in
/// order, else one sorted batch.
pub fn in_time_order(batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    if is_time_ordered(&batches) {
        return batches;
    }
    let all = concat_batches(&schema::schema(), &batches).expect("batches of the history schema");
    let times = all.column_by_name("time").expect("a time column");
    // Not stable: rows of one time may swap (a denial's PolicyVerdict and
    // Drop: the graph pairs them in either order).
    let order = sort_to_indices(times, None, None).expect("timestamps sort");
    vec![take_record_batch(&all, &order).expect("indices of the batch")]
}

impl Recent {
    /// Adds one flow at `time`; it joins a segment when read or sealed.
    pub fn stage(&mut self, time: i64, r: Arc<GetFlowsResponse>) {
        self.staged.push((time, r));
    }

    fn unstage(&mut self) {
        if !self.staged.is_empty() {
            let batch = to_batch(&std::mem::take(&mut self.staged));
            self.add(batch);
        }
    }

    /// Adds the rows of `batch` to the open segment of their hour.
    pub fn add(&mut self, batch: RecordBatch) {
        for (hour, part) in by_hour(batch) {
            let rows = part.num_rows();
            match self
                .segments
                .iter_mut()
                .find(|s| s.hour == hour && s.state == SegmentState::Open)
            {
                Some(s) => {
                    s.batches.push(part);
                    s.rows += rows;
                }
                None => {
                    self.segments.push(Segment {
                        id: self.next_id,
                        hour,
                        batches: vec![part],
                        rows,
                        state: SegmentState::Open,
                    });
                    self.next_id += 1;
                }
            }
        }
    }

    /// Rows in memory, staged included.
    pub fn rows(&self) -> usize {
        self.staged.len() + self.segments.iter().map(|s| s.rows).sum::<usize>()
    }

    /// Rows that the next seal takes whatever the retry wait: staged and
    /// open ones. Rows whose write failed are not counted: they wait for
    /// their own time, and counting them would seal every chunk that comes
    /// meanwhile as a file of its own.
    pub fn open_rows(&self) -> usize {
        self.staged.len()
            + self
                .segments
                .iter()
                .filter(|s| s.state == SegmentState::Open)
                .map(|s| s.rows)
                .sum::<usize>()
    }

    /// Takes every segment out (the writer has stopped).
    pub fn take_all(&mut self) -> Vec<Segment> {
        self.unstage();
        std::mem::take(&mut self.segments)
    }

    /// Seals the open segments (and the staged flows), and those whose
    /// write failed when `retry` says so, and returns them, now being
    /// written.
    pub fn seal(&mut self, retry: bool) -> Vec<Segment> {
        self.unstage();
        let mut out = Vec::new();
        for s in &mut self.segments {
            let due = match s.state {
                SegmentState::Open => true,
                SegmentState::Failed => retry,
                SegmentState::Writing => false,
            };
            if due {
                s.state = SegmentState::Writing;
                out.push(s.clone());
            }
        }
        out
    }

    /// Removes a written segment.
    pub fn remove(&mut self, id: u64) {
        self.segments.retain(|s| s.id != id);
    }

    /// Marks a segment whose write failed: it stays in memory.
    pub fn failed(&mut self, id: u64) {
        if let Some(s) = self.segments.iter_mut().find(|s| s.id == id) {
            s.state = SegmentState::Failed;
        }
    }

    /// Drops the oldest failed segments while more than `max_rows` rows are
    /// in memory (writes keep failing); returns them to be counted as lost.
    pub fn shed(&mut self, max_rows: usize) -> Vec<Segment> {
        let mut gone = Vec::new();
        while self.rows() > max_rows {
            match self
                .segments
                .iter()
                .position(|s| s.state == SegmentState::Failed)
            {
                Some(i) => gone.push(self.segments.remove(i)),
                None => break,
            }
        }
        gone
    }

    /// Every row in memory, as batches (a copy of references, not of rows).
    pub fn batches(&mut self) -> Vec<RecordBatch> {
        self.unstage();
        self.segments
            .iter()
            .flat_map(|s| s.batches.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use observer_proto::flow::Flow;

    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    /// A flow of node `n1` at `t` with UUID `uuid`, staged.
    pub(crate) fn staged(uuid: String, t: i64) -> (i64, Arc<GetFlowsResponse>) {
        let r = GetFlowsResponse {
            node_name: "n1".into(),
            response_types: Some(ResponseTypes::Flow(Flow {
                uuid,
                ..Default::default()
            })),
            ..Default::default()
        };
        (t, Arc::new(r))
    }

    fn flow(t: i64) -> (i64, Arc<GetFlowsResponse>) {
        staged(format!("u{t}"), t)
    }

    fn times(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| schema::times(b).unwrap().values().to_vec())
            .collect()
    }

    #[test]
    fn rows_group_by_hour_and_seal_once() {
        let mut r = Recent::default();
        let t = 100 * HOUR;
        r.add(to_batch(&[flow(t), flow(t + HOUR), flow(t + 1)]));
        r.stage(t + 2, flow(t + 2).1);
        assert_eq!((r.rows(), r.open_rows()), (4, 4));
        let sealed = r.seal(true);
        let got: Vec<(i64, Vec<i64>)> =
            sealed.iter().map(|s| (s.hour, times(&s.batches))).collect();
        assert_eq!(got, [(100, vec![t, t + 1, t + 2]), (101, vec![t + HOUR])]);
        assert_eq!(r.open_rows(), 0);
        r.add(to_batch(&[flow(t + 3)]));
        assert_eq!(r.seal(true).len(), 1, "only the new segment");
        r.remove(sealed[0].id);
        r.failed(sealed[1].id);
        assert_eq!(times(&r.batches()), [t + HOUR, t + 3]);
        let again = r.seal(true);
        assert_eq!(again.len(), 1, "the failed one again");
        assert_eq!(again[0].id, sealed[1].id);
    }

    #[test]
    fn late_rows_are_sorted_before_writing() {
        let batches = vec![to_batch(&[flow(5), flow(9)]), to_batch(&[flow(7), flow(9)])];
        assert!(!is_time_ordered(&batches));
        assert_eq!(times(&in_time_order(batches)), [5, 7, 9, 9]);
        let sorted = vec![to_batch(&[flow(1)]), to_batch(&[flow(1), flow(2)])];
        assert_eq!(in_time_order(sorted.clone()), sorted);
    }

    #[test]
    fn failed_rows_are_shed_oldest_first_past_the_limit() {
        let mut r = Recent::default();
        r.add(to_batch(&[flow(1), flow(2)]));
        let a = r.seal(true);
        r.add(to_batch(&[flow(3)]));
        let b = r.seal(true);
        r.failed(a[0].id);
        r.failed(b[0].id);
        r.add(to_batch(&[flow(4)]));
        let gone = r.shed(2);
        assert_eq!(gone.len(), 1);
        assert_eq!(times(&gone[0].batches), [1, 2]);
        assert_eq!(times(&r.batches()), [3, 4]);
        assert_eq!(r.shed(0).len(), 1, "open rows stay");
        assert_eq!(r.rows(), 1);
    }
}
