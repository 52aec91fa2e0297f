//! [`RelayState`]: what the server reads and the background tasks write: the
//! merged flow store, the peers, and the reorder window's counters.

use std::sync::Mutex;
use std::time::Instant;

use crate::peer::Peers;
use crate::reorder::ReorderStats;
use crate::store::FlowStore;

/// The relay's version as it reports it.
pub const VERSION: &str = concat!("relay ", env!("CARGO_PKG_VERSION"));

/// Shared by the server and the peer and merge tasks.
pub struct RelayState {
    store: FlowStore,
    peers: Peers,
    started: Instant,
    reorder: Mutex<ReorderStats>,
}

impl RelayState {
    pub fn new(store: FlowStore, peers: Peers) -> Self {
        RelayState {
            store,
            peers,
            started: Instant::now(),
            reorder: Mutex::new(ReorderStats::default()),
        }
    }

    pub fn store(&self) -> &FlowStore {
        &self.store
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// What the reorder window has done: released, late and forced flows.
    pub fn reorder_stats(&self) -> ReorderStats {
        *self.reorder.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_reorder_stats(&self, stats: ReorderStats) {
        *self.reorder.lock().unwrap_or_else(|p| p.into_inner()) = stats;
    }
}
