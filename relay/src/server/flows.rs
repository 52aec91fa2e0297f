//! GetFlows through the relay.
//!
//! Every answer starts with node-status events describing each peer (one
//! `NODE_CONNECTED` naming the connected ones, one `NODE_UNAVAILABLE` per other
//! peer with its last error), then the selected part of the merged ring, by
//! flow time (a late flow, passed on by the merge as it came, in its place). With
//! follow, live flows come next, and a peer failing or coming back arrives
//! in-band as another node-status event: the client's stream never fails for it.
//! A follow that asks for no history (`number` 0, no `since`) gets no flow
//! from before its request, also none the reorder window releases after it.
//! An answer that starts in history waits a while for history's writer to
//! take what the ring let go of; what it still lacks then is told as one
//! lost-events record between history's part and the ring's.

use std::sync::Arc;

use observer_proto::flow::{LostEvent, LostEventSource};
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::relay::NodeStatusEvent;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::FlowStream;
use super::older::{self, Older, Stopped, Take};
use crate::state::RelayState;
use observer_proto::time::{event_time, nanos, now_nanos, timestamp};
use observer_runtime::query::{FlowQuery, UNTIL_GRACE, is_flow, keep_flows};
use observer_runtime::store::Entry;

/// What an answer cut short by the relay's shutdown ends with.
pub const SHUTTING_DOWN: &str = "the relay is shutting down; the answer ends here";

/// Responses queued per client before the sending task waits for it.
const CLIENT_QUEUE: usize = 256;

/// The longest an answer with a history part waits for history's writer to
/// take in what the ring let go of (it takes a chunk at least every flush
/// interval, 100 ms by default).
const HISTORY_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// The client went away.
struct Gone;

type Tx = mpsc::Sender<Result<GetFlowsResponse, Status>>;

/// Starts the task that answers `query`.
pub(super) fn open(
    state: &Arc<RelayState>,
    query: FlowQuery,
    mut stopping: watch::Receiver<bool>,
) -> FlowStream {
    let not_before = (query.follow && query.number == 0 && query.since.is_none()).then(now_nanos);
    let (statuses, status_rx) = state.peers().status_and_subscribe();
    let (ring, flow_rx) = if query.follow {
        let (ring, rx) = state.store().snapshot_and_follow();
        (ring, Some(rx))
    } else {
        (state.store().snapshot(), None)
    };
    // Read after the copy: a flow let go of meanwhile is still in it.
    let evicted_newest = state.store().evicted_newest();
    // History must hold every flow the ring let go of before it is read:
    // those still queued for its writer would be in neither part. Read
    // after the copy, the count may take in a few flows queued since (a
    // wait for the writer's next chunk), never too few.
    let history_needs = evicted_newest.and(state.history_feed()).map(|feed| {
        let ring_flows = ring.iter().filter(|e| is_flow(e)).count() as u64;
        feed.sent().saturating_sub(ring_flows)
    });
    let after = ring.last().map(|e| e.seq);
    // A `since` older than the ring starts from the flow history: up to
    // what left the ring (older::plan).
    let older = older::plan(state.sql().history(), &query, &ring, evicted_newest);
    let ring = in_time_order(ring);
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    let state = state.clone();
    tokio::spawn(async move {
        let answer = async {
            for event in statuses {
                send(&tx, node_status(event)).await?;
            }
            let (query, ring) = match older {
                // Filters are matched on the blocking pool, off the workers.
                None => match query.history_off_workers(ring).await {
                    Ok(picked) => picked,
                    Err(status) => return tx.send(Err(status)).await.map_err(|_| Gone),
                },
                Some(older) => {
                    let mut behind = None;
                    if let (Some(feed), Some(n)) = (state.history_feed(), history_needs)
                        && !feed.holds(n, HISTORY_CATCH_UP).await
                    {
                        let missing = n.saturating_sub(feed.taken());
                        log::warn!(
                            "GetFlows: history's writer was {missing} flows behind for {:?}; \
                             this answer lacks them, between history and the ring",
                            HISTORY_CATCH_UP
                        );
                        behind = Some(missing);
                    }
                    let (ring, read) = with_older(older, &query, ring, &tx).await?;
                    // Told where they are missing, as any gap is, when the
                    // answer has a history part to miss them from.
                    if let (Some(missing), true) = (behind, read) {
                        send(&tx, not_in_history_yet(missing, evicted_newest)).await?;
                    }
                    (query, ring)
                }
            };
            for entry in ring {
                send(&tx, (*query.respond(&entry.response)).clone()).await?;
            }
            if let Some(flow_rx) = flow_rx {
                let live = Live {
                    query,
                    after,
                    not_before,
                    flows: flow_rx,
                    statuses: status_rx,
                };
                live.follow(&state, &tx).await?;
            }
            Ok::<(), Gone>(())
        };
        let cut = tokio::select! {
            _ = answer => false,
            _ = stopping.wait_for(|s| *s) => true,
            () = tx.closed() => false,
        };
        if cut {
            // Not a clean end: a follower (or a script) must tell it from an
            // answer that is complete.
            let _ = tx.send(Err(Status::unavailable(SHUTTING_DOWN))).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// Sends the history part of the answer and returns the part of the ring
/// that follows it, and whether history was read: `number` counts both (the
/// first N from the oldest, the last N from the newest, so history is read
/// only for what the ring lacks).
async fn with_older(
    older: Older,
    query: &FlowQuery,
    ring: Vec<Entry>,
    tx: &Tx,
) -> Result<(Vec<Entry>, bool), Gone> {
    // History's losses in its part are told with it: a lost-event record
    // of the ring for flows of that part (a gap the relay found when a
    // probe came back) would tell them twice. So would a late flow of the
    // ring from that part: history has it too, in its place.
    let told = older.last_time();
    // Filters are matched on the blocking pool, off the workers.
    let q = query.clone();
    let picked = tokio::task::spawn_blocking(move || -> Vec<Entry> {
        ring.into_iter()
            .filter(|e| q.selects(&e.response) && !told_before(&e.response, told))
            .collect()
    })
    .await;
    let mut selected = match picked {
        Ok(selected) => selected,
        Err(e) => {
            let status = Status::internal(format!("GetFlows filter task failed: {e}"));
            let _ = tx.send(Err(status)).await;
            return Err(Gone);
        }
    };
    let n = query.number;
    // A count no history could hold (hubble's --all --follow asks for
    // u64::MAX) is every flow: read once, not counted first to skip none.
    let take = if n == 0 || n >= usize::MAX / 2 {
        Take::All
    } else if query.first {
        Take::First(n)
    } else if selected.iter().filter(|e| is_flow(e)).count() >= n {
        keep_flows(&mut selected, n, false);
        return Ok((selected, false));
    } else {
        Take::Last(n - selected.iter().filter(|e| is_flow(e)).count())
    };
    match older.send(query.clone(), take, tx.clone()).await {
        Ok(sent) => {
            if let Take::First(n) = take {
                keep_flows(&mut selected, n - sent, true);
            }
            Ok((selected, true))
        }
        // The client was told; nothing more follows an incomplete answer.
        Err(Stopped::Gone | Stopped::Failed) => Err(Gone),
    }
}

/// The record of `flows` flows an answer lacks: the ring let them go (the
/// newest of them at `newest`) before history's writer took them in. The
/// relay's own loss: no node's name. Counted before history is read: one
/// the writer takes meanwhile is both sent and counted (at most that many).
fn not_in_history_yet(flows: u64, newest: Option<i128>) -> GetFlowsResponse {
    let at = newest.unwrap_or_else(now_nanos);
    GetFlowsResponse {
        node_name: String::new(),
        time: Some(timestamp(at)),
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: LostEventSource::HubbleRingBuffer as i32,
            num_events_lost: flows,
            cpu: None,
            first: None,
            last: Some(timestamp(at)),
        })),
    }
}

/// Whether history's part, up to `t`, already told `r`: a flow of that
/// time, a report of flows a buffer dropped (source `HUBBLE_RING_BUFFER`)
/// from then, or a probe's count of events its kernel ring dropped
/// (`PERF_EVENT_RING_BUFFER`, in history's losses at its own time).
fn told_before(r: &GetFlowsResponse, t: i64) -> bool {
    let t = i128::from(t);
    match &r.response_types {
        Some(ResponseTypes::Flow(_)) => event_time(r).is_some_and(|at| at <= t),
        Some(ResponseTypes::LostEvents(l))
            if l.source == LostEventSource::HubbleRingBuffer as i32 =>
        {
            l.first.as_ref().is_some_and(|f| nanos(f) <= t)
        }
        Some(ResponseTypes::LostEvents(l))
            if l.source == LostEventSource::PerfEventRingBuffer as i32 =>
        {
            event_time(r).is_some_and(|at| at <= t)
        }
        _ => false,
    }
}

/// The ring's entries by flow time: it holds them as they arrived, and a
/// late flow (a node's backlog after a restart) arrives after newer ones.
/// Other entries keep their place after the flow before them.
fn in_time_order(mut ring: Vec<Entry>) -> Vec<Entry> {
    let mut last = i128::MIN;
    let keys: Vec<i128> = ring
        .iter()
        .map(|e| {
            if let Some(ResponseTypes::Flow(_)) = e.response.response_types
                && let Some(t) = event_time(&e.response)
            {
                last = t;
            }
            last
        })
        .collect();
    if keys.is_sorted() {
        return ring;
    }
    let mut keyed: Vec<(i128, Entry)> = keys.into_iter().zip(ring.drain(..)).collect();
    keyed.sort_by_key(|(k, _)| *k); // stable: arrivals of one time keep their order
    keyed.into_iter().map(|(_, e)| e).collect()
}

async fn send(tx: &Tx, response: GetFlowsResponse) -> Result<(), Gone> {
    tx.send(Ok(response)).await.map_err(|_| Gone)
}

fn node_status(event: NodeStatusEvent) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: String::new(),
        time: Some(timestamp(now_nanos())),
        response_types: Some(ResponseTypes::NodeStatus(event)),
    }
}

/// A following client's receivers.
struct Live {
    query: FlowQuery,
    /// Sequence number of the last entry of the history snapshot.
    after: Option<u64>,
    /// Flows older than this (the request's time) are not sent.
    not_before: Option<i128>,
    flows: broadcast::Receiver<Entry>,
    statuses: broadcast::Receiver<NodeStatusEvent>,
}

impl Live {
    async fn follow(mut self, state: &RelayState, tx: &Tx) -> Result<(), Gone> {
        // Longer than the reorder window may hold a flow from before `until`.
        let grace = UNTIL_GRACE.max(state.reorder_window() + UNTIL_GRACE / 2);
        loop {
            tokio::select! {
                biased;
                event = self.statuses.recv() => match event {
                    Ok(event) => send(tx, node_status(event)).await?,
                    // Missed changes: describe every peer again.
                    Err(RecvError::Lagged(_)) => {
                        for event in state.peers().status_events() {
                            send(tx, node_status(event)).await?;
                        }
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
                entry = self.flows.recv() => match entry {
                    Ok(entry) => {
                        if self.after.is_some_and(|a| entry.seq <= a) || self.is_before(&entry) {
                            continue;
                        }
                        if self.query.is_past_until(&entry.response) {
                            return Ok(());
                        }
                        if self.query.selects(&entry.response) {
                            send(tx, (*self.query.respond(&entry.response)).clone()).await?;
                        }
                    }
                    // This client fell behind; tell it how much it missed.
                    Err(RecvError::Lagged(n)) => send(tx, lost(n)).await?,
                    Err(RecvError::Closed) => return Ok(()),
                },
                // Quiet past `until`: nothing later comes to end it.
                () = self.query.until_passed(grace) => return Ok(()),
            }
        }
    }
}

impl Live {
    /// A flow from before the request of a follow without history.
    fn is_before(&self, entry: &Entry) -> bool {
        let is_flow = matches!(entry.response.response_types, Some(ResponseTypes::Flow(_)));
        is_flow
            && self
                .not_before
                .is_some_and(|floor| event_time(&entry.response).is_some_and(|t| t < floor))
    }
}

fn lost(n: u64) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: String::new(),
        time: Some(timestamp(now_nanos())),
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: LostEventSource::ObserverEventsQueue as i32,
            num_events_lost: n,
            ..Default::default()
        })),
    }
}

#[cfg(test)]
mod tests {
    use observer_proto::flow::Flow;
    use observer_proto::observer::observer_client::ObserverClient;
    use observer_proto::observer::{GetFlowsRequest, ServerStatusResponse};
    use observer_proto::relay::NodeState;
    use tokio_stream::StreamExt;
    use tonic::transport::Channel;

    use super::*;
    use crate::peer::Peers;
    use observer_runtime::store::FlowStore;

    fn flow_at(t: i128) -> GetFlowsResponse {
        GetFlowsResponse {
            node_name: "n1".into(),
            time: Some(timestamp(t)),
            response_types: Some(ResponseTypes::Flow(Flow::default())),
        }
    }

    /// A following client's receivers, taken before anything is pushed.
    fn live(state: &RelayState) -> Live {
        let (_, flows) = state.store().snapshot_and_follow();
        let (_, statuses) = state.peers().status_and_subscribe();
        let query = FlowQuery::parse(&GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .unwrap();
        Live {
            query,
            after: None,
            not_before: None,
            flows,
            statuses,
        }
    }

    fn state() -> Arc<RelayState> {
        Arc::new(RelayState::new(
            FlowStore::new(10),
            Peers::new(&["127.0.0.1:1".into()]),
        ))
    }

    /// History's writer took nothing for longer than an answer waits: the
    /// flows the ring let go of are in neither part, and the answer says so
    /// between them (not only the relay's log).
    #[tokio::test(start_paused = true)]
    async fn flows_history_has_not_taken_yet_are_told_lost_between_the_parts() {
        use crate::history::{History, HistoryConfig, feed};
        let dir = test_support::scratch::ScratchDir::new("flows-writer-behind");
        let history = History::open(HistoryConfig {
            retention_age: std::time::Duration::from_secs(100 * 365 * 86_400),
            ..HistoryConfig::new(dir.path())
        })
        .unwrap();
        let state = Arc::new(RelayState::new(
            FlowStore::new(4),
            Peers::new(&["127.0.0.1:1".into()]),
        ));
        state.set_sql(crate::sql::SqlEngine::new(
            Some(history.clone()),
            Default::default(),
        ));
        // No writer takes from the queue.
        let (feed, _intake) = feed::channel(100, history.losses().clone());
        state.set_history_feed(feed);
        const S: i128 = 1_000_000_000;
        for t in 1..=10 {
            state.publish(flow_at(t * S));
        }
        let (_stop, stopping) = watch::channel(false);
        let req = GetFlowsRequest {
            since: Some(timestamp(0)),
            ..Default::default()
        };
        let mut stream = open(&state, FlowQuery::parse(&req).unwrap(), stopping);
        let mut got = Vec::new();
        while let Some(r) = stream.next().await {
            let r = r.unwrap();
            got.push(match r.response_types {
                Some(ResponseTypes::NodeStatus(_)) => ("node status".to_string(), None),
                Some(ResponseTypes::LostEvents(l)) => {
                    (format!("{} lost", l.num_events_lost), event_time(&r))
                }
                Some(ResponseTypes::Flow(_)) => ("flow".to_string(), event_time(&r)),
                None => ("nothing".to_string(), None),
            });
        }
        let flow = |t: i128| ("flow".to_string(), Some(t * S));
        // The ring holds the last 4; the 6 before it left the ring untaken.
        assert_eq!(
            got,
            [
                ("node status".to_string(), None),
                ("6 lost".to_string(), Some(6 * S)),
                flow(7),
                flow(8),
                flow(9),
                flow(10),
            ]
        );
        // The last 2 the ring holds: history is not read, nothing missed.
        let (_stop, stopping) = watch::channel(false);
        let req = GetFlowsRequest {
            since: Some(timestamp(0)),
            number: 2,
            ..Default::default()
        };
        let mut stream = open(&state, FlowQuery::parse(&req).unwrap(), stopping);
        let mut kinds = Vec::new();
        while let Some(r) = stream.next().await {
            kinds.push(match r.unwrap().response_types {
                Some(ResponseTypes::Flow(_)) => "flow",
                Some(ResponseTypes::LostEvents(_)) => "lost",
                _ => "other",
            });
        }
        assert_eq!(kinds, ["other", "flow", "flow"]);
    }

    /// A follow with `until` waits past it at least as long as the reorder
    /// window may hold a flow from before it.
    #[tokio::test]
    async fn a_follow_with_until_waits_out_the_reorder_window() {
        let state = state();
        state.set_reorder_window(std::time::Duration::from_secs(3));
        let (_stop, stopping) = watch::channel(false);
        let until = now_nanos() + 100_000_000;
        let req = GetFlowsRequest {
            follow: true,
            until: Some(timestamp(until)),
            ..Default::default()
        };
        let mut stream = open(&state, FlowQuery::parse(&req).unwrap(), stopping);
        // Released by the window 2.5 s after it happened: past UNTIL_GRACE.
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        state.store().push(flow_at(until - 1));
        let mut flows = Vec::new();
        while let Some(r) = stream.next().await {
            if let Some(ResponseTypes::Flow(_)) = r.as_ref().unwrap().response_types {
                flows.push(event_time(&r.unwrap()));
            }
        }
        assert_eq!(flows, [Some(until - 1)]);
    }

    #[tokio::test]
    async fn a_follower_that_falls_behind_is_told_how_much_it_lost() {
        let state = state();
        let live = live(&state);
        // Ingestion does not wait for the follower: 1030 entries against a
        // broadcast of 1024.
        for t in 0..1030 {
            state.store().push(flow_at(t));
        }
        let (tx, mut rx) = mpsc::channel(2048);
        let follower_state = state.clone();
        let task = tokio::spawn(async move {
            let _ = live.follow(&follower_state, &tx).await;
        });
        let first = rx.recv().await.unwrap().unwrap();
        let Some(ResponseTypes::LostEvents(lost)) = first.response_types else {
            panic!("expected lost events, got {first:?}");
        };
        assert_eq!(lost.num_events_lost, 6);
        assert_eq!(lost.source, LostEventSource::ObserverEventsQueue as i32);
        let next = rx.recv().await.unwrap().unwrap();
        assert_eq!(event_time(&next), Some(6));
        task.abort();
    }

    #[tokio::test]
    async fn a_follow_cut_by_shutdown_ends_with_unavailable() {
        let state = state();
        let (stop, stopping) = watch::channel(false);
        let req = GetFlowsRequest {
            follow: true,
            ..Default::default()
        };
        let mut stream = open(&state, FlowQuery::parse(&req).unwrap(), stopping);
        state.store().push(flow_at(now_nanos() + 1));
        let mut flows = 0;
        let end = loop {
            match stream.next().await.unwrap() {
                Ok(r) if matches!(r.response_types, Some(ResponseTypes::Flow(_))) => {
                    flows += 1;
                    stop.send(true).unwrap();
                }
                Ok(_) => {}
                Err(status) => break status,
            }
        };
        assert_eq!(flows, 1);
        assert_eq!(
            (end.code(), end.message()),
            (tonic::Code::Unavailable, SHUTTING_DOWN)
        );
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_follow_without_history_gets_no_flow_from_before_its_request() {
        let state = state();
        let (_stop, stopping) = watch::channel(false);
        let before = now_nanos();
        let req = GetFlowsRequest {
            follow: true,
            ..Default::default()
        };
        let mut stream = open(&state, FlowQuery::parse(&req).unwrap(), stopping);
        let after = now_nanos();
        // Released by the merge after the request: one from before it (held
        // in the reorder window until now), one from after, a lost-events
        // record from before it (a gap is never hidden).
        state.store().push(flow_at(before - 1));
        state.store().push(GetFlowsResponse {
            time: Some(timestamp(before - 2)),
            response_types: Some(ResponseTypes::LostEvents(LostEvent {
                num_events_lost: 3,
                ..Default::default()
            })),
            ..Default::default()
        });
        state.store().push(flow_at(after + 1));
        let mut got = Vec::new();
        while got.len() < 3 {
            let r = stream.next().await.unwrap().unwrap();
            got.push(match r.response_types {
                Some(ResponseTypes::NodeStatus(_)) => ("node status", None),
                Some(ResponseTypes::LostEvents(_)) => ("lost events", event_time(&r)),
                Some(ResponseTypes::Flow(_)) => ("flow", event_time(&r)),
                None => ("nothing", None),
            });
        }
        assert_eq!(
            got,
            [
                ("node status", None),
                ("lost events", Some(before - 2)),
                ("flow", Some(after + 1)),
            ]
        );
    }

    #[tokio::test]
    async fn a_follow_for_every_flow_gets_what_is_held_then_new_ones() {
        // hubble observe --all -f: number u64::MAX, no since.
        let state = state();
        state.store().push(flow_at(1));
        state.store().push(flow_at(2));
        let (_stop, stopping) = watch::channel(false);
        let req = GetFlowsRequest {
            follow: true,
            number: u64::MAX,
            ..Default::default()
        };
        let mut stream = open(&state, FlowQuery::parse(&req).unwrap(), stopping);
        let later = now_nanos() + 1;
        state.store().push(flow_at(later));
        let mut times = Vec::new();
        while times.len() < 3 {
            let r = stream.next().await.unwrap().unwrap();
            if matches!(r.response_types, Some(ResponseTypes::Flow(_))) {
                times.push(event_time(&r));
            }
        }
        assert_eq!(times, [Some(1), Some(2), Some(later)]);
    }

    #[tokio::test]
    async fn peer_changes_arrive_in_band_between_flows() {
        let state = state();
        let live = live(&state);
        let (tx, mut rx) = mpsc::channel(16);
        let follower_state = state.clone();
        let task = tokio::spawn(async move {
            let _ = live.follow(&follower_state, &tx).await;
        });
        state.store().push(flow_at(1));
        let got = rx.recv().await.unwrap().unwrap();
        assert_eq!(event_time(&got), Some(1));
        let client = ObserverClient::new(Channel::from_static("http://127.0.0.1:1").connect_lazy());
        state.peers().mark_connected(
            0,
            Some("node1".into()),
            ServerStatusResponse::default(),
            client,
        );
        state.peers().mark_unavailable(0, "stream broke".into());
        let mut changes = Vec::new();
        for _ in 0..3 {
            let r = rx.recv().await.unwrap().unwrap();
            let Some(ResponseTypes::NodeStatus(e)) = r.response_types else {
                panic!("expected node status, got {r:?}");
            };
            changes.push((e.state_change, e.node_names, e.message));
        }
        assert_eq!(
            changes,
            [
                (
                    NodeState::NodeGone as i32,
                    vec!["127.0.0.1:1".to_string()],
                    "named node1".to_string()
                ),
                (
                    NodeState::NodeConnected as i32,
                    vec!["node1".to_string()],
                    String::new()
                ),
                (
                    NodeState::NodeUnavailable as i32,
                    vec!["node1".to_string()],
                    "stream broke".to_string()
                ),
            ]
        );
        state.store().push(flow_at(2));
        let got = rx.recv().await.unwrap().unwrap();
        assert_eq!(event_time(&got), Some(2), "the stream goes on");
        task.abort();
    }
}
