//! [`WhatIfExec`]: the plan node of `policy_whatif` and `policy_replay`. Its
//! input is the scan of `flows`' first packets over the window; each batch
//! becomes flows (the history's row reader), each flow is replayed
//! ([`super::replay`]), and the rows the table keeps go out as a batch at
//! once: nothing is held beyond the batch at hand and each state's judges.

use std::fmt;
use std::sync::Arc;

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
use super::replay::Replayer;
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
            let batch = batch?;
            let Some(times) = schema::times(&batch) else {
                return internal_err!("the scan of flows lost its time column");
            };
            let kept: Vec<_> = read::flows(&batch)
                .into_iter()
                .enumerate()
                .map(|(i, f)| {
                    let outcome = replayer.replay(&f);
                    (f, times.value(i), outcome)
                })
                .filter(|(_, _, o)| mode.keeps(o.change))
                .collect();
            let batch = rows::batch(&kept)?;
            match &projection {
                Some(p) => Ok(batch.project(p)?),
                None => Ok(batch),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), out)))
    }
}
