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

use std::pin::Pin;
use std::task::{Context, Poll};

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
    /// The time range of the flows it reads (`None`: it reads none); only
    /// when described, not when run.
    pub window: Option<super::graph::window::Window>,
}

/// From a query's task to its caller.
pub enum Msg {
    /// Planned: comes first.
    Described(Described),
    /// A batch of the result and its memory.
    Batch(RecordBatch, MemoryReservation),
    /// The query failed; nothing follows.
    Failed(SqlError),
}

/// Aborts its task when dropped.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits for the task's first message: its description, or why it failed.
pub async fn described(rx: &mut mpsc::Receiver<Msg>) -> Result<Described, SqlError> {
    match rx.recv().await {
        Some(Msg::Described(d)) => Ok(d),
        Some(Msg::Failed(e)) => Err(e),
        Some(Msg::Batch(..)) => Err(SqlError::Query("a batch came before the plan".into())),
        None => Err(SqlError::Query("the query ended without an answer".into())),
    }
}

/// The batches of a running query.
pub struct QueryStream {
    schema: SchemaRef,
    rx: mpsc::Receiver<Msg>,
    /// The last batch's memory, freed when the next is asked for.
    held: Option<MemoryReservation>,
    _task: AbortOnDrop,
}

impl QueryStream {
    pub fn new(schema: SchemaRef, rx: mpsc::Receiver<Msg>, task: AbortOnDrop) -> Self {
        QueryStream {
            schema,
            rx,
            held: None,
            _task: task,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<(RecordBatch, MemoryReservation), SqlError>>> {
        self.rx.poll_recv(cx).map(|m| match m? {
            Msg::Batch(b, r) => Some(Ok((b, r))),
            Msg::Failed(e) => Some(Err(e)),
            Msg::Described(_) => Some(Err(SqlError::Query("the plan came twice".into()))),
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
