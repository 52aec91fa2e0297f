//! The relay's recent flows: a bounded ring of merged responses (flows and
//! lost-event records, in the order the reorder window released them) and a
//! bounded broadcast to followers.
//!
//! Each entry carries a sequence number, so a follower takes the ring and a
//! receiver at once and continues without gaps or repeats. A follower that falls
//! behind the broadcast loses entries and is told how many; ingestion never
//! waits for it.
//!
//! (flow-probe has the same structure in `flow_probe::store`; it is not reused
//! because depending on flow-probe would build its eBPF objects and aya into the
//! relay. Both belong in a shared crate, see the crate overview.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use observer_proto::observer::GetFlowsResponse;
use tokio::sync::broadcast;

/// Default number of merged responses kept (four nodes' worth of Hubble's 4095).
pub const DEFAULT_RING_CAPACITY: usize = 16_380;

/// One stored response and its sequence number.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub response: Arc<GetFlowsResponse>,
}

/// Ring of recent responses plus the broadcast of new ones.
pub struct FlowStore {
    capacity: usize,
    ring: Mutex<VecDeque<Entry>>,
    pushed: AtomicU64,
    followers: broadcast::Sender<Entry>,
}

impl FlowStore {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (followers, _) = broadcast::channel(capacity.clamp(1024, 65_536));
        FlowStore {
            capacity,
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(65_536))),
            pushed: AtomicU64::new(0),
            followers,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Entry>> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one response, evicting the oldest when full.
    pub fn push(&self, response: GetFlowsResponse) {
        let mut ring = self.lock();
        let entry = Entry {
            seq: self.pushed.fetch_add(1, Ordering::Relaxed),
            response: Arc::new(response),
        };
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(entry.clone());
        // Under the lock, so followers receive entries in sequence order.
        let _ = self.followers.send(entry);
    }

    /// Responses pushed since start, evicted ones included.
    pub fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the ring, oldest first.
    pub fn snapshot(&self) -> Vec<Entry> {
        self.lock().iter().cloned().collect()
    }

    /// The ring and a receiver of everything pushed after it, taken atomically.
    pub fn snapshot_and_follow(&self) -> (Vec<Entry>, broadcast::Receiver<Entry>) {
        let ring = self.lock();
        let rx = self.followers.subscribe();
        (ring.iter().cloned().collect(), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(node: &str) -> GetFlowsResponse {
        GetFlowsResponse {
            node_name: node.into(),
            ..Default::default()
        }
    }

    fn names(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.response.node_name.clone())
            .collect()
    }

    #[test]
    fn the_ring_keeps_the_newest_and_counts_all() {
        let store = FlowStore::new(2);
        for n in ["a", "b", "c"] {
            store.push(resp(n));
        }
        assert_eq!(names(&store.snapshot()), ["b", "c"]);
        assert_eq!((store.len(), store.pushed()), (2, 3));
        assert_eq!(store.snapshot()[0].seq, 1);
    }

    #[tokio::test]
    async fn a_follower_continues_right_after_its_snapshot() {
        let store = FlowStore::new(10);
        store.push(resp("a"));
        let (snap, mut rx) = store.snapshot_and_follow();
        store.push(resp("b"));
        assert_eq!(names(&snap), ["a"]);
        let next = rx.recv().await.unwrap();
        assert_eq!((next.seq, next.response.node_name.as_str()), (1, "b"));
    }
}
