//! A running query seen from its caller: the task on the SQL runtime sends
//! [`Msg`]s through a short channel ([`CHANNEL`] messages), and
//! [`QueryStream`] reads them. How the task ended is left in an [`Ending`]
//! that the caller reads once the channel closes, so the task never waits
//! on its caller to hear of its end.
//!
//! Each batch travels in a [`Lease`] with its memory in the query's pool:
//! results count against the query's memory limit like any other state. A
//! batch the caller has taken stays counted until it asks for the next one
//! (or, collecting, until the end). One still in the channel when the task
//! ends goes back with the task, batch and memory both: the task ends on
//! success only once the caller has taken every batch, so only a failure
//! (the time limit, shutdown) takes one back, and the caller is told that
//! failure where the batch would have been. A caller that stops reading
//! holds at most the batch it took once the time limit has passed.
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
    Batch(Lease),
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

/// A lent batch and its memory: the batch until the caller takes it, the
/// memory until the caller drops the lease, or both until the task takes
/// them back.
#[derive(Default)]
struct Lent {
    batch: Option<RecordBatch>,
    _memory: Option<MemoryReservation>,
}

type Shared = Arc<Mutex<Lent>>;

fn lock(lent: &Mutex<Lent>) -> std::sync::MutexGuard<'_, Lent> {
    lent.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A batch of the result and its memory in the query's pool.
pub struct Lease(Shared);

impl Lease {
    /// The batch, unless the task took it back (it failed meanwhile); the
    /// memory stays counted until the lease is dropped.
    fn take(&self) -> Option<RecordBatch> {
        lock(&self.0).batch.take()
    }
}

/// The task's side of the batches it sent, to take back those the caller
/// has not taken when the query fails.
#[derive(Default)]
pub struct Leases(Vec<Weak<Mutex<Lent>>>);

impl Leases {
    /// A lease on `batch` and its `memory`, about to be sent.
    pub fn lend(&mut self, batch: RecordBatch, memory: MemoryReservation) -> Lease {
        // Those the caller took or dropped are no longer the task's: at most
        // the channel's stay listed.
        self.0
            .retain(|l| l.upgrade().is_some_and(|l| lock(&l).batch.is_some()));
        let shared: Shared = Arc::new(Mutex::new(Lent {
            batch: Some(batch),
            _memory: Some(memory),
        }));
        self.0.push(Arc::downgrade(&shared));
        Lease(shared)
    }

    /// Takes back the batches the caller has not taken, and their memory.
    /// Only for a query that failed: a caller that took the message but not
    /// yet its batch would read the failure in its place.
    pub fn take_back(self) {
        for lease in self.0.iter().filter_map(Weak::upgrade) {
            let mut lent = lock(&lease);
            if lent.batch.is_some() {
                *lent = Lent::default();
            }
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
            Some(Msg::Batch(_)) => Err(SqlError::Fault("a batch came before the plan".into())),
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
    /// The ending was told: nothing more follows.
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
        if self.ended {
            return Poll::Ready(None);
        }
        if self.timed_out {
            return Poll::Ready(None);
        }
        let polled = self.rx.poll_recv(cx);
        if polled.is_pending() {
            // The task is silent past its limit: its thread is held. It is
            // told to stop (at its next pause) and nothing more is read.
            if let Poll::Ready(e) = self.watchdog.poll_expired(cx) {
                self.timed_out = true;
                self.task.0.abort();
                return Poll::Ready(Some(Err(e)));
            }
        }
        polled.map(|m| match m {
            Some(Msg::Batch(lease)) => match lease.take() {
                Some(b) => Some(Ok((b, lease))),
                // Taken back by the task: it failed, and says why.
                None => self
                    .end()
                    .or_else(|| Some(Err(SqlError::Fault(DIED.into())))),
            },
            Some(Msg::Described(_)) => Some(Err(SqlError::Fault("the plan came twice".into()))),
            None => self.end(),
        })
    }

    /// What the task said of its end, once: nothing more after it.
    fn end(&mut self) -> Option<Result<(RecordBatch, Lease), SqlError>> {
        self.ended = true;
        match self.ending.take() {
            Some(Ok(())) => None,
            Some(Err(e)) => Some(Err(e)),
            None => Some(Err(SqlError::Fault(DIED.into()))),
        }
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

    fn rows(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap()
    }

    /// The stream a caller reads from `batches` sent by a task that then
    /// ended as `ending` says (or unheard: it died); a task that failed took
    /// back the batches not taken yet.
    async fn fed(
        batches: &[i64],
        ending: Option<Result<(), SqlError>>,
    ) -> Vec<Result<usize, String>> {
        let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        let (tx, rx) = mpsc::channel(4);
        let mut leases = Leases::default();
        for &n in batches {
            let lease = leases.lend(rows(n), MemoryConsumer::new("t").register(&pool));
            tx.send(Msg::Batch(lease))
                .await
                .unwrap_or_else(|_| panic!("send"));
        }
        let told = Arc::new(Ending::default());
        let failed = matches!(ending, Some(Err(_)));
        if let Some(outcome) = ending {
            told.set(outcome);
        }
        if failed {
            leases.take_back();
        }
        drop(tx);
        let running = Running {
            rx,
            ending: told,
            task: AbortOnDrop(tokio::spawn(async {})),
            watchdog: Watchdog::start(Duration::from_secs(3600)),
        };
        running
            .into_stream(rows(0).schema())
            .map(|r| r.map(|b| b.num_rows()).map_err(|e| e.to_string()))
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_task_that_fails_or_dies_is_an_error_not_a_short_result() {
        assert_eq!(fed(&[2, 3], Some(Ok(()))).await, [Ok(2), Ok(3)]);
        // The batches it had not handed over went back with it.
        let no = SqlError::Timeout(Duration::from_secs(1));
        assert_eq!(
            fed(&[2, 3], Some(Err(no.clone()))).await,
            [Err(no.to_string())]
        );
        assert_eq!(
            fed(&[2], None).await,
            [Ok(2), Err(SqlError::Fault(DIED.into()).to_string())]
        );
    }

    #[test]
    fn the_task_takes_back_what_the_caller_has_not_taken() {
        let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        let reserved = |n: usize| {
            let r = MemoryConsumer::new("t").register(&pool);
            r.grow(n);
            r
        };
        let mut leases = Leases::default();
        let taken = leases.lend(rows(1), reserved(100));
        let waiting = leases.lend(rows(2), reserved(10));
        assert_eq!(pool.reserved(), 110);
        // The caller takes a batch: counted while it holds it, and no
        // longer the task's.
        assert_eq!(taken.take().map(|b| b.num_rows()), Some(1));
        assert_eq!(pool.reserved(), 110);
        let next = leases.lend(rows(3), reserved(1));
        assert_eq!(leases.0.len(), 2);
        // The query fails: what was not taken goes, batch and memory.
        leases.take_back();
        assert_eq!(pool.reserved(), 100);
        assert!(waiting.take().is_none() && next.take().is_none());
        drop(taken);
        assert_eq!(pool.reserved(), 0);
    }
}
