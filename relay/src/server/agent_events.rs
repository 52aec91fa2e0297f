//! GetAgentEvents for every node at once (Hubble Relay answers it
//! UNIMPLEMENTED): the connected nodes' past events, merged in time order and
//! cut to the request's `number`, then, with `follow`, each node's live
//! events as they come. A node that fails or does not answer within
//! [`PEER_TIMEOUT`] is left out (logged); one that connects after the
//! request is not followed by it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::observer::{GetAgentEventsRequest, GetAgentEventsResponse};
use observer_proto::time::nanos;
use observer_runtime::agent_events::AgentEventQuery;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::Channel;

use crate::state::RelayState;

/// How long a node gets to begin its answer, and to send its past events.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// What a follow cut short by the relay's shutdown ends with.
const SHUTTING_DOWN: &str = "the relay is shutting down; the answer ends here";

/// What a follow ends with when no node's follow is left.
const NO_NODE_FOLLOWED: &str = "no node's agent events are followed any more (none connected, or each ended); the answer ends here";

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

/// The answer to `query` over the nodes connected now.
pub(super) async fn open(
    state: &RelayState,
    query: AgentEventQuery,
    mut stopping: watch::Receiver<bool>,
) -> AgentEventStream {
    let nodes = state.peers().connected_clients();
    // Live first, so that nothing between the past and the live is missed
    // (what both hold is sent once).
    let mut live = Vec::new();
    if query.follow {
        let live_only = GetAgentEventsRequest {
            follow: true,
            ..Default::default()
        };
        let asks = nodes
            .clone()
            .into_iter()
            .map(|(node, mut client)| async move {
                let answer = ask(&node, &mut client, live_only).await?;
                Some(answer.map(move |r| r.map(|r| named(r, &node))))
            });
        live = futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
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
        let mut live = futures::stream::select_all(live);
        loop {
            let next = tokio::select! {
                next = live.next() => Some(next),
                _ = stopping.wait_for(|s| *s) => None,
                // Events are rare: a client gone is noticed here, not at
                // the next send; the nodes' follows end with `live`.
                () = tx.closed() => return,
                () = query.until_passed() => return,
            };
            let r = match next {
                None => {
                    let _ = tx.send(Err(Status::unavailable(SHUTTING_DOWN))).await;
                    return;
                }
                // Every node's follow ended (or no node was connected).
                Some(None) => {
                    let _ = tx.send(Err(Status::unavailable(NO_NODE_FOLLOWED))).await;
                    return;
                }
                Some(Some(Err(status))) => {
                    log::warn!(
                        "GetAgentEvents: a node's follow ended: {}",
                        status.message()
                    );
                    continue;
                }
                Some(Some(Ok(r))) => r,
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
