//! A running query seen from its caller: the task on the SQL runtime sends
//! [`Msg`]s through a short channel ([`CHANNEL`] messages), and
//! [`QueryStream`] reads them.
//!
//! Each batch travels with a reservation in the query's memory pool, held
//! until the caller asks for the next batch (or, collecting, until the end):
//! results count against the query's memory limit like any other state.
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
    Batch(RecordBatch, MemoryReservation),
    /// The query failed; nothing follows.
    Failed(SqlError),
    /// Every batch was sent. Without it, a channel that closes means the
    /// task died (a panic in DataFusion or arrow): an error, never a short
    /// result that looks whole.
    Done,
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

/// A query just started: its messages, its task, the caller's clock.
pub struct Running {
    pub rx: mpsc::Receiver<Msg>,
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
            Some(Msg::Failed(e)) => Err(e),
            Some(Msg::Batch(..) | Msg::Done) => {
                Err(SqlError::Query("a batch came before the plan".into()))
            }
            None => Err(SqlError::Query("the query ended without an answer".into())),
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
    /// [`Msg::Done`] or [`Msg::Failed`] came: the channel may close.
    ended: bool,
    /// The last batch's memory, freed when the next is asked for.
    held: Option<MemoryReservation>,
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
    ) -> Poll<Option<Result<(RecordBatch, MemoryReservation), SqlError>>> {
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
        polled.map(|m| {
            let Some(m) = m else {
                return (!std::mem::replace(&mut self.ended, true))
                    .then(|| Err(SqlError::Query(DIED.into())));
            };
            match m {
                Msg::Batch(b, r) => Some(Ok((b, r))),
                Msg::Failed(e) => {
                    self.ended = true;
                    Some(Err(e))
                }
                Msg::Done => {
                    self.ended = true;
                    None
                }
                Msg::Described(_) => Some(Err(SqlError::Query("the plan came twice".into()))),
            }
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

    /// A stream fed by hand: a task that sends one batch, then `last` (or
    /// nothing: it died).
    async fn fed(last: Option<Msg>) -> Vec<Result<usize, String>> {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
                .unwrap();
        let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        let (tx, rx) = mpsc::channel(4);
        tx.send(Msg::Batch(batch, MemoryConsumer::new("t").register(&pool)))
            .await
            .unwrap_or_else(|_| panic!("send"));
        if let Some(last) = last {
            tx.send(last).await.unwrap_or_else(|_| panic!("send"));
        }
        drop(tx);
        let running = Running {
            rx,
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
        assert_eq!(fed(Some(Msg::Done)).await, [Ok(2)]);
        assert_eq!(
            fed(Some(Msg::Failed(SqlError::Query("no".into())))).await,
            [Ok(2), Err(SqlError::Query("no".into()).to_string())]
        );
        assert_eq!(
            fed(None).await,
            [Ok(2), Err(SqlError::Query(DIED.into()).to_string())]
        );
    }
}
