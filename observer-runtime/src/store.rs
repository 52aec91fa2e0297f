//! Recent flows: a bounded ring (Hubble's default capacity is 4095) plus a
//! broadcast to followers. flow-probe keeps a node's recent flows in one, the
//! relay the merged stream of all nodes.
//!
//! Every entry gets a sequence number so a follower can take a snapshot and then
//! continue from the broadcast without gaps or repeats. The broadcast is bounded:
//! a follower that falls behind loses entries (and is told so), the node never
//! waits for it.
//!
//! [`FlowStore::push_with`] builds an entry in place, in the memory of one the
//! ring let go of once nothing else holds it (the broadcast keeps a few
//! recent ones a little longer): the same allocation, and a writer that
//! refills each field keeps its strings and lists, so a full ring turns over
//! without allocating or copying a response.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::time::event_time;
use tokio::sync::broadcast;

/// Hubble's default ring capacity.
pub const DEFAULT_CAPACITY: usize = 4095;

/// One stored response (a flow or a lost-events record) and its sequence number.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub response: Arc<GetFlowsResponse>,
}

pub struct FlowStore {
    capacity: usize,
    ring: Mutex<Ring>,
    next_seq: AtomicU64,
    /// Flows pushed since start (lost-events records are no flows).
    flows_seen: AtomicU64,
    followers: broadcast::Sender<Entry>,
}

/// The entries, and those evicted but maybe still held elsewhere.
#[derive(Default)]
struct Ring {
    entries: VecDeque<Entry>,
    evicted: VecDeque<Arc<GetFlowsResponse>>,
    /// The newest time of a flow the ring let go of (Unix ns): arrivals
    /// are not in time order, so the first entry's time does not say it.
    evicted_newest: Option<i128>,
    /// The clock when last read for [`Self::evicted_newest`]: a time at or
    /// before it is not in the future, and needs no new read.
    clock_read: i128,
}

/// Evicted entries kept for reuse at most; past that the oldest is let go.
const EVICTED_KEPT: usize = 8;

impl Ring {
    /// Removes the oldest entry when full, keeping it for reuse.
    fn make_room(&mut self, capacity: usize) {
        if self.entries.len() < capacity {
            return;
        }
        if let Some(old) = self.entries.pop_front() {
            if let Some(ResponseTypes::Flow(_)) = &old.response.response_types
                && let Some(at) = event_time(&old.response)
            {
                // A node whose clock runs ahead would hold it in the future.
                if at > self.clock_read {
                    self.clock_read = observer_proto::time::now_nanos();
                }
                let at = at.min(self.clock_read);
                self.evicted_newest = Some(self.evicted_newest.map_or(at, |n| n.max(at)));
            }
            self.evicted.push_back(old.response);
            if self.evicted.len() > EVICTED_KEPT {
                self.evicted.pop_front();
            }
        }
    }

    /// The oldest evicted response when nothing else holds it any more.
    fn reusable(&mut self) -> Option<Arc<GetFlowsResponse>> {
        let unique = self
            .evicted
            .front_mut()
            .is_some_and(|r| Arc::get_mut(r).is_some());
        if !unique {
            return None;
        }
        self.evicted.pop_front()
    }
}

impl FlowStore {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (followers, _) = broadcast::channel(capacity.clamp(1024, 65_536));
        FlowStore {
            capacity,
            ring: Mutex::new(Ring {
                entries: VecDeque::with_capacity(capacity.min(65_536)),
                ..Ring::default()
            }),
            next_seq: AtomicU64::new(0),
            flows_seen: AtomicU64::new(0),
            followers,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one entry, evicting the oldest when full.
    pub fn push(&self, response: GetFlowsResponse) {
        self.push_shared(Arc::new(response));
    }

    /// Adds one entry already shared (the relay also hands it to its
    /// history), evicting the oldest when full.
    pub fn push_shared(&self, response: Arc<GetFlowsResponse>) {
        let mut ring = self.lock();
        ring.make_room(self.capacity);
        self.append(&mut ring, response);
    }

    /// Adds one entry that `fill` writes: into the memory of an evicted
    /// entry when one is free (every field as that entry left it: `fill`
    /// must set each one), else into a default response.
    pub fn push_with(&self, fill: impl FnOnce(&mut GetFlowsResponse)) {
        let reused = {
            let mut ring = self.lock();
            ring.make_room(self.capacity);
            ring.reusable()
        };
        // Unique when taken, and no one else could clone it since.
        let response = match reused {
            Some(mut shared) => match Arc::get_mut(&mut shared) {
                Some(r) => {
                    fill(r);
                    shared
                }
                None => Self::filled(fill),
            },
            None => Self::filled(fill),
        };
        let mut ring = self.lock();
        ring.make_room(self.capacity);
        self.append(&mut ring, response);
    }

    fn filled(fill: impl FnOnce(&mut GetFlowsResponse)) -> Arc<GetFlowsResponse> {
        #[cfg(test)]
        tests::FRESH.with(|n| n.set(n.get() + 1));
        let mut response = GetFlowsResponse::default();
        fill(&mut response);
        Arc::new(response)
    }

    fn append(&self, ring: &mut Ring, response: Arc<GetFlowsResponse>) {
        if let Some(ResponseTypes::Flow(_)) = response.response_types {
            self.flows_seen.fetch_add(1, Ordering::Relaxed);
        }
        let entry = Entry {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            response,
        };
        ring.entries.push_back(entry.clone());
        // Sent under the lock so followers see entries in sequence order.
        let _ = self.followers.send(entry);
    }

    /// Everything pushed since start, including what the ring no longer holds.
    pub fn seen(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    /// The flows among [`Self::seen`] (ServerStatus' `seen_flows`, which
    /// Hubble counts of flows only).
    pub fn flows_seen(&self) -> u64 {
        self.flows_seen.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest time (Unix ns) of a flow the ring no longer holds.
    pub fn evicted_newest(&self) -> Option<i128> {
        self.lock().evicted_newest
    }

    /// A copy of the ring, oldest first.
    pub fn snapshot(&self) -> Vec<Entry> {
        self.lock().entries.iter().cloned().collect()
    }

    /// The ring's content and a receiver for everything after it, atomically.
    pub fn snapshot_and_follow(&self) -> (Vec<Entry>, broadcast::Receiver<Entry>) {
        let ring = self.lock();
        let rx = self.followers.subscribe();
        (ring.entries.iter().cloned().collect(), rx)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Responses `push_with` built new (not in an evicted one's memory)
        /// on this thread.
        pub(super) static FRESH: Cell<usize> = const { Cell::new(0) };
    }

    fn resp(n: &str) -> GetFlowsResponse {
        GetFlowsResponse {
            node_name: n.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_newest_flow_let_go_of_is_kept_whatever_the_order() {
        let at = |secs: i64| GetFlowsResponse {
            time: Some(prost_types::Timestamp {
                seconds: secs,
                nanos: 0,
            }),
            response_types: Some(ResponseTypes::Flow(Default::default())),
            ..Default::default()
        };
        let store = FlowStore::new(1);
        store.push(at(5));
        assert_eq!(store.evicted_newest(), None);
        for secs in [9, 3, 7] {
            store.push(at(secs));
        }
        assert_eq!(store.evicted_newest(), Some(9_000_000_000));
        // A lost-events record is no flow: its time says when it was found.
        store.push(GetFlowsResponse {
            time: Some(prost_types::Timestamp {
                seconds: 99,
                nanos: 0,
            }),
            ..Default::default()
        });
        store.push(at(1));
        assert_eq!(store.evicted_newest(), Some(9_000_000_000));
    }

    #[test]
    fn ring_keeps_the_newest_and_counts_everything() {
        let store = FlowStore::new(3);
        for n in ["a", "b", "c", "d", "e"] {
            store.push(resp(n));
        }
        let names: Vec<_> = store
            .snapshot()
            .iter()
            .map(|e| e.response.node_name.clone())
            .collect();
        assert_eq!(names, ["c", "d", "e"]);
        assert_eq!(store.seen(), 5);
        assert_eq!(store.len(), 3);
        assert!(
            store
                .snapshot()
                .iter()
                .all(|e| e.response.response_types.is_none())
        );
    }

    #[test]
    fn flows_seen_leaves_lost_event_records_out() {
        let store = FlowStore::new(2);
        let flow = || GetFlowsResponse {
            response_types: Some(ResponseTypes::Flow(Default::default())),
            ..Default::default()
        };
        store.push(flow());
        store.push(resp("no flow"));
        store.push(GetFlowsResponse {
            response_types: Some(ResponseTypes::LostEvents(Default::default())),
            ..Default::default()
        });
        store.push(flow());
        store.push_with(|r| *r = flow());
        assert_eq!((store.seen(), store.flows_seen()), (5, 3));
    }

    /// Pushes with `push_with`, naming the entry `name`; returns the name the
    /// reused entry had ("" for a fresh one).
    fn push_named(store: &FlowStore, name: &str) -> String {
        let mut before = None;
        store.push_with(|r| {
            before = Some(std::mem::replace(&mut r.node_name, name.to_string()));
        });
        before.unwrap()
    }

    fn names(store: &FlowStore) -> Vec<String> {
        store
            .snapshot()
            .iter()
            .map(|e| e.response.node_name.clone())
            .collect()
    }

    #[test]
    fn push_with_fills_an_evicted_entry_nobody_holds() {
        let store = FlowStore::new(2);
        assert_eq!(push_named(&store, "a"), "", "not full: a fresh entry");
        assert_eq!(push_named(&store, "b"), "");
        let a = Arc::as_ptr(&store.snapshot()[0].response);
        let fresh = FRESH.with(Cell::get);
        assert_eq!(push_named(&store, "c"), "a", "a's memory, rewritten");
        assert_eq!(
            (
                Arc::as_ptr(&store.snapshot()[1].response),
                FRESH.with(Cell::get)
            ),
            (a, fresh),
            "in a's allocation, not a new one"
        );
        // A snapshot holds b: when it goes, c is filled fresh.
        let held = store.snapshot();
        assert_eq!(push_named(&store, "d"), "");
        assert_eq!(names(&store), ["c", "d"]);
        drop(held);
        // b was kept and is free now.
        assert_eq!(push_named(&store, "e"), "b");
        assert_eq!(names(&store), ["d", "e"]);
        assert_eq!(store.seen(), 5);
    }

    #[tokio::test]
    async fn followers_see_every_entry_push_with_wrote() {
        let store = FlowStore::new(2);
        let (_, mut rx) = store.snapshot_and_follow();
        for n in ["a", "b", "c", "d"] {
            push_named(&store, n);
        }
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(rx.recv().await.unwrap().response.node_name.clone());
        }
        assert_eq!(
            got,
            ["a", "b", "c", "d"],
            "entries a follower holds are never rewritten"
        );
    }

    #[tokio::test]
    async fn followers_continue_after_the_snapshot_without_gaps() {
        let store = FlowStore::new(10);
        store.push(resp("a"));
        let (snap, mut rx) = store.snapshot_and_follow();
        store.push(resp("b"));
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].seq, 0);
        let next = rx.recv().await.unwrap();
        assert_eq!((next.seq, next.response.node_name.as_str()), (1, "b"));
    }
}
