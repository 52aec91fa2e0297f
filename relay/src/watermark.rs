//! How far in flow time each connected node has got: the watermark that lets
//! the [`crate::reorder`] window release a flow as soon as every node has
//! passed its time, instead of holding it for the whole window.
//!
//! A node has passed time `T` once it sent a flow later than `T` by
//! [`ORDER_SLACK`] (a node's own flows are in order to within that), or, while
//! it sends nothing, once the relay's clock is past `T` plus the node's recent
//! delay plus [`IDLE_MARGIN`]: a flow of time `T` from it would have arrived by
//! then. A node's delay is the largest `arrival − flow time` of its flows in
//! the last one to two seconds (so a node whose clock runs behind, or whose
//! link is slow, is waited for longer), never more than the window: no flow is
//! held longer than the window would hold it.
//!
//! A node that just connected first sends what it already had (its ring):
//! flows older than the window. Until it sends a recent one (or the window has
//! gone by since it connected) it is *catching up*, and nothing passes by
//! watermark: only the window's holds release, which sorts its old flows in
//! among the others' as before.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// A node's flows may come out of time order by this much (events of
/// several CPUs share one ring buffer).
pub const ORDER_SLACK: Duration = Duration::from_millis(1);
/// An idle node is taken to have passed a time this long after its recent
/// delay has gone by.
pub const IDLE_MARGIN: Duration = Duration::from_millis(20);
/// A delay sample counts for one to two of these.
const DELAY_EPOCH: Duration = Duration::from_secs(1);

/// Which node a flow came from (the relay's peer index).
pub type Source = usize;

/// The largest sample of the current and the previous epoch.
#[derive(Debug, Clone, Copy)]
struct RecentMax {
    started: Instant,
    current: i128,
    previous: i128,
}

impl RecentMax {
    fn new(now: Instant) -> Self {
        RecentMax {
            started: now,
            current: 0,
            previous: 0,
        }
    }

    fn sample(&mut self, now: Instant, value: i128) {
        if now.saturating_duration_since(self.started) >= DELAY_EPOCH {
            self.previous = self.current;
            self.current = value;
            self.started = now;
        } else {
            self.current = self.current.max(value);
        }
    }

    fn value(&self) -> i128 {
        self.current.max(self.previous)
    }
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The latest flow time the node sent.
    latest: Option<i128>,
    delay: RecentMax,
    /// Until when it may still be sending what it had before it connected;
    /// `None` once it sent a recent flow.
    catching_up: Option<Instant>,
}

impl Progress {
    fn is_catching_up(&self, now: Instant) -> bool {
        self.catching_up.is_some_and(|until| now < until)
    }
}

/// The connected nodes' progress, and the relay's clock as flow time.
#[derive(Debug)]
pub struct Watermarks {
    nodes: BTreeMap<Source, Progress>,
    /// The longest a node's delay counts (the reorder window).
    limit: i128,
    /// `Instant` and wall-clock time (ns since the epoch) of one moment.
    anchor: (Instant, i128),
}

fn ns(d: Duration) -> i128 {
    d.as_nanos() as i128
}

impl Watermarks {
    /// No node yet; `limit` caps a node's delay; `anchor` ties `Instant`s to
    /// flow time (`Instant`, ns since the epoch at that instant).
    pub fn new(limit: Duration, anchor: (Instant, i128)) -> Self {
        Watermarks {
            nodes: BTreeMap::new(),
            limit: ns(limit),
            anchor,
        }
    }

    /// The relay's clock at `now`, as flow time.
    pub fn wall(&self, now: Instant) -> i128 {
        let (at, wall) = self.anchor;
        if now >= at {
            wall + ns(now - at)
        } else {
            wall - ns(at - now)
        }
    }

    fn instant(&self, wall: i128) -> Instant {
        let (at, anchor_wall) = self.anchor;
        let ahead = u64::try_from(wall - anchor_wall).unwrap_or(0);
        at + Duration::from_nanos(ahead)
    }

    /// `source` is connected: flows wait for it too (from now on).
    pub fn connect(&mut self, source: Source, now: Instant) {
        let catching_up = Some(now + Duration::from_nanos(self.limit as u64));
        self.nodes.entry(source).or_insert(Progress {
            latest: None,
            delay: RecentMax::new(now),
            catching_up,
        });
    }

    /// `source` went away: nothing waits for it any more.
    pub fn disconnect(&mut self, source: Source) {
        self.nodes.remove(&source);
    }

    /// `source` sent a flow of `time` that arrived at `now` (connecting it,
    /// if it was not).
    pub fn observe(&mut self, source: Source, time: i128, now: Instant) {
        let wall = self.wall(now);
        let limit = self.limit;
        self.connect(source, now);
        if let Some(p) = self.nodes.get_mut(&source) {
            p.latest = Some(p.latest.map_or(time, |l| l.max(time)));
            let delay = wall - time;
            if delay < limit {
                p.catching_up = None;
            }
            // What it had before it connected says nothing of its delay.
            if !p.is_catching_up(now) {
                p.delay.sample(now, delay.clamp(0, limit));
            }
        }
    }

    /// The flow time every connected node has passed at `now`; anything
    /// goes (`i128::MAX`) while no node is connected, nothing while one is
    /// catching up.
    pub fn passed(&mut self, now: Instant) -> i128 {
        for p in self.nodes.values_mut() {
            if !p.is_catching_up(now) {
                p.catching_up = None;
            }
        }
        let wall = self.wall(now);
        self.nodes
            .values()
            .map(|p| {
                if p.is_catching_up(now) {
                    return i128::MIN;
                }
                let idle = wall - p.delay.value() - ns(IDLE_MARGIN);
                p.latest.map_or(idle, |l| idle.max(l - ns(ORDER_SLACK)))
            })
            .min()
            .unwrap_or(i128::MAX)
    }

    /// When the clock alone takes every node past `time` (nodes that already
    /// passed it by their flows do not count; one catching up counts until
    /// it has at least, as of the last [`Self::passed`]); `None` when they
    /// all have.
    pub fn when_passed(&self, time: i128) -> Option<Instant> {
        self.nodes
            .values()
            .filter(|p| {
                p.catching_up.is_some() || p.latest.is_none_or(|l| l - ns(ORDER_SLACK) < time)
            })
            .map(|p| {
                let by_clock = self.instant(time + p.delay.value() + ns(IDLE_MARGIN));
                p.catching_up.map_or(by_clock, |until| by_clock.max(until))
            })
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i128 = 1_000_000;
    /// Flow times of the tests: the relay's clock at `t0` is 1,000 ms.
    const WALL0: i128 = 1_000 * MS;

    fn marks(t0: Instant) -> Watermarks {
        Watermarks::new(Duration::from_millis(500), (t0, WALL0))
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn every_node_must_pass_a_time_by_its_flows_or_by_the_clock() {
        let t0 = Instant::now();
        let mut w = marks(t0);
        assert_eq!(w.passed(t0), i128::MAX, "no node: nothing to wait for");
        // Both nodes send flows as they happen (no delay).
        w.observe(1, WALL0, t0);
        w.observe(2, WALL0 - 5 * MS, t0);
        // Node 2 is behind: it has passed 994 ms by its flows; by the clock,
        // both have passed 1,000 − 20 ms.
        assert_eq!(w.passed(t0), WALL0 - 6 * MS);
        assert_eq!(w.when_passed(WALL0 - 6 * MS), None);
        // A later flow waits until the clock is past it by each node's delay
        // (node 1: 0, node 2: 5 ms) and the margin.
        assert_eq!(w.when_passed(WALL0 + 3 * MS), Some(at(t0, 28)));
        assert_eq!(w.passed(at(t0, 28)), WALL0 + 3 * MS);
        // Node 2 sends a later flow: now node 1 is the one behind.
        w.observe(2, WALL0 + 4 * MS, at(t0, 4));
        assert_eq!(w.passed(at(t0, 4)), WALL0 - MS);
        // Node 1 goes away: node 2 alone counts.
        w.disconnect(1);
        assert_eq!(w.passed(at(t0, 4)), WALL0 + 3 * MS);
    }

    #[test]
    fn a_slow_node_is_waited_for_as_long_as_its_recent_delay_up_to_the_window() {
        let t0 = Instant::now();
        let mut w = marks(t0);
        // Its flows arrive 100 ms after their time.
        w.observe(1, WALL0 - 100 * MS, t0);
        assert_eq!(w.when_passed(WALL0), Some(at(t0, 120)));
        // A flow 2 s old (a backlog after reconnecting) counts as the window.
        w.observe(1, WALL0 - 2_000 * MS, at(t0, 10));
        assert_eq!(w.when_passed(WALL0), Some(at(t0, 520)));
        // Two epochs later its delay is what it is now again.
        w.observe(1, WALL0 + 1_000 * MS, at(t0, 1_000));
        w.observe(1, WALL0 + 2_000 * MS, at(t0, 2_000));
        assert_eq!(w.when_passed(WALL0 + 3_000 * MS), Some(at(t0, 3_020)));
    }

    #[test]
    fn a_connected_node_that_never_sent_holds_for_the_window_then_by_the_clock() {
        let t0 = Instant::now();
        let mut w = marks(t0);
        w.connect(7, t0);
        // It may be sending what it had: nothing passes for the window.
        assert_eq!(w.passed(at(t0, 50)), i128::MIN);
        assert_eq!(w.when_passed(WALL0 + 100 * MS), Some(at(t0, 500)));
        assert_eq!(w.passed(at(t0, 500)), WALL0 + 480 * MS);
        assert_eq!(w.when_passed(WALL0 + 500 * MS), Some(at(t0, 520)));
    }

    #[test]
    fn a_node_catches_up_with_its_first_recent_flow() {
        let t0 = Instant::now();
        let mut w = marks(t0);
        w.connect(1, t0);
        // Its ring first: seconds old.
        w.observe(1, WALL0 - 3_000 * MS, at(t0, 1));
        assert_eq!(w.passed(at(t0, 1)), i128::MIN);
        // Then a flow of now, 2 ms late: caught up, and the old ones did not
        // count in its delay.
        w.observe(1, WALL0, at(t0, 2));
        assert_eq!(w.passed(at(t0, 2)), WALL0 - MS);
        assert_eq!(w.when_passed(WALL0 + 10 * MS), Some(at(t0, 32)));
    }
}
