//! The peers: one task per flow-probe, each following its flows into the merge
//! and keeping its state in [`Peers`].
//!
//! - [`state`]: what is known about every peer; state changes are broadcast as
//!   node-status events, and the connected peers are listed for `peer.Peer`
//!   under the names [`Naming`] gives them (`CLUSTER/NODE` with a cluster).
//! - `task`: the per-peer loop: a session, and after it fails, a backoff
//!   ([`observer_runtime::backoff`]) and the next session.
//! - `session`: one connection: GetNodes (the node's name), ServerStatus,
//!   GetFlows with follow, then flows to the merge and a periodic status poll.
//! - [`resume`]: after a reconnect, asks for the flows missed and drops repeats.

pub mod resume;
pub(crate) mod session;
pub mod state;
pub(crate) mod task;

pub use state::{Naming, PeerId, PeerStatus, PeerView, Peers};
