//! What the header shows besides flows: the flow rate over the last 10 s
//! (by the flows' own times),
//! node status from `NodeStatus` events (and the nodes flows come from), lost
//! events by source, and how the stream ended.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use observer_proto::flow::{LostEvent, LostEventSource};
use observer_proto::relay::{NodeState, NodeStatusEvent};

/// How far back the flow rate looks. Flows come in bursts (a node flushes
/// its events, a client polls every few seconds): counted as they arrived,
/// a 1 s window showed 12 and 70 flows/s in turn for a steady 41/s. Counted
/// by their own times over ten seconds, bursts even out, history replayed at
/// start counts only for the flows it holds of the last ten seconds, and the
/// rate falls to 0 within 10 s of the last flow.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Width of the rate's time buckets.
const BUCKET_NS: i128 = 100_000_000;

/// Flows per second over [`RATE_WINDOW`], by the flows' own times: those of
/// the window, over the window (or over the time since the earliest of the
/// first tick and the oldest flow, until the window has filled).
#[derive(Debug, Default)]
pub struct RateMeter {
    /// Flows by the 100 ms bucket of their time (ns since the epoch / 1e8).
    buckets: BTreeMap<i128, u64>,
    /// Since when flows could have been counted, in ns: the first tick, or
    /// an older flow's time (history).
    counted_from: Option<i128>,
    rate: f64,
}

/// `t` in ns since the epoch (negative before it).
pub fn epoch_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

impl RateMeter {
    /// Counts a flow of time `ns` (ns since the epoch).
    pub fn flow_at(&mut self, ns: i128) {
        *self.buckets.entry(ns.div_euclid(BUCKET_NS)).or_default() += 1;
        self.counted_from = Some(self.counted_from.map_or(ns, |c| c.min(ns)));
    }

    /// Updates the rate for `now` and forgets flows older than the window.
    pub fn sample(&mut self, now: SystemTime) {
        let now = epoch_ns(now);
        let from = *self.counted_from.get_or_insert(now);
        let start = from.max(now - RATE_WINDOW.as_nanos() as i128);
        let first = start.div_euclid(BUCKET_NS);
        self.buckets = self.buckets.split_off(&first);
        let flows: u64 = self.buckets.values().sum();
        let secs = (now - start) as f64 / 1e9;
        self.rate = if secs > 0.0 { flows as f64 / secs } else { 0.0 };
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

    fn at(secs: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(1_795_705_445.0 + secs)
    }

    fn ns(secs: f64) -> i128 {
        epoch_ns(at(secs))
    }

    #[test]
    fn rate_covers_the_window_from_the_first_tick_on() {
        let mut r = RateMeter::default();
        r.sample(at(0.0));
        for i in 0..10 {
            r.flow_at(ns(0.05 + i as f64 * 0.1));
        }
        r.sample(at(1.0));
        assert_eq!(r.rate(), 10.0);
        for i in 0..190 {
            r.flow_at(ns(1.0 + i as f64 * 10.0 / 190.0));
        }
        r.sample(at(11.0));
        // The window is now 1 s..11 s: the 190 flows of it in 10 s.
        assert_eq!(r.rate(), 19.0);
    }

    /// `--last` or `--since` with `--follow`: the history comes at once, at
    /// start; only its flows of the last 10 s count, over those 10 s.
    #[test]
    fn history_loaded_at_start_counts_by_its_flows_times() {
        let mut r = RateMeter::default();
        for i in 0..1000 {
            r.flow_at(ns(-3600.0 + i as f64)); // an hour ago
        }
        for i in 0..50 {
            r.flow_at(ns(-5.0 + i as f64 * 0.1)); // the last 5 s
        }
        r.sample(at(0.0));
        assert_eq!(r.rate(), 5.0);
        assert_eq!(r.buckets.values().sum::<u64>(), 50, "older buckets dropped");
    }

    /// The reported swing (12 and 70 flows/s in turn, counted as they
    /// arrived): a steady 41 flows/s delivered as 82 every other second,
    /// sampled every 100 ms as the TUI does.
    #[test]
    fn bursty_flows_show_a_steady_rate_that_falls_to_0_when_they_stop() {
        let mut r = RateMeter::default();
        r.sample(at(0.0));
        let mut shown = Vec::new();
        let mut sent = 0;
        for i in 1..=600u32 {
            let now = i as f64 / 10.0;
            // Each odd second delivers the 82 flows of it and the second
            // before, spread over their two seconds.
            if i % 20 == 10 {
                for k in 0..82 {
                    r.flow_at(ns(now - 2.0 + (k as f64 + 0.5) * 2.0 / 82.0));
                }
                sent += 82;
            }
            r.sample(at(now));
            if i > 100 {
                shown.push(r.rate());
            }
        }
        assert_eq!(sent, 30 * 82);
        let (lo, hi) = shown
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        // Right after a delivery the window holds 10 s of flows (41/s); a
        // tick before the next, it holds 8.1 s of them (33.2/s): the rest
        // are still on their way.
        assert_eq!((lo, hi), (33.2, 41.0));
        // Then nothing: 0 once the window holds no flow.
        r.sample(at(70.0));
        assert_eq!(r.rate(), 0.0);
    }
}
