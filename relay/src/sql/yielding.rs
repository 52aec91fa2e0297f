//! [`YieldEachBatchExec`]: passes its input's batches through unchanged, and
//! hands the thread back to the scheduler before each one it reads; a batch
//! with a row too wide for a join to repeat is an error instead
//! ([`super::join_rows`]).
//!
//! Put under each join's inputs ([`super::guard::cooperative_joins`]): a
//! join that reads batch after batch without making one (a filter no pair
//! passes, a key that never matches) would otherwise keep its thread for as
//! long as its input is ready, and its query's time limit, whose timer runs
//! on the same threads, would end it, and free its place, only then. Tokio's
//! task budget ([`datafusion::physical_plan::coop`]) yields only after 128
//! batches, each of which a join may spend long on.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, Statistics, internal_err};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{Stream, StreamExt};

/// See the module documentation.
#[derive(Debug)]
pub struct YieldEachBatchExec {
    input: Arc<dyn ExecutionPlan>,
}

impl YieldEachBatchExec {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        YieldEachBatchExec { input }
    }
}

impl DisplayAs for YieldEachBatchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "YieldEachBatchExec")
    }
}

impl ExecutionPlan for YieldEachBatchExec {
    fn name(&self) -> &str {
        "YieldEachBatchExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(YieldEachBatchExec::new(input))),
            _ => internal_err!("YieldEachBatchExec takes one input"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(YieldEachBatch {
            inner: self.input.execute(partition, context)?,
            due: true,
        }))
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        self.input.partition_statistics(partition)
    }
}

struct YieldEachBatch {
    inner: SendableRecordBatchStream,
    /// A yield is due before the next batch is read.
    due: bool,
}

impl Stream for YieldEachBatch {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.due {
            self.due = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let next = self.inner.poll_next_unpin(cx);
        if matches!(next, Poll::Ready(Some(_))) {
            self.due = true;
        }
        // A row a join would repeat past every limit is refused here.
        match next {
            Poll::Ready(Some(Ok(batch))) => {
                Poll::Ready(Some(super::join_rows::check(&batch).map(|()| batch)))
            }
            other => other,
        }
    }
}

impl RecordBatchStream for YieldEachBatch {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use datafusion::prelude::SessionContext;

    use super::*;

    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn batch(v: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![v]))]).unwrap()
    }

    #[test]
    fn the_thread_goes_back_before_each_batch_and_the_task_is_woken() {
        let schema = batch(0).schema();
        let inner = RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter([Ok(batch(1)), Ok(batch(2))]),
        );
        let mut s = YieldEachBatch {
            inner: Box::pin(inner),
            due: true,
        };
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(match Pin::new(&mut s).poll_next(&mut cx) {
                Poll::Pending => "pending".to_string(),
                Poll::Ready(Some(b)) => {
                    let v = b
                        .unwrap()
                        .column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .value(0);
                    format!("batch {v}")
                }
                Poll::Ready(None) => "end".to_string(),
            });
        }
        assert_eq!(
            seen,
            ["pending", "batch 1", "pending", "batch 2", "pending", "end"]
        );
        assert_eq!(wakes.0.load(Ordering::Relaxed), 3, "woken at each yield");
    }

    #[tokio::test]
    async fn every_join_reads_its_inputs_through_a_yield() {
        let ctx = SessionContext::new();
        ctx.register_batch("t", batch(1)).unwrap();
        let plan = ctx
            .sql("SELECT count(*) FROM t a, t b, t c WHERE a.v + b.v + c.v = 7")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let plan = crate::sql::guard::cooperative_joins(plan).unwrap();
        let mut joins = 0;
        let mut stack = vec![plan];
        while let Some(node) = stack.pop() {
            if node.name().ends_with("JoinExec") {
                joins += 1;
                assert!(
                    node.children().iter().all(|c| c.is::<YieldEachBatchExec>()),
                    "{} reads {:?}",
                    node.name(),
                    node.children().iter().map(|c| c.name()).collect::<Vec<_>>()
                );
            }
            stack.extend(node.children().into_iter().cloned());
        }
        assert_eq!(joins, 2, "a, b and c: two joins");
    }
}
