//! The service map's "changes" view (`c`): the graph of the newest window of
//! flows against the graph of the window before it, by flow time, both built
//! from the flows on screen that pass the filter and compared by
//! `service_graph::GraphDiff`.
//!
//! A window is as long as the service map's (`app::GRAPH_WINDOW`) when the
//! flows reach back two of them; otherwise the time they cover is split in
//! two equal halves, and the view says so. [`ChangesCache`] keeps the
//! comparison until the flows on screen or the filter change.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use observer_proto::flow::Flow;
use observer_proto::time;
use service_graph::{GraphBuilder, GraphDiff, Threshold};

use super::text::clock;

/// Two windows of flows and what changed between them.
#[derive(Debug)]
pub struct Changes {
    pub diff: GraphDiff,
    /// The newer window, `[since, until]`, in nanoseconds since the epoch.
    pub window: (i128, i128),
    /// The older window, `[since, until)`.
    pub against: (i128, i128),
    /// Set when the windows are shorter than wanted (halves of the time the
    /// flows cover): the oldest flow's time.
    pub reaches_back_to: Option<i128>,
}

/// What a comparison was made of: the flows on screen and the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesKey {
    pub next_seq: u64,
    pub matching: usize,
    pub paused: bool,
    pub filter: String,
}

fn flow_ns(f: &Flow) -> Option<i128> {
    f.time.as_ref().map(time::nanos)
}

/// Compares the newest `longest` (or half of what `flows` cover, if less)
/// with the same length before it; `None` until the flows cover some time.
pub fn compare<'a>(
    flows: impl Iterator<Item = &'a Flow> + Clone,
    longest: Duration,
    threshold: Threshold,
) -> Option<Changes> {
    let times = flows.clone().filter_map(flow_ns);
    let (oldest, newest) = times.fold(None, |acc: Option<(i128, i128)>, t| {
        Some(acc.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))))
    })?;
    let longest = longest.as_nanos() as i128;
    let span = longest.min((newest - oldest) / 2);
    if span <= 0 {
        return None;
    }
    let (cut, start) = (newest - span, newest - 2 * span);
    let within = |lo: i128, hi: i128| {
        flows
            .clone()
            .filter(move |f| flow_ns(f).is_some_and(|t| lo <= t && t < hi))
    };
    let before = GraphBuilder::build(within(start, cut));
    let after = GraphBuilder::build(within(cut, newest + 1));
    Some(Changes {
        diff: GraphDiff::new(&before, &after, threshold),
        window: (cut, newest),
        against: (start, cut),
        reaches_back_to: (span < longest).then_some(oldest),
    })
}

/// `15:04:05.000`.
fn at(ns: i128) -> String {
    clock(Some(&time::timestamp(ns)), false)
}

/// `5m00s`, `25.0ms`, `1.5s`.
fn length(ns: i128) -> String {
    let secs = ns as f64 / 1e9;
    if secs >= 60.0 {
        let whole = secs.round() as i64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else if secs >= 1.0 {
        format!("{secs:.1}s")
    } else {
        format!("{:.1}ms", secs * 1000.0)
    }
}

impl Changes {
    /// What is compared, for the top of the view: `15:04:05.525-15:04:06.050
    /// against 15:04:05.000-15:04:05.525 (5m00s each; flows, bytes beyond 50%)`.
    pub fn describe(&self) -> String {
        let (since, until) = self.window;
        let short = if self.reaches_back_to.is_some() {
            ": as far back as the flows go"
        } else {
            ""
        };
        format!(
            "{}-{} against {}-{} ({} each{short}; flows, bytes beyond {}%)",
            at(since),
            at(until),
            at(self.against.0),
            at(self.against.1),
            length(until - since),
            self.diff.threshold.as_percent()
        )
    }
}

/// The last comparison and what it was made of: the view computes it
/// again only when the flows on screen or the filter changed.
#[derive(Debug, Default)]
pub struct ChangesCache(RefCell<Option<(ChangesKey, Rc<Option<Changes>>)>>);

impl ChangesCache {
    /// The comparison made of `key`, computed by `compare` if not cached.
    pub fn get_or(
        &self,
        key: ChangesKey,
        compare: impl FnOnce() -> Option<Changes>,
    ) -> Rc<Option<Changes>> {
        let mut cache = self.0.borrow_mut();
        if let Some((k, c)) = cache.as_ref()
            && *k == key
        {
            return c.clone();
        }
        let c = Rc::new(compare());
        *cache = Some((key, c.clone()));
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::GRAPH_WINDOW;
    use service_graph::Change;
    use test_support::graph_flows as fixtures;

    #[test]
    fn halves_of_what_the_flows_cover_when_shorter_than_the_window() {
        // The script covers 50 ms: 25 ms against the 25 ms before.
        let flows = fixtures::flows();
        let c = compare(flows.iter(), GRAPH_WINDOW, Threshold::DEFAULT).unwrap();
        let t0 = i128::from(fixtures::T0) * 1_000_000_000;
        assert_eq!(c.window, (t0 + 25_000_000, t0 + 50_000_000));
        assert_eq!(c.against, (t0, t0 + 25_000_000));
        assert_eq!(c.reaches_back_to, Some(t0));
        let changes: Vec<(String, Change)> =
            c.diff.edges.iter().map(|e| (e.id(), e.change)).collect();
        assert_eq!(
            changes,
            [
                ("default/frontend->default/api".into(), Change::Vanished),
                (
                    "default/frontend->kube-system/coredns-1".into(),
                    Change::Vanished
                ),
                ("default/frontend->world".into(), Change::New),
                ("host->default/api".into(), Change::New),
            ]
        );
        assert_eq!(
            c.describe(),
            "15:04:05.025-15:04:05.050 against 15:04:05.000-15:04:05.025 (25.0ms each: as far back as the flows go; flows, bytes beyond 50%)"
        );
    }

    #[test]
    fn whole_windows_when_the_flows_reach_back_far_enough() {
        // The host probe at T0 and 10 minutes later: 5 minutes each, the
        // older probe in the older window.
        let mut late = fixtures::host_probe();
        late.time.as_mut().unwrap().seconds += 600;
        let flows = [fixtures::host_probe(), late];
        let c = compare(flows.iter(), GRAPH_WINDOW, Threshold::DEFAULT).unwrap();
        let end = (i128::from(fixtures::T0) + 600) * 1_000_000_000 + 50_000_000;
        assert_eq!(c.window, (end - 300_000_000_000, end));
        assert_eq!(c.reaches_back_to, None);
        assert_eq!(c.diff.edges[0].change, Change::Unchanged);
        assert!(
            c.describe()
                .ends_with("(5m00s each; flows, bytes beyond 50%)")
        );
        // One flow, or none, covers no time.
        assert!(compare(flows[..1].iter(), GRAPH_WINDOW, Threshold::DEFAULT).is_none());
        assert!(compare([].iter(), GRAPH_WINDOW, Threshold::DEFAULT).is_none());
    }
}
