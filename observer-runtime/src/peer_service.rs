//! Hubble's `peer.Peer` service: who serves `observer.Observer`, and every
//! change to that, for a stock hubble-relay (`--peer-service`).
//!
//! A [`PeerDirectory`] holds the peers now (name → [`Listing`]); flow-probe
//! lists itself, the relay the flow-probes it follows while they are
//! connected. Each `Notify` stream keeps what it has told its client and,
//! whenever the directory changes, sends the difference: `PEER_DELETED` for
//! a name gone, `PEER_ADDED` for a new one, `PEER_UPDATED` for a new address
//! or TLS. The first answer is the whole directory as `PEER_ADDED`, as
//! Cilium's agents do. A slow client delays only its own stream, never the
//! directory, and misses no final state (changes in between may merge).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;

use observer_proto::peer::peer_server::{Peer, PeerServer};
use observer_proto::peer::{ChangeNotification, ChangeNotificationType, NotifyRequest, Tls};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Where a peer serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `HOST:PORT`.
    At(String),
    /// The address the client reached this server at (flow-probe, which may
    /// listen on every address, lists itself so).
    WhereReached,
}

/// Whether a peer serves TLS, and the name its certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerTls {
    Off,
    ServerName(String),
    /// The host of the peer's address (an IP address or a DNS name).
    HostOfAddress,
}

/// One peer as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub address: Address,
    pub tls: PeerTls,
}

type Entries = BTreeMap<String, Listing>;

/// The peers now, by name; cheap to clone, every clone is the same directory.
#[derive(Debug, Clone)]
pub struct PeerDirectory {
    tx: watch::Sender<Entries>,
}

impl Default for PeerDirectory {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerDirectory {
    pub fn new() -> Self {
        PeerDirectory {
            tx: watch::Sender::new(Entries::new()),
        }
    }

    /// Lists `name` (again, if its listing changed).
    pub fn set(&self, name: &str, listing: Listing) {
        self.tx.send_if_modified(|peers| {
            if peers.get(name) == Some(&listing) {
                return false;
            }
            peers.insert(name.to_string(), listing);
            true
        });
    }

    /// Lists exactly `peers`: what is new or changed is told, what is not
    /// there any more is deleted.
    pub fn replace(&self, peers: BTreeMap<String, Listing>) {
        self.tx.send_if_modified(|now| {
            if *now == peers {
                return false;
            }
            *now = peers;
            true
        });
    }

    /// Takes `name` off the list.
    pub fn remove(&self, name: &str) {
        self.tx
            .send_if_modified(|peers| peers.remove(name).is_some());
    }

    /// A receiver of the whole listing, marked changed on every change.
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<String, Listing>> {
        self.tx.subscribe()
    }

    /// The names listed now, in order.
    pub fn names(&self) -> Vec<String> {
        self.tx.borrow().keys().cloned().collect()
    }

    /// The gRPC service over this directory; its streams end when `stopping`
    /// turns true (server shutdown waits for them).
    pub fn service(&self, stopping: watch::Receiver<bool>) -> PeerServer<PeerService> {
        PeerServer::new(PeerService {
            peers: self.tx.subscribe(),
            stopping,
        })
    }
}

/// `peer.Peer` over a [`PeerDirectory`].
pub struct PeerService {
    peers: watch::Receiver<Entries>,
    stopping: watch::Receiver<bool>,
}

type NotifyStream = Pin<Box<dyn Stream<Item = Result<ChangeNotification, Status>> + Send>>;

/// Notifications queued per client before its task waits.
const CLIENT_QUEUE: usize = 64;

#[tonic::async_trait]
impl Peer for PeerService {
    type NotifyStream = NotifyStream;

    async fn notify(
        &self,
        request: Request<NotifyRequest>,
    ) -> Result<Response<NotifyStream>, Status> {
        let reached = request.local_addr();
        let mut peers = self.peers.clone();
        let mut stopping = self.stopping.clone();
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        tokio::spawn(async move {
            let mut told = BTreeMap::new();
            let run = async {
                loop {
                    let now: BTreeMap<String, Told> = peers
                        .borrow_and_update()
                        .iter()
                        .map(|(name, l)| (name.clone(), Told::of(l, reached)))
                        .collect();
                    for change in changes(&told, &now) {
                        if tx.send(Ok(change)).await.is_err() {
                            return;
                        }
                    }
                    told = now;
                    if peers.changed().await.is_err() {
                        return;
                    }
                }
            };
            tokio::select! {
                () = run => {}
                _ = stopping.wait_for(|s| *s) => {}
                () = tx.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A listing as told to one client: its address and TLS resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Told {
    address: String,
    tls: Option<Tls>,
}

impl Told {
    fn of(l: &Listing, reached: Option<SocketAddr>) -> Told {
        let address = match &l.address {
            Address::At(a) => a.clone(),
            Address::WhereReached => reached.map(|a| a.to_string()).unwrap_or_default(),
        };
        let server_name = match &l.tls {
            PeerTls::Off => None,
            PeerTls::ServerName(n) => Some(n.clone()),
            PeerTls::HostOfAddress => Some(host_of(&address).to_string()),
        };
        Told {
            tls: server_name.map(|server_name| Tls { server_name }),
            address,
        }
    }

    fn notification(&self, name: &str, kind: ChangeNotificationType) -> ChangeNotification {
        ChangeNotification {
            name: name.to_string(),
            address: self.address.clone(),
            r#type: kind as i32,
            tls: self.tls.clone(),
        }
    }
}

/// `HOST` of `HOST:PORT` (an IPv6 address without its brackets).
pub fn host_of(address: &str) -> &str {
    let host = address
        .rsplit_once(':')
        .filter(|(h, port)| !port.contains(']') && (!h.contains(':') || h.ends_with(']')))
        .map_or(address, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// What turns `before` into `after`: deletions, then additions, then updates.
fn changes(
    before: &BTreeMap<String, Told>,
    after: &BTreeMap<String, Told>,
) -> Vec<ChangeNotification> {
    use ChangeNotificationType::{PeerAdded, PeerDeleted, PeerUpdated};
    let deleted = before
        .iter()
        .filter(|(name, _)| !after.contains_key(*name))
        .map(|(name, t)| t.notification(name, PeerDeleted));
    let added = after
        .iter()
        .filter(|(name, _)| !before.contains_key(*name))
        .map(|(name, t)| t.notification(name, PeerAdded));
    let updated = after
        .iter()
        .filter(|(name, t)| before.get(*name).is_some_and(|old| old != *t))
        .map(|(name, t)| t.notification(name, PeerUpdated));
    deleted.chain(added).chain(updated).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(address: &str, tls: PeerTls) -> Listing {
        Listing {
            address: Address::At(address.into()),
            tls,
        }
    }

    fn note(
        kind: ChangeNotificationType,
        name: &str,
        address: &str,
        tls: Option<&str>,
    ) -> ChangeNotification {
        ChangeNotification {
            name: name.into(),
            address: address.into(),
            r#type: kind as i32,
            tls: tls.map(|n| Tls {
                server_name: n.into(),
            }),
        }
    }

    #[test]
    fn hosts_come_out_of_addresses_of_every_form() {
        assert_eq!(host_of("10.0.0.1:4244"), "10.0.0.1");
        assert_eq!(host_of("[fd42::1]:4244"), "fd42::1");
        assert_eq!(host_of("node1.example:4244"), "node1.example");
        assert_eq!(host_of("fd42::1"), "fd42::1");
        assert_eq!(host_of("node1"), "node1");
    }

    #[test]
    fn where_reached_and_host_of_address_resolve_per_client() {
        let l = Listing {
            address: Address::WhereReached,
            tls: PeerTls::HostOfAddress,
        };
        let reached: SocketAddr = "[::1]:4244".parse().unwrap();
        assert_eq!(
            Told::of(&l, Some(reached)),
            Told {
                address: "[::1]:4244".into(),
                tls: Some(Tls {
                    server_name: "::1".into()
                }),
            }
        );
    }

    #[test]
    fn changes_are_deletions_additions_then_updates() {
        use ChangeNotificationType::{PeerAdded, PeerDeleted, PeerUpdated};
        let told = |a: &str, tls: Option<&str>| Told {
            address: a.into(),
            tls: tls.map(|n| Tls {
                server_name: n.into(),
            }),
        };
        let before = BTreeMap::from([
            ("a".to_string(), told("10.0.0.1:4244", None)),
            ("b".to_string(), told("10.0.0.2:4244", None)),
            ("c".to_string(), told("10.0.0.3:4244", None)),
        ]);
        let after = BTreeMap::from([
            ("a".to_string(), told("10.0.0.1:4244", None)),
            ("c".to_string(), told("10.0.0.3:4244", Some("c.example"))),
            ("d".to_string(), told("10.0.0.4:4244", None)),
        ]);
        assert_eq!(
            changes(&before, &after),
            [
                note(PeerDeleted, "b", "10.0.0.2:4244", None),
                note(PeerAdded, "d", "10.0.0.4:4244", None),
                note(PeerUpdated, "c", "10.0.0.3:4244", Some("c.example")),
            ]
        );
        assert!(changes(&after, &after).is_empty());
    }

    async fn next(stream: &mut NotifyStream) -> ChangeNotification {
        use tokio_stream::StreamExt;
        stream.next().await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_client_gets_the_list_then_each_change_and_shutdown_ends_it() {
        use ChangeNotificationType::{PeerAdded, PeerDeleted};
        use tokio_stream::StreamExt;
        let dir = PeerDirectory::new();
        dir.set("node1", at("127.0.0.1:4244", PeerTls::HostOfAddress));
        let (stop, stopping) = watch::channel(false);
        let service = PeerService {
            peers: dir.tx.subscribe(),
            stopping,
        };
        let mut stream = service
            .notify(Request::new(NotifyRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            next(&mut stream).await,
            note(PeerAdded, "node1", "127.0.0.1:4244", Some("127.0.0.1"))
        );
        // The same listing again is no change.
        dir.set("node1", at("127.0.0.1:4244", PeerTls::HostOfAddress));
        dir.set("node2", at("127.0.0.2:4244", PeerTls::Off));
        assert_eq!(
            next(&mut stream).await,
            note(PeerAdded, "node2", "127.0.0.2:4244", None)
        );
        dir.remove("node1");
        assert_eq!(
            next(&mut stream).await,
            note(PeerDeleted, "node1", "127.0.0.1:4244", Some("127.0.0.1"))
        );
        assert_eq!(dir.names(), ["node2"]);
        stop.send(true).unwrap();
        assert!(stream.next().await.is_none(), "shutdown ends the stream");
    }
}
