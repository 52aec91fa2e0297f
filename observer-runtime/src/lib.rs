//! What flow-probe and the relay share to serve `observer.Observer`.
//!
//! # Layout
//! A flow enters [`store`] (a ring of recent flows plus a broadcast to
//! followers); a `GetFlows` request becomes a [`query::FlowQuery`] (number,
//! first, follow, since/until), whose whitelist and blacklist compile with
//! [`filter`] (Hubble's semantics; `observe`'s live filter uses it too) and
//! whose `field_mask` [`field_mask`] checks and applies;
//! [`namespaces`] keeps GetNamespaces' answer for an hour after a flow;
//! [`metrics_http`] serves Prometheus' `/metrics`; [`accept`] takes
//! connections for it and for the gRPC servers without spinning at the
//! file-descriptor limit; [`peer_service`] is Hubble's `peer.Peer` over a
//! directory of the nodes that serve `observer.Observer` (flow-probe lists
//! itself, the relay its flow-probes); [`shutdown`] turns SIGINT and SIGTERM into one
//! future every server waits on; [`tls`] holds the TLS settings of servers
//! and clients (mTLS, Hubble's flags) and the rules that tie an address's
//! scheme to them; [`backoff`] spaces the attempts to reach a peer or a
//! runtime again; [`ready_file`] tells whoever started a server where it
//! listens. [`health`] is the standard gRPC health service, which `hubble
//! status` checks first. [`agent_events`] keeps a probe's agent events (start, policy,
//! endpoint, ipcache and service changes) and selects what a
//! `GetAgentEvents` request asks for.

pub mod accept;
pub mod agent_events;
pub mod backoff;
pub mod field_mask;
pub mod filter;
pub mod health;
pub mod metrics_http;
pub mod namespaces;
pub mod peer_service;
pub mod query;
pub mod ready_file;
pub mod shutdown;
pub mod store;
pub mod tls;
