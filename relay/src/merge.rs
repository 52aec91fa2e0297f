//! The merge task: takes every peer's responses, and when each peer connects
//! and goes ([`MergeInput`]), from one bounded queue, passes them through the
//! [`ReorderWindow`], and pushes what it releases into the relay's
//! [`FlowStore`](observer_runtime::store::FlowStore) in time order.
//!
//! The queue is bounded, so a stuck merge would slow the peers' streams, never
//! grow memory; clients never slow it down (the store's broadcast drops for a
//! lagging client instead), nor does history: each flow is offered to the
//! history writer's bounded queue, and what it cannot take is counted and
//! reported in the stream as a `LostEvent` ([`crate::history::feed`]).

use std::sync::Arc;

use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::peer::PeerId;
use crate::reorder::ReorderWindow;
use crate::state::RelayState;
use observer_proto::time::{event_time, now_nanos, timestamp};

/// Capacity of the queue from the peer tasks to the merge.
pub const QUEUE: usize = 1024;

/// What a peer task tells the merge, in the order it happens.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "the queue carries responses by value, as before; a box would cost an allocation per flow"
)]
pub enum MergeInput {
    /// The peer's flow stream began: flows wait for it to pass their time.
    Connected(PeerId),
    /// One response of the peer's stream.
    Response(PeerId, GetFlowsResponse),
    /// The peer's session ended: nothing waits for it any more.
    Gone(PeerId),
}

/// Runs until every sender is gone, then flushes the window into the store.
pub(crate) async fn run(
    mut rx: mpsc::Receiver<MergeInput>,
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
                Some(MergeInput::Response(peer, mut response)) => {
                    let time = event_time(&response).unwrap_or_else(now_nanos);
                    // Stamped when it came (a lost-events record may carry
                    // no time): a time window must be able to leave it out.
                    response.time.get_or_insert_with(|| timestamp(time));
                    // Only a flow's time says how far its node has got: a
                    // lost-events record is stamped when the loss was found.
                    if matches!(response.response_types, Some(ResponseTypes::Flow(_))) {
                        window.push(peer, time, response, Instant::now(), &mut out);
                    } else {
                        window.push_report(time, response, Instant::now(), &mut out);
                    }
                }
                Some(MergeInput::Connected(peer)) => window.connect(peer, Instant::now()),
                Some(MergeInput::Gone(peer)) => window.disconnect(peer, Instant::now(), &mut out),
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

    const WALL0: i128 = 1_800_000_000_000_000_000;
    const MS: i128 = 1_000_000;

    #[tokio::test(start_paused = true)]
    async fn two_nodes_in_order_come_out_in_time_order_long_before_the_window() {
        let state = Arc::new(RelayState::new(
            FlowStore::new(100),
            Peers::new(&["a:1".into(), "b:1".into()]),
        ));
        let (tx, rx) = mpsc::channel(QUEUE);
        let start = Instant::now();
        // The relay's clock reads WALL0 now (tokio's clock is paused: it
        // moves only when every task waits).
        let window = ReorderWindow::with_clock(Duration::from_millis(500), 100, (start, WALL0));
        let merge = tokio::spawn(run(rx, state.clone(), window));
        let (_, mut follow) = state.store().snapshot_and_follow();
        tx.send(MergeInput::Connected(0)).await.unwrap();
        tx.send(MergeInput::Connected(1)).await.unwrap();
        for (peer, node, t) in [(0, "n1", 1), (1, "n2", 2), (0, "n1", 3), (1, "n2", 4)] {
            tokio::time::sleep_until(start + Duration::from_millis(t)).await;
            tx.send(MergeInput::Response(
                peer,
                flow(node, WALL0 + t as i128 * MS),
            ))
            .await
            .unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..4 {
            let e = follow.recv().await.unwrap();
            got.push((e.response.node_name.clone(), event_time(&e.response)));
        }
        let want: Vec<(String, Option<i128>)> = [("n1", 1), ("n2", 2), ("n1", 3), ("n2", 4)]
            .iter()
            .map(|(n, t)| (n.to_string(), Some(WALL0 + t * MS)))
            .collect();
        assert_eq!(got, want);
        // The last one went once the clock passed it by the idle margin,
        // on the paused clock: nothing waited for the 500 ms window.
        assert_eq!(
            Instant::now(),
            start + Duration::from_millis(4) + crate::watermark::IDLE_MARGIN
        );
        // A node going away releases what waited for it, at once.
        for t in [30, 35] {
            tx.send(MergeInput::Response(0, flow("n1", WALL0 + t * MS)))
                .await
                .unwrap();
        }
        tx.send(MergeInput::Gone(1)).await.unwrap();
        let e = follow.recv().await.unwrap();
        assert_eq!(event_time(&e.response), Some(WALL0 + 30 * MS));
        assert_eq!(
            Instant::now(),
            start + Duration::from_millis(4) + crate::watermark::IDLE_MARGIN,
            "no clock needed"
        );
        // The last one is flushed when the merge ends.
        drop(tx);
        merge.await.unwrap();
        let e = follow.recv().await.unwrap();
        assert_eq!(event_time(&e.response), Some(WALL0 + 35 * MS));
        assert_eq!(state.reorder_stats().released, 6);
    }

    /// A probe's lost-events record without a time (its follower fell
    /// behind) is stamped when it came: a GetFlows time window then leaves
    /// it out, where before it matched every window.
    #[tokio::test]
    async fn a_record_without_a_time_is_stamped_when_it_comes() {
        let state = Arc::new(RelayState::new(
            FlowStore::new(100),
            Peers::new(&["a:1".into()]),
        ));
        let (tx, rx) = mpsc::channel(QUEUE);
        let window =
            ReorderWindow::with_clock(Duration::from_millis(10), 100, (Instant::now(), WALL0));
        let merge = tokio::spawn(run(rx, state.clone(), window));
        let (_, mut follow) = state.store().snapshot_and_follow();
        let before = now_nanos();
        let lost = GetFlowsResponse {
            node_name: "n1".into(),
            time: None,
            response_types: Some(ResponseTypes::LostEvents(Default::default())),
        };
        tx.send(MergeInput::Response(0, lost)).await.unwrap();
        drop(tx);
        let e = follow.recv().await.unwrap();
        let t = event_time(&e.response).expect("a time");
        assert!(t >= before && t <= now_nanos(), "{t}");
        merge.await.unwrap();
    }
}
