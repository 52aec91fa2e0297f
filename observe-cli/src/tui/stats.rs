//! What the header shows besides flows: the flow rate over the last 10 s,
//! node status from `NodeStatus` events (and the nodes flows come from), lost
//! events by source, and how the stream ended.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use observer_proto::flow::{LostEvent, LostEventSource};
use observer_proto::relay::{NodeState, NodeStatusEvent};

/// How far back the flow rate looks. Flows come in bursts (a node flushes
/// its events, a client polls every few seconds): a 1 s window showed 12 and
/// 70 flows/s in turn for a steady 41/s. Ten seconds averages such bursts out
/// and still falls to 0 within 10 s of the last flow.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Flows per second over [`RATE_WINDOW`], from the flow count sampled at
/// every tick (until the window has filled, over the time since the first).
#[derive(Debug, Default)]
pub struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
    rate: f64,
}

impl RateMeter {
    /// Records the running `total` at `now` and updates the rate.
    pub fn sample(&mut self, now: Instant, total: u64) {
        self.samples.push_back((now, total));
        // Keep one sample at least a window old, as the window's start.
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= RATE_WINDOW {
            self.samples.pop_front();
        }
        let (t0, n0) = self.samples[0];
        let dt = now.duration_since(t0).as_secs_f64();
        self.rate = if dt > 0.0 {
            (total - n0) as f64 / dt
        } else {
            0.0
        };
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

/// Counters of the stream as a whole.
#[derive(Debug, Default)]
pub struct Stats {
    /// Flows received, including those dropped from the buffer.
    pub flows_seen: u64,
    pub rate: RateMeter,
    /// Node name → last known state.
    pub nodes: BTreeMap<String, NodeState>,
    /// Lost events by source name.
    pub lost: BTreeMap<&'static str, u64>,
    /// Why the stream stopped, once it has for good.
    pub stream_end: Option<String>,
    /// While the stream is being reopened: the banner saying why.
    pub reconnecting: Option<String>,
}

impl Stats {
    pub fn node_status(&mut self, ev: &NodeStatusEvent) {
        let state = NodeState::try_from(ev.state_change).unwrap_or(NodeState::UnknownNodeState);
        for n in &ev.node_names {
            // Gone: not a node any more (a relay's peer known by its address
            // until it had a name, for one).
            if state == NodeState::NodeGone {
                self.nodes.remove(n);
            } else {
                self.nodes.insert(n.clone(), state);
            }
        }
    }

    /// A node that sends flows is connected unless a status said otherwise.
    pub fn flow_from(&mut self, node: &str) {
        if !node.is_empty() && !self.nodes.contains_key(node) {
            self.nodes
                .insert(node.to_string(), NodeState::NodeConnected);
        }
    }

    pub fn lost_events(&mut self, ev: &LostEvent) {
        let source = LostEventSource::try_from(ev.source)
            .map_or("UNKNOWN_LOST_EVENT_SOURCE", |s| s.as_str_name());
        *self.lost.entry(source).or_default() += ev.num_events_lost;
    }

    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum()
    }

    /// Names of the nodes in `state`, sorted.
    pub fn nodes_in(&self, state: NodeState) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|(_, s)| **s == state)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_covers_the_window_from_the_first_sample_on() {
        let t0 = Instant::now();
        let mut r = RateMeter::default();
        r.sample(t0, 0);
        r.sample(t0 + Duration::from_millis(500), 5);
        r.sample(t0 + Duration::from_secs(1), 10);
        assert_eq!(r.rate(), 10.0);
        r.sample(t0 + Duration::from_secs(10), 100);
        r.sample(t0 + Duration::from_secs(11), 200);
        // The window now starts at the 1 s sample: 190 flows in 10 s.
        assert_eq!(r.rate(), 19.0);
    }

    /// The reported swing: a steady 41 flows/s that come as 82 in one second
    /// and none in the next, sampled every 100 ms as the TUI does.
    #[test]
    fn bursty_flows_show_a_steady_rate_that_falls_to_0_when_they_stop() {
        let tick = Duration::from_millis(100);
        let t0 = Instant::now();
        let mut r = RateMeter::default();
        let mut total = 0;
        let mut shown = Vec::new();
        // 60 s of bursts: the 82 flows of an odd second spread over its ten
        // ticks (8 each, 9 in the last two).
        for i in 1..=600u32 {
            if (i - 1) / 10 % 2 == 1 {
                total += if (i - 1) % 10 >= 8 { 9 } else { 8 };
            }
            r.sample(t0 + tick * i, total);
            if i > 100 {
                shown.push(r.rate());
            }
        }
        assert_eq!(total, 30 * 82);
        let (lo, hi) = shown
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        assert!(
            (40.5..=41.5).contains(&lo) && (40.5..=41.5).contains(&hi),
            "{lo}..{hi}"
        );
        // Then nothing: 2 s later one burst fewer in the window (4 × 82 in
        // 10 s), 0 once the window holds no flow.
        r.sample(t0 + tick * 620, total);
        assert_eq!(r.rate(), 32.8);
        r.sample(t0 + tick * 700, total);
        assert_eq!(r.rate(), 0.0);
    }
}
