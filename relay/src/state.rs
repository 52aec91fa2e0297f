//! [`RelayState`]: what the server reads and the background tasks write: the
//! merged flow store, the peers, the reorder window's counters, and the feed
//! of the history writer.

use std::sync::{Arc, Mutex, OnceLock};

use observer_proto::observer::GetFlowsResponse;

use crate::history::feed::Feed;
use crate::peer::Peers;
use crate::reorder::ReorderStats;
use crate::sql::SqlEngine;
use observer_runtime::store::FlowStore;

/// The relay's version as it reports it.
pub const VERSION: &str = concat!("relay ", env!("CARGO_PKG_VERSION"));

/// Shared by the server and the peer and merge tasks.
pub struct RelayState {
    store: FlowStore,
    peers: Peers,
    reorder: Mutex<ReorderStats>,
    /// SQL over the history; set once at start when history is on.
    sql: OnceLock<SqlEngine>,
    /// The engine that answers without history, made once: its counters are
    /// the ones the metrics read.
    without_history: OnceLock<SqlEngine>,
    /// The queue to the history writer; set once at start when history is on.
    history: OnceLock<Feed>,
    /// The merge's reorder window: how late a flow may leave after its time.
    reorder_window: OnceLock<std::time::Duration>,
}

impl RelayState {
    pub fn new(store: FlowStore, peers: Peers) -> Self {
        RelayState {
            store,
            peers,
            reorder: Mutex::new(ReorderStats::default()),
            sql: OnceLock::new(),
            without_history: OnceLock::new(),
            history: OnceLock::new(),
            reorder_window: OnceLock::new(),
        }
    }

    /// Notes the merge's reorder window; only the first call counts.
    pub fn set_reorder_window(&self, window: std::time::Duration) {
        let _ = self.reorder_window.set(window);
    }

    /// The merge's reorder window (none before the merge starts).
    pub fn reorder_window(&self) -> std::time::Duration {
        self.reorder_window.get().copied().unwrap_or_default()
    }

    /// A merged response: to the history writer (a flow it cannot take now
    /// is dropped and counted, never waited for), then to the store.
    pub fn publish(&self, response: GetFlowsResponse) {
        let response = Arc::new(response);
        if let Some(feed) = self.history.get() {
            feed.offer(&response);
        }
        self.store.push_shared(response);
    }

    /// The history writer's queue, when history is on.
    pub fn history_feed(&self) -> Option<&Feed> {
        self.history.get()
    }

    /// Sets the history writer's queue; only the first call counts.
    pub fn set_history_feed(&self, feed: Feed) {
        let _ = self.history.set(feed);
    }

    pub fn store(&self) -> &FlowStore {
        &self.store
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// The SQL engine (without history unless [`Self::set_sql`] was called).
    pub fn sql(&self) -> SqlEngine {
        let engine = self.sql.get().unwrap_or_else(|| {
            self.without_history
                .get_or_init(|| SqlEngine::new(None, Default::default()))
        });
        engine.clone()
    }

    /// Sets the SQL engine (and so the history); only the first call counts.
    pub fn set_sql(&self, engine: SqlEngine) {
        let _ = self.sql.set(engine);
    }

    /// What the reorder window has done: released, late and forced flows.
    pub fn reorder_stats(&self) -> ReorderStats {
        *self.reorder.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_reorder_stats(&self, stats: ReorderStats) {
        *self.reorder.lock().unwrap_or_else(|p| p.into_inner()) = stats;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From the metrics review: without history, each call made an engine
    /// of its own, and the metrics read counters no query had touched.
    #[tokio::test]
    async fn without_history_one_engine_counts_every_query() {
        let state = RelayState::new(FlowStore::new(16), Peers::new(&[]));
        assert!(state.sql().query("SELECT 1").await.is_err());
        assert!(state.sql().query("SELECT 2").await.is_err());
        assert_eq!(state.sql().stats().queries.get(), 2);
    }
}
