//! [`Relay`]: starts the merge task and one task per peer over a shared
//! [`RelayState`], and the history's writer and compaction threads (with
//! one task per peer recording its policies, [`crate::policy_record`]),
//! and stops them.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::RelayConfig;
use crate::error::RelayError;
use crate::history::compact::Compactor;
use crate::history::writer::Writer;
use crate::history::{self, History, HistoryConfig};
use crate::merge;
use crate::peer::session::PeerCtx;
use crate::peer::{Peers, task};
use crate::policy_record;
use crate::reorder::ReorderWindow;
use crate::sql::SqlEngine;
use crate::state::RelayState;
use observer_runtime::store::FlowStore;

/// The running fan-in. Dropping it stops the tasks too (without waiting).
pub struct Relay {
    state: Arc<RelayState>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The history writer and compaction, stopped after the merge so the
    /// writer records its last flows.
    history: Option<HistoryTasks>,
}

struct HistoryTasks {
    writer: Writer,
    compactor: Option<Compactor>,
}

/// Opens the history, sets the SQL engine over it, and starts its writer
/// (fed by the merge through `state`) and compaction.
fn start_history(
    hc: &HistoryConfig,
    cfg: &RelayConfig,
    state: &Arc<RelayState>,
) -> Result<HistoryTasks, RelayError> {
    let failed = |what: &str, e: std::io::Error| {
        RelayError::History(format!("{what} {}: {e}", hc.dir.display()))
    };
    let h = History::open(hc.clone()).map_err(|e| failed("opening", e))?;
    // The ring goes on from history, so that for every node it holds all
    // flows from its first one on (GetFlows reads history up to that flow);
    // what a probe still buffers of them is not taken again. A file it
    // cannot read leaves the ring empty, not the relay stopped.
    match h.newest_flows(state.store().capacity()) {
        Ok(newest) => newest.into_iter().for_each(|r| state.store().push(r)),
        Err(e) => log::warn!("history: the ring starts empty: {e}"),
    }
    state.set_sql(SqlEngine::new(Some(h.clone()), cfg.sql));
    let (feed, intake) = history::feed::channel(hc.queue_flows, h.losses().clone());
    state.set_history_feed(feed);
    let writer =
        Writer::start(h.clone(), intake).map_err(|e| failed("starting the writer of", e))?;
    let compactor = match &hc.compaction {
        Some(cc) => {
            let (s, backlog_rows) = (state.clone(), 2 * hc.batch_rows.max(1));
            let history = h.clone();
            // The writer has a backlog: a quarter of its queue, or more
            // rows in memory than two batches.
            let busy = Box::new(move || {
                s.history_feed()
                    .is_some_and(|f| f.depth() as usize > f.capacity() / 4)
                    || history.rows_in_memory() > backlog_rows
            });
            Some(
                Compactor::start(h, cc.clone(), busy)
                    .map_err(|e| failed("starting compaction of", e))?,
            )
        }
        None => None,
    };
    Ok(HistoryTasks { writer, compactor })
}

impl Relay {
    /// Checks `cfg` and starts following every peer; call inside a tokio runtime.
    pub fn start(cfg: &RelayConfig) -> Result<Relay, RelayError> {
        let uris = cfg.peer_uris()?;
        cfg.check_cluster_name()?;
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
            Peers::with_naming(&addresses, cfg.naming()),
        ));
        // Before the peers: their first sessions ask it what it holds.
        let history = match &cfg.history {
            Some(hc) => Some(start_history(hc, cfg, &state)?),
            None => None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let (merge_tx, merge_rx) = mpsc::channel(merge::QUEUE);
        let mut window = ReorderWindow::new(cfg.reorder_window, cfg.buffer_capacity);
        state.set_reorder_window(cfg.reorder_window);
        // Every peer counts from the start: a flow of the first peer to
        // connect waits for the others' first flows (or the window).
        for id in 0..uris.len() {
            window.connect(id, tokio::time::Instant::now());
        }
        let mut tasks = vec![tokio::spawn(merge::run(merge_rx, state.clone(), window))];
        for (id, uri) in uris.iter().cloned().enumerate() {
            let ctx = PeerCtx {
                id,
                uri,
                state: state.clone(),
                merge: merge_tx.clone(),
                opts: cfg.peer.clone(),
            };
            tasks.push(tokio::spawn(task::run(ctx, stop_rx.clone())));
        }
        // The policies each peer puts in force, kept with the flows.
        if let Some(h) = state.sql().history() {
            for uri in uris {
                let policies = h.policies().clone();
                let follow =
                    policy_record::follow(uri, cfg.peer.clone(), policies, stop_rx.clone());
                tasks.push(tokio::spawn(follow));
            }
        }
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
        if let Some(h) = self.history.take() {
            let state = self.state.clone();
            let stopped = tokio::task::spawn_blocking(move || {
                if let Some(feed) = state.history_feed() {
                    feed.stop();
                }
                if let Some(c) = h.compactor {
                    c.stop();
                }
                h.writer.join();
            });
            let _ = stopped.await;
        }
    }
}

impl Drop for Relay {
    /// Stops the tasks; compaction stops (its drop), and the writer writes
    /// what it has and ends once the state (and so its queue) is gone.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
