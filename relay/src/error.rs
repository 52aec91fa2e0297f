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
    /// The same peer was given twice.
    #[error("peer {0} given twice")]
    DuplicatePeer(String),
    /// The gRPC server failed.
    #[error("serving observer.Observer: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The history directory cannot be used.
    #[error("history: {0}")]
    History(String),
}

/// A `GetFlows` request the relay refuses (shared with flow-probe).
pub use observer_runtime::query::RequestError;

/// Why a session with a peer ended.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No connection could be made; the text is the whole error chain.
    #[error("connecting: {0}")]
    Connect(String),
    /// A call failed (including the flow stream breaking).
    #[error("{call} failed ({code:?}): {message}", code = .status.code(), message = .status.message())]
    Rpc {
        call: &'static str,
        status: tonic::Status,
    },
    /// A call got no answer in time.
    #[error("{0}: no answer in time")]
    Timeout(&'static str),
    /// The peer ended the flow stream (it is shutting down).
    #[error("the peer closed the flow stream")]
    StreamEnded,
    /// The merge task is gone (the relay is shutting down).
    #[error("the relay is shutting down")]
    MergeClosed,
}

impl PeerError {
    pub(crate) fn connect(e: &tonic::transport::Error) -> PeerError {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            // Layers often repeat their inner error's text; say it once.
            let part = s.to_string();
            if !text.ends_with(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            source = s.source();
        }
        PeerError::Connect(text)
    }

    pub(crate) fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> PeerError {
        move |status| PeerError::Rpc { call, status }
    }
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
