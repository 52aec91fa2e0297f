//! What the relay knows about each peer, shared by the peer tasks (which write
//! it) and the server (which reads it), and the broadcast of state changes that
//! following clients receive in-band as node-status events. The connected
//! peers are also listed in a [`PeerDirectory`], which the relay serves as
//! `peer.Peer` (a stock hubble-relay's `--peer-service`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::observer::{GetFlowsResponse, ServerStatusResponse};
use observer_proto::relay::{NodeState, NodeStatusEvent};
use observer_runtime::peer_service::{Address, Listing, PeerDirectory, PeerTls};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tonic::transport::Channel;

/// Index of a peer in [`Peers`] (the order of the configuration).
pub type PeerId = usize;

/// Message of a peer the relay has not reached yet.
pub const NOT_CONNECTED_YET: &str = "not connected yet";

/// The last `ServerStatus` answer of a peer and when it came.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    pub response: ServerStatusResponse,
    pub at: Instant,
}

/// One peer as seen at one moment.
#[derive(Debug, Clone)]
pub struct PeerView {
    /// The address the relay dials.
    pub address: String,
    /// The node name it reports, else its address.
    pub name: String,
    /// Whether `name` is the one it reports (not its address).
    pub named: bool,
    /// `Some(since)` while connected.
    pub connected_since: Option<Instant>,
    /// Why it is unavailable (the last error), when it is.
    pub last_error: Option<String>,
    /// Flows and other records the relay took from this peer.
    pub flows_seen: u64,
    /// The last status poll, from this or an earlier connection.
    pub status: Option<PeerStatus>,
    /// The peer's software version, as it reports it.
    pub version: String,
}

impl PeerView {
    pub fn is_connected(&self) -> bool {
        self.connected_since.is_some()
    }

    /// The peer's uptime now, extrapolated from its last status answer.
    pub fn uptime_ns(&self) -> u64 {
        self.status.as_ref().map_or(0, |s| {
            let since_poll = if self.is_connected() {
                s.at.elapsed().as_nanos() as u64
            } else {
                0
            };
            s.response.uptime_ns.saturating_add(since_poll)
        })
    }
}

#[derive(Debug)]
struct PeerEntry {
    address: String,
    name: Option<String>,
    connected_since: Option<Instant>,
    last_error: Option<String>,
    status: Option<PeerStatus>,
    version: String,
    client: Option<ObserverClient<Channel>>,
}

impl PeerEntry {
    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.address.clone())
    }
}

/// How the relay names its peers and lists them in `peer.Peer`.
#[derive(Debug, Clone)]
pub struct Naming {
    /// Prefixes every node name as `CLUSTER/NODE` (as Cilium names nodes),
    /// unless the node's name already has a cluster.
    pub cluster: Option<String>,
    /// What `peer.Peer` says about the peers' TLS: the relay's own settings
    /// towards them.
    pub tls: PeerTls,
}

impl Default for Naming {
    fn default() -> Self {
        Naming {
            cluster: None,
            tls: PeerTls::Off,
        }
    }
}

impl Naming {
    /// `name` as the relay calls it: with the cluster, when one is set and
    /// `name` has none.
    pub fn full_name(&self, name: &str) -> String {
        match &self.cluster {
            Some(c) if !name.is_empty() && !name.contains('/') => format!("{c}/{name}"),
            _ => name.to_string(),
        }
    }

    /// Names the node of a peer's response (and of its flow) as
    /// [`Self::full_name`] does, so node filters and GetNodes agree.
    pub fn rename(&self, response: &mut GetFlowsResponse) {
        if self.cluster.is_none() {
            return;
        }
        response.node_name = self.full_name(&response.node_name);
        if let Some(ResponseTypes::Flow(f)) = &mut response.response_types {
            f.node_name = self.full_name(&f.node_name);
        }
    }
}

/// Every peer of the relay.
pub struct Peers {
    entries: Mutex<Vec<PeerEntry>>,
    flows_seen: Vec<AtomicU64>,
    events: broadcast::Sender<NodeStatusEvent>,
    naming: Naming,
    directory: PeerDirectory,
}

impl Peers {
    pub fn new(addresses: &[String]) -> Self {
        Self::with_naming(addresses, Naming::default())
    }

    pub fn with_naming(addresses: &[String], naming: Naming) -> Self {
        let entries = addresses
            .iter()
            .map(|a| PeerEntry {
                address: a.clone(),
                name: None,
                connected_since: None,
                last_error: Some(NOT_CONNECTED_YET.to_string()),
                status: None,
                version: String::new(),
                client: None,
            })
            .collect();
        let (events, _) = broadcast::channel(64);
        Peers {
            entries: Mutex::new(entries),
            flows_seen: addresses.iter().map(|_| AtomicU64::new(0)).collect(),
            events,
            naming,
            directory: PeerDirectory::new(),
        }
    }

    pub fn naming(&self) -> &Naming {
        &self.naming
    }

    /// The connected peers, as `peer.Peer` serves them.
    pub fn directory(&self) -> &PeerDirectory {
        &self.directory
    }

    /// Lists the connected peers in the directory (under the lock, so the
    /// directory follows the entries' order of changes).
    fn sync_directory(&self, entries: &[PeerEntry]) {
        let listed = entries
            .iter()
            .filter(|e| e.connected_since.is_some())
            .map(|e| {
                let listing = Listing {
                    address: Address::At(e.address.clone()),
                    tls: self.naming.tls.clone(),
                };
                (e.name(), listing)
            })
            .collect();
        self.directory.replace(listed);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<PeerEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.flows_seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The peer is connected and following; tells followers.
    pub fn mark_connected(
        &self,
        id: PeerId,
        name: Option<String>,
        status: ServerStatusResponse,
        client: ObserverClient<Channel>,
    ) {
        let mut entries = self.lock();
        let e = &mut entries[id];
        if let Some(name) = name {
            self.name_entry(e, &name);
        }
        e.version = status.version.clone();
        e.status = Some(PeerStatus {
            response: status,
            at: Instant::now(),
        });
        e.connected_since = Some(Instant::now());
        e.last_error = None;
        e.client = Some(client);
        log::info!("peer {} ({}) connected", e.name(), e.address);
        // Sent under the lock: a subscriber's snapshot and its events agree.
        let _ = self.events.send(NodeStatusEvent {
            state_change: NodeState::NodeConnected as i32,
            node_names: vec![e.name()],
            message: String::new(),
        });
        self.sync_directory(&entries);
    }

    /// Names a peer. Followers may have been told of it under its address
    /// (never connected, so unavailable): that entry is gone, and the
    /// event says under which name it goes on.
    fn name_entry(&self, e: &mut PeerEntry, name: &str) {
        let full = self.naming.full_name(name);
        if e.name.is_none() && full != e.address {
            let _ = self.events.send(NodeStatusEvent {
                state_change: NodeState::NodeGone as i32,
                node_names: vec![e.address.clone()],
                message: format!("named {full}"),
            });
        }
        e.name = Some(full);
    }

    /// The peer failed (or could not be reached again); tells followers when it
    /// was connected until now.
    pub fn mark_unavailable(&self, id: PeerId, error: String) {
        let mut entries = self.lock();
        let e = &mut entries[id];
        let was_connected = e.connected_since.take().is_some();
        e.client = None;
        if was_connected {
            log::warn!("peer {} ({}) unavailable: {error}", e.name(), e.address);
            let _ = self.events.send(NodeStatusEvent {
                state_change: NodeState::NodeUnavailable as i32,
                node_names: vec![e.name()],
                message: error.clone(),
            });
        } else if e.last_error.as_deref() != Some(error.as_str()) {
            // Once per reason, not once per retry: a peer that never
            // answers (its TLS settings wrong, its address wrong) says why.
            log::warn!("peer {} ({}) not connected: {error}", e.name(), e.address);
        }
        e.last_error = Some(error);
        if was_connected {
            self.sync_directory(&entries);
        }
    }

    /// Records the node name found in a peer's flows, if it had none.
    pub fn learn_name(&self, id: PeerId, name: &str) {
        if name.is_empty() {
            return;
        }
        let mut entries = self.lock();
        if entries[id].name.is_none() {
            self.name_entry(&mut entries[id], name);
            self.sync_directory(&entries);
        }
    }

    /// Whether the peer's name is known (from GetNodes or its flows).
    pub fn has_name(&self, id: PeerId) -> bool {
        self.lock()[id].name.is_some()
    }

    /// Stores a status poll's answer.
    pub fn update_status(&self, id: PeerId, status: ServerStatusResponse) {
        let mut entries = self.lock();
        entries[id].version = status.version.clone();
        entries[id].status = Some(PeerStatus {
            response: status,
            at: Instant::now(),
        });
    }

    pub fn count_flow(&self, id: PeerId) {
        self.flows_seen[id].fetch_add(1, Ordering::Relaxed);
    }

    /// Every peer, in configuration order.
    pub fn views(&self) -> Vec<PeerView> {
        self.lock()
            .iter()
            .zip(&self.flows_seen)
            .map(|(e, seen)| PeerView {
                address: e.address.clone(),
                name: e.name(),
                named: e.name.is_some(),
                connected_since: e.connected_since,
                last_error: e.last_error.clone(),
                flows_seen: seen.load(Ordering::Relaxed),
                status: e.status.clone(),
                version: e.version.clone(),
            })
            .collect()
    }

    /// Clients of the connected peers, by id.
    pub fn connected_by_id(&self) -> Vec<(PeerId, ObserverClient<Channel>)> {
        (self.lock().iter().enumerate())
            .filter_map(|(id, e)| e.client.clone().map(|c| (id, c)))
            .collect()
    }

    /// Clients of the connected peers, with their names.
    pub fn connected_clients(&self) -> Vec<(String, ObserverClient<Channel>)> {
        self.lock()
            .iter()
            .filter_map(|e| e.client.clone().map(|c| (e.name(), c)))
            .collect()
    }

    /// Node-status events describing every peer now, and a receiver of the
    /// changes that follow, taken together.
    pub fn status_and_subscribe(
        &self,
    ) -> (Vec<NodeStatusEvent>, broadcast::Receiver<NodeStatusEvent>) {
        let entries = self.lock();
        let rx = self.events.subscribe();
        (status_events(&entries), rx)
    }

    /// Node-status events describing every peer now.
    pub fn status_events(&self) -> Vec<NodeStatusEvent> {
        status_events(&self.lock())
    }
}

/// One `NODE_CONNECTED` event naming every connected peer, then one
/// `NODE_UNAVAILABLE` event per last error, naming the other peers that
/// failed so (as Hubble Relay names them together: `2 nodes are
/// unavailable: node1, node2`, not two lines of `1 nodes`).
fn status_events(entries: &[PeerEntry]) -> Vec<NodeStatusEvent> {
    let connected: Vec<String> = entries
        .iter()
        .filter(|e| e.connected_since.is_some())
        .map(PeerEntry::name)
        .collect();
    let mut events = Vec::new();
    if !connected.is_empty() {
        events.push(NodeStatusEvent {
            state_change: NodeState::NodeConnected as i32,
            node_names: connected,
            message: String::new(),
        });
    }
    let mut unavailable: Vec<NodeStatusEvent> = Vec::new();
    for e in entries.iter().filter(|e| e.connected_since.is_none()) {
        let message = e.last_error.clone().unwrap_or_default();
        match unavailable.iter_mut().find(|ev| ev.message == message) {
            Some(ev) => ev.node_names.push(e.name()),
            None => unavailable.push(NodeStatusEvent {
                state_change: NodeState::NodeUnavailable as i32,
                node_names: vec![e.name()],
                message,
            }),
        }
    }
    events.extend(unavailable);
    events
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn client() -> ObserverClient<Channel> {
        ObserverClient::new(Channel::from_static("http://127.0.0.1:1").connect_lazy())
    }

    fn event(state: NodeState, names: &[&str], message: &str) -> NodeStatusEvent {
        NodeStatusEvent {
            state_change: state as i32,
            node_names: names.iter().map(|s| s.to_string()).collect(),
            message: message.into(),
        }
    }

    #[tokio::test]
    async fn transitions_are_broadcast_once_and_snapshots_describe_everyone() {
        let peers = Peers::new(&["10.0.0.1:4244".into(), "10.0.0.2:4244".into()]);
        let (initial, mut rx) = peers.status_and_subscribe();
        assert_eq!(
            initial,
            [
                // Not connected yet, both: one event.
                event(
                    NodeState::NodeUnavailable,
                    &["10.0.0.1:4244", "10.0.0.2:4244"],
                    NOT_CONNECTED_YET
                ),
            ]
        );
        // Failing while never connected changes the message, not the state.
        peers.mark_unavailable(1, "connection refused".into());
        peers.mark_connected(
            0,
            Some("node1".into()),
            ServerStatusResponse::default(),
            client(),
        );
        // The address followers knew it by is gone: it goes on as node1.
        assert_eq!(
            rx.recv().await.unwrap(),
            event(NodeState::NodeGone, &["10.0.0.1:4244"], "named node1")
        );
        assert_eq!(
            rx.recv().await.unwrap(),
            event(NodeState::NodeConnected, &["node1"], "")
        );
        peers.mark_unavailable(0, "stream broke".into());
        peers.mark_unavailable(0, "still down".into());
        assert_eq!(
            rx.recv().await.unwrap(),
            event(NodeState::NodeUnavailable, &["node1"], "stream broke")
        );
        assert!(rx.try_recv().is_err(), "no event without a transition");
        peers.mark_connected(0, None, ServerStatusResponse::default(), client());
        assert_eq!(
            rx.recv().await.unwrap(),
            event(NodeState::NodeConnected, &["node1"], ""),
            "named once: no second gone"
        );
        assert_eq!(
            peers.status_events(),
            [
                event(NodeState::NodeConnected, &["node1"], ""),
                event(
                    NodeState::NodeUnavailable,
                    &["10.0.0.2:4244"],
                    "connection refused"
                ),
            ]
        );
        assert_eq!(peers.connected_clients().len(), 1);
    }

    #[test]
    fn unavailable_peers_that_failed_alike_are_one_event() {
        let peers = Peers::new(&[
            "10.0.0.1:4244".into(),
            "10.0.0.2:4244".into(),
            "10.0.0.3:4244".into(),
        ]);
        peers.mark_unavailable(0, "connection refused".into());
        peers.mark_unavailable(1, "timed out".into());
        peers.mark_unavailable(2, "connection refused".into());
        assert_eq!(
            peers.status_events(),
            [
                event(
                    NodeState::NodeUnavailable,
                    &["10.0.0.1:4244", "10.0.0.3:4244"],
                    "connection refused"
                ),
                event(NodeState::NodeUnavailable, &["10.0.0.2:4244"], "timed out"),
            ]
        );
    }

    fn listing(address: &str) -> Listing {
        Listing {
            address: Address::At(address.into()),
            tls: PeerTls::HostOfAddress,
        }
    }

    #[tokio::test]
    async fn the_directory_lists_the_connected_peers_under_their_cluster_names() {
        let naming = Naming {
            cluster: Some("east".into()),
            tls: PeerTls::HostOfAddress,
        };
        let peers = Peers::with_naming(&["10.0.0.1:4244".into(), "10.0.0.2:4244".into()], naming);
        let mut listed = peers.directory().subscribe();
        assert!(
            listed.borrow_and_update().is_empty(),
            "nothing connected yet"
        );
        peers.mark_connected(
            0,
            Some("node1".into()),
            ServerStatusResponse::default(),
            client(),
        );
        // A name with a cluster already keeps it.
        peers.mark_connected(
            1,
            Some("west/node2".into()),
            ServerStatusResponse::default(),
            client(),
        );
        assert_eq!(
            *listed.borrow_and_update(),
            BTreeMap::from([
                ("east/node1".to_string(), listing("10.0.0.1:4244")),
                ("west/node2".to_string(), listing("10.0.0.2:4244")),
            ])
        );
        assert_eq!(peers.views()[0].name, "east/node1");
        peers.mark_unavailable(0, "stream broke".into());
        assert_eq!(
            *listed.borrow_and_update(),
            BTreeMap::from([("west/node2".to_string(), listing("10.0.0.2:4244"))])
        );
    }

    #[test]
    fn responses_of_a_peer_are_renamed_with_the_cluster() {
        let naming = Naming {
            cluster: Some("east".into()),
            tls: PeerTls::Off,
        };
        let mut r = GetFlowsResponse {
            node_name: "node1".into(),
            response_types: Some(ResponseTypes::Flow(observer_proto::flow::Flow {
                node_name: "node1".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        naming.rename(&mut r);
        let Some(ResponseTypes::Flow(f)) = &r.response_types else {
            unreachable!()
        };
        assert_eq!(
            (r.node_name.as_str(), f.node_name.as_str()),
            ("east/node1", "east/node1")
        );
        Naming::default().rename(&mut r);
        assert_eq!(r.node_name, "east/node1");
    }
}
