//! The bounded reorder window that merges the nodes' streams by time.
//!
//! A flow leaves as soon as every connected node has passed its time (the
//! [`Watermarks`]: by a later flow of its own, or, for a node that sends
//! nothing, once the clock says it would have), together with every held
//! flow of an earlier or equal time, smallest time first. With the nodes'
//! flows arriving in order that is a few milliseconds after they happen. No
//! flow is held longer than `window` after it arrived: when its hold is over
//! it leaves with everything earlier, whatever the watermark says.
//!
//! A node that just connected sends the flows it had first; until it sends a
//! recent one only the holds release, as they always did.
//!
//! Nothing waits for a straggler: an item older than what already went out is
//! *late* and leaves at once (counted). Memory is bounded: at most `capacity`
//! items are held; when full, the earliest item leaves early (counted as
//! *forced*).
//!
//! The window is plain data driven by the caller's clock ([`ReorderWindow::push`],
//! [`ReorderWindow::release_due`] take `now`), which keeps it testable without
//! timers; [`crate::merge`] drives it with tokio's.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::watermark::{Source, Watermarks};

/// What the window has done so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReorderStats {
    /// Items handed out, in total.
    pub released: u64,
    /// Items that arrived older than something already released; passed through
    /// at once, out of order.
    pub late: u64,
    /// Items released before their hold was over because the window was full.
    pub forced: u64,
}

/// A held item; the heap is a min-heap on `(time, seq)`.
struct Held<T> {
    time: i128,
    seq: u64,
    item: T,
}

impl<T> Held<T> {
    fn key(&self) -> (i128, u64) {
        (self.time, self.seq)
    }
}

impl<T> PartialEq for Held<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<T> Eq for Held<T> {}

impl<T> PartialOrd for Held<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Held<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

/// When a held item's hold ends, in arrival order.
struct Arrival {
    deadline: Instant,
    time: i128,
    seq: u64,
}

/// Holds items for a while and releases them sorted by time.
pub struct ReorderWindow<T> {
    window: Duration,
    capacity: usize,
    held: BinaryHeap<Held<T>>,
    /// One entry per admitted item, oldest arrival first. An entry whose item
    /// already left (pulled out by a later one) is *stale* and is skipped.
    arrivals: VecDeque<Arrival>,
    /// `(time, seq)` of the last item released from the heap. Heap items leave in
    /// key order, so every admitted item with a key up to this one has left.
    released_up_to: Option<(i128, u64)>,
    next_seq: u64,
    stats: ReorderStats,
    watermarks: Watermarks,
}

impl<T> ReorderWindow<T> {
    /// A window holding items for at most `window`, at most `capacity` (at
    /// least 1) at once, on the relay's clock.
    pub fn new(window: Duration, capacity: usize) -> Self {
        let anchor = (Instant::now(), observer_proto::time::now_nanos());
        Self::with_clock(window, capacity, anchor)
    }

    /// [`Self::new`] with the clock's `anchor`: an `Instant` and the flow
    /// time (ns since the epoch) it stands for.
    pub fn with_clock(window: Duration, capacity: usize, anchor: (Instant, i128)) -> Self {
        let capacity = capacity.max(1);
        ReorderWindow {
            window,
            capacity,
            held: BinaryHeap::with_capacity(capacity.min(4096)),
            arrivals: VecDeque::with_capacity(capacity.min(4096)),
            released_up_to: None,
            next_seq: 0,
            stats: ReorderStats::default(),
            watermarks: Watermarks::new(window, anchor),
        }
    }

    pub fn stats(&self) -> ReorderStats {
        self.stats
    }

    /// Items held right now.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// When something held is due next (a hold ends, or the clock takes
    /// every node past the earliest held time), if anything is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        let hold = self.arrivals.front().map(|a| a.deadline);
        let passed = self
            .held
            .peek()
            .and_then(|h| self.watermarks.when_passed(h.time));
        match (hold, passed) {
            (Some(h), Some(p)) => Some(h.min(p)),
            (h, p) => h.or(p),
        }
    }

    /// `source` is connected at `now`: flows wait for it to pass their time.
    pub fn connect(&mut self, source: Source, now: Instant) {
        self.watermarks.connect(source, now);
    }

    /// `source` went away: appends to `out` what only waited for it.
    pub fn disconnect(&mut self, source: Source, now: Instant, out: &mut Vec<T>) {
        self.watermarks.disconnect(source);
        self.release_passed(now, out);
    }

    /// Takes `item` of `time` (ns since the epoch) from `source` that arrived
    /// at `now`; appends to `out` whatever may leave now (this item and
    /// others every node has passed, a late item, or what a full window
    /// pushes out). Never waits.
    pub fn push(&mut self, source: Source, time: i128, item: T, now: Instant, out: &mut Vec<T>) {
        self.take(Some(source), time, item, now, out);
    }

    /// [`Self::push`] for an item whose time says nothing of how far its
    /// node has got (a lost-events record, stamped when the loss was found:
    /// ahead of the node's flows still to come): held and released by its
    /// time like any other, but it moves no watermark.
    pub fn push_report(&mut self, time: i128, item: T, now: Instant, out: &mut Vec<T>) {
        self.take(None, time, item, now, out);
    }

    fn take(
        &mut self,
        source: Option<Source>,
        time: i128,
        item: T,
        now: Instant,
        out: &mut Vec<T>,
    ) {
        self.make_room(out);
        if let Some(source) = source {
            self.watermarks.observe(source, time, now);
        }
        if self.released_up_to.is_some_and(|(t, _)| time < t) {
            self.stats.late += 1;
            self.stats.released += 1;
            out.push(item);
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.held.push(Held { time, seq, item });
        self.arrivals.push_back(Arrival {
            deadline: now + self.window,
            time,
            seq,
        });
        self.release_passed(now, out);
    }

    /// Appends to `out`, in time order, everything every node has passed at
    /// `now`, everything whose hold is over, and everything of an earlier or
    /// equal time.
    pub fn release_due(&mut self, now: Instant, out: &mut Vec<T>) {
        while let Some(front) = self.arrivals.front() {
            if front.deadline > now {
                break;
            }
            let time = front.time;
            self.arrivals.pop_front();
            self.release_through(time, out, false);
            self.drop_stale_arrivals();
        }
        self.release_passed(now, out);
    }

    /// Releases what every connected node has passed at `now`.
    fn release_passed(&mut self, now: Instant, out: &mut Vec<T>) {
        if self.held.is_empty() {
            return;
        }
        let passed = self.watermarks.passed(now);
        self.release_through(passed, out, false);
        self.drop_stale_arrivals();
    }

    /// Appends everything held to `out`, in time order (at shutdown).
    pub fn flush(&mut self, out: &mut Vec<T>) {
        while let Some(held) = self.held.pop() {
            self.emit(held, out, false);
        }
        self.arrivals.clear();
    }

    /// Releases held items with a time up to `time`, smallest first.
    fn release_through(&mut self, time: i128, out: &mut Vec<T>, forced: bool) {
        while self.held.peek().is_some_and(|h| h.time <= time) {
            if let Some(held) = self.held.pop() {
                self.emit(held, out, forced);
            }
        }
    }

    fn emit(&mut self, held: Held<T>, out: &mut Vec<T>, forced: bool) {
        self.released_up_to = Some(held.key());
        self.stats.released += 1;
        if forced {
            self.stats.forced += 1;
        }
        out.push(held.item);
    }

    fn is_stale(&self, a: &Arrival) -> bool {
        self.released_up_to.is_some_and(|r| (a.time, a.seq) <= r)
    }

    fn drop_stale_arrivals(&mut self) {
        while self.arrivals.front().is_some_and(|a| self.is_stale(a)) {
            self.arrivals.pop_front();
        }
    }

    /// Makes room for one more item: when the heap is full its earliest item
    /// leaves now; stale arrival entries are compacted away once they reach
    /// `capacity` (so the list stays under twice the capacity, amortized O(1)).
    fn make_room(&mut self, out: &mut Vec<T>) {
        if self.held.len() >= self.capacity
            && let Some(held) = self.held.pop()
        {
            self.emit(held, out, true);
        }
        self.drop_stale_arrivals();
        if self.arrivals.len() >= 2 * self.capacity {
            let released = self.released_up_to;
            self.arrivals
                .retain(|a| released.is_none_or(|r| (a.time, a.seq) > r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(500);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A window whose clock is 10 s behind the flow times of the hold tests
    /// (a few ns after the epoch), and whose one node's flows are closer
    /// together than [`crate::watermark::ORDER_SLACK`]: no watermark passes
    /// them, only holds end.
    fn held_only<T>(t0: Instant, capacity: usize) -> ReorderWindow<T> {
        ReorderWindow::with_clock(WINDOW, capacity, (t0, -10_000_000_000))
    }

    /// Flow time `n` ms after the relay's clock at `t0` in the watermark tests.
    fn at_ms(n: i128) -> i128 {
        WALL0 + n * 1_000_000
    }

    const WALL0: i128 = 1_800_000_000_000_000_000;

    #[test]
    fn two_nodes_in_order_leave_in_time_order_as_soon_as_both_passed() {
        let t0 = Instant::now();
        let mut w = ReorderWindow::with_clock(WINDOW, 100, (t0, WALL0));
        let mut out = Vec::new();
        w.connect(1, t0);
        w.connect(2, t0);
        // Each node's flows arrive in order, as they happen (node 2's of
        // 8 ms 2 ms later, after node 1's of 9 ms): (node, time, arrival, name).
        let flows = [
            (1, 1, 1, "a1"),
            (2, 2, 2, "b2"),
            (1, 3, 3, "a3"),
            (2, 6, 6, "b6"),
            (1, 9, 9, "a9"),
            (2, 8, 10, "b8"),
        ];
        let mut released = Vec::new();
        for (node, time, arrived, name) in flows {
            w.push(node, at_ms(time), name, t0 + ms(arrived), &mut out);
            released.push(out.clone());
        }
        // A flow leaves once the other node has sent a later one (by more
        // than the slack of its own order), long before any hold ends.
        assert_eq!(
            released,
            [
                vec![],
                vec![],
                vec!["a1"],
                vec!["a1", "b2"],
                vec!["a1", "b2", "a3"],
                vec!["a1", "b2", "a3", "b6"],
            ]
        );
        // Node 2 says nothing more: 8 ms leaves once the clock has passed it
        // by node 2's delay (2 ms) and the idle margin, not when its hold ends.
        assert_eq!(w.next_deadline(), Some(t0 + ms(30)));
        w.release_due(t0 + ms(29), &mut out);
        assert_eq!(out.len(), 4);
        w.release_due(t0 + ms(30), &mut out);
        assert_eq!(out, ["a1", "b2", "a3", "b6", "b8"]);
        assert_eq!(w.next_deadline(), Some(t0 + ms(31)));
        w.release_due(t0 + ms(31), &mut out);
        assert_eq!(out, ["a1", "b2", "a3", "b6", "b8", "a9"]);
        assert_eq!(w.next_deadline(), None);
        assert_eq!(
            w.stats(),
            ReorderStats {
                released: 6,
                late: 0,
                forced: 0
            }
        );
    }

    #[test]
    fn a_report_stamped_ahead_of_its_nodes_flows_moves_no_watermark() {
        let t0 = Instant::now();
        let mut w = ReorderWindow::with_clock(WINDOW, 100, (t0, WALL0));
        let mut out = Vec::new();
        w.connect(1, t0);
        w.connect(2, t0);
        // Node 2 reports a gap it found (stamped 100 ms, when found), and
        // its backlog from before follows.
        w.push(1, at_ms(10), "a10", t0 + ms(10), &mut out);
        w.push_report(at_ms(100), "lost2", t0 + ms(11), &mut out);
        w.push(1, at_ms(20), "a20", t0 + ms(20), &mut out);
        assert!(out.is_empty(), "node 2 has not passed 10 ms: {out:?}");
        w.push(2, at_ms(5), "b5", t0 + ms(21), &mut out);
        w.push(2, at_ms(15), "b15", t0 + ms(22), &mut out);
        assert_eq!(out, ["b5", "a10"]);
        w.flush(&mut out);
        assert_eq!(out, ["b5", "a10", "b15", "a20", "lost2"]);
        assert_eq!(w.stats().late, 0);
    }

    #[test]
    fn a_node_going_away_releases_what_waited_for_it() {
        let t0 = Instant::now();
        let mut w = ReorderWindow::with_clock(WINDOW, 100, (t0, WALL0));
        let mut out = Vec::new();
        w.connect(1, t0);
        w.connect(2, t0);
        w.push(1, at_ms(0), "a0", t0, &mut out);
        w.push(1, at_ms(5), "a5", t0 + ms(5), &mut out);
        assert!(out.is_empty(), "node 2 may still be sending older flows");
        w.disconnect(2, t0 + ms(5), &mut out);
        assert_eq!(out, ["a0"]);
    }

    #[test]
    fn out_of_order_input_within_the_window_comes_out_sorted() {
        let t0 = Instant::now();
        let mut w = held_only(t0, 100);
        let mut out = Vec::new();
        // Three nodes' flows, arriving out of time order within 200 ms.
        for (i, time) in [30, 10, 25, 20, 15].into_iter().enumerate() {
            w.push(0, time, time, t0 + ms(50 * i as u64), &mut out);
        }
        assert!(out.is_empty(), "nothing leaves before its hold is over");
        w.release_due(t0 + ms(499), &mut out);
        assert!(out.is_empty());
        assert_eq!(w.next_deadline(), Some(t0 + WINDOW));
        // The first arrival (time 30) is due: it leaves with everything earlier.
        w.release_due(t0 + WINDOW, &mut out);
        assert_eq!(out, [10, 15, 20, 25, 30]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None, "stale holds are dropped");
        assert_eq!(
            w.stats(),
            ReorderStats {
                released: 5,
                late: 0,
                forced: 0
            }
        );
    }

    #[test]
    fn holds_end_one_by_one_and_later_times_wait_for_their_own() {
        let t0 = Instant::now();
        let mut w = held_only(t0, 100);
        let mut out = Vec::new();
        w.push(0, 100, "a100", t0, &mut out);
        w.push(0, 300, "b300", t0 + ms(100), &mut out);
        w.push(0, 200, "c200", t0 + ms(200), &mut out);
        w.release_due(t0 + ms(500), &mut out);
        assert_eq!(out, ["a100"]);
        assert_eq!(w.next_deadline(), Some(t0 + ms(600)));
        w.release_due(t0 + ms(600), &mut out);
        assert_eq!(out, ["a100", "c200", "b300"]);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn a_flow_later_than_the_window_passes_at_once_and_is_counted() {
        let t0 = Instant::now();
        let mut w = held_only(t0, 100);
        let mut out = Vec::new();
        w.push(0, 1_000, 1_000, t0, &mut out);
        w.push(0, 2_000, 2_000, t0 + ms(10), &mut out);
        w.release_due(t0 + WINDOW, &mut out);
        assert_eq!(out, [1_000]);
        // Older than what already left: released right away, not held.
        w.push(0, 900, 900, t0 + ms(600), &mut out);
        assert_eq!(out, [1_000, 900]);
        assert_eq!(w.len(), 1, "2000 is still held");
        assert_eq!(
            w.stats(),
            ReorderStats {
                released: 2,
                late: 1,
                forced: 0
            }
        );
        w.release_due(t0 + ms(510), &mut out);
        assert_eq!(out, [1_000, 900, 2_000]);
    }

    #[test]
    fn an_equal_time_after_a_release_is_held_not_late() {
        let t0 = Instant::now();
        let mut w = held_only(t0, 100);
        let mut out = Vec::new();
        w.push(0, 7, "first", t0, &mut out);
        w.release_due(t0 + WINDOW, &mut out);
        w.push(0, 7, "second", t0 + ms(600), &mut out);
        assert_eq!(out, ["first"]);
        assert_eq!(w.next_deadline(), Some(t0 + ms(1_100)));
        w.release_due(t0 + ms(1_100), &mut out);
        assert_eq!(out, ["first", "second"]);
        assert_eq!(w.stats().late, 0);
    }

    #[test]
    fn a_full_window_releases_the_earliest_early_and_stays_bounded() {
        let t0 = Instant::now();
        let mut w = held_only(t0, 3);
        let mut out = Vec::new();
        for time in [50, 40, 30, 20, 60] {
            w.push(0, time, time, t0, &mut out);
            assert!(w.len() <= 3);
        }
        // 20 found the window full: 30 (the earliest) left early, which made 20
        // late, so it followed at once.
        assert_eq!(out, [30, 20]);
        assert_eq!((w.stats().forced, w.stats().late), (1, 1));
        w.release_due(t0 + WINDOW, &mut out);
        assert_eq!(out, [30, 20, 40, 50, 60]);
    }

    #[test]
    fn stale_holds_do_not_grow_past_capacity() {
        let t0 = Instant::now();
        let mut w = held_only(t0, 4);
        let mut out = Vec::new();
        // A high time first, then many lower ones that a full heap pushes out:
        // their arrival entries go stale behind the live front.
        w.push(0, 1_000, 1_000, t0, &mut out);
        for time in 1..=20 {
            w.push(0, time, time, t0 + ms(time as u64), &mut out);
            assert!(w.len() <= 4 && w.arrivals.len() <= 8);
        }
        // From the fifth push on, each one forced the earliest out.
        let forced: Vec<i128> = (1..=17).collect();
        assert_eq!(out, forced);
        assert_eq!(w.stats().forced, 17);
        w.flush(&mut out);
        assert_eq!(out[17..], [18, 19, 20, 1_000]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn flush_hands_out_everything_in_time_order() {
        let t0 = Instant::now();
        let mut w = held_only(t0, 10);
        let mut out = Vec::new();
        for time in [3, 1, 2] {
            w.push(0, time, time, t0, &mut out);
        }
        w.flush(&mut out);
        assert_eq!(out, [1, 2, 3]);
        assert_eq!(w.next_deadline(), None);
    }
}
