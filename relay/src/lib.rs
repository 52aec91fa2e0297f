//! relay: fans in every node's flow-probe and serves the same `observer.Observer`
//! API for the whole cluster, flows of all nodes merged in time order.
//!
//! # Layout
//! Data moves top to bottom:
//! - [`peer`]: one task per flow-probe (`peer::task`). A session connects,
//!   asks GetNodes (the node's name) and ServerStatus, then follows GetFlows
//!   from the peer's whole ring (after a restart, the ring starts with
//!   history's newest flows, and what history holds of a peer is not taken
//!   again, [`history::tail`]); a periodic
//!   ServerStatus poll keeps the peer's counters and notices a silent
//!   failure. When a
//!   session fails the peer turns unavailable and is dialled again with
//!   exponential backoff
//!   ([`observer_runtime::backoff`]); the next session resumes without repeats
//!   ([`peer::resume`]). State changes are broadcast ([`peer::state`]); the
//!   connected peers are listed for `peer.Peer`, named `CLUSTER/NODE` with
//!   a cluster name ([`peer::Naming`]).
//! - [`merge`]: every peer's flows, and when it connects and goes, through
//!   one bounded queue into the [`reorder`] window, which releases them sorted
//!   by flow time as soon as every connected node has passed their time
//!   ([`watermark`]), and holds none longer than the window (late ones pass
//!   at once, counted; memory is bounded).
//! - `observer_runtime::store`: the ring of merged flows and the broadcast
//!   to followers; a slow follower loses flows (and is told), ingestion
//!   never waits.
//! - [`server`]: the gRPC service, plaintext or (m)TLS (the peers are dialled
//!   with TLS too when [`config::PeerOptions::tls`] is set; both through
//!   `observer_runtime::tls`): GetFlows (node-status events first, history,
//!   follow with in-band node-status changes; a follow without history
//!   sends nothing older than its request), ServerStatus, GetNodes,
//!   GetNamespaces; requests are checked by `observer_runtime::query`. Hubble's `peer.Peer`
//!   on the same port lists the connected peers, so a stock hubble-relay
//!   can follow our probes (`--peer-service`).
//! - [`fanin`] wires the tasks over one [`state::RelayState`]; [`config`] holds
//!   the settings ([`peer_tls`]: the TLS flags towards the probes); [`error`]
//!   the error types.
//! - [`metrics`]: Prometheus `/metrics` (peers, ingest per node, reorder counts,
//!   history rows, files and bytes, SQL queries and durations).
//!
//! ```text
//!  flow-probe ─► peer task ─┐
//!  flow-probe ─► peer task ─┼─► merge (reorder window) ─► store ─► server ─► clients
//!  flow-probe ─► peer task ─┘        peers' state ────────────────► (node status)
//! ```
//!
//! - [`policy_record`]: one task per peer asks for the policies it put in
//!   force (`observe.v1.PolicyStates`) and keeps them in history, so a
//!   what-if replays each flow against the policy it passed under.
//! - [`history`]: every flow as a row of one Arrow schema, batched into
//!   time-partitioned Parquet files (atomic writes, compaction, retention),
//!   fed by the merge through a bounded queue: what it cannot take is
//!   counted per node and reported, never waited for; [`sql`]: read-only
//!   DataFusion SQL over it, within statement, time, memory and concurrency
//!   limits, on a runtime of its own, served as Arrow Flight SQL (statements,
//!   prepared statements, catalog metadata) on the same port. GetFlows with
//!   a `since` older than the ring starts from history, read in time order
//!   with bounded memory.
//! - The service graph: [`sql::graph`] serves it as the tables `graph_nodes`
//!   and `graph_edges`, built by `service_graph::GraphBuilder` from the flows
//!   of the query's `time` window (history files and rows in memory, what
//!   `flows` reads). `observe graph` and the TUI's service map fold their
//!   GetFlows stream (from a probe or this relay, with any Hubble filter)
//!   with the same builder, and Grafana's service map reads the tables, so
//!   all of them draw the same nodes and edges from the same flows.
//!
//! The store, the GetFlows request checks and the `/metrics` endpoint are
//! `observer_runtime`'s (`store`, `query`, `metrics_http`), shared with
//! flow-probe.
//!
//! ```no_run
//! # async fn demo() -> Result<(), relay::RelayError> {
//! let cfg = relay::RelayConfig::new(vec!["127.0.0.1:4244".into()]);
//! let relay = relay::Relay::start(&cfg)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4245").await.unwrap();
//! let server = tonic::transport::Server::builder(); // TLS settings go here
//! relay::server::run(server, listener, relay.state(), std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod error;
pub mod fanin;
pub mod flow_numbers;
pub mod history;
pub mod merge;
pub mod metrics;
pub mod peer;
pub mod peer_tls;
pub mod policy_record;
pub mod reorder;
pub mod server;
pub mod sql;
pub mod state;
pub mod watermark;

pub use config::{PeerOptions, RelayConfig};
pub use error::RelayError;
pub use fanin::Relay;
pub use state::RelayState;
