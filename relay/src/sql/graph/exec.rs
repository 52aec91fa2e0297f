//! [`GraphExec`]: the physical plan node of a graph table. It reads the
//! window's flows from the session's snapshot of history in time order, with
//! the reader GetFlows uses (`history::scan::Merge`: files and rows in
//! memory merged by time), folds them into one [`GraphBuilder`] (the builder
//! `observe graph` and the TUI use), then emits the graph's nodes or edges as
//! one batch. The order matters: a connection's first packet starts it, so
//! the same 5-tuple later (a new ping with the same id) is another one, and
//! a request's sightings on two nodes pair up; a scan of the files in
//! parallel partitions interleaved them and miscounted connections, bytes
//! and packets until compaction left one file.
//!
//! The builder's connection table and edges are held in memory until the
//! window ends, so they are reserved in the query's memory pool as they grow
//! ([`BYTES_PER_CONNECTION`], [`BYTES_PER_EDGE`]), and so is the merge's
//! time-ordered copy of the rows in memory: a window with more connections
//! than the memory limit allows fails like any other query over its limit.
//! The files are read a few batches at a time, every column (the reader
//! GetFlows shares), on one thread.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::{DataFusionError, Result, internal_err};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use service_graph::GraphBuilder;

use super::rows::Rows;
use super::window::Window;
use crate::history::files::HistoryFile;
use crate::history::{read, scan};

/// Memory counted for each tracked connection (key, counters, hash slot).
pub const BYTES_PER_CONNECTION: usize = 128;
/// Memory counted for each edge (counters, ports, drop reasons, hops).
pub const BYTES_PER_EDGE: usize = 1024;

/// The flows a graph table may read: the session's snapshot of history
/// (its files stay on disk while the session's lease lives).
#[derive(Debug, Clone)]
pub struct Flows {
    pub files: Vec<HistoryFile>,
    pub recent: Vec<RecordBatch>,
}

/// Builds the graph of the window's flows; no input, one output partition.
#[derive(Debug)]
pub struct GraphExec {
    flows: Arc<Flows>,
    window: Window,
    rows: Rows,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl GraphExec {
    /// `projection` picks columns of [`Rows::schema`], as a table scan's does.
    pub fn try_new(
        flows: Arc<Flows>,
        window: Window,
        rows: Rows,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(rows.schema().project(p)?),
            None => rows.schema(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(GraphExec {
            flows,
            window,
            rows,
            projection,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for GraphExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "GraphExec: {}, flows", self.rows.name())?;
        match (self.window.from, self.window.to) {
            (None, None) => write!(f, " of all history"),
            (Some(a), None) => write!(f, " from {a} ns"),
            (None, Some(b)) => write!(f, " up to {b} ns"),
            (Some(a), Some(b)) => write!(f, " from {a} to {b} ns"),
        }
    }
}

/// Tells the blocking fold to stop when the query's stream is dropped (a
/// time limit, a client gone).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl ExecutionPlan for GraphExec {
    fn name(&self) -> &str {
        "GraphExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return internal_err!("GraphExec reads history itself and takes no input");
        }
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("GraphExec has one partition, not {partition}");
        }
        let reservation = MemoryConsumer::new(self.rows.name()).register(context.memory_pool());
        let (rows, projection, flows) = (self.rows, self.projection.clone(), self.flows.clone());
        let range = scan::Range {
            from: self.window.from.unwrap_or(i64::MIN),
            to: self.window.to.unwrap_or(i64::MAX),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let fold = move || -> Result<RecordBatch> {
            let mut builder = GraphBuilder::new();
            // The merge puts the rows in memory in time order in a copy.
            let sorted_copy: usize = flows
                .recent
                .iter()
                .map(RecordBatch::get_array_memory_size)
                .sum();
            reservation.try_resize(sorted_copy)?;
            let sources = scan::sources(flows.files.clone(), flows.recent.clone());
            for batch in scan::Merge::new(sources, range, scan::BATCH_ROWS) {
                if stopped.load(Ordering::Relaxed) {
                    return Err(DataFusionError::Execution("the query ended".into()));
                }
                let batch = batch.map_err(|e| DataFusionError::External(Box::new(e)))?;
                for f in read::flows(&batch) {
                    builder.add(&f);
                }
                let edges = builder.graph().petgraph().edge_count();
                reservation.try_resize(
                    sorted_copy
                        + builder.connections() * BYTES_PER_CONNECTION
                        + edges * BYTES_PER_EDGE,
                )?;
            }
            builder.finish();
            let batch = rows.batch(builder.graph())?;
            match &projection {
                Some(p) => Ok(batch.project(p)?),
                None => Ok(batch),
            }
        };
        let run = async move {
            let _stop = StopOnDrop(stop);
            tokio::task::spawn_blocking(fold)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(run),
        )))
    }
}
