//! The connection cap, and making room at it: when every slot is taken and
//! a new connection arrives, the open connection on which no byte moved for
//! the longest is closed. Two hundred idle connections then cannot keep
//! Prometheus out until their header timeouts run (they would take the 64
//! slots and the backlog ahead of the scrape); a connection that is being
//! served moves bytes and is the last to go.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// When a connection last moved a byte, for [`Room`] to compare.
#[derive(Clone)]
pub(super) struct Activity {
    epoch: Instant,
    /// Microseconds after `epoch`.
    last: Arc<AtomicU64>,
}

impl Activity {
    /// A byte moved now.
    pub(super) fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }
}

/// The slots of the open connections.
pub(super) struct Room {
    epoch: Instant,
    slots: Arc<Semaphore>,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    /// Each open connection's activity and what tells it to close.
    connections: HashMap<u64, (Activity, Arc<Notify>)>,
}

/// One connection's place: its slot (freed when dropped), its activity clock,
/// and the signal that it should close to make room.
pub(super) struct Place {
    room: Arc<Room>,
    id: u64,
    _slot: OwnedSemaphorePermit,
    pub(super) activity: Activity,
    pub(super) close: Arc<Notify>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.room.lock().connections.remove(&self.id);
    }
}

impl Room {
    pub(super) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            slots: Arc::new(Semaphore::new(cap.max(1))),
            open: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a connection just accepted: a free slot, or, at the cap,
    /// the slot of the connection that moved nothing for the longest, once
    /// it has closed.
    pub(super) async fn enter(self: &Arc<Self>) -> Option<Place> {
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                self.evict_stalest();
                self.slots.clone().acquire_owned().await.ok()?
            }
        };
        let activity = Activity {
            epoch: self.epoch,
            last: Arc::new(AtomicU64::new(0)),
        };
        activity.touch();
        let close = Arc::new(Notify::new());
        let mut open = self.lock();
        let id = open.next_id;
        open.next_id += 1;
        open.connections
            .insert(id, (activity.clone(), close.clone()));
        Some(Place {
            room: self.clone(),
            id,
            _slot: slot,
            activity,
            close,
        })
    }

    /// Tells the stalest connection to close (it leaves the list at once, so
    /// it is never told twice).
    fn evict_stalest(&self) {
        let mut open = self.lock();
        let stalest = open
            .connections
            .iter()
            .min_by_key(|(_, (activity, _))| activity.last())
            .map(|(id, _)| *id);
        if let Some((_, close)) = stalest.and_then(|id| open.connections.remove(&id)) {
            // Stored if the connection is not waiting yet: it closes then.
            close.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_cap_the_stalest_connection_is_told_to_close() {
        let room = Room::new(2);
        let first = room.enter().await.unwrap();
        let second = room.enter().await.unwrap();
        // The first moves a byte after the second: the second is stalest.
        second.activity.last.store(5, Ordering::Relaxed);
        first.activity.last.store(9, Ordering::Relaxed);
        let third = {
            let room = room.clone();
            tokio::spawn(async move { room.enter().await.map(|p| p.id) })
        };
        second.close.notified().await;
        assert!(!third.is_finished(), "waits for the slot to be freed");
        drop(second);
        assert_eq!(third.await.unwrap(), Some(2));
        assert_eq!(room.lock().connections.len(), 1, "the first is still open");
        drop(first);
        assert_eq!(room.lock().connections.len(), 0);
    }
}
