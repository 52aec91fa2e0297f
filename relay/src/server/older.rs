//! GetFlows with a `since` older than the ring (or an `until` alone): the
//! flow history from `since` up to what the ring no longer holds goes
//! first ([`plan`]), read from a snapshot of
//! the history on a blocking thread and sent as it is read, so memory stays
//! bounded whatever the range: files outside the range are not opened, row
//! groups are chosen by their time statistics, the request's filters apply
//! as rows are read, and `number` stops the read (the first N) or reads
//! backwards from the newest rows (the last N, [`scan::last`]).
//!
//! Flows history could not keep in the range come as one `LostEvent` per
//! node (source `HUBBLE_RING_BUFFER`, [`crate::history::feed`]), stamped
//! with the second its losses begin (within the range) and sent among the
//! flows there; the first or last N get those among their own flows only.
//! A failed read ends the answer with an error: never only the ring in
//! silence.

use std::sync::Arc;

use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::time::{event_time, now_nanos, timestamp};
use observer_runtime::query::FlowQuery;
use observer_runtime::store::Entry;
use tokio::sync::mpsc;
use tonic::Status;

use crate::history::manifest::LEASE_LIMIT;
use crate::history::scan::{self, Range};
use crate::history::{History, feed};

/// How much of the history part to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Take {
    All,
    First(usize),
    Last(usize),
}

/// The history part of one request.
pub(super) struct Older {
    history: Arc<History>,
    range: Range,
}

/// Why the history part ended early.
pub(super) enum Stopped {
    /// The client went away.
    Gone,
    /// Reading failed; the client was told.
    Failed,
}

fn clamp(t: i128) -> i64 {
    t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The history part `query` needs before `ring`: `None` without history,
/// without `since` or `until`, for a follow that asks for no history (no
/// `since`, no `number`: as from the ring, nothing from before it), or when
/// the ring holds every flow from `since` on (`until` alone: from the oldest
/// flow history holds).
/// `evicted_newest` is the newest time of a flow the ring let go of.
pub(super) fn plan(
    history: Option<&Arc<History>>,
    query: &FlowQuery,
    ring: &[Entry],
    evicted_newest: Option<i128>,
) -> Option<Older> {
    if query.follow && query.number == 0 && query.since.is_none() {
        return None;
    }
    let since = query.since.or(query.until.map(|_| i128::MIN))?;
    let history = history?;
    // A flow's time: a lost-event record at the ring's head is stamped when
    // the loss was found, later than the flows after it.
    let first = ring.iter().find_map(|e| match &e.response.response_types {
        Some(ResponseTypes::Flow(_)) => event_time(&e.response),
        _ => None,
    });
    // Up to the ring's first flow (or now: a newer flow comes live), and
    // at least up to the newest flow the ring let go of: a late flow
    // (a node's backlog) can arrive, and head the ring, after newer ones.
    let before = first.unwrap_or_else(now_nanos) - 1;
    let upto = evicted_newest.map_or(before, |e| e.max(before));
    if upto < since {
        return None;
    }
    let to = query.until.map_or(upto, |u| u.min(upto));
    Some(Older {
        history: history.clone(),
        range: Range {
            from: clamp(since),
            to: clamp(to),
        },
    })
}

impl Older {
    /// The newest time of the history part (Unix ns).
    pub(super) fn last_time(&self) -> i64 {
        self.range.to
    }

    /// Sends the history part (as `take` says, filtered by `query`) and
    /// the losses of its range; returns how many flows it sent.
    pub(super) async fn send(
        self,
        query: FlowQuery,
        take: Take,
        tx: mpsc::Sender<Result<GetFlowsResponse, Status>>,
    ) -> Result<usize, Stopped> {
        let range = self.range;
        let history = self.history.clone();
        let waiting = history.read_permits().clone().acquire_owned();
        let Ok(Ok(permit)) = tokio::time::timeout(READER_WAIT, waiting).await else {
            let status = Status::resource_exhausted(format!(
                "{} flow history reads are running, the most at once, and none ended within \
                 {} s; ask again later",
                crate::history::READERS,
                READER_WAIT.as_secs()
            ));
            let _ = tx.send(Err(status)).await;
            return Err(Stopped::Failed);
        };
        let read_tx = tx.clone();
        let losses = losses_between(&history, range);
        let read = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            read_range(
                &history,
                (range, losses),
                &query,
                take,
                &read_tx,
                (STALLED_READER, LEASE_LIMIT),
            )
        })
        .await;
        let sent = match read {
            Ok(Ok(sent)) => sent,
            Ok(Err(ReadEnd::Gone)) => return Err(Stopped::Gone),
            Ok(Err(ReadEnd::Stalled)) => {
                let why = format!(
                    "the client took nothing for {} s while history was read; ask again from \
                     the last flow received (--since)",
                    STALLED_READER.as_secs()
                );
                return fail(&tx, why).await;
            }
            Ok(Err(ReadEnd::TooLong)) => {
                let why = format!(
                    "the client read it for over {} min, longer than history keeps a reader's \
                     files; ask again from the last flow received (--since)",
                    LEASE_LIMIT.as_secs() / 60
                );
                return fail(&tx, why).await;
            }
            Ok(Err(ReadEnd::Io(e))) => {
                // A damaged file fails this read; the next ones go without it.
                if let Some(bad) = crate::history::scan::ReadError::of(&e) {
                    self.history.set_aside(bad);
                }
                return fail(&tx, e.to_string()).await;
            }
            Err(e) => return fail(&tx, format!("the reader failed: {e}")).await,
        };
        Ok(sent)
    }
}

/// One `LostEvent` per node for the flows history lacks in `range`, in
/// time order; each is stamped with the start of its losses (whole
/// seconds, as history counts them, cut to the range), where it goes
/// among the flows.
fn losses_between(history: &History, range: Range) -> Vec<GetFlowsResponse> {
    let mut missing = history.losses().between(Some(range.from), Some(range.to));
    missing.sort_by_key(|m| m.first_sec);
    missing
        .into_iter()
        .map(|m| {
            // Whole seconds, within the range asked for.
            let first = m.first_sec.saturating_mul(1_000_000_000).max(range.from);
            let last = m
                .last_sec
                .saturating_mul(1_000_000_000)
                .saturating_add(999_999_999)
                .min(range.to);
            let mut lost = feed::lost_event(m.node, m.flows, first, last);
            lost.time = Some(timestamp(i128::from(first)));
            lost
        })
        .collect()
}

async fn fail(
    tx: &mpsc::Sender<Result<GetFlowsResponse, Status>>,
    why: String,
) -> Result<usize, Stopped> {
    log::warn!("GetFlows: reading history failed: {why}");
    let status = Status::internal(format!(
        "reading the flow history failed, the answer is incomplete: {why}"
    ));
    let _ = tx.send(Err(status)).await;
    Err(Stopped::Failed)
}

enum ReadEnd {
    Gone,
    /// The client took nothing for [`STALLED_READER`]: the read ends, so
    /// that its lease no longer keeps removed files on disk.
    Stalled,
    /// The read took longer than its lease keeps files
    /// ([`crate::history::manifest::LEASE_LIMIT`]).
    TooLong,
    Io(std::io::Error),
}

/// How long a history read waits for one of the [`crate::history::READERS`]
/// running to end before it is refused.
const READER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the history part waits for a client that takes nothing (a
/// pager left open): its snapshot holds every file compaction or retention
/// removes meanwhile on disk.
const STALLED_READER: std::time::Duration = std::time::Duration::from_secs(60);

/// On a blocking thread of the runtime: reads the range from a snapshot
/// and sends what `query` selects, as `take` says, each of `losses` (in
/// time order, not counted as flows) before the first flow later than it
/// and the rest at the end (not when the first N stopped the read; the
/// last N get none from before their first); a
/// client that takes nothing for `stall` ends the read, and so does a
/// read going on after `whole`.
fn read_range(
    history: &Arc<History>,
    (range, losses): (Range, Vec<GetFlowsResponse>),
    query: &FlowQuery,
    take: Take,
    tx: &mpsc::Sender<Result<GetFlowsResponse, Status>>,
    (stall, whole): (std::time::Duration, std::time::Duration),
) -> Result<usize, ReadEnd> {
    let snap = history.snapshot().map_err(ReadEnd::Io)?;
    let sources = scan::sources(snap.files, snap.recent);
    let (mut sent, mut too_long) = (0, false);
    let (gone, stalled) = (std::cell::Cell::new(false), std::cell::Cell::new(false));
    let deadline = std::time::Instant::now() + whole;
    let max = match take {
        Take::First(n) => n,
        Take::All | Take::Last(_) => usize::MAX,
    };
    let runtime = tokio::runtime::Handle::current();
    let mut losses = losses.into_iter().peekable();
    // Whether the client took `r`.
    let give = |r| match runtime.block_on(tokio::time::timeout(stall, tx.send(Ok(r)))) {
        Ok(Ok(())) => true,
        Ok(Err(_)) => {
            gone.set(true);
            false
        }
        Err(_) => {
            stalled.set(true);
            false
        }
    };
    let mut emit = |r: GetFlowsResponse| {
        if std::time::Instant::now() >= deadline {
            too_long = true;
            return false;
        }
        let time = event_time(&r);
        while let Some(lost) = losses.next_if(|l| event_time(l) < time) {
            // The last N: losses before the first of them are not theirs.
            if sent == 0 && matches!(take, Take::Last(_)) {
                continue;
            }
            if !give(lost) {
                return false;
            }
        }
        // As the ring's flows are sent: only the fields the mask names.
        if give(query.masked(r)) {
            sent += 1;
        }
        !gone.get() && !stalled.get() && sent < max
    };
    let mut keep = |r: &GetFlowsResponse| query.selects(r);
    // A client that went away ends the read at the next batch, also while
    // nothing it asked for is found.
    // Past the deadline too: a filter that matches nothing reads on
    // without sending.
    let expired = std::cell::Cell::new(false);
    let stop = || {
        expired.set(expired.get() || std::time::Instant::now() >= deadline);
        tx.is_closed() || expired.get()
    };
    match take {
        Take::Last(n) => scan::last(sources, range, n, &mut keep, &mut emit, &stop),
        Take::First(0) => Ok(()),
        Take::All | Take::First(_) => scan::each_kept(sources, range, &mut keep, &stop, &mut emit),
    }
    .map_err(ReadEnd::Io)?;
    // The losses after the last flow, unless the read ended early: a read
    // cut short is asked again from its last flow and would get them
    // twice, and the first N end at their last flow.
    let complete = !too_long && !expired.get() && sent < max;
    for lost in losses.by_ref() {
        if !complete || gone.get() || stalled.get() || !give(lost) {
            break;
        }
    }
    if gone.get() || tx.is_closed() {
        return Err(ReadEnd::Gone);
    }
    if stalled.get() {
        return Err(ReadEnd::Stalled);
    }
    if too_long || expired.get() {
        return Err(ReadEnd::TooLong);
    }
    drop(snap.lease);
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use observer_proto::flow::{Flow, FlowFilter};
    use observer_proto::observer::GetFlowsRequest;

    use super::*;
    use crate::history::HistoryConfig;

    /// Three flows a second apart, flushed to a file.
    fn three_flows(dir: &std::path::Path) -> Arc<History> {
        let history = History::open(HistoryConfig {
            retention_age: Duration::from_secs(100 * 365 * 86_400),
            ..HistoryConfig::new(dir)
        })
        .unwrap();
        for i in 0..3 {
            let time = Some(prost_types::Timestamp {
                seconds: 1_700_000_000 + i,
                nanos: 0,
            });
            history.ingest(Arc::new(GetFlowsResponse {
                node_name: "n1".into(),
                time,
                response_types: Some(ResponseTypes::Flow(Flow {
                    time,
                    node_name: "n1".into(),
                    ..Default::default()
                })),
            }));
        }
        history.flush().unwrap();
        history
    }

    /// `read_range` on a blocking thread, as the server runs it.
    async fn read(
        history: &Arc<History>,
        query: &FlowQuery,
        take: Take,
        tx: &mpsc::Sender<Result<GetFlowsResponse, Status>>,
        limits: (Duration, Duration),
    ) -> Result<usize, ReadEnd> {
        let (history, query, tx) = (history.clone(), query.clone(), tx.clone());
        tokio::task::spawn_blocking(move || {
            read_range(
                &history,
                (Range::ALL, Vec::new()),
                &query,
                take,
                &tx,
                limits,
            )
        })
        .await
        .unwrap()
    }

    /// The field mask applies to flows read from history as to the ring's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flows_from_history_keep_only_the_masked_fields() {
        let dir = test_support::scratch::ScratchDir::new("older-masked");
        let history = three_flows(dir.path());
        let stall = (Duration::from_secs(60), LEASE_LIMIT);
        let flows = |paths: &[&str]| {
            let query = FlowQuery::parse(&GetFlowsRequest {
                field_mask: (!paths.is_empty()).then(|| prost_types::FieldMask {
                    paths: paths.iter().map(|p| p.to_string()).collect(),
                }),
                ..Default::default()
            })
            .unwrap();
            let history = history.clone();
            async move {
                let (tx, mut rx) = mpsc::channel(8);
                assert!(matches!(
                    read(&history, &query, Take::All, &tx, stall).await,
                    Ok(3)
                ));
                drop(tx);
                let mut got = Vec::new();
                while let Some(r) = rx.recv().await {
                    match r.unwrap().response_types {
                        Some(ResponseTypes::Flow(f)) => got.push(f),
                        other => panic!("{other:?}"),
                    }
                }
                got
            }
        };
        let whole = flows(&[]).await;
        assert_eq!(whole.len(), 3);
        assert!(whole.iter().all(|f| f.node_name == "n1"), "{whole:?}");
        let masked = flows(&["time"]).await;
        let times: Vec<Flow> = whole
            .iter()
            .map(|f| Flow {
                time: f.time,
                ..Default::default()
            })
            .collect();
        assert_eq!(masked, times);
    }

    /// At most READERS history reads run at once: one more waits for one
    /// to end, and is refused, with a reason, if none does in time.
    #[tokio::test(start_paused = true)]
    async fn history_reads_past_the_most_at_once_wait_then_are_refused() {
        let dir = test_support::scratch::ScratchDir::new("older-readers");
        let history = three_flows(dir.path());
        let query = FlowQuery::parse(&GetFlowsRequest::default()).unwrap();
        let older = || Older {
            history: history.clone(),
            range: Range::ALL,
        };
        let running = history.read_permits().clone();
        let held = running
            .clone()
            .acquire_many_owned(crate::history::READERS as u32)
            .await
            .unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        assert!(matches!(
            older().send(query.clone(), Take::All, tx).await,
            Err(Stopped::Failed)
        ));
        let refused = rx.recv().await.unwrap().unwrap_err();
        assert_eq!(
            (refused.code(), refused.message()),
            (
                tonic::Code::ResourceExhausted,
                "64 flow history reads are running, the most at once, and none ended within \
                 10 s; ask again later"
            )
        );
        // One ends while the next waits: it is read.
        let (tx, mut rx) = mpsc::channel(8);
        let waiting = tokio::spawn(older().send(query, Take::All, tx));
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(held);
        assert!(matches!(waiting.await.unwrap(), Ok(3)));
        let mut flows = 0;
        while let Some(r) = rx.recv().await {
            flows += usize::from(matches!(
                r.unwrap().response_types,
                Some(ResponseTypes::Flow(_))
            ));
        }
        assert_eq!(flows, 3);
        assert_eq!(running.available_permits(), crate::history::READERS);
    }

    /// A follow that asks for no history (no `since`, no `number`) gets
    /// none, whatever its `until`: as flow-probe answers it.
    #[test]
    fn a_follow_without_since_or_number_reads_no_history() {
        let dir = test_support::scratch::ScratchDir::new("older-follow-until");
        let history = three_flows(dir.path());
        let until = Some(prost_types::Timestamp {
            seconds: 1_700_000_001,
            nanos: 0,
        });
        let query = |follow, number| {
            FlowQuery::parse(&GetFlowsRequest {
                follow,
                number,
                until,
                ..Default::default()
            })
            .unwrap()
        };
        let planned = |q: &FlowQuery| plan(Some(&history), q, &[], None).map(|o| o.range);
        assert_eq!(planned(&query(true, 0)), None);
        let to_until = Some(Range {
            from: i64::MIN,
            to: 1_700_000_001_000_000_000,
        });
        assert_eq!(planned(&query(true, 5)), to_until);
        assert_eq!(planned(&query(false, 0)), to_until);
    }

    /// A client gone while nothing it asks for is found: the read ends at
    /// once instead of going through all of history.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_for_a_client_that_went_away_ends_at_the_next_batch() {
        let dir = test_support::scratch::ScratchDir::new("older-gone");
        let history = three_flows(dir.path());
        let query = FlowQuery::parse(&GetFlowsRequest {
            whitelist: vec![FlowFilter {
                node_name: vec!["nosuch".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
        let takes = [Take::All, Take::First(5), Take::Last(5)];
        let (tx, rx) = mpsc::channel(1);
        let stall = (Duration::from_secs(60), LEASE_LIMIT);
        for take in takes {
            let read = read(&history, &query, take, &tx, stall).await;
            assert!(matches!(read, Ok(0)), "{take:?}");
        }
        drop(rx);
        for take in takes {
            let read = read(&history, &query, take, &tx, stall).await;
            assert!(matches!(read, Err(ReadEnd::Gone)), "{take:?}");
        }
    }

    /// A client that takes nothing (a pager left open) ends the read, and
    /// with it the lease that kept removed files on disk: what it had
    /// queued it still gets.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_for_a_client_that_takes_nothing_ends_after_the_stall_limit() {
        let dir = test_support::scratch::ScratchDir::new("older-stalled");
        let history = three_flows(dir.path());
        let everything = FlowQuery::parse(&GetFlowsRequest::default()).unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let stall = (Duration::from_millis(200), LEASE_LIMIT);
        let read = read(&history, &everything, Take::All, &tx, stall).await;
        assert!(matches!(read, Err(ReadEnd::Stalled)));
        let queued = rx.recv().await.unwrap().unwrap();
        assert_eq!(queued.time.unwrap().seconds, 1_700_000_000);
        assert!(rx.try_recv().is_err(), "one flow queued, no more");
        assert_eq!(history.readers(), 0, "the read's lease is released");
    }

    /// A read that goes on past its lease's limit (a client reading a
    /// message now and then) ends, before its files may be deleted under it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_ends_when_its_lease_would_keep_files_no_longer() {
        let dir = test_support::scratch::ScratchDir::new("older-too-long");
        let history = three_flows(dir.path());
        let everything = FlowQuery::parse(&GetFlowsRequest::default()).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let limits = (Duration::from_secs(60), Duration::ZERO);
        let read = read(&history, &everything, Take::All, &tx, limits).await;
        assert!(matches!(read, Err(ReadEnd::TooLong)));
        assert!(rx.try_recv().is_err(), "nothing sent past the limit");
        assert_eq!(history.readers(), 0, "the read's lease is released");
    }
}
