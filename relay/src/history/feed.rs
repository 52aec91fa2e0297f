//! The bounded queue from the merge to the history writer. The merge never
//! waits for history: when the queue is full the flow is dropped, and every
//! dropped flow is counted where a user sees it: [`Losses`] (per node and
//! second, for `observe query` and the metric
//! `observe_relay_history_flows_lost_total`), a log line at most once a
//! second, and a `LostEvent` the merge puts in the flow stream
//! ([`Feed::lost_events`]).
//!
//! The `LostEvent`'s source is `HUBBLE_RING_BUFFER`: Hubble's enum is fixed,
//! and its meaning, "a reader fell behind the flow ring buffer", is what
//! happened: the history writer is a reader of the relay's merged flows that
//! fell behind. The relay uses it for nothing else (a client that falls
//! behind gets `OBSERVER_EVENTS_QUEUE`, a probe's kernel ring
//! `PERF_EVENT_RING_BUFFER`), so a follower tells a gap in history from a
//! gap in its own stream. The response names the node; `first` and `last`
//! are the times of the first and last flow dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use observer_proto::flow::{LostEvent, LostEventSource};
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::time::{event_time, now_nanos, timestamp};

use super::losses::Losses;

/// What goes through the queue.
pub enum Item {
    Flow(Arc<GetFlowsResponse>),
    /// Write everything and stop (sent waiting for room, never dropped).
    Stop,
}

/// How often at most a drop is logged, and a `LostEvent` sent per node.
pub const REPORT_EVERY: Duration = Duration::from_millis(250);
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Drops of one node not yet reported in the stream.
#[derive(Default)]
struct Run {
    flows: u64,
    first: i64,
    last: i64,
}

#[derive(Default)]
struct Unreported {
    runs: BTreeMap<String, Run>,
    last_report: Option<Instant>,
    unlogged: u64,
    last_log: Option<Instant>,
}

/// The sending side, held by the merge.
pub struct Feed {
    tx: SyncSender<Item>,
    capacity: usize,
    /// Flows queued and flows taken by the writer.
    sent: AtomicU64,
    taken: Arc<AtomicU64>,
    losses: Arc<Losses>,
    unreported: Mutex<Unreported>,
}

/// The receiving side, held by the writer.
pub struct Intake {
    pub rx: Receiver<Item>,
    taken: Arc<AtomicU64>,
}

impl Intake {
    /// Counts `n` flows taken from the queue and added to history's rows
    /// (from then on a history snapshot has them).
    pub fn took(&self, n: usize) {
        self.taken.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A queue of `capacity` flows; drops are recorded in `losses`.
pub fn channel(capacity: usize, losses: Arc<Losses>) -> (Feed, Intake) {
    let (tx, rx) = sync_channel(capacity.max(1));
    let taken = Arc::new(AtomicU64::new(0));
    (
        Feed {
            tx,
            capacity: capacity.max(1),
            sent: AtomicU64::new(0),
            taken: taken.clone(),
            losses,
            unreported: Mutex::new(Unreported::default()),
        },
        Intake { rx, taken },
    )
}

pub(crate) fn node_of(r: &GetFlowsResponse) -> &str {
    match &r.response_types {
        Some(ResponseTypes::Flow(f)) if !f.node_name.is_empty() => &f.node_name,
        _ => &r.node_name,
    }
}

impl Feed {
    /// Queues a flow for history (other responses are not rows); a full
    /// queue drops it, counted. True when queued.
    pub fn offer(&self, r: &Arc<GetFlowsResponse>) -> bool {
        if !matches!(r.response_types, Some(ResponseTypes::Flow(_))) {
            return false;
        }
        match self.tx.try_send(Item::Flow(r.clone())) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped(r);
                false
            }
        }
    }

    fn dropped(&self, r: &GetFlowsResponse) {
        let node = node_of(r);
        let time = event_time(r)
            .unwrap_or_else(now_nanos)
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        let uuid = match &r.response_types {
            Some(ResponseTypes::Flow(f)) => f.uuid.as_str(),
            _ => "",
        };
        self.losses.record_flow(node, time, 1, uuid);
        let mut u = self.unreported.lock().unwrap_or_else(|p| p.into_inner());
        let run = super::losses::entry(&mut u.runs, node);
        if run.flows == 0 {
            (run.first, run.last) = (time, time);
        }
        run.flows += 1;
        run.first = run.first.min(time);
        run.last = run.last.max(time);
        u.unlogged += 1;
        let now = Instant::now();
        if u.last_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            log::warn!(
                "history: the writer fell behind; {} flow(s) not recorded (queue of {} full), \
                 {} since start",
                u.unlogged,
                self.capacity,
                self.losses.total_since_start()
            );
            u.unlogged = 0;
            u.last_log = Some(now);
        }
    }

    /// Flows queued since start (those dropped are not).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits, at most `limit`, until history holds the first `n` flows
    /// queued (the writer has added them to its rows); false if it did not
    /// by then.
    pub async fn holds(&self, n: u64, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.taken.load(Ordering::Relaxed) < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Flows the writer has taken (added to history's rows) since start.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Flows queued and not yet taken by the writer.
    pub fn depth(&self) -> u64 {
        self.sent
            .load(Ordering::Relaxed)
            .saturating_sub(self.taken.load(Ordering::Relaxed))
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// When [`Self::lost_events`] will have something to say, if drops wait
    /// to be reported.
    pub fn report_due(&self) -> Option<Instant> {
        let u = self.unreported.lock().unwrap_or_else(|p| p.into_inner());
        if u.runs.is_empty() {
            return None;
        }
        Some(
            u.last_report
                .map_or_else(Instant::now, |t| t + REPORT_EVERY),
        )
    }

    /// One `LostEvent` per node with drops not yet reported, at most every
    /// [`REPORT_EVERY`] (`force`: now).
    pub fn lost_events(&self, force: bool) -> Vec<GetFlowsResponse> {
        let mut u = self.unreported.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let due = force
            || u.last_report
                .is_none_or(|t| now.duration_since(t) >= REPORT_EVERY);
        if u.runs.is_empty() || !due {
            return Vec::new();
        }
        u.last_report = Some(now);
        std::mem::take(&mut u.runs)
            .into_iter()
            .map(|(node, run)| lost_event(node, run.flows, run.first, run.last))
            .collect()
    }

    /// Asks the writer to stop once it has written what is queued; waits for
    /// room in the queue, not for the writer.
    pub fn stop(&self) {
        let _ = self.tx.send(Item::Stop);
    }
}

/// A `LostEvent` (source `HUBBLE_RING_BUFFER`) for `flows` flows of `node`
/// with times from `first` to `last`.
pub fn lost_event(node: String, flows: u64, first: i64, last: i64) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: node,
        time: Some(timestamp(now_nanos())),
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: LostEventSource::HubbleRingBuffer as i32,
            num_events_lost: flows,
            cpu: None,
            first: Some(timestamp(i128::from(first))),
            last: Some(timestamp(i128::from(last))),
        })),
    }
}

#[cfg(test)]
mod tests {
    use observer_proto::flow::Flow;

    use super::*;

    fn flow(node: &str, secs: i64) -> Arc<GetFlowsResponse> {
        Arc::new(GetFlowsResponse {
            node_name: node.into(),
            time: Some(timestamp(i128::from(secs) * 1_000_000_000)),
            response_types: Some(ResponseTypes::Flow(Flow::default())),
        })
    }

    #[test]
    fn a_full_queue_drops_counts_and_reports_each_flow() {
        let dir = test_support::scratch::ScratchDir::new("history-feed");
        let losses = Arc::new(Losses::open(dir.path()).unwrap());
        let (feed, intake) = channel(2, losses.clone());
        let offered: Vec<bool> = [("a", 1), ("a", 2), ("a", 3), ("b", 4), ("a", 5)]
            .into_iter()
            .map(|(n, s)| feed.offer(&flow(n, s)))
            .collect();
        assert_eq!(offered, [true, true, false, false, false]);
        assert!(
            !feed.offer(&Arc::new(GetFlowsResponse::default())),
            "not a flow"
        );
        assert_eq!(feed.depth(), 2);
        assert_eq!(losses.total_since_start(), 3);
        assert!(feed.report_due().is_some());
        let events: Vec<(String, u64, i64, i64)> = feed
            .lost_events(false)
            .into_iter()
            .map(|r| match r.response_types {
                Some(ResponseTypes::LostEvents(l)) => {
                    assert_eq!(l.source, LostEventSource::HubbleRingBuffer as i32);
                    (
                        r.node_name,
                        l.num_events_lost,
                        l.first.unwrap().seconds,
                        l.last.unwrap().seconds,
                    )
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(events, [("a".into(), 2, 3, 5), ("b".into(), 1, 4, 4)]);
        assert!(feed.lost_events(true).is_empty(), "reported once");
        assert!(feed.report_due().is_none());
        for _ in 0..2 {
            assert!(matches!(intake.rx.recv().unwrap(), Item::Flow(_)));
        }
        intake.took(2);
        assert_eq!((feed.depth(), feed.sent()), (0, 2));
        drop(intake);
        assert!(!feed.offer(&flow("a", 6)), "no writer: counted too");
        assert_eq!(losses.total_since_start(), 4);
    }

    /// A reader waits for history to hold what it needs, not longer than
    /// its limit.
    #[tokio::test(start_paused = true)]
    async fn a_reader_waits_until_history_holds_the_flows_it_needs() {
        let dir = test_support::scratch::ScratchDir::new("history-feed-holds");
        let losses = Arc::new(Losses::open(dir.path()).unwrap());
        let (feed, intake) = channel(10, losses);
        for s in 0..3 {
            assert!(feed.offer(&flow("a", s)));
        }
        let limit = Duration::from_secs(2);
        assert!(feed.holds(0, limit).await, "nothing needed");
        assert!(!feed.holds(3, limit).await, "the writer took nothing");
        let feed = Arc::new(feed);
        let waiting = tokio::spawn({
            let feed = feed.clone();
            async move { feed.holds(3, limit).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        intake.took(2);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "two of three");
        intake.took(1);
        assert!(waiting.await.unwrap());
    }

    /// Drops after a report start a new run: its first and last are its own
    /// flows' times (not those of the run before, nor zero), and over many
    /// drops of two nodes queued + lost = offered, per node and in the
    /// reports.
    #[test]
    fn each_report_covers_the_drops_since_the_last_one() {
        let dir = test_support::scratch::ScratchDir::new("history-feed-runs");
        let losses = Arc::new(Losses::open(dir.path()).unwrap());
        let (feed, _intake) = channel(10, losses.clone());
        let report = |force| -> Vec<(String, u64, i64, i64)> {
            feed.lost_events(force)
                .into_iter()
                .map(|r| match r.response_types {
                    Some(ResponseTypes::LostEvents(l)) => (
                        r.node_name,
                        l.num_events_lost,
                        l.first.unwrap().seconds,
                        l.last.unwrap().seconds,
                    ),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let mut queued = 0;
        for s in 100..1100 {
            let node = if s % 4 == 0 { "b" } else { "a" };
            queued += u64::from(feed.offer(&flow(node, s)));
        }
        assert_eq!(queued, 10);
        // 100..=109 were queued; of 110..=1099, b has every fourth.
        let b = (110..1100).filter(|s| s % 4 == 0).count() as u64;
        assert_eq!(
            report(true),
            [("a".into(), 990 - b, 110, 1099), ("b".into(), b, 112, 1096)]
        );
        for s in [2000, 1990, 2010] {
            assert!(!feed.offer(&flow("b", s)));
        }
        assert_eq!(report(true), [("b".into(), 3, 1990, 2010)]);
        assert_eq!(queued + losses.total_since_start(), 1003);
        let per_node: Vec<(String, u64)> = losses.since_start();
        assert_eq!(per_node, [("a".into(), 990 - b), ("b".into(), b + 3)]);
    }
}
