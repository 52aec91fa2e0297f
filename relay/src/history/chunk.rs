//! The chunk of flows the writer's `history-rows` thread gathers before they
//! become one Arrow batch in memory: [`CHUNK_FLOWS`] flows (or the rows the
//! open file still takes), or, when flows come slower, those that came
//! within [`COALESCE`] of the first.
//!
//! Taking whatever had arrived made, at a few thousand flows a second, one
//! batch per flow: a one-row batch holds about 6 KB of Arrow buffers (3,600
//! flows/s kept 113 MB in memory for a 5 s flush), and encoding thousands
//! of them took ~50 µs a flow. With `COALESCE` a 5 s flush holds at most 50
//! batches; rows reach SQL up to `COALESCE` later.
//!
//! The clock is a parameter (`Instant` in the writer, flow time in the
//! `history_compaction` benchmark), so the rule is the same in both.

use std::ops::Add;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use observer_proto::observer::GetFlowsResponse;

use super::recent;

/// Flows turned into one Arrow batch at a time.
pub const CHUNK_FLOWS: usize = 8192;

/// How long a chunk waits for more flows before it becomes a batch.
pub const COALESCE: Duration = Duration::from_millis(100);

/// Flows (with their times, ns since the epoch) waiting to become a batch.
pub struct Chunk<T> {
    flows: Vec<(i64, Arc<GetFlowsResponse>)>,
    /// When the first flow was seen (the first [`Chunk::ready`] with it).
    since: Option<T>,
}

impl<T: Copy + Ord + Add<Duration, Output = T>> Default for Chunk<T> {
    fn default() -> Self {
        Chunk {
            flows: Vec::with_capacity(CHUNK_FLOWS),
            since: None,
        }
    }
}

impl<T: Copy + Ord + Add<Duration, Output = T>> Chunk<T> {
    pub fn push(&mut self, time: i64, r: Arc<GetFlowsResponse>) {
        self.flows.push((time, r));
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// When the chunk goes in whatever it holds, once it holds a flow.
    pub fn due(&self) -> Option<T> {
        self.since.map(|t| t + COALESCE)
    }

    /// Whether the chunk goes in at `now`: it holds `room` flows, or its
    /// first flow was seen `COALESCE` ago. An empty chunk is never ready.
    pub fn ready(&mut self, room: usize, now: T) -> bool {
        if self.flows.is_empty() {
            return false;
        }
        let since = *self.since.get_or_insert(now);
        self.flows.len() >= room || now >= since + COALESCE
    }

    /// The flows as one batch (`None` when empty); the chunk starts again.
    pub fn take(&mut self) -> Option<RecordBatch> {
        self.since = None;
        if self.flows.is_empty() {
            return None;
        }
        let batch = recent::to_batch(&self.flows);
        self.flows.clear();
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use observer_proto::flow::Flow;
    use observer_proto::observer::get_flows_response::ResponseTypes;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn flow(n: u64) -> Arc<GetFlowsResponse> {
        Arc::new(GetFlowsResponse {
            response_types: Some(ResponseTypes::Flow(Flow {
                uuid: format!("f-{n}"),
                ..Default::default()
            })),
            ..Default::default()
        })
    }

    fn uuids(batch: &RecordBatch) -> Vec<String> {
        crate::history::read::responses(batch)
            .into_iter()
            .map(|r| match r.response_types {
                Some(ResponseTypes::Flow(f)) => f.uuid,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// One flow a millisecond: the flows of 100 ms after the first become
    /// one batch, then the next chunk starts with the next flow.
    #[test]
    fn slow_flows_gather_for_coalesce_after_the_first() {
        let mut chunk = Chunk::<Duration>::default();
        let mut batches = Vec::new();
        for n in 0..250u64 {
            let now = Duration::from_secs(7) + MS * n as u32;
            chunk.push(n as i64, flow(n));
            if chunk.ready(CHUNK_FLOWS, now) {
                batches.push(chunk.take().expect("a ready chunk has flows"));
            }
        }
        assert_eq!(chunk.len(), 48, "flows 202..=249 wait");
        assert_eq!(chunk.due(), Some(Duration::from_secs(7) + MS * 302));
        let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, [101, 101], "flows 0..=100, then 101..=201");
        let first = uuids(&batches[0]);
        assert_eq!((first[0].as_str(), first[100].as_str()), ("f-0", "f-100"));
        assert_eq!(uuids(&batches[1])[0], "f-101");
    }

    #[test]
    fn a_chunk_goes_in_at_room_and_an_empty_one_never() {
        let mut chunk = Chunk::<Duration>::default();
        let now = Duration::from_secs(1);
        assert!(!chunk.ready(10, now + Duration::from_secs(60)));
        assert_eq!(chunk.due(), None);
        for n in 0..9 {
            chunk.push(n, flow(n as u64));
        }
        assert!(!chunk.ready(10, now));
        chunk.push(9, flow(9));
        assert!(chunk.ready(10, now), "10 flows fill a room of 10");
        assert_eq!(chunk.take().map(|b| b.num_rows()), Some(10));
        assert!(chunk.is_empty());
        assert_eq!(chunk.due(), None, "the next chunk's clock starts anew");
        assert!(chunk.take().is_none());
    }
}
