//! ServerStatus and GetNodes: the peers' status answers and connection
//! state, summed or listed. ServerStatus asks the connected peers first, as
//! Hubble Relay does ([`Asks`]: one call per peer at a time); GetNodes lists
//! their last polls.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use observer_proto::observer::{Node, ServerStatusRequest, ServerStatusResponse, Tls};
use observer_proto::relay::NodeState;
use observer_runtime::peer_service::{PeerTls, host_of};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::peer::{PeerId, PeerView};
use crate::state::{RelayState, VERSION};

/// Unavailable peers named in ServerStatus (all are counted), as Hubble
/// Relay names them: a long list says no more than ten.
const UNAVAILABLE_NAMED: usize = 10;

/// How long after a peer was asked ServerStatus waits for its answer; one
/// that does not answer in time counts with its last poll.
const ASK_WAIT: Duration = Duration::from_millis(1500);

/// How long a peer's call may last before it is given up (and the next
/// ServerStatus asks again).
const ASK_LIMIT: Duration = Duration::from_secs(5);

/// The peers' status calls in flight, by peer. Concurrent ServerStatus
/// requests share one call per peer; one that came after the call's
/// [`ASK_WAIT`] does not wait for it at all: a hung peer costs one wait per
/// [`ASK_LIMIT`], not one per request. A late answer still counts.
#[derive(Default)]
pub(super) struct Asks {
    calls: Mutex<HashMap<PeerId, Call>>,
}

#[derive(Clone)]
struct Call {
    started: Instant,
    ended: watch::Receiver<bool>,
}

impl Asks {
    /// Waits for peer `id`'s call to end, at most until [`ASK_WAIT`] after
    /// it began; `ask` makes the call when none is in flight.
    async fn wait_for<F>(self: &Arc<Self>, id: PeerId, ask: impl FnOnce() -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let call = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            match calls.get(&id) {
                Some(call) => call.clone(),
                None => {
                    let (end, ended) = watch::channel(false);
                    let call = Call {
                        started: Instant::now(),
                        ended,
                    };
                    calls.insert(id, call.clone());
                    let (asks, asking) = (self.clone(), ask());
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(ASK_LIMIT, asking).await;
                        (asks.calls.lock().unwrap_or_else(|p| p.into_inner())).remove(&id);
                        let _ = end.send(true);
                    });
                    call
                }
            }
        };
        let mut ended = call.ended;
        let until = call.started + ASK_WAIT;
        let _ = tokio::time::timeout_at(until, ended.wait_for(|e| *e)).await;
    }
}

/// Sums over the connected peers' status answers, asked now, the longest
/// uptime among them (as Hubble Relay: the seen flows are theirs since they
/// started, not since the relay did), and which peers are unavailable.
pub(super) async fn server_status(
    state: &Arc<RelayState>,
    asks: &Arc<Asks>,
) -> ServerStatusResponse {
    let waits = (state.peers().connected_by_id().into_iter()).map(|(id, mut client)| {
        let state = state.clone();
        asks.wait_for(id, move || async move {
            if let Ok(status) = client.server_status(ServerStatusRequest {}).await {
                state.peers().update_status(id, status.into_inner());
            }
        })
    });
    futures::future::join_all(waits).await;
    summarize(&state.peers().views())
}

fn summarize(peers: &[PeerView]) -> ServerStatusResponse {
    let mut out = ServerStatusResponse {
        version: VERSION.to_string(),
        ..Default::default()
    };
    let (mut connected, mut unavailable) = (0, 0);
    for peer in peers {
        if !peer.is_connected() {
            unavailable += 1;
            if out.unavailable_nodes.len() < UNAVAILABLE_NAMED {
                out.unavailable_nodes.push(peer.name.clone());
            }
            continue;
        }
        connected += 1;
        out.uptime_ns = out.uptime_ns.max(peer.uptime_ns());
        if let Some(s) = &peer.status {
            out.num_flows += s.response.num_flows;
            out.max_flows += s.response.max_flows;
            out.seen_flows += s.response.seen_flows;
            out.flows_rate += s.response.flows_rate;
        }
    }
    out.num_connected_nodes = Some(connected);
    out.num_unavailable_nodes = Some(unavailable);
    out
}

/// One `Node` per peer, in configuration order.
pub(super) fn nodes(state: &RelayState) -> Vec<Node> {
    let tls = &state.peers().naming().tls;
    state.peers().views().iter().map(|p| node(p, tls)).collect()
}

/// How the relay dials `address`, as Hubble Relay reports it: TLS on or
/// off, and the name it checks the node's certificate against.
fn tls_to(address: &str, tls: &PeerTls) -> Tls {
    match tls {
        PeerTls::Off => Tls::default(),
        PeerTls::ServerName(name) => Tls {
            enabled: true,
            server_name: name.clone(),
        },
        PeerTls::HostOfAddress => Tls {
            enabled: true,
            server_name: host_of(address).to_string(),
        },
    }
}

fn node(peer: &PeerView, tls: &PeerTls) -> Node {
    // A node that is down has no counters to tell (Hubble Relay gives it
    // none): its last ones would read as current.
    let status = peer
        .status
        .as_ref()
        .filter(|_| peer.is_connected())
        .map(|s| &s.response);
    Node {
        name: peer.name.clone(),
        version: peer.version.clone(),
        address: peer.address.clone(),
        state: if peer.is_connected() {
            NodeState::NodeConnected
        } else {
            NodeState::NodeUnavailable
        } as i32,
        uptime_ns: if peer.is_connected() {
            peer.uptime_ns()
        } else {
            0
        },
        num_flows: status.map_or(0, |s| s.num_flows),
        max_flows: status.map_or(0, |s| s.max_flows),
        seen_flows: status.map_or(0, |s| s.seen_flows),
        tls: Some(tls_to(&peer.address, tls)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

    use observer_proto::observer::ServerStatusResponse;

    use super::*;
    use crate::peer::PeerStatus;

    fn peer(name: &str, connected: bool, flows: u64) -> PeerView {
        PeerView {
            address: format!("{name}:4244"),
            name: name.into(),
            named: true,
            connected_since: connected.then(Instant::now),
            last_error: (!connected).then(|| "refused".to_string()),
            flows_seen: flows,
            status: Some(PeerStatus {
                response: ServerStatusResponse {
                    num_flows: flows,
                    max_flows: 4095,
                    seen_flows: flows * 2,
                    uptime_ns: 7,
                    flows_rate: 1.5,
                    version: "flow-probe 0.1.0".into(),
                    ..Default::default()
                },
                at: Instant::now(),
            }),
            version: "flow-probe 0.1.0".into(),
        }
    }

    /// A call that never ends: counts how often it was made.
    fn hung(made: &Arc<AtomicUsize>) -> impl FnOnce() -> std::future::Pending<()> + use<> {
        let made = made.clone();
        move || {
            made.fetch_add(1, AtomicOrdering::SeqCst);
            std::future::pending()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_is_asked_once_at_a_time_and_a_hung_one_waited_for_once() {
        let asks = Arc::new(Asks::default());
        let made = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        futures::future::join(asks.wait_for(0, hung(&made)), asks.wait_for(0, hung(&made))).await;
        assert_eq!(made.load(AtomicOrdering::SeqCst), 1, "one call for both");
        assert_eq!(t0.elapsed(), ASK_WAIT);
        // Another peer is asked on its own.
        asks.wait_for(1, || async {}).await;
        // Still in flight, past its wait: not made again, not waited for.
        let t1 = Instant::now();
        asks.wait_for(0, hung(&made)).await;
        assert_eq!(
            (made.load(AtomicOrdering::SeqCst), t1.elapsed()),
            (1, Duration::ZERO)
        );
        // Given up: the next request asks again.
        tokio::time::sleep_until(t0 + ASK_LIMIT + Duration::from_millis(1)).await;
        asks.wait_for(0, hung(&made)).await;
        assert_eq!(made.load(AtomicOrdering::SeqCst), 2);
        // An answer ends the wait at once.
        tokio::time::sleep(ASK_LIMIT).await;
        let t2 = Instant::now();
        asks.wait_for(0, || async {}).await;
        assert_eq!(t2.elapsed(), Duration::ZERO);
    }

    #[test]
    fn sums_connected_peers_and_names_the_unavailable() {
        let peers = [
            peer("n1", true, 10),
            peer("n2", false, 20),
            peer("n3", true, 5),
        ];
        let s = summarize(&peers);
        assert_eq!(
            (s.num_flows, s.max_flows, s.seen_flows, s.flows_rate),
            (15, 8190, 30, 3.0)
        );
        assert_eq!(
            (s.num_connected_nodes, s.num_unavailable_nodes),
            (Some(2), Some(1))
        );
        assert_eq!(s.unavailable_nodes, ["n2"]);
        assert_eq!(s.version, VERSION);
    }

    #[test]
    fn uptime_is_the_oldest_peers_and_ten_unavailable_are_named() {
        let mut old = peer("old", true, 1);
        old.status.as_mut().unwrap().response.uptime_ns = 3_600_000_000_000;
        let mut peers = vec![peer("young", true, 1), old];
        peers.extend((0..12).map(|i| peer(&format!("down{i}"), false, 0)));
        let s = summarize(&peers);
        // The peers' uptime since their last poll, not the relay's own.
        assert!(
            (3_600_000_000_000..3_660_000_000_000).contains(&s.uptime_ns),
            "{}",
            s.uptime_ns
        );
        assert_eq!(
            (s.num_connected_nodes, s.num_unavailable_nodes),
            (Some(2), Some(12))
        );
        let named: Vec<String> = (0..10).map(|i| format!("down{i}")).collect();
        assert_eq!(s.unavailable_nodes, named);
        // None connected: no uptime to tell.
        assert_eq!(summarize(&peers[2..]).uptime_ns, 0);
    }

    #[test]
    fn nodes_carry_state_and_counters() {
        let up = node(&peer("n1", true, 10), &PeerTls::Off);
        assert_eq!(up.state, NodeState::NodeConnected as i32);
        assert_eq!((up.num_flows, up.max_flows, up.seen_flows), (10, 4095, 20));
        assert!(up.uptime_ns >= 7);
        assert_eq!(up.address, "n1:4244");
        assert_eq!(up.tls, Some(Tls::default()), "dialled without TLS");
        let down = node(&peer("n2", false, 20), &PeerTls::Off);
        assert_eq!(
            (down.state, down.uptime_ns),
            (NodeState::NodeUnavailable as i32, 0)
        );
        assert_eq!((down.num_flows, down.max_flows, down.seen_flows), (0, 0, 0));
    }

    /// As Hubble Relay: each node says whether the relay dials it with TLS,
    /// and the name it checks the node's certificate against.
    #[test]
    fn nodes_say_how_the_relay_reaches_them() {
        let mut v6 = peer("n3", true, 1);
        v6.address = "[fd42::3]:4244".into();
        let tls = |p: &PeerView, how: PeerTls| node(p, &how).tls.unwrap();
        assert_eq!(
            tls(&peer("n1", true, 1), PeerTls::HostOfAddress),
            Tls {
                enabled: true,
                server_name: "n1".into()
            }
        );
        assert_eq!(tls(&v6, PeerTls::HostOfAddress).server_name, "fd42::3");
        assert_eq!(
            tls(&v6, PeerTls::ServerName("probe.example".into())),
            Tls {
                enabled: true,
                server_name: "probe.example".into()
            }
        );
    }
}
