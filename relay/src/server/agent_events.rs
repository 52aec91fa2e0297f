//! GetAgentEvents for every node at once (Hubble Relay answers it
//! UNIMPLEMENTED): the connected nodes' past events, merged in time order and
//! cut to the request's `number`, then, with `follow`, each node's live
//! events as they come. A node whose follow ends (it restarted, the relay
//! lost it) is asked again when it is connected again, for what it told
//! since; so is a node that connects after the request, for what it told
//! since the request. A node that fails or does not answer within
//! [`PEER_TIMEOUT`] is left out (logged).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::observer::{GetAgentEventsRequest, GetAgentEventsResponse};
use observer_proto::relay::NodeState;
use observer_proto::time::{nanos, now_nanos, timestamp};
use observer_runtime::agent_events::AgentEventQuery;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::Channel;

use crate::state::RelayState;

/// How long a node gets to begin its answer, and to send its past events.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A node's live events, then the note that its follow ended.
enum Live {
    Event(Box<Result<GetAgentEventsResponse, Status>>),
    Ended(String),
}

type LiveStream = Pin<Box<dyn Stream<Item = Live> + Send>>;

/// What a follow's wait ended with.
enum Next {
    Live(Option<Live>),
    Change(Result<observer_proto::relay::NodeStatusEvent, broadcast::error::RecvError>),
    Stop,
}

/// `node`'s follow answer as [`Live`] items.
fn live_of(node: String, answer: tonic::Streaming<GetAgentEventsResponse>) -> LiveStream {
    let ended = node.clone();
    let events = answer.map(move |r| Live::Event(Box::new(r.map(|r| named(r, &node)))));
    Box::pin(events.chain(futures::stream::once(async move { Live::Ended(ended) })))
}

/// Asks the connected nodes of `names` (all connected ones: `None`) to
/// follow from `since` (each its own, by name; else `from`), at once.
async fn follow_nodes(
    state: &RelayState,
    names: Option<&[String]>,
    since: &HashMap<String, i128>,
    from: Option<i128>,
) -> Vec<(String, LiveStream)> {
    let nodes = state.peers().connected_clients();
    let asks = (nodes.into_iter())
        .filter(|(node, _)| names.is_none_or(|names| names.contains(node)))
        .map(|(node, mut client)| {
            let request = GetAgentEventsRequest {
                follow: true,
                since: since.get(&node).copied().or(from).map(timestamp),
                ..Default::default()
            };
            async move {
                let answer = ask(&node, &mut client, request).await?;
                Some((node.clone(), live_of(node, answer)))
            }
        });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
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
        live = follow_nodes(&state, None, &HashMap::new(), None).await;
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
            .map(Arc::new)
            .collect();
        // Stable: each node's own order stays.
        past.sort_by_key(|r| r.time.as_ref().map(nanos));
        past = query.history(past);
    }
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        for r in &past {
            if tx.send(Ok((**r).clone())).await.is_err() {
                return;
            }
        }
        if !query.follow {
            return;
        }
        let mut followed: HashSet<String> = live.iter().map(|(node, _)| node.clone()).collect();
        let mut live = futures::stream::select_all(live.into_iter().map(|(_, s)| s));
        // Node → when its follow ended: asked again from then.
        let mut ended: HashMap<String, i128> = HashMap::new();
        loop {
            let next = tokio::select! {
                // An empty set has nothing to wait for (it would end at once).
                next = live.next(), if !live.is_empty() => Next::Live(next),
                change = changes.recv() => Next::Change(change),
                _ = stopping.wait_for(|s| *s) => Next::Stop,
                // Events are rare: a client gone is noticed here, not at
                // the next send; the nodes' follows end with `live`.
                () = tx.closed() => return,
                () = query.until_passed() => return,
            };
            let next = match next {
                Next::Live(next) => next,
                Next::Stop => {
                    let _ = tx.send(Err(Status::unavailable(SHUTTING_DOWN))).await;
                    return;
                }
                Next::Change(change) => {
                    // Connected (again): asked for what it told meanwhile.
                    let names = match change {
                        Ok(c) if c.state_change == NodeState::NodeConnected as i32 => c.node_names,
                        Ok(_) => continue,
                        // Missed changes: every connected node is looked at.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            (state.peers().connected_clients().into_iter())
                                .map(|(n, _)| n)
                                .collect()
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    let names: Vec<String> = names
                        .into_iter()
                        .filter(|n| !followed.contains(n))
                        .collect();
                    let asked = follow_nodes(&state, Some(&names), &ended, Some(asked_at)).await;
                    for (node, stream) in asked {
                        followed.insert(node);
                        live.push(stream);
                    }
                    continue;
                }
            };
            let r = match next {
                None => continue,
                Some(Live::Ended(node)) => {
                    followed.remove(&node);
                    ended.insert(node, now_nanos());
                    continue;
                }
                Some(Live::Event(event)) => match *event {
                    Ok(r) => r,
                    Err(status) => {
                        log::warn!(
                            "GetAgentEvents: a node's follow ended: {}",
                            status.message()
                        );
                        continue;
                    }
                },
            };
            if query.is_past_until(&r) {
                return;
            }
            let sent_already = past.iter().any(|p| **p == r);
            if query.selects(&r) && !sent_already && tx.send(Ok(r)).await.is_err() {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}
