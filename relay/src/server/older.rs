//! GetFlows with a `since` older than the ring: the flow history from `since`
//! up to the ring's first flow, read through the SQL engine, goes first.

use std::sync::Arc;

use observer_proto::time::event_time;
use observer_runtime::store::Entry;

use crate::sql::SqlEngine;

/// The ring preceded by the history flows from `since` up to the ring's first
/// flow, when `since` is older than what the ring holds (history entries get
/// sequence number 0: they are never compared with live ones). Failures are
/// logged and leave the ring alone.
pub(super) async fn with_older(
    engine: &SqlEngine,
    since: Option<i128>,
    ring: Vec<Entry>,
) -> Vec<Entry> {
    let Some(since) = since else { return ring };
    if !engine.has_history() {
        return ring;
    }
    let first = ring.iter().find_map(|e| event_time(&e.response));
    if first.is_some_and(|f| f <= since) {
        return ring;
    }
    match engine.flows_between(since, first).await {
        Ok(older) => older
            .into_iter()
            .map(|r| Entry {
                seq: 0,
                response: Arc::new(r),
            })
            .chain(ring)
            .collect(),
        Err(e) => {
            log::warn!("GetFlows: reading history failed: {e}");
            ring
        }
    }
}
