//! [`GraphExec`]: the physical plan node of a graph table. Its input is the
//! scan of `flows` over the window; it folds every row into one
//! [`GraphBuilder`] (the builder `observe graph` and the TUI use), then emits
//! the graph's nodes or edges as one batch.
//!
//! The builder's connection table and edges are held in memory until the
//! input ends, so they are reserved in the query's memory pool as they grow
//! ([`BYTES_PER_CONNECTION`], [`BYTES_PER_EDGE`]): a window with more
//! connections than the memory limit allows fails like any other query over
//! its limit.

use std::fmt;
use std::sync::Arc;

use datafusion::common::{Result, internal_err};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties,
};
use futures::StreamExt;
use service_graph::GraphBuilder;

use super::rows::Rows;
use crate::history::read;

/// Memory counted for each tracked connection (key, counters, hash slot).
pub const BYTES_PER_CONNECTION: usize = 128;
/// Memory counted for each edge (counters, ports, drop reasons, hops).
pub const BYTES_PER_EDGE: usize = 1024;

/// Builds the graph of its input's flows; one output partition.
#[derive(Debug)]
pub struct GraphExec {
    input: Arc<dyn ExecutionPlan>,
    rows: Rows,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl GraphExec {
    /// `projection` picks columns of [`Rows::schema`], as a table scan's does.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
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
            input,
            rows,
            projection,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for GraphExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "GraphExec: {}", self.rows.name())
    }
}

impl ExecutionPlan for GraphExec {
    fn name(&self) -> &str {
        "GraphExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(GraphExec::try_new(
                input,
                self.rows,
                self.projection.clone(),
            )?)),
            Err(c) => internal_err!("GraphExec takes one input, not {}", c.len()),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("GraphExec has one partition, not {partition}");
        }
        // The distribution requirement makes it one partition; any other
        // count is still read whole.
        let inputs = (0..self.input.output_partitioning().partition_count())
            .map(|p| self.input.execute(p, context.clone()))
            .collect::<Result<Vec<_>>>()?;
        let reservation = MemoryConsumer::new(self.rows.name()).register(context.memory_pool());
        let (rows, projection) = (self.rows, self.projection.clone());
        let fold = async move {
            let mut builder = GraphBuilder::new();
            let mut flows = futures::stream::select_all(inputs);
            while let Some(batch) = flows.next().await {
                for f in read::flows(&batch?) {
                    builder.add(&f);
                }
                let edges = builder.graph().petgraph().edge_count();
                reservation.try_resize(
                    builder.connections() * BYTES_PER_CONNECTION + edges * BYTES_PER_EDGE,
                )?;
            }
            let batch = rows.batch(builder.graph())?;
            match &projection {
                Some(p) => Ok(batch.project(p)?),
                None => Ok(batch),
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(fold),
        )))
    }
}
