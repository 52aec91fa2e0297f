//! [`Relay`]: starts the merge task and one task per peer over a shared
//! [`RelayState`], and stops them.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::RelayConfig;
use crate::error::RelayError;
use crate::history::{self, History};
use crate::merge;
use crate::peer::session::PeerCtx;
use crate::peer::{Peers, task};
use crate::reorder::ReorderWindow;
use crate::sql::SqlEngine;
use crate::state::RelayState;
use observer_runtime::store::FlowStore;

/// The running fan-in. Dropping it stops the tasks too (without waiting).
pub struct Relay {
    state: Arc<RelayState>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The history writer, stopped after the merge so it records its last flows.
    history: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Relay {
    /// Checks `cfg` and starts following every peer; call inside a tokio runtime.
    pub fn start(cfg: &RelayConfig) -> Result<Relay, RelayError> {
        let uris = cfg.peer_uris()?;
        let addresses: Vec<String> = cfg
            .peers
            .iter()
            .map(|p| {
                p.split_once("://")
                    .map_or(p.as_str(), |(_, rest)| rest)
                    .to_string()
            })
            .collect();
        let state = Arc::new(RelayState::new(
            FlowStore::new(cfg.ring_capacity),
            Peers::new(&addresses),
        ));
        let (stop, stop_rx) = watch::channel(false);
        let (merge_tx, merge_rx) = mpsc::channel(merge::QUEUE);
        let window = ReorderWindow::new(cfg.reorder_window, cfg.buffer_capacity);
        let mut tasks = vec![tokio::spawn(merge::run(merge_rx, state.clone(), window))];
        for (id, uri) in uris.into_iter().enumerate() {
            let ctx = PeerCtx {
                id,
                uri,
                state: state.clone(),
                merge: merge_tx.clone(),
                opts: cfg.peer.clone(),
            };
            tasks.push(tokio::spawn(task::run(ctx, stop_rx.clone())));
        }
        let history = match &cfg.history {
            Some(hc) => {
                let h = History::open(hc.clone()).map_err(|e| {
                    RelayError::History(format!("opening {}: {e}", hc.dir.display()))
                })?;
                state.set_sql(SqlEngine::new(Some(h.clone()), cfg.sql));
                let (stop_h, stop_h_rx) = watch::channel(false);
                // Subscribed here, not in the task: every flow pushed once
                // `start` returns is recorded.
                let (_, follow) = state.store().snapshot_and_follow();
                let task = tokio::spawn(history::task::run(h, follow, stop_h_rx));
                Some((stop_h, task))
            }
            None => None,
        };
        Ok(Relay {
            state,
            stop,
            tasks,
            history,
        })
    }

    /// What the server serves from.
    pub fn state(&self) -> Arc<RelayState> {
        self.state.clone()
    }

    /// Cancels running SQL queries, stops the peer tasks, lets the merge
    /// flush its window into the store, and waits for all of them.
    pub async fn shutdown(mut self) {
        self.state.sql().shutdown();
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if let Some((stop, task)) = self.history.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some((stop, _)) = &self.history {
            let _ = stop.send(true);
        }
    }
}
