//! Read-only SQL over the flow history with DataFusion.
//!
//! The table `flows` (schema: [`crate::history`]) is the union of the rows
//! still in memory (a `MemTable`) and the finished Parquet files (a
//! `ListingTable` over exactly the files of the history's snapshot), so a
//! query sees every ingested flow once. Over it, [`graph`] serves the service
//! graph as the tables `graph_nodes` and `graph_edges`, built by
//! `service_graph::GraphBuilder` from the flows of the query's time window:
//! the one builder `observe graph` and the TUI fold their GetFlows stream
//! with, so Grafana's node graph, the CLI and the TUI show the same edges.
//! Each query gets its own session with:
//! - the [`guard`]: one `SELECT` / `WITH` / `EXPLAIN`, of those tables only;
//! - a memory pool of [`SqlLimits::memory_bytes`] and no spilling to disk: a
//!   query over it fails with [`SqlError::Memory`], the relay goes on;
//! - a time limit ([`SqlLimits::timeout`]): [`SqlError::Timeout`].
//!
//! [`flight`] serves it as Arrow Flight SQL on the relay's gRPC port;
//! [`missing`] tells how many flows of a query's time range history lacks.

pub mod flight;
pub mod graph;
pub mod guard;
pub mod missing;

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::SchemaError;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

use observer_proto::observer::GetFlowsResponse;

use crate::history::{History, read, schema};
use graph::GraphTable;
use graph::rows::Rows;

/// Default time limit of one query.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default memory limit of one query (512 MiB).
pub const DEFAULT_MEMORY_BYTES: usize = 512 << 20;

/// Limits of each query.
#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
        }
    }
}

/// Why a query did not run.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SqlError {
    #[error("SQL syntax error: {0}")]
    Parse(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("unknown column `{column}`; the columns of `{table}` are: {columns}")]
    UnknownColumn {
        column: String,
        table: String,
        columns: String,
    },
    #[error("the query ran out of its memory limit of {limit} bytes: {detail}")]
    Memory { limit: usize, detail: String },
    #[error("the query took longer than its time limit of {0:?}")]
    Timeout(Duration),
    #[error("history is off on this relay (start it with --history-dir)")]
    NoHistory,
    #[error("reading history: {0}")]
    Io(String),
    #[error("{0}")]
    Query(String),
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// Upper bounds (seconds) of the query duration histogram's buckets.
pub const QUERY_SECONDS_BUCKETS: &[f64] = &[0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0];

/// What an engine has done since start, as Prometheus metrics (registered by
/// [`crate::metrics`]): queries run by [`SqlEngine::query`] (GetFlows history
/// reads included) and their durations, whatever the outcome, and queries
/// refused as not read-only (by `query` or `schema`).
pub struct SqlStats {
    pub queries: prometheus::IntCounter,
    pub refused: prometheus::IntCounter,
    pub duration: prometheus::Histogram,
}

impl SqlStats {
    pub fn new() -> Self {
        let counter = |name: &str, help: &str| {
            prometheus::IntCounter::new(name, help).expect("a valid metric name")
        };
        SqlStats {
            queries: counter("observe_relay_sql_queries_total", "SQL queries run"),
            refused: counter(
                "observe_relay_sql_queries_refused_total",
                "SQL queries refused as not read-only queries of the relay's tables",
            ),
            duration: prometheus::Histogram::with_opts(
                prometheus::HistogramOpts::new(
                    "observe_relay_sql_query_duration_seconds",
                    "Time to run one SQL query, any outcome",
                )
                .buckets(QUERY_SECONDS_BUCKETS.to_vec()),
            )
            .expect("valid histogram options"),
        }
    }

    fn count_refused<T>(&self, result: &Result<T, SqlError>) {
        if let Err(SqlError::Refused(_)) = result {
            self.refused.inc();
        }
    }
}

impl Default for SqlStats {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs SQL over one relay's history.
#[derive(Clone)]
pub struct SqlEngine {
    history: Option<Arc<History>>,
    limits: SqlLimits,
    stats: Arc<SqlStats>,
}

impl SqlEngine {
    pub fn new(history: Option<Arc<History>>, limits: SqlLimits) -> Self {
        SqlEngine {
            history,
            limits,
            stats: Arc::new(SqlStats::new()),
        }
    }

    /// The history queried, if any.
    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.as_ref()
    }

    /// Queries run and refused, and their durations.
    pub fn stats(&self) -> &Arc<SqlStats> {
        &self.stats
    }

    pub fn has_history(&self) -> bool {
        self.history.is_some()
    }

    /// History flows with `since <= time < before`, oldest first.
    pub async fn flows_between(
        &self,
        since: i128,
        before: Option<i128>,
    ) -> Result<Vec<GetFlowsResponse>, SqlError> {
        let clamp = |t: i128| i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX });
        let mut sql = format!(
            "SELECT * FROM flows WHERE CAST(time AS BIGINT) >= {}",
            clamp(since)
        );
        if let Some(b) = before {
            sql.push_str(&format!(" AND CAST(time AS BIGINT) < {}", clamp(b)));
        }
        sql.push_str(" ORDER BY time");
        let result = self.query(&sql).await?;
        Ok(result.batches.iter().flat_map(read::responses).collect())
    }

    pub fn limits(&self) -> SqlLimits {
        self.limits
    }

    /// Checks and plans `sql` (nothing runs yet): the result's schema.
    pub async fn schema(&self, sql: &str) -> Result<SchemaRef, SqlError> {
        let (this, sql) = (self.clone(), sql.to_string());
        let result = self
            .limited(async move {
                let df = this.plan(&sql).await?;
                Ok(Arc::new(df.schema().as_arrow().clone()))
            })
            .await;
        self.stats.count_refused(&result);
        result
    }

    /// Runs `sql` to the end within the limits.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, SqlError> {
        let (this, sql) = (self.clone(), sql.to_string());
        let timer = self.stats.duration.start_timer();
        let result = self
            .limited(async move {
                let df = this.plan(&sql).await?;
                let schema = Arc::new(df.schema().as_arrow().clone());
                let batches = df.collect().await.map_err(|e| this.error(e))?;
                Ok(QueryResult { schema, batches })
            })
            .await;
        timer.observe_duration();
        self.stats.queries.inc();
        self.stats.count_refused(&result);
        result
    }

    /// Runs `work` as its own task, so the time limit holds even while it
    /// computes; past the limit the task is aborted.
    async fn limited<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, SqlError>> + Send + 'static,
    ) -> Result<T, SqlError> {
        let task = tokio::spawn(work);
        let abort = task.abort_handle();
        match tokio::time::timeout(self.limits.timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(SqlError::Query(format!("the query failed: {e}"))),
            Err(_) => {
                abort.abort();
                Err(SqlError::Timeout(self.limits.timeout))
            }
        }
    }

    async fn plan(&self, sql: &str) -> Result<DataFrame, SqlError> {
        let statement = guard::check(sql)?;
        let ctx = self.context().await?;
        let state = ctx.state();
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| self.error(e))?;
        // A second line behind the guard: the plan itself must only read.
        datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| SqlError::Refused(e.strip_backtrace()))?;
        ctx.execute_logical_plan(plan)
            .await
            .map_err(|e| self.error(e))
    }

    /// A session whose `flows` is the history's current snapshot, with the
    /// graph tables over it.
    async fn context(&self) -> Result<SessionContext, SqlError> {
        let history = self.history.as_ref().ok_or(SqlError::NoHistory)?;
        let snap = history
            .snapshot()
            .map_err(|e| SqlError::Io(e.to_string()))?;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| self.error(e))?;
        // The lease keeps the snapshot's files on disk while the session
        // (and any stream of it) lives.
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_extension(Arc::new(snap.lease));
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let schema = schema::schema();
        let recent =
            MemTable::try_new(schema.clone(), vec![snap.recent]).map_err(|e| self.error(e))?;
        let table: Arc<dyn TableProvider> = if snap.files.is_empty() {
            Arc::new(recent)
        } else {
            let urls = snap
                .files
                .iter()
                .map(|f| ListingTableUrl::parse(f.path.to_string_lossy()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.error(e))?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(schema);
            let files = ListingTable::try_new(config).map_err(|e| self.error(e))?;
            ctx.register_table("flows_memory", Arc::new(recent))
                .map_err(|e| self.error(e))?;
            ctx.register_table("flows_files", Arc::new(files))
                .map_err(|e| self.error(e))?;
            let union = ctx
                .sql("SELECT * FROM flows_memory UNION ALL SELECT * FROM flows_files")
                .await
                .map_err(|e| self.error(e))?;
            union.into_view()
        };
        for rows in [Rows::Nodes, Rows::Edges] {
            ctx.register_table(rows.name(), Arc::new(GraphTable::new(rows, table.clone())))
                .map_err(|e| self.error(e))?;
        }
        ctx.register_table(guard::FLOWS, table)
            .map_err(|e| self.error(e))?;
        Ok(ctx)
    }

    fn error(&self, e: DataFusionError) -> SqlError {
        let root = e.find_root();
        if let DataFusionError::SchemaError(se, _) = root
            && let SchemaError::FieldNotFound {
                field,
                valid_fields,
            } = se.as_ref()
        {
            // A graph table when the query reads one, else `flows`.
            let graph = [Rows::Nodes, Rows::Edges].into_iter().find(|r| {
                valid_fields
                    .iter()
                    .any(|c| c.relation.as_ref().is_some_and(|t| t.table() == r.name()))
            });
            let (table, columns) = match graph {
                Some(r) => (r.name(), r.column_names()),
                None => (guard::FLOWS, schema::column_names()),
            };
            return SqlError::UnknownColumn {
                column: field.name().to_string(),
                table: table.to_string(),
                columns,
            };
        }
        if let DataFusionError::ResourcesExhausted(detail) = root {
            return SqlError::Memory {
                limit: self.limits.memory_bytes,
                detail: detail.clone(),
            };
        }
        SqlError::Query(root.strip_backtrace())
    }
}
