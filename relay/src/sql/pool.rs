//! Memory for queries: one pool for the whole relay ([`SqlLimits::memory_total_bytes`])
//! and, over it, a [`QueryPool`] per query ([`SqlLimits::memory_bytes`]).
//! A reservation must fit in both; whichever refuses is remembered, so the
//! error names the limit that was reached.
//!
//! [`SqlLimits::memory_total_bytes`]: super::SqlLimits::memory_total_bytes
//! [`SqlLimits::memory_bytes`]: super::SqlLimits::memory_bytes

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use datafusion::common::Result;
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryLimit, MemoryPool, MemoryReservation,
};

/// Which limit refused a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// The query's own limit.
    Query,
    /// The relay's total for all queries.
    Total,
}

/// One query's memory: its own limit within the relay's shared pool.
#[derive(Debug)]
pub struct QueryPool {
    own: GreedyMemoryPool,
    total: Arc<GreedyMemoryPool>,
    /// 0: nothing refused; 1 + [`Exhausted`] as u8 otherwise.
    exhausted: AtomicU8,
}

impl QueryPool {
    pub fn new(limit: usize, total: Arc<GreedyMemoryPool>) -> Self {
        QueryPool {
            own: GreedyMemoryPool::new(limit),
            total,
            exhausted: AtomicU8::new(0),
        }
    }

    /// The limit that refused a reservation, if one did.
    pub fn exhausted(&self) -> Option<Exhausted> {
        match self.exhausted.load(Ordering::Relaxed) {
            1 => Some(Exhausted::Query),
            2 => Some(Exhausted::Total),
            _ => None,
        }
    }

    fn refused(&self, by: Exhausted) {
        let code = match by {
            Exhausted::Query => 1,
            Exhausted::Total => 2,
        };
        self.exhausted.store(code, Ordering::Relaxed);
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "query"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.own.grow(reservation, additional);
        self.total.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.own.shrink(reservation, shrink);
        self.total.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        if let Err(e) = self.own.try_grow(reservation, additional) {
            self.refused(Exhausted::Query);
            return Err(e);
        }
        if let Err(e) = self.total.try_grow(reservation, additional) {
            self.own.shrink(reservation, additional);
            self.refused(Exhausted::Total);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.own.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.own.memory_limit()
    }
}

impl fmt::Display for QueryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "query pool: {} of this query, {} of all queries",
            self.own, self.total
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::MemoryConsumer;

    #[test]
    fn a_reservation_must_fit_the_query_and_the_total() {
        let total = Arc::new(GreedyMemoryPool::new(100));
        let a: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(60, total.clone()));
        let b_pool = Arc::new(QueryPool::new(60, total.clone()));
        let b: Arc<dyn MemoryPool> = b_pool.clone();
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        ra.try_grow(50).unwrap();
        // Within b's own 60 but over the 100 of both.
        assert!(rb.try_grow(51).is_err());
        assert_eq!(b_pool.exhausted(), Some(Exhausted::Total));
        assert_eq!((b.reserved(), total.reserved()), (0, 50));
        rb.try_grow(50).unwrap();
        // Over b's own 60.
        drop(ra);
        assert!(rb.try_grow(11).is_err());
        assert_eq!(b_pool.exhausted(), Some(Exhausted::Query));
        assert_eq!((b.reserved(), total.reserved()), (50, 50));
        drop(rb);
        assert_eq!(total.reserved(), 0);
    }
}
