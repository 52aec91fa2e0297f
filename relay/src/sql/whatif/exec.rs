//! [`WhatIfExec`]: the plan node of `policy_whatif` and `policy_replay`. Its
//! input is the scan of `flows`' first packets over the window; each row's
//! packet is read from its columns ([`super::packet`]) and replayed
//! ([`super::replay`]), and only the rows the table keeps become flows (the
//! history's row reader) and go out, as one batch per input batch: nothing
//! is held beyond the batch at hand and each state's judges.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::common::{Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::StreamExt;

use super::Mode;
use super::packet::Columns;
use super::replay::{Judges, Outcome, Replayer};
use super::rows;
use crate::history::{read, schema};

/// Replays its input's flows, partition by partition.
pub struct WhatIfExec {
    input: Arc<dyn ExecutionPlan>,
    replayer: Arc<Replayer>,
    mode: Mode,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for WhatIfExec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WhatIfExec({})", self.mode.name())
    }
}

impl WhatIfExec {
    /// `projection` picks columns of [`rows::schema`], as a table scan's does.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        replayer: Arc<Replayer>,
        mode: Mode,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(rows::schema().project(p)?),
            None => rows::schema(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(WhatIfExec {
            input,
            replayer,
            mode,
            projection,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for WhatIfExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WhatIfExec: {}", self.mode.name())
    }
}

impl ExecutionPlan for WhatIfExec {
    fn name(&self) -> &str {
        "WhatIfExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(WhatIfExec::try_new(
                input,
                self.replayer.clone(),
                self.mode,
                self.projection.clone(),
            )?)),
            Err(c) => internal_err!("WhatIfExec takes one input, not {}", c.len()),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let (replayer, mode, projection) =
            (self.replayer.clone(), self.mode, self.projection.clone());
        let out = input.map(move |batch| {
            let batch = replay(&replayer, mode, &batch?)?;
            match &projection {
                Some(p) => Ok(batch.project(p)?),
                None => Ok(batch),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), out)))
    }
}

/// One input batch replayed: the rows `mode` keeps, as the table's rows.
fn replay(replayer: &Replayer, mode: Mode, batch: &RecordBatch) -> Result<RecordBatch> {
    let Some(times) = schema::times(batch) else {
        return internal_err!("the scan of flows lost its time column");
    };
    let columns = Columns::of(batch)?;
    // Rows of one version come in runs: its judges are looked up once a run.
    let mut judges: Option<(&str, Result<std::sync::Arc<Judges>, String>)> = None;
    let mut kept = Vec::new();
    for i in 0..batch.num_rows() {
        let outcome = match columns.version(i) {
            None => Outcome::unreplayed("the flow names no policy version".into()),
            Some(version) => {
                if judges.as_ref().is_none_or(|(v, _)| *v != version) {
                    judges = Some((version, replayer.judges(version)));
                }
                match (judges.as_ref().map(|(_, j)| j), columns.packet(i)) {
                    (Some(Ok(j)), Ok(packet)) => j.replay(&packet, version),
                    (Some(Err(problem)), _) => Outcome::unreplayed(problem.clone()),
                    (_, Err(problem)) => Outcome::unreplayed(problem),
                    (None, _) => Outcome::unreplayed("no policy judges".into()),
                }
            }
        };
        if mode.keeps(outcome.change) {
            kept.push((i as u32, outcome));
        }
    }
    let rows = UInt32Array::from_iter_values(kept.iter().map(|(i, _)| *i));
    let flows = read::flows(&take_record_batch(batch, &rows)?);
    let rows: Vec<_> = flows
        .into_iter()
        .zip(kept)
        .map(|(f, (i, outcome))| (f, times.value(i as usize), outcome))
        .collect();
    rows::batch(&rows)
}
