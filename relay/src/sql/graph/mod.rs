//! The service graph as SQL: the read-only tables `graph_nodes` and
//! `graph_edges`, built by `service_graph::GraphBuilder` (the builder behind
//! `observe graph` and the TUI's service map) from the flows of the window
//! the query's `time` condition names, read in time order from the same
//! history `flows` reads (files and rows in memory).
//!
//! - [`window`]: the query's conditions on `time` → the window of flows.
//! - [`exec`]: the plan node that reads the window's flows in time order and
//!   folds them into the builder.
//! - [`rows`]: the graph → rows of either table.
//!
//! `SELECT ... FROM graph_edges WHERE $__timeFilter(time)` (Grafana's time
//! filter) is the graph of the dashboard's time range; without a condition on
//! `time` it is the graph of the whole history. Each table reads its own
//! condition, so a join of the two gives each one its window. Other
//! conditions filter the rows after the graph is built. The columns are
//! those Grafana's node-graph panel reads, so a panel needs no renaming; the
//! numbers are what `observe graph -o json` reports for the same flows.
//!
//! # `graph_nodes`: one row per node
//! | column | type | |
//! |---|---|---|
//! | `time` | timestamp(ns, UTC) | the last flow on any of its edges |
//! | `id` | utf8 | `namespace/workload`, `world`, `host`, `reserved:…`, `unknown` |
//! | `title` | utf8 | the workload (or the id) |
//! | `subtitle` | utf8 | the namespace, empty for reserved nodes |
//! | `mainstat` | uint64 | flows on its edges, in and out (a self-loop once) |
//! | `secondarystat` | uint64 | bytes on its edges, in and out |
//! | `detail__kind` | utf8 | `workload`, `world`, `host`, `service`, `unknown` |
//!
//! # `graph_edges`: one row per source → target
//! | column | type | |
//! |---|---|---|
//! | `time` | timestamp(ns, UTC) | the edge's last flow |
//! | `id` | utf8 | `source->target` |
//! | `source`, `target` | utf8 | node ids |
//! | `mainstat` | uint64 | request-direction flows (each observation point counts) |
//! | `secondarystat` | uint64 | bytes of both directions, each connection once at its largest report |
//! | `detail__connections` | uint64 | distinct connections |
//! | `detail__packets` | uint64 | packets, counted like bytes |
//! | `detail__forwarded`, `detail__dropped`, `detail__audit`, `detail__other` | uint64 | packets by verdict, each once where the probes last saw it (so they add up to fewer than `mainstat`, which counts every sighting) |
//! | `detail__ports` | utf8 | `TCP/8080, UDP/53` |
//! | `detail__drop_reasons` | utf8 | `POLICY_DENIED (1)`, empty without drops |
//! | `detail__hops` | utf8 | the datapath hops in order with their flows: `from-endpoint (4) -> to-endpoint (4)` |

pub mod exec;
pub mod rows;
pub mod window;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use exec::{Flows, GraphExec};
use rows::Rows;

/// `graph_nodes` or `graph_edges` over the session's history.
#[derive(Debug)]
pub struct GraphTable {
    rows: Rows,
    flows: Arc<Flows>,
}

impl GraphTable {
    pub fn new(rows: Rows, flows: Arc<Flows>) -> Self {
        GraphTable { rows, flows }
    }
}

#[tonic::async_trait]
impl TableProvider for GraphTable {
    fn schema(&self) -> SchemaRef {
        self.rows.schema()
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
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(GraphExec::try_new(
            self.flows.clone(),
            window::Window::of(filters)?,
            self.rows,
            projection.cloned(),
        )?))
    }
}
