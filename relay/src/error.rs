//! The relay's errors: set-up and serving ([`RelayError`]), bad client requests
//! ([`RequestError`], mapped to `InvalidArgument` at the gRPC edge) and why a
//! peer session ended ([`PeerError`], which becomes a node-status event, never a
//! client's error).

/// Errors of setting up or running the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The relay was given no peer to fan in.
    #[error("no peers: give at least one flow-probe address (--peer HOST:PORT)")]
    NoPeers,
    /// A peer address that is not `HOST:PORT` (optionally `http://HOST:PORT`).
    #[error("invalid peer address {address:?}: {reason}")]
    InvalidPeer { address: String, reason: String },
    /// A peer address whose scheme disagrees with the TLS settings.
    #[error("peer {0}")]
    PeerTls(observer_runtime::tls::AddressError),
    /// The TLS settings (of the server or towards the peers) cannot be used.
    #[error("{0}")]
    Tls(#[from] observer_runtime::tls::TlsError),
    /// The same peer was given twice.
    #[error("peer {0} given twice")]
    DuplicatePeer(String),
    /// The gRPC server failed.
    #[error("serving observer.Observer: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// A cluster name a node name cannot be prefixed with.
    #[error("invalid cluster name {0:?}: use letters, digits, '-', '_' and '.' only")]
    InvalidClusterName(String),
    /// The history directory cannot be used.
    #[error("history: {0}")]
    History(String),
}

use observer_runtime::tls::explain;

use crate::peer_tls::PEER_TLS_FLAGS;

/// A `GetFlows` request the relay refuses (shared with flow-probe).
pub use observer_runtime::query::RequestError;

/// Why a session with a peer ended.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No connection could be made; the text is the whole error chain.
    #[error("connecting: {0}")]
    Connect(String),
    /// A call failed (including the flow stream breaking); `hint` says what
    /// a TLS failure behind it means.
    #[error("{call} failed ({code:?}): {message}{hint}", code = .status.code(), message = .status.message())]
    Rpc {
        call: &'static str,
        status: tonic::Status,
        hint: String,
    },
    /// The TLS settings towards the peers cannot be used (a file went away).
    #[error("TLS settings: {0}")]
    Tls(#[from] observer_runtime::tls::TlsError),
    /// A call got no answer in time.
    #[error("{0}: no answer in time")]
    Timeout(&'static str),
    /// The peer ended the flow stream (it is shutting down).
    #[error("the peer closed the flow stream")]
    StreamEnded,
    /// The merge task is gone (the relay is shutting down).
    #[error("the relay is shutting down")]
    MergeClosed,
    /// The session panicked; the text is the panic's.
    #[error("the session panicked: {0}")]
    Panicked(String),
}

impl PeerError {
    /// A failed connection, with what a TLS failure behind it means (`tls`:
    /// whether TLS was used).
    pub(crate) fn connect(e: &tonic::transport::Error, tls: bool) -> PeerError {
        let hint = hint(e, tls, Connection::New);
        PeerError::Connect(format!("{}{hint}", explain::chain(e)))
    }

    pub(crate) fn rpc(
        call: &'static str,
        tls: bool,
        connection: Connection,
    ) -> impl FnOnce(tonic::Status) -> PeerError {
        move |status| PeerError::Rpc {
            call,
            hint: hint(&status, tls, connection),
            status,
        }
    }
}

/// Whether a call's connection has answered a call before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connection {
    /// Nothing yet: a close may be TLS refused, or a connection cap.
    New,
    /// It has: a close is the peer ending it (stopping, or a stall it timed
    /// out), not a matter of settings; a reconnect the channel makes may
    /// still fail its handshake or its connect, and is explained.
    Answered,
}

/// ` (what to change)` when `e` is (or, on a new connection, looks like) a
/// TLS failure, else nothing.
fn hint(e: &(dyn std::error::Error + 'static), tls: bool, connection: Connection) -> String {
    let hint = match connection {
        Connection::New => explain::hint(e, tls, &PEER_TLS_FLAGS),
        Connection::Answered => explain::hint_answered(e, tls, &PEER_TLS_FLAGS),
    };
    hint.map_or_else(String::new, |h| format!(" ({h})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_requests_are_invalid_arguments_with_the_reason() {
        let status = tonic::Status::from(RequestError::FirstWithFollow);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "first cannot be combined with follow");
    }
}
