//! The bounded flow buffer behind the table: the newest `capacity` flows, each
//! with a sequence number, and the sequence numbers of those that pass the
//! live filter. Old flows fall off the front; counting goes on.

use std::collections::VecDeque;

use observer_proto::flow::Flow;

/// Flows kept for the table, the detail pane and the graph.
pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug)]
pub struct FlowBuffer {
    capacity: usize,
    /// `flows[i]` has sequence number `first_seq + i`.
    flows: VecDeque<Flow>,
    first_seq: u64,
    /// Sequence numbers of the flows that pass the filter, ascending.
    matching: VecDeque<u64>,
}

impl FlowBuffer {
    pub fn new(capacity: usize) -> Self {
        FlowBuffer {
            capacity: capacity.max(1),
            flows: VecDeque::new(),
            first_seq: 0,
            matching: VecDeque::new(),
        }
    }

    /// An empty buffer of the same capacity whose numbers go on from this one's.
    pub fn continuing(&self) -> FlowBuffer {
        FlowBuffer {
            first_seq: self.next_seq(),
            ..FlowBuffer::new(self.capacity)
        }
    }

    /// Appends the flows of `later` (a [`FlowBuffer::continuing`] of this one),
    /// keeping their numbers.
    pub fn append(&mut self, later: FlowBuffer, pass: impl Fn(&Flow) -> bool) {
        if later.first_seq > self.next_seq() {
            // Flows in between were evicted from `later`: start over at its numbers.
            self.flows.clear();
            self.matching.clear();
            self.first_seq = later.first_seq;
        }
        for f in later.flows {
            let m = pass(&f);
            self.push(f, m);
        }
    }

    /// Appends a flow, dropping the oldest when full; returns its sequence number.
    pub fn push(&mut self, flow: Flow, matches: bool) -> u64 {
        if self.flows.len() == self.capacity {
            self.flows.pop_front();
            if self.matching.front() == Some(&self.first_seq) {
                self.matching.pop_front();
            }
            self.first_seq += 1;
        }
        let seq = self.first_seq + self.flows.len() as u64;
        self.flows.push_back(flow);
        if matches {
            self.matching.push_back(seq);
        }
        seq
    }

    pub fn get(&self, seq: u64) -> Option<&Flow> {
        let i = seq.checked_sub(self.first_seq)?;
        self.flows.get(usize::try_from(i).ok()?)
    }

    /// Recomputes which flows pass.
    pub fn refilter(&mut self, pass: impl Fn(&Flow) -> bool) {
        let first = self.first_seq;
        self.matching = self
            .flows
            .iter()
            .enumerate()
            .filter(|(_, f)| pass(f))
            .map(|(i, _)| first + i as u64)
            .collect();
    }

    /// Sequence numbers of the passing flows, oldest first.
    pub fn matching(&self) -> &VecDeque<u64> {
        &self.matching
    }

    /// Every buffered flow, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.flows.iter()
    }

    /// The passing flows, oldest first.
    pub fn iter_matching(&self) -> impl Iterator<Item = &Flow> + Clone {
        self.matching.iter().filter_map(|&s| self.get(s))
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Sequence number the next flow will get.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.flows.len() as u64
    }

    /// Sequence number of the newest flow, if any.
    pub fn last_seq(&self) -> Option<u64> {
        (!self.flows.is_empty()).then(|| self.first_seq + self.flows.len() as u64 - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(n: u32) -> Flow {
        Flow {
            drop_reason: n,
            ..Default::default()
        }
    }

    #[test]
    fn oldest_fall_off_and_numbers_keep_going() {
        let mut b = FlowBuffer::new(3);
        for n in 0..5 {
            b.push(flow(n), n % 2 == 0);
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.last_seq(), Some(4));
        assert!(b.get(1).is_none());
        assert_eq!(b.get(2).map(|f| f.drop_reason), Some(2));
        assert_eq!(b.matching().iter().copied().collect::<Vec<_>>(), [2, 4]);
        b.refilter(|f| f.drop_reason != 4);
        assert_eq!(b.matching().iter().copied().collect::<Vec<_>>(), [2, 3]);
        b.push(flow(5), true);
        assert_eq!(b.matching().iter().copied().collect::<Vec<_>>(), [3, 5]);
    }

    #[test]
    fn a_paused_buffer_takes_back_what_came_meanwhile() {
        let mut frozen = FlowBuffer::new(3);
        frozen.push(flow(0), true);
        frozen.push(flow(1), true);
        let mut live = frozen.continuing();
        live.push(flow(2), true);
        live.push(flow(3), false);
        frozen.append(live, |f| f.drop_reason != 2);
        assert_eq!((frozen.len(), frozen.last_seq()), (3, Some(3)));
        assert_eq!(frozen.get(1).map(|f| f.drop_reason), Some(1));
        assert_eq!(
            frozen.matching().iter().copied().collect::<Vec<_>>(),
            [1, 3]
        );
        // More than a buffer came meanwhile: only the newest remain.
        let mut live = frozen.continuing();
        for n in 4..9 {
            live.push(flow(n), true);
        }
        frozen.append(live, |_| true);
        assert_eq!(
            frozen.matching().iter().copied().collect::<Vec<_>>(),
            [6, 7, 8]
        );
        assert_eq!(frozen.get(6).map(|f| f.drop_reason), Some(6));
    }
}
