//! GetAgentEvents for every node at once (Hubble Relay answers it
//! UNIMPLEMENTED): the connected nodes' past events, merged in time order and
//! cut to the request's `number`, then, with `follow`, each node's live
//! events as they come. A node whose follow ends (it restarted, the relay
//! lost it) is asked again, [`ASK_AGAIN_AFTER`] later while it is connected,
//! else when it connects again, from its newest event sent (by its clock;
//! what it sends twice is sent once, [`Sent`]); a node that connects after
//! the request is asked for what it told since the request. Live events
//! pass through a [`ReorderWindow`], as flows do, so that several nodes'
//! leave in time order (held [`ORDER_WINDOW`] at most). A node that fails
//! or does not answer within [`PEER_TIMEOUT`] is left out (logged).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::observer::{GetAgentEventsRequest, GetAgentEventsResponse};
use observer_proto::relay::NodeState;
use observer_proto::time::{nanos, now_nanos, timestamp};
use observer_runtime::agent_events::AgentEventQuery;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::Channel;

use crate::reorder::ReorderWindow;
use crate::state::RelayState;
use crate::watermark::Source;

/// How long a node gets to begin its answer, and to send its past events.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a live event is held to leave in time order with the other
/// nodes' (the flows' default reorder window).
const ORDER_WINDOW: Duration = crate::config::DEFAULT_REORDER_WINDOW;

/// Live events held at most this many at once (beyond, the earliest leave).
const ORDER_CAPACITY: usize = 4096;

/// What a follow cut short by the relay's shutdown ends with.
const SHUTTING_DOWN: &str = "the relay is shutting down; the answer ends here";

pub type AgentEventStream =
    Pin<Box<dyn Stream<Item = Result<GetAgentEventsResponse, Status>> + Send>>;

/// `r` as the relay tells it: named after the node it came from, when the
/// node left its name out.
fn named(mut r: GetAgentEventsResponse, node: &str) -> GetAgentEventsResponse {
    if r.node_name.is_empty() {
        r.node_name = node.to_string();
    }
    r
}

/// `node`'s answer to `request`, begun within [`PEER_TIMEOUT`].
async fn ask(
    node: &str,
    client: &mut ObserverClient<Channel>,
    request: GetAgentEventsRequest,
) -> Option<tonic::Streaming<GetAgentEventsResponse>> {
    match tokio::time::timeout(PEER_TIMEOUT, client.get_agent_events(request)).await {
        Ok(Ok(answer)) => Some(answer.into_inner()),
        Ok(Err(status)) => {
            log::warn!("GetAgentEvents on {node}: {}", status.message());
            None
        }
        Err(_) => {
            log::warn!("GetAgentEvents on {node}: no answer in time");
            None
        }
    }
}

/// Every past event `node` sends for `request` (not following), within
/// [`PEER_TIMEOUT`]; what came before a failure is kept.
async fn past_of(
    node: String,
    mut client: ObserverClient<Channel>,
    request: GetAgentEventsRequest,
) -> Vec<GetAgentEventsResponse> {
    let mut got = Vec::new();
    let Some(mut answer) = ask(&node, &mut client, request).await else {
        return got;
    };
    let read = async {
        loop {
            match answer.message().await {
                Ok(Some(r)) => got.push(named(r, &node)),
                Ok(None) => return,
                Err(status) => {
                    log::warn!("GetAgentEvents on {node}: {}", status.message());
                    return;
                }
            }
        }
    };
    if tokio::time::timeout(PEER_TIMEOUT, read).await.is_err() {
        log::warn!("GetAgentEvents on {node}: its past events took too long");
    }
    got
}

/// A node's live events, then the note that its follow ended; each with
/// the node and the follow's number (a node asked again has a new one).
enum Live {
    Event(String, Box<Result<GetAgentEventsResponse, Status>>),
    Ended(String, u64),
}

type LiveStream = Pin<Box<dyn Stream<Item = Live> + Send>>;

/// What a follow's wait ended with.
enum Next {
    Live(Option<Live>),
    Asked(Option<(String, u64, Option<LiveStream>)>),
    Change(Result<observer_proto::relay::NodeStatusEvent, broadcast::error::RecvError>),
    /// Something held may leave.
    Due,
    /// The request's `until` passed.
    Until,
    Stop,
}

/// How long a node whose follow just ended waits before it is asked again
/// (a node that ends every follow at once is not asked in a tight loop).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// Asks `node` (when connected) to follow from `since` (ns since the epoch,
/// its clock), after `wait`: the follow numbered `number`, or `None`.
async fn follow_node(
    state: Arc<RelayState>,
    node: String,
    number: u64,
    since: Option<i128>,
    wait: Duration,
) -> (String, u64, Option<LiveStream>) {
    tokio::time::sleep(wait).await;
    let client = (state.peers().connected_clients().into_iter()).find(|(n, _)| *n == node);
    let Some((_, mut client)) = client else {
        return (node, number, None);
    };
    let request = GetAgentEventsRequest {
        follow: true,
        since: since.map(timestamp),
        ..Default::default()
    };
    let Some(answer) = ask(&node, &mut client, request).await else {
        return (node, number, None);
    };
    let (events_of, ended) = (node.clone(), node.clone());
    let events = answer
        .map(move |r| Live::Event(events_of.clone(), Box::new(r.map(|r| named(r, &events_of)))));
    let stream: LiveStream =
        Box::pin(events.chain(futures::stream::once(
            async move { Live::Ended(ended, number) },
        )));
    (node, number, Some(stream))
}

/// Per node, the time of the newest event sent and those sent at that time:
/// a node asked again from then sends them again, and they are not passed on.
#[derive(Default)]
struct Sent {
    newest: HashMap<String, (i128, Vec<GetAgentEventsResponse>)>,
}

impl Sent {
    /// Notes `r`; false when it was sent already (or is older than what was).
    fn note(&mut self, r: &GetAgentEventsResponse) -> bool {
        let Some(t) = r.time.as_ref().map(nanos) else {
            return true;
        };
        match self.newest.get_mut(&r.node_name) {
            Some((newest, _)) if t < *newest => false,
            Some((newest, at)) if t == *newest => {
                if at.contains(r) {
                    return false;
                }
                at.push(r.clone());
                true
            }
            _ => {
                self.newest
                    .insert(r.node_name.clone(), (t, vec![r.clone()]));
                true
            }
        }
    }

    /// Where a node's follow starts again: its newest event sent.
    fn since(&self, node: &str) -> Option<i128> {
        self.newest.get(node).map(|(t, _)| *t)
    }
}

/// Each node's current follow (asked or open), by number: what an older
/// one of the node sends or says of its end is not acted on.
#[derive(Default)]
struct Follows {
    current: HashMap<String, u64>,
    numbers: u64,
    /// When the request came (the relay's clock): where a node that sent
    /// nothing yet is asked from.
    asked_at: i128,
}

impl Follows {
    fn is_current(&self, node: &str, number: u64) -> bool {
        self.current.get(node) == Some(&number)
    }

    /// A new follow of `node` (after `wait`), from its newest event sent:
    /// the node's current one from now on.
    fn ask(
        &mut self,
        state: &Arc<RelayState>,
        sent: &Sent,
        node: String,
        wait: Duration,
    ) -> impl Future<Output = (String, u64, Option<LiveStream>)> + use<> {
        self.numbers += 1;
        self.current.insert(node.clone(), self.numbers);
        let since = sent.since(&node).or(Some(self.asked_at));
        follow_node(state.clone(), node, self.numbers, since, wait)
    }
}

/// The nodes' live events on their way out, in time order: each is held
/// until every node followed has passed its time (or [`ORDER_WINDOW`]).
struct InOrder {
    window: ReorderWindow<GetAgentEventsResponse>,
    sources: HashMap<String, Source>,
    /// What may leave now, in order.
    out: Vec<GetAgentEventsResponse>,
}

impl InOrder {
    fn new() -> Self {
        InOrder {
            window: ReorderWindow::new(ORDER_WINDOW, ORDER_CAPACITY),
            sources: HashMap::new(),
            out: Vec::new(),
        }
    }

    fn source(&mut self, node: &str) -> Source {
        let next = self.sources.len();
        *self.sources.entry(node.to_string()).or_insert(next)
    }

    /// `node` is followed: events wait for it to pass their time.
    fn followed(&mut self, node: &str) {
        let source = self.source(node);
        self.window.connect(source, Instant::now());
    }

    /// `node`'s follow ended: nothing waits for it any more.
    fn unfollowed(&mut self, node: &str) {
        let source = self.source(node);
        self.window
            .disconnect(source, Instant::now(), &mut self.out);
    }

    fn push(&mut self, r: GetAgentEventsResponse) {
        let Some(time) = r.time.as_ref().map(nanos) else {
            self.out.push(r);
            return;
        };
        let source = self.source(&r.node_name);
        self.window
            .push(source, time, r, Instant::now(), &mut self.out);
    }

    fn deadline(&self) -> Option<Instant> {
        self.window.next_deadline()
    }

    fn release_due(&mut self) {
        self.window.release_due(Instant::now(), &mut self.out);
    }

    /// Everything held may leave (the follow ends).
    fn flush(&mut self) {
        self.window.flush(&mut self.out);
    }

    /// Sends what may leave, up to the query's `until`; false when the
    /// client is gone or `until` is past.
    async fn send(
        &mut self,
        query: &AgentEventQuery,
        tx: &mpsc::Sender<Result<GetAgentEventsResponse, Status>>,
    ) -> bool {
        for r in std::mem::take(&mut self.out) {
            if query.is_past_until(&r) || tx.send(Ok(r)).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// The answer to `query` over the nodes connected now.
pub(super) async fn open(
    state: Arc<RelayState>,
    query: AgentEventQuery,
    mut stopping: watch::Receiver<bool>,
) -> AgentEventStream {
    let asked_at = now_nanos();
    let nodes = state.peers().connected_clients();
    // Live first, so that nothing between the past and the live is missed
    // (what both hold is sent once); node changes from here on.
    let (_, mut changes) = state.peers().status_and_subscribe();
    let mut live = Vec::new();
    if query.follow {
        let asks = (nodes.iter())
            .map(|(node, _)| follow_node(state.clone(), node.clone(), 0, None, Duration::ZERO));
        live = futures::future::join_all(asks).await;
    }
    let wants_past = !(query.follow && query.number == 0 && query.since.is_none());
    let mut past = Vec::new();
    if wants_past {
        let request = GetAgentEventsRequest {
            follow: false,
            ..query.request()
        };
        let calls = (nodes.into_iter()).map(|(node, client)| past_of(node, client, request));
        past = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();
        // Stable: each node's own order stays.
        past.sort_by_key(|r| r.time.as_ref().map(nanos));
        past = query
            .history(past.into_iter().map(Arc::new).collect())
            .into_iter()
            .map(|r| (*r).clone())
            .collect();
    }
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut sent = Sent::default();
        for r in past {
            sent.note(&r);
            if tx.send(Ok(r)).await.is_err() {
                return;
            }
        }
        if !query.follow {
            return;
        }
        let mut follows = Follows {
            asked_at,
            ..Follows::default()
        };
        let mut in_order = InOrder::new();
        let mut streams = Vec::new();
        for (node, number, stream) in live {
            if let Some(stream) = stream {
                in_order.followed(&node);
                follows.current.insert(node, number);
                streams.push(stream);
            }
        }
        let mut live = futures::stream::select_all(streams);
        let mut asking = FuturesUnordered::new();
        loop {
            let due = in_order.deadline();
            let next = tokio::select! {
                // An empty set has nothing to wait for (it would end at once).
                next = live.next(), if !live.is_empty() => Next::Live(next),
                asked = asking.next(), if !asking.is_empty() => Next::Asked(asked),
                change = changes.recv() => Next::Change(change),
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    Next::Due
                }
                _ = stopping.wait_for(|s| *s) => Next::Stop,
                // Events are rare: a client gone is noticed here, not at
                // the next send; the nodes' follows end with `live`.
                () = tx.closed() => return,
                () = query.until_passed(ORDER_WINDOW) => Next::Until,
            };
            let r = match next {
                Next::Stop => {
                    in_order.flush();
                    if in_order.send(&query, &tx).await {
                        let _ = tx.send(Err(Status::unavailable(SHUTTING_DOWN))).await;
                    }
                    return;
                }
                Next::Until => {
                    in_order.flush();
                    in_order.send(&query, &tx).await;
                    return;
                }
                Next::Due => {
                    in_order.release_due();
                    if !in_order.send(&query, &tx).await {
                        return;
                    }
                    continue;
                }
                Next::Change(change) => {
                    // Connected (again): asked again, from its newest event
                    // sent (a node new to this follow: from the request).
                    let names = match change {
                        Ok(c) if c.state_change == NodeState::NodeConnected as i32 => c.node_names,
                        Ok(_) => continue,
                        // Missed changes: every connected node is asked.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            (state.peers().connected_clients().into_iter())
                                .map(|(n, _)| n)
                                .collect()
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    for node in names {
                        asking.push(follows.ask(&state, &sent, node, Duration::ZERO));
                    }
                    continue;
                }
                Next::Asked(asked) => {
                    if let Some((node, number, Some(stream))) = asked
                        && follows.is_current(&node, number)
                    {
                        in_order.followed(&node);
                        live.push(stream);
                    }
                    continue;
                }
                Next::Live(None) => continue,
                // The node's current follow ended: what waited for it may
                // leave; asked again while it is connected (else at its
                // next connection).
                Next::Live(Some(Live::Ended(node, number))) => {
                    if follows.is_current(&node, number) {
                        in_order.unfollowed(&node);
                        if !in_order.send(&query, &tx).await {
                            return;
                        }
                        asking.push(follows.ask(&state, &sent, node, ASK_AGAIN_AFTER));
                    }
                    continue;
                }
                Next::Live(Some(Live::Event(node, event))) => match *event {
                    Ok(r) => r,
                    Err(status) => {
                        log::warn!(
                            "GetAgentEvents: {node}'s follow ended: {}",
                            status.message()
                        );
                        continue;
                    }
                },
            };
            // One past `until` ends the follow once it leaves in order
            // (InOrder::send): other nodes' earlier ones, still on their
            // way, go first.
            if (query.selects(&r) || query.is_past_until(&r)) && sent.note(&r) {
                in_order.push(r);
                if !in_order.send(&query, &tx).await {
                    return;
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(node: &str, t: i128, id: u32) -> GetAgentEventsResponse {
        GetAgentEventsResponse {
            agent_event: Some(observer_proto::flow::AgentEvent {
                r#type: observer_proto::flow::AgentEventType::ServiceDeleted as i32,
                notification: Some(
                    observer_proto::flow::agent_event::Notification::ServiceDelete(
                        observer_proto::flow::ServiceDeleteNotification { id },
                    ),
                ),
            }),
            node_name: node.into(),
            time: Some(timestamp(t)),
        }
    }

    /// A node asked again from its newest event sent sends that one (and
    /// any of the same time) again: passed on once; another at that time,
    /// and later ones, pass; other nodes are apart.
    #[test]
    fn what_a_node_sends_again_is_passed_on_once() {
        let mut sent = Sent::default();
        assert!(sent.note(&at("n1", 10, 1)));
        assert!(sent.note(&at("n1", 20, 2)));
        assert_eq!(sent.since("n1"), Some(20));
        assert_eq!(sent.since("n2"), None);
        assert!(!sent.note(&at("n1", 20, 2)), "again");
        assert!(!sent.note(&at("n1", 10, 1)), "older than the newest");
        assert!(sent.note(&at("n1", 20, 3)), "another at the same time");
        assert!(!sent.note(&at("n1", 20, 3)));
        assert!(sent.note(&at("n2", 5, 1)), "another node");
        assert!(sent.note(&at("n1", 30, 4)));
        assert_eq!(sent.since("n1"), Some(30));
    }

    fn ids(out: &[GetAgentEventsResponse]) -> Vec<(&str, u32)> {
        (out.iter())
            .map(|r| match &r.agent_event.as_ref().unwrap().notification {
                Some(observer_proto::flow::agent_event::Notification::ServiceDelete(s)) => {
                    (r.node_name.as_str(), s.id)
                }
                other => panic!("not made here: {other:?}"),
            })
            .collect()
    }

    /// An event that arrives first but happened later waits for the other
    /// node's earlier one; both leave once each node has passed them.
    #[tokio::test(start_paused = true)]
    async fn live_events_of_several_nodes_leave_in_time_order() {
        const MS: i128 = 1_000_000;
        let mut o = InOrder::new();
        o.followed("n1");
        o.followed("n2");
        let t0 = now_nanos();
        o.push(at("n1", t0, 1));
        o.push(at("n2", t0 - 3 * MS, 2));
        assert!(o.out.is_empty(), "held until every node passed them");
        while let Some(due) = o.deadline() {
            tokio::time::sleep_until(due).await;
            o.release_due();
        }
        assert_eq!(ids(&o.out), [("n2", 2), ("n1", 1)]);
        // A node's follow ended: what waited for it alone leaves then.
        o.out.clear();
        o.unfollowed("n2");
        o.push(at("n1", t0 + 900 * MS, 3));
        assert!(o.out.is_empty(), "n1's own time has not passed yet");
        tokio::time::sleep_until(o.deadline().expect("held")).await;
        o.release_due();
        assert_eq!(ids(&o.out), [("n1", 3)]);
        assert_eq!(o.deadline(), None);
    }

    /// One node's event past `until` ends the follow only once it leaves
    /// in order: another's earlier event, arriving after it, is sent first.
    #[tokio::test(start_paused = true)]
    async fn an_event_past_until_ends_the_follow_after_the_earlier_ones() {
        const MS: i128 = 1_000_000;
        let t0 = now_nanos();
        let query = AgentEventQuery::parse(&GetAgentEventsRequest {
            follow: true,
            until: Some(timestamp(t0)),
            ..Default::default()
        })
        .unwrap();
        let mut o = InOrder::new();
        o.followed("n1");
        o.followed("n2");
        o.push(at("n1", t0 + MS, 1));
        o.push(at("n2", t0 - MS, 2));
        let (tx, mut rx) = mpsc::channel(8);
        let mut ended = false;
        while let Some(due) = o.deadline() {
            tokio::time::sleep_until(due).await;
            o.release_due();
            if !o.send(&query, &tx).await {
                ended = true;
                break;
            }
        }
        assert!(ended, "the event past until ends it");
        drop(tx);
        let mut sent = Vec::new();
        while let Some(r) = rx.recv().await {
            sent.push(r.unwrap());
        }
        assert_eq!(ids(&sent), [("n2", 2)]);
    }
}
