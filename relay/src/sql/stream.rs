//! A running query seen from its caller: the task on the SQL runtime sends
//! [`Msg`]s through a short channel ([`CHANNEL`] messages), and
//! [`QueryStream`] reads them. How the task ended is left in an [`Ending`]
//! that the caller reads once the channel closes, so the task never waits
//! on its caller to hear of its end.
//!
//! Each batch travels with a [`Lease`] on its memory in the query's pool,
//! held until the caller asks for the next batch (or, collecting, until the
//! end) or until the task ends, whichever comes first: results count against
//! the query's memory limit like any other state, and a caller that stops
//! reading holds none of the pool once the time limit has ended its task.
//! Dropping the stream aborts the task: DataFusion's streams and the tasks
//! they spawned are dropped at their next pause, and the query's place,
//! memory and running-gauge count are given back.
//!
//! The task keeps its own time limit, on the SQL threads; the caller keeps a
//! [`Watchdog`] on its own runtime, so that a query whose computation never
//! pauses (and so holds its SQL thread past the limit) is still answered in
//! time.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::execution::memory_pool::MemoryReservation;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{QueryResult, SqlError};

/// Messages in flight between the task and its caller.
pub const CHANNEL: usize = 2;

/// What a query's plan says before it runs.
#[derive(Debug, Clone)]
pub struct Described {
    /// The result's schema.
    pub schema: SchemaRef,
    /// The statement's parameters (`$1` first), with their types if known.
    pub parameters: Vec<Option<DataType>>,
    /// The time range and nodes of the flows it reads (`None`: it reads
    /// none); only when described, not when run.
    pub reads: Option<super::missing::FlowReads>,
}

/// From a query's task to its caller.
pub enum Msg {
    /// Planned: comes first.
    Described(Described),
    /// A batch of the result and its memory.
    Batch(RecordBatch, Lease),
}

/// How a query's task ended: set by the task before its channel closes.
/// Unset when the channel closes, the task died unheard: an error, never a
/// short result that looks whole.
#[derive(Default)]
pub struct Ending(Mutex<Option<Result<(), SqlError>>>);

impl Ending {
    pub fn set(&self, outcome: Result<(), SqlError>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
    }

    fn take(&self) -> Option<Result<(), SqlError>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

type Shared = Arc<Mutex<Option<MemoryReservation>>>;

/// A batch's memory in the query's pool, freed when the caller drops the
/// lease or when the task ends ([`Leases`]), whichever comes first.
pub struct Lease {
    _memory: Shared,
}

/// The task's side of the leases of the batches it sent: dropped with the
/// task, it frees those the caller still holds.
#[derive(Default)]
pub struct Leases(Vec<Weak<Mutex<Option<MemoryReservation>>>>);

impl Leases {
    /// A lease on `memory` for a batch about to be sent.
    pub fn lend(&mut self, memory: MemoryReservation) -> Lease {
        // Those the caller dropped are gone: at most the channel's and the
        // caller's batch stay listed.
        self.0.retain(|l| l.strong_count() > 0);
        let shared: Shared = Arc::new(Mutex::new(Some(memory)));
        self.0.push(Arc::downgrade(&shared));
        Lease { _memory: shared }
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        for lease in self.0.iter().filter_map(Weak::upgrade) {
            lease.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
    }
}

/// Aborts its task when dropped.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long past the query's time limit the caller waits for the task's
/// own word before it answers [`SqlError::Timeout`] itself.
pub const WATCHDOG_GRACE: Duration = Duration::from_secs(1);

/// The caller's clock on a query, on the caller's runtime: it runs out
/// [`WATCHDOG_GRACE`] after the query's time limit.
pub struct Watchdog {
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Watchdog {
    /// Starts now; needs the caller's tokio runtime.
    pub fn start(limit: Duration) -> Self {
        Watchdog {
            limit,
            deadline: Box::pin(tokio::time::sleep(limit.saturating_add(WATCHDOG_GRACE))),
        }
    }

    /// The time-out, once the clock has run out.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<SqlError> {
        self.deadline
            .as_mut()
            .poll(cx)
            .map(|()| SqlError::Timeout(self.limit))
    }

    /// Resolves when the clock has run out.
    pub async fn expired(&mut self) -> SqlError {
        std::future::poll_fn(|cx| self.poll_expired(cx)).await
    }
}

/// A query just started: its messages, how it ended, its task, the
/// caller's clock.
pub struct Running {
    pub rx: mpsc::Receiver<Msg>,
    pub ending: Arc<Ending>,
    pub task: AbortOnDrop,
    pub watchdog: Watchdog,
}

impl Running {
    /// Waits for the task's first message: its description, or why it
    /// failed (or the watchdog's time-out).
    pub async fn described(&mut self) -> Result<Described, SqlError> {
        let first = tokio::select! {
            m = self.rx.recv() => m,
            e = self.watchdog.expired() => return Err(e),
        };
        match first {
            Some(Msg::Described(d)) => Ok(d),
            Some(Msg::Batch(..)) => Err(SqlError::Fault("a batch came before the plan".into())),
            None => Err(match self.ending.take() {
                Some(Err(e)) => e,
                Some(Ok(())) => SqlError::Fault("the query ended without an answer".into()),
                None => SqlError::Fault(DIED.into()),
            }),
        }
    }

    /// Waits for the task to end (its channel to close), or the watchdog.
    pub async fn ended(&mut self) {
        loop {
            tokio::select! {
                m = self.rx.recv() => if m.is_none() { return },
                _ = self.watchdog.expired() => return,
            }
        }
    }

    /// The batches to come, after its description.
    pub fn into_stream(self, schema: SchemaRef) -> QueryStream {
        QueryStream {
            schema,
            rx: self.rx,
            ending: self.ending,
            ended: false,
            held: None,
            watchdog: self.watchdog,
            timed_out: false,
            task: self.task,
        }
    }
}

/// What a caller is told when a query's task ended without finishing.
pub const DIED: &str = "the query stopped inside the relay without finishing (a fault: \
                        the relay's log says where)";

/// The batches of a running query.
pub struct QueryStream {
    schema: SchemaRef,
    rx: mpsc::Receiver<Msg>,
    ending: Arc<Ending>,
    /// The channel closed and the ending was told.
    ended: bool,
    /// The last batch's memory, freed when the next is asked for.
    held: Option<Lease>,
    watchdog: Watchdog,
    /// The watchdog ended the stream.
    timed_out: bool,
    task: AbortOnDrop,
}

impl QueryStream {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<(RecordBatch, Lease), SqlError>>> {
        if self.timed_out {
            return Poll::Ready(None);
        }
        let polled = self.rx.poll_recv(cx);
        if polled.is_pending() && !self.ended {
            // The task is silent past its limit: its thread is held. It is
            // told to stop (at its next pause) and nothing more is read.
            if let Poll::Ready(e) = self.watchdog.poll_expired(cx) {
                self.timed_out = true;
                self.task.0.abort();
                return Poll::Ready(Some(Err(e)));
            }
        }
        polled.map(|m| match m {
            Some(Msg::Batch(b, r)) => Some(Ok((b, r))),
            Some(Msg::Described(_)) => Some(Err(SqlError::Fault("the plan came twice".into()))),
            None if std::mem::replace(&mut self.ended, true) => None,
            None => match self.ending.take() {
                Some(Ok(())) => None,
                Some(Err(e)) => Some(Err(e)),
                None => Some(Err(SqlError::Fault(DIED.into()))),
            },
        })
    }

    /// Every batch, their memory held in the query's pool until all are in.
    pub async fn into_result(mut self) -> Result<QueryResult, SqlError> {
        let mut batches = Vec::new();
        let mut memory = Vec::new();
        while let Some(next) = std::future::poll_fn(|cx| self.poll_batch(cx)).await {
            let (b, r) = next?;
            batches.push(b);
            memory.push(r);
        }
        Ok(QueryResult {
            schema: self.schema,
            batches,
        })
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch, SqlError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.held = None;
        this.poll_batch(cx).map(|next| {
            next.map(|r| {
                r.map(|(b, memory)| {
                    this.held = Some(memory);
                    b
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, UnboundedMemoryPool};
    use futures::StreamExt;

    use super::*;

    /// A stream fed by hand: a task that sends one batch, then ends as
    /// `ending` says (or unheard: it died).
    async fn fed(ending: Option<Result<(), SqlError>>) -> Vec<Result<usize, String>> {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
                .unwrap();
        let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        let (tx, rx) = mpsc::channel(4);
        let mut leases = Leases::default();
        let lease = leases.lend(MemoryConsumer::new("t").register(&pool));
        tx.send(Msg::Batch(batch, lease))
            .await
            .unwrap_or_else(|_| panic!("send"));
        let told = Arc::new(Ending::default());
        if let Some(outcome) = ending {
            told.set(outcome);
        }
        drop(tx);
        let running = Running {
            rx,
            ending: told,
            task: AbortOnDrop(tokio::spawn(async {})),
            watchdog: Watchdog::start(Duration::from_secs(3600)),
        };
        running
            .into_stream(schema)
            .map(|r| r.map(|b| b.num_rows()).map_err(|e| e.to_string()))
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_task_that_dies_midway_is_an_error_not_a_short_result() {
        assert_eq!(fed(Some(Ok(()))).await, [Ok(2)]);
        assert_eq!(
            fed(Some(Err(SqlError::Query("no".into())))).await,
            [Ok(2), Err(SqlError::Query("no".into()).to_string())]
        );
        assert_eq!(
            fed(None).await,
            [Ok(2), Err(SqlError::Fault(DIED.into()).to_string())]
        );
    }

    #[test]
    fn a_lease_ends_with_its_batch_or_with_the_task() {
        let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        let reserved = |n: usize| {
            let r = MemoryConsumer::new("t").register(&pool);
            r.grow(n);
            r
        };
        let mut leases = Leases::default();
        let read = leases.lend(reserved(100));
        let unread = leases.lend(reserved(10));
        assert_eq!(pool.reserved(), 110);
        // The caller is done with one batch: its memory is back at once, and
        // the task no longer lists it.
        drop(read);
        assert_eq!(pool.reserved(), 10);
        let _next = leases.lend(reserved(1));
        assert_eq!(leases.0.len(), 2);
        // The task ends while the caller still holds a batch it never read.
        drop(leases);
        assert_eq!(pool.reserved(), 0);
        drop(unread);
        assert_eq!(pool.reserved(), 0);
    }
}
