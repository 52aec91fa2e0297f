//! Recent flows: a bounded ring (Hubble's default capacity is 4095) plus a
//! broadcast to followers. flow-probe keeps a node's recent flows in one, the
//! relay the merged stream of all nodes.
//!
//! Every entry gets a sequence number so a follower can take a snapshot and then
//! continue from the broadcast without gaps or repeats. The broadcast is bounded:
//! a follower that falls behind loses entries (and is told so), the node never
//! waits for it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use observer_proto::observer::GetFlowsResponse;
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
    ring: Mutex<VecDeque<Entry>>,
    next_seq: AtomicU64,
    followers: broadcast::Sender<Entry>,
}

impl FlowStore {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (followers, _) = broadcast::channel(capacity.clamp(1024, 65_536));
        FlowStore {
            capacity,
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(65_536))),
            next_seq: AtomicU64::new(0),
            followers,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds one entry, evicting the oldest when full.
    pub fn push(&self, response: GetFlowsResponse) {
        self.push_shared(Arc::new(response));
    }

    /// Adds one entry already shared (the relay also hands it to its
    /// history), evicting the oldest when full.
    pub fn push_shared(&self, response: Arc<GetFlowsResponse>) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let entry = Entry {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            response,
        };
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(entry.clone());
        // Sent under the lock so followers see entries in sequence order.
        let _ = self.followers.send(entry);
    }

    /// Everything pushed since start, including what the ring no longer holds.
    pub fn seen(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the ring, oldest first.
    pub fn snapshot(&self) -> Vec<Entry> {
        self.ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The ring's content and a receiver for everything after it, atomically.
    pub fn snapshot_and_follow(&self) -> (Vec<Entry>, broadcast::Receiver<Entry>) {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.followers.subscribe();
        (ring.iter().cloned().collect(), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(n: &str) -> GetFlowsResponse {
        GetFlowsResponse {
            node_name: n.into(),
            ..Default::default()
        }
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
