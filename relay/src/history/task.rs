//! The history task: follows the store's broadcast like any client, adds each
//! flow to the [`History`], and writes the rows when a batch is full or the
//! flush interval passes, and once more when the relay stops.

use std::sync::Arc;

use observer_runtime::store::Entry;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

use super::History;

/// Runs until `stop` turns true (or the store goes away), then flushes.
/// `rx` is subscribed by the caller before the task starts, so no flow pushed
/// after [`crate::Relay::start`] returns is missed.
pub async fn run(
    history: Arc<History>,
    mut rx: broadcast::Receiver<Entry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(history.config().flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let full = tokio::select! {
            entry = rx.recv() => match entry {
                Ok(entry) => history.ingest(entry.response),
                Err(RecvError::Lagged(n)) => {
                    log::warn!("history: fell behind the store, {n} flow(s) not recorded");
                    false
                }
                Err(RecvError::Closed) => break,
            },
            _ = tick.tick() => true,
            _ = stop.wait_for(|s| *s) => break,
        };
        if full {
            flush(&history).await;
        }
    }
    // The merge task pushes its last flows while stopping: take what is left.
    while let Ok(entry) = rx.try_recv() {
        history.ingest(entry.response);
    }
    flush(&history).await;
}

/// Writes the rows in memory on a blocking thread; failures are logged and
/// the rows are kept for the next try.
pub async fn flush(history: &Arc<History>) {
    let h = history.clone();
    match tokio::task::spawn_blocking(move || h.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::error!(
            "history: writing to {} failed: {e}",
            history.config().dir.display()
        ),
        Err(e) => log::error!("history: the writer failed: {e}"),
    }
}
