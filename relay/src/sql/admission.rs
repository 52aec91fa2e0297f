//! [`Admission`]: how many queries run at once, and the shutdown that
//! cancels them. A query holds its [`Admitted`] place for as long as its
//! task runs (planning, execution and sending its rows); the running-queries
//! gauge counts the places held.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::SqlError;
use super::stats::SqlStats;

/// The places for running queries.
pub struct Admission {
    places: Arc<Semaphore>,
    limit: usize,
    wait: Duration,
    stopping: watch::Sender<bool>,
    stats: Arc<SqlStats>,
}

/// One query's place; freed when dropped.
pub struct Admitted {
    _place: OwnedSemaphorePermit,
    stats: Arc<SqlStats>,
    stopping: watch::Receiver<bool>,
}

impl Admission {
    /// `limit` places (at least one); a query waits `wait` for one.
    pub fn new(limit: usize, wait: Duration, stats: Arc<SqlStats>) -> Self {
        let limit = limit.max(1);
        Admission {
            places: Arc::new(Semaphore::new(limit)),
            limit,
            wait,
            stopping: watch::channel(false).0,
            stats,
        }
    }

    /// A place, once one is free within the wait.
    pub async fn admit(&self) -> Result<Admitted, SqlError> {
        if *self.stopping.borrow() {
            return Err(SqlError::ShuttingDown);
        }
        let place = match tokio::time::timeout(self.wait, self.places.clone().acquire_owned()).await
        {
            Ok(Ok(place)) => place,
            // Closed by `shutdown`.
            Ok(Err(_)) => return Err(SqlError::ShuttingDown),
            Err(_) => {
                self.stats.busy.inc();
                return Err(SqlError::Busy {
                    limit: self.limit,
                    waited: self.wait,
                });
            }
        };
        self.stats.running.inc();
        Ok(Admitted {
            _place: place,
            stats: self.stats.clone(),
            stopping: self.stopping.subscribe(),
        })
    }

    /// Cancels the running queries and refuses new ones.
    pub fn shutdown(&self) {
        self.stopping.send_replace(true);
        self.places.close();
    }
}

impl Admitted {
    /// Resolves when the relay shuts down.
    pub async fn stopping(&mut self) {
        // An error means the sender is gone: stopping as well.
        let _ = self.stopping.wait_for(|s| *s).await;
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.stats.running.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_query_past_the_limit_waits_then_is_refused() {
        let stats = Arc::new(SqlStats::new());
        let a = Admission::new(1, Duration::from_secs(2), stats.clone());
        let first = a.admit().await.unwrap();
        assert_eq!(stats.running.get(), 1);
        let err = a.admit().await.err().unwrap();
        assert_eq!(
            err.to_string(),
            "the relay is already running 1 SQL queries, its limit (--sql-max-concurrent); \
             this one waited 2s for a place and was refused: try again later"
        );
        assert_eq!(stats.busy.get(), 1);
        // A waiting query gets the place when the first ends.
        let waiting = a.admit();
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(stats.running.get(), 1);
        drop(second);
        assert_eq!(stats.running.get(), 0);
    }

    #[tokio::test]
    async fn shutdown_stops_the_admitted_and_refuses_new_ones() {
        let a = Admission::new(2, Duration::from_secs(2), Arc::new(SqlStats::new()));
        let mut admitted = a.admit().await.unwrap();
        a.shutdown();
        admitted.stopping().await;
        assert_eq!(a.admit().await.err(), Some(SqlError::ShuttingDown));
    }
}
