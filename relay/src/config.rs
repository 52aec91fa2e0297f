//! The relay's settings, their defaults, and the check that turns peer
//! addresses into URIs to dial.

use std::collections::BTreeSet;
use std::time::Duration;

use observer_runtime::peer_service::PeerTls;
use observer_runtime::tls::{AddressError, ClientTls, dial_uri};

use crate::error::RelayError;
use crate::history::HistoryConfig;
use crate::peer::Naming;
use crate::peer_tls::PEER_TLS_FLAGS;
use crate::sql::SqlLimits;

/// Default number of merged responses the relay keeps (four nodes' worth of
/// Hubble's 4095).
pub const DEFAULT_RING_CAPACITY: usize = 16_380;

/// Where the relay serves by default, as Hubble Relay.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4245";
/// How long the reorder window holds a flow by default.
pub const DEFAULT_REORDER_WINDOW: Duration = Duration::from_millis(500);
/// The cluster name that names no cluster (Cilium's default).
pub const DEFAULT_CLUSTER: &str = "default";
/// How many flows the reorder window holds at most by default.
pub const DEFAULT_BUFFER_CAPACITY: usize = 4096;

/// Everything [`crate::Relay::start`] needs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// flow-probe addresses, `HOST:PORT` (or with `http://`, or `https://` /
    /// `tls://` when `peer.tls` is set).
    pub peers: Vec<String>,
    /// How long each flow is held to be put in time order with other nodes'.
    pub reorder_window: Duration,
    /// At most this many flows are held in the reorder window.
    pub buffer_capacity: usize,
    /// Merged flows kept for `GetFlows` history.
    pub ring_capacity: usize,
    pub peer: PeerOptions,
    /// Flow history on disk; `None` keeps none (and SQL answers that).
    pub history: Option<HistoryConfig>,
    /// Limits of each SQL query.
    pub sql: SqlLimits,
    /// The cluster the peers belong to: they are named `CLUSTER/NODE`
    /// (GetNodes, node-status events, flows' node names and `peer.Peer`), as
    /// Cilium names nodes outside the cluster called "default".
    pub cluster_name: Option<String>,
}

/// How the relay talks to each peer.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Period of the `ServerStatus` poll (also how soon a silent failure shows).
    pub status_interval: Duration,
    /// First delay before reconnecting; doubles on each failure...
    pub backoff_min: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
    /// Limit of every unary call, and of HTTP/2 keep-alive pings.
    pub call_timeout: Duration,
    /// On reconnecting, flows from this long before the last one seen are asked
    /// for again (duplicates are dropped by flow UUID), so none are skipped.
    pub resume_overlap: Duration,
    /// TLS towards every peer (mTLS with a client certificate); plaintext
    /// without.
    pub tls: Option<ClientTls>,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            status_interval: Duration::from_secs(2),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
            resume_overlap: Duration::from_secs(1),
            tls: None,
        }
    }
}

impl RelayConfig {
    /// Defaults for everything but the peers.
    pub fn new(peers: Vec<String>) -> Self {
        RelayConfig {
            peers,
            reorder_window: DEFAULT_REORDER_WINDOW,
            buffer_capacity: DEFAULT_BUFFER_CAPACITY,
            ring_capacity: DEFAULT_RING_CAPACITY,
            peer: PeerOptions::default(),
            history: None,
            sql: SqlLimits::default(),
            cluster_name: None,
        }
    }

    /// Fails on a cluster name that cannot prefix node names (`CLUSTER/NODE`).
    pub fn check_cluster_name(&self) -> Result<(), RelayError> {
        match &self.cluster_name {
            Some(c)
                if !c
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')) =>
            {
                Err(RelayError::InvalidClusterName(c.clone()))
            }
            _ => Ok(()),
        }
    }

    /// How the peers are named and listed in `peer.Peer`: by the cluster
    /// name ("default" or empty: none, as in Cilium), with the TLS the relay
    /// dials them with (checked against `--tls-hubble-server-name`, else
    /// each peer's host).
    pub fn naming(&self) -> Naming {
        Naming {
            cluster: self
                .cluster_name
                .clone()
                .filter(|c| !c.is_empty() && c != DEFAULT_CLUSTER),
            tls: match &self.peer.tls {
                None => PeerTls::Off,
                Some(t) => t
                    .server_name
                    .clone()
                    .map_or(PeerTls::HostOfAddress, PeerTls::ServerName),
            },
        }
    }

    /// The URI to dial for each peer, in order; fails on an empty, malformed or
    /// repeated peer.
    pub fn peer_uris(&self) -> Result<Vec<String>, RelayError> {
        if self.peers.is_empty() {
            return Err(RelayError::NoPeers);
        }
        let mut seen = BTreeSet::new();
        let mut uris = Vec::with_capacity(self.peers.len());
        for address in &self.peers {
            let uri = peer_uri(address, self.peer.tls.is_some())?;
            if !seen.insert(uri.clone()) {
                return Err(RelayError::DuplicatePeer(address.clone()));
            }
            uris.push(uri);
        }
        Ok(uris)
    }
}

/// `HOST:PORT` → `http://HOST:PORT`, or `https://` with TLS; a scheme must
/// agree with the TLS settings ([`dial_uri`]).
fn peer_uri(address: &str, tls: bool) -> Result<String, RelayError> {
    dial_uri(address, tls, &PEER_TLS_FLAGS).map_err(|e| match e {
        AddressError::Invalid { address, reason } => RelayError::InvalidPeer {
            reason: if reason.starts_with("no port") {
                "no port (flow-probe listens on 4244)".to_string()
            } else {
                reason
            },
            address,
        },
        other => RelayError::PeerTls(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uris(peers: &[&str]) -> Result<Vec<String>, String> {
        RelayConfig::new(peers.iter().map(|s| s.to_string()).collect())
            .peer_uris()
            .map_err(|e| e.to_string())
    }

    fn tls_uris(peers: &[&str]) -> Result<Vec<String>, String> {
        let mut cfg = RelayConfig::new(peers.iter().map(|s| s.to_string()).collect());
        cfg.peer.tls = Some(ClientTls {
            ca_files: vec!["ca.crt".into()],
            identity: None,
            server_name: None,
            allow_insecure: false,
        });
        cfg.peer_uris().map_err(|e| e.to_string())
    }

    #[test]
    fn peers_speak_tls_exactly_when_it_is_configured() {
        assert_eq!(
            tls_uris(&["127.0.0.1:4244", "https://[::1]:4244", "tls://node2:4244"]).unwrap(),
            [
                "https://127.0.0.1:4244",
                "https://[::1]:4244",
                "https://node2:4244"
            ]
        );
        assert_eq!(
            uris(&["https://node2:4244"]).unwrap_err(),
            "peer https://node2:4244 asks for TLS, but TLS is not configured: give --tls-hubble-server-ca-files"
        );
        assert_eq!(
            tls_uris(&["http://node2:4244"]).unwrap_err(),
            "peer http://node2:4244 asks for plaintext, but TLS is configured (--tls-hubble-server-ca-files): drop http:// or the TLS flags"
        );
        assert_eq!(
            tls_uris(&["node2:4244", "tls://node2:4244"]).unwrap_err(),
            "peer tls://node2:4244 given twice"
        );
    }

    #[test]
    fn peers_are_named_in_the_cluster_and_listed_with_the_tls_they_are_dialled_with() {
        let mut cfg = RelayConfig::new(vec!["10.0.0.1:4244".into()]);
        let naming = cfg.naming();
        assert_eq!((naming.cluster, naming.tls), (None, PeerTls::Off));
        cfg.cluster_name = Some(DEFAULT_CLUSTER.into());
        assert_eq!(
            cfg.naming().cluster,
            None,
            "Cilium's default names no cluster"
        );
        cfg.cluster_name = Some("a/b".into());
        assert_eq!(
            cfg.check_cluster_name().unwrap_err().to_string(),
            "invalid cluster name \"a/b\": use letters, digits, '-', '_' and '.' only"
        );
        cfg.cluster_name = Some("east".into());
        cfg.check_cluster_name().unwrap();
        cfg.peer.tls = Some(ClientTls {
            ca_files: vec!["ca.crt".into()],
            identity: None,
            server_name: None,
            allow_insecure: false,
        });
        let naming = cfg.naming();
        assert_eq!(
            (naming.cluster.as_deref(), naming.tls),
            (Some("east"), PeerTls::HostOfAddress)
        );
        cfg.peer.tls.as_mut().unwrap().server_name = Some("probe.example".into());
        assert_eq!(
            cfg.naming().tls,
            PeerTls::ServerName("probe.example".into())
        );
    }

    #[test]
    fn peers_become_uris() {
        assert_eq!(
            uris(&["127.0.0.1:4244", "http://[::1]:4244", "node2:4244"]).unwrap(),
            [
                "http://127.0.0.1:4244",
                "http://[::1]:4244",
                "http://node2:4244"
            ]
        );
    }

    #[test]
    fn bad_peers_are_refused_with_the_reason() {
        assert_eq!(
            uris(&[]).unwrap_err(),
            "no peers: give at least one flow-probe address (--peer HOST:PORT)"
        );
        assert_eq!(
            uris(&["127.0.0.1"]).unwrap_err(),
            "invalid peer address \"127.0.0.1\": no port (flow-probe listens on 4244)"
        );
        assert_eq!(
            uris(&["a:1", "http://a:1"]).unwrap_err(),
            "peer http://a:1 given twice"
        );
        assert!(
            uris(&["a b:1"])
                .unwrap_err()
                .starts_with("invalid peer address \"a b:1\": ")
        );
    }
}
