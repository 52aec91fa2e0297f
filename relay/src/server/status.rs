//! ServerStatus and GetNodes: the peers' status answers and connection
//! state, summed or listed. ServerStatus asks the connected peers first, as
//! Hubble Relay does; GetNodes lists their last polls.

use std::time::Duration;

use observer_proto::observer::{Node, ServerStatusRequest, ServerStatusResponse, Tls};
use observer_proto::relay::NodeState;
use observer_runtime::peer_service::{PeerTls, host_of};

use crate::peer::PeerView;
use crate::state::{RelayState, VERSION};

/// Unavailable peers named in ServerStatus (all are counted), as Hubble
/// Relay names them: a long list says no more than ten.
const UNAVAILABLE_NAMED: usize = 10;

/// How long ServerStatus waits for the peers' answers; one that does not
/// answer in time counts with its last poll.
const ASK_WAIT: Duration = Duration::from_millis(1500);

/// Sums over the connected peers' status answers, asked now, the longest
/// uptime among them (as Hubble Relay: the seen flows are theirs since they
/// started, not since the relay did), and which peers are unavailable.
pub(super) async fn server_status(state: &RelayState) -> ServerStatusResponse {
    let asks = (state.peers().connected_by_id().into_iter()).map(|(id, mut client)| async move {
        let answer = tokio::time::timeout(ASK_WAIT, client.server_status(ServerStatusRequest {}));
        (id, answer.await)
    });
    for (id, answer) in futures::future::join_all(asks).await {
        if let Ok(Ok(status)) = answer {
            state.peers().update_status(id, status.into_inner());
        }
    }
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
    use observer_proto::observer::ServerStatusResponse;
    use tokio::time::Instant;

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
