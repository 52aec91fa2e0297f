//! Policy what-if in SQL: the table functions `policy_whatif(draft, ...)`
//! and `policy_replay(draft, ...)` replay the first packet of every
//! connection in the window (its PolicyVerdict flow, allowed or denied, or
//! when no policy judged it its NEW trace on an endpoint's interface; see
//! [`first_packets`]) against the policy its node had in force when it
//! passed and against that policy with the draft applied, with the matcher
//! the datapath's rules are checked by (`cluster_spec::policy::Judge`).
//! `policy_whatif` keeps the flows whose verdict changes (flips between
//! allowed and denied, or to or from an audit-mode would-be drop) and the
//! ones that could not be replayed; `policy_replay` keeps every one (how the replay is
//! held to the kernel's own verdicts). `observe policy whatif` asks
//! `policy_whatif`; a Grafana panel or a notebook can ask the same.
//!
//! Each argument is a string of policy documents (CiliumNetworkPolicy YAML,
//! `---` between documents); `''` is an empty draft. The condition on
//! `time` chooses the window, as for the graph tables
//! ([`super::graph::window`]); other conditions filter the rows.
//!
//! ```sql
//! SELECT edge, change, rule_after, count(*), min(time), max(time)
//! FROM policy_whatif('apiVersion: cilium.io/v2 ...')
//! WHERE time >= now() - INTERVAL '24 hours'
//! GROUP BY 1, 2, 3
//! ```
//!
//! | column | type | |
//! |---|---|---|
//! | `time`, `node`, `uuid` | timestamp, utf8 | the flow's |
//! | `policy_version` | utf8 | the policy in force when it passed |
//! | `edge`, `source`, `target` | utf8 | its service-graph edge (`graph_edges`' `id`, `source`, `target`) |
//! | `source_namespace`, `source_pod`, `source_ip`, `destination_namespace`, `destination_pod`, `destination_ip`, `protocol`, `destination_port` | | the flow's |
//! | `direction` | utf8 | `INGRESS` or `EGRESS` of the endpoint whose policy judges it |
//! | `verdict` | utf8 | what the datapath reported |
//! | `verdict_before`, `rule_before` | utf8 | replayed against the policy in force: `FORWARDED`, `AUDIT`, `DROPPED`; the policy (`namespace/name`) that decided, `default deny`, or null when no policy judges it |
//! | `verdict_after`, `rule_after` | utf8 | the same with the draft |
//! | `change` | utf8 | `ALLOWED_TO_DENIED`, `DENIED_TO_ALLOWED`, `ALLOWED_TO_AUDIT` (forwarded, then audited: an audit-mode draft's would-be drop), `AUDIT_TO_ALLOWED` (audited, then forwarded), `UNCHANGED`, `UNREPLAYED` |
//! | `problem` | utf8 | why a flow was not replayed (its policy version is not in history, ...) |
//!
//! - [`packet`]: a row's first packet, from its columns; [`replay`]: one
//!   packet against both policies; [`exec`]: the plan node; [`rows`]: the
//!   output schema and batches.

pub mod exec;
pub mod packet;
pub mod replay;
pub mod rows;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType, col, lit};
use datafusion::physical_plan::ExecutionPlan;

use super::graph::window;
use crate::history::policies::PolicyStates;
use exec::WhatIfExec;
use replay::{Change, Draft, Replayer};

/// The columns of `flows` a replay reads (through the history's row reader).
pub const FLOW_COLUMNS: &[&str] = &[
    "time",
    "node",
    "uuid",
    "verdict",
    "event_type",
    "ip_version",
    "source_ip",
    "destination_ip",
    "source_port",
    "destination_port",
    "protocol",
    "icmp_type",
    "source_identity",
    "source_namespace",
    "source_pod",
    "source_workload",
    "source_labels",
    "destination_identity",
    "destination_namespace",
    "destination_pod",
    "destination_workload",
    "destination_labels",
    "traffic_direction",
    "observation_point",
    "is_reply",
    "trace_reason",
    "policy_generation",
    "policy_version",
];

/// Which of the two table functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `policy_whatif`: changed verdicts and flows not replayed.
    Flips,
    /// `policy_replay`: every replayed flow.
    All,
}

impl Mode {
    pub const BOTH: [Mode; 2] = [Mode::Flips, Mode::All];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Flips => "policy_whatif",
            Mode::All => "policy_replay",
        }
    }

    fn keeps(self, change: Change) -> bool {
        self == Mode::All || change != Change::Unchanged
    }
}

/// The table function: its draft arguments → a [`WhatIfTable`].
#[derive(Debug)]
pub struct WhatIfFunction {
    mode: Mode,
    flows: Arc<dyn TableProvider>,
    policies: Arc<PolicyStates>,
}

impl WhatIfFunction {
    pub fn new(mode: Mode, flows: Arc<dyn TableProvider>, policies: Arc<PolicyStates>) -> Self {
        WhatIfFunction {
            mode,
            flows,
            policies,
        }
    }
}

impl TableFunctionImpl for WhatIfFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let name = self.mode.name();
        let mut texts = Vec::new();
        for e in args.exprs() {
            match e {
                Expr::Literal(
                    ScalarValue::Utf8(Some(s))
                    | ScalarValue::LargeUtf8(Some(s))
                    | ScalarValue::Utf8View(Some(s)),
                    _,
                ) => texts.push(s.clone()),
                other => {
                    return plan_err!(
                        "{name} takes the draft policies as string constants \
                         ('apiVersion: cilium.io/v2 ...'), not `{other}`"
                    );
                }
            }
        }
        if texts.is_empty() {
            return plan_err!(
                "{name} needs the draft policies: {name}('<policy YAML>', ...); '' is an \
                 empty draft"
            );
        }
        let draft = match Draft::parse(&texts) {
            Ok(d) => d,
            Err(e) => return plan_err!("{name}: {e}"),
        };
        Ok(Arc::new(WhatIfTable {
            mode: self.mode,
            replayer: Arc::new(Replayer::new(draft, self.policies.clone())),
            flows: self.flows.clone(),
        }))
    }
}

/// One call's table: the draft, over the flows.
#[derive(Debug)]
pub struct WhatIfTable {
    mode: Mode,
    replayer: Arc<Replayer>,
    flows: Arc<dyn TableProvider>,
}

/// Cilium's monitor message types, as `flows.event_type` holds them.
const TRACE: i32 = 4;
const POLICY_VERDICT: i32 = 5;

/// The flows a replay judges, one per connection's first packet at an
/// endpoint: the PolicyVerdict of a packet the datapath judged (allowed,
/// audited or denied; a denial's Drop twin is not one), and the NEW trace,
/// not a reply, on an endpoint's interface of a packet no policy judged.
/// Hubble sets no trace reason on verdicts, and no reply bit or observation
/// point on denials, so the event type tells them.
fn first_packets() -> Expr {
    let unjudged = col("event_type")
        .eq(lit(TRACE))
        .and(col("trace_reason").eq(lit("NEW")))
        .and(col("is_reply").eq(lit(false)))
        .and(
            col("observation_point").in_list(vec![lit("FROM_ENDPOINT"), lit("TO_ENDPOINT")], false),
        );
    col("event_type").eq(lit(POLICY_VERDICT)).or(unjudged)
}

#[tonic::async_trait]
impl TableProvider for WhatIfTable {
    fn schema(&self) -> SchemaRef {
        rows::schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        window::pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let firsts = Some(first_packets());
        let input = window::scan(state, &self.flows, FLOW_COLUMNS, filters, firsts).await?;
        Ok(Arc::new(WhatIfExec::try_new(
            input,
            self.replayer.clone(),
            self.mode,
            projection.cloned(),
        )?))
    }
}
