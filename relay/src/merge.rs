//! The merge task: takes every peer's responses from one bounded queue, passes
//! them through the [`ReorderWindow`], and pushes what it releases into the
//! relay's [`FlowStore`](observer_runtime::store::FlowStore) in time order.
//!
//! The queue is bounded, so a stuck merge would slow the peers' streams, never
//! grow memory; clients never slow it down (the store's broadcast drops for a
//! lagging client instead), nor does history: each flow is offered to the
//! history writer's bounded queue, and what it cannot take is counted and
//! reported in the stream as a `LostEvent` ([`crate::history::feed`]).

use std::sync::Arc;

use observer_proto::observer::GetFlowsResponse;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::reorder::ReorderWindow;
use crate::state::RelayState;
use observer_proto::time::{event_time, now_nanos};

/// Capacity of the queue from the peer tasks to the merge.
pub const QUEUE: usize = 1024;

/// Runs until every sender is gone, then flushes the window into the store.
pub(crate) async fn run(
    mut rx: mpsc::Receiver<GetFlowsResponse>,
    state: Arc<RelayState>,
    mut window: ReorderWindow<GetFlowsResponse>,
) {
    let mut out = Vec::new();
    loop {
        let deadline = window.next_deadline();
        let report = state
            .history_feed()
            .and_then(|f| f.report_due())
            .map(Instant::from_std);
        tokio::select! {
            received = rx.recv() => match received {
                Some(response) => {
                    let time = event_time(&response).unwrap_or_else(now_nanos);
                    window.push(time, response, Instant::now(), &mut out);
                }
                None => {
                    window.flush(&mut out);
                    publish(&state, &window, &mut out);
                    report_history_losses(&state, true);
                    return;
                }
            },
            () = sleep_until(deadline) => window.release_due(Instant::now(), &mut out),
            () = sleep_until(report) => {}
        }
        publish(&state, &window, &mut out);
        report_history_losses(&state, false);
    }
}

fn publish(
    state: &RelayState,
    window: &ReorderWindow<GetFlowsResponse>,
    out: &mut Vec<GetFlowsResponse>,
) {
    if out.is_empty() {
        return;
    }
    for response in out.drain(..) {
        state.publish(response);
    }
    state.set_reorder_stats(window.stats());
}

/// Flows the history writer could not take, as `LostEvent`s in the stream
/// (at most every [`crate::history::feed::REPORT_EVERY`], or now with `force`).
fn report_history_losses(state: &RelayState, force: bool) {
    if let Some(feed) = state.history_feed() {
        for lost in feed.lost_events(force) {
            state.store().push(lost);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use observer_proto::flow::Flow;
    use observer_proto::observer::get_flows_response::ResponseTypes;

    use super::*;
    use crate::peer::Peers;
    use observer_proto::time::timestamp;
    use observer_runtime::store::FlowStore;

    fn flow(node: &str, t: i128) -> GetFlowsResponse {
        GetFlowsResponse {
            node_name: node.into(),
            time: Some(timestamp(t)),
            response_types: Some(ResponseTypes::Flow(Flow::default())),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn two_nodes_interleave_by_time_after_the_window() {
        let state = Arc::new(RelayState::new(
            FlowStore::new(100),
            Peers::new(&["a:1".into()]),
        ));
        let (tx, rx) = mpsc::channel(QUEUE);
        let window = ReorderWindow::new(Duration::from_millis(500), 100);
        let merge = tokio::spawn(run(rx, state.clone(), window));
        let (_, mut follow) = state.store().snapshot_and_follow();
        for (node, t) in [("n1", 10), ("n1", 30), ("n2", 20), ("n2", 40)] {
            tx.send(flow(node, t)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(499)).await;
        assert!(state.store().is_empty(), "still held");
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut got = Vec::new();
        for _ in 0..4 {
            let e = follow.recv().await.unwrap();
            got.push((e.response.node_name.clone(), event_time(&e.response)));
        }
        let want: Vec<(String, Option<i128>)> = [("n1", 10), ("n2", 20), ("n1", 30), ("n2", 40)]
            .iter()
            .map(|(n, t)| (n.to_string(), Some(*t)))
            .collect();
        assert_eq!(got, want);
        drop(tx);
        merge.await.unwrap();
        assert_eq!(state.reorder_stats().released, 4);
    }
}
