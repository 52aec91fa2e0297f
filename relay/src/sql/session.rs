//! [`Session`]: one query's DataFusion session: the history's current
//! snapshot as `flows` (the rows in memory, and the Parquet files as one
//! listing table, unioned), the graph tables, the policy what-if functions
//! and `policy_states` over it, a memory pool of its
//! own within the relay's ([`super::pool`]), no spilling to disk, and the
//! bounded versions of functions that could outgrow it
//! ([`super::functions`]). It
//! checks ([`super::guard`]) and plans statements, binds their parameters
//! ([`super::params`]), and turns DataFusion's errors into the ones a user
//! reads.

use std::sync::Arc;

use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::{ScalarValue, SchemaError};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

use super::graph::GraphTable;
use super::graph::exec::Flows;
use super::graph::rows::Rows;
use super::pool::{Exhausted, QueryPool};
use super::stream::Described;
use super::whatif::{Mode, WhatIfFunction};
use super::{SqlError, SqlLimits, functions, guard, params, policy_states, runtime};
use crate::history::{History, schema};

/// One query's DataFusion session and memory.
pub struct Session {
    ctx: SessionContext,
    pool: Arc<QueryPool>,
    limits: SqlLimits,
}

impl Session {
    /// A session whose `flows` is the history's current snapshot, with the
    /// graph tables over it.
    pub async fn open(
        history: Option<&Arc<History>>,
        limits: SqlLimits,
        total: Arc<GreedyMemoryPool>,
    ) -> Result<Session, SqlError> {
        let pool = Arc::new(QueryPool::new(limits.memory_bytes, total));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool.clone())
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc();
        let history = history.ok_or(SqlError::NoHistory)?;
        let snap = history
            .snapshot()
            .map_err(|e| SqlError::Io(e.to_string()))?;
        // The lease keeps the snapshot's files on disk while the session
        // (and any stream of it) lives.
        let mut config = SessionConfig::new()
            .with_extension(Arc::new(snap.lease))
            .with_target_partitions(runtime::THREADS)
            .with_default_catalog_and_schema(guard::CATALOG, guard::SCHEMA)
            // SHOW TABLES and SHOW COLUMNS read it (see guard).
            .with_information_schema(true);
        // now() in the zone of `time`: printed with its Z, as flows' times are.
        config.options_mut().execution.time_zone = Some("UTC".into());
        let runtime = runtime.map_err(|e| error(e, &pool, &limits))?;
        let mut session = Session {
            ctx: SessionContext::new_with_config_rt(config, runtime),
            pool,
            limits,
        };
        for f in functions::bounded() {
            session.ctx.register_udf(f);
        }
        // `generate_series` and `range` are refused by name (guard), and
        // here taken away: a `WITH generate_series AS (...)` hid a call of
        // the function from the guard, whose planner still called it.
        for f in datafusion::functions_table::all_default_table_functions() {
            session.ctx.deregister_udtf(f.name());
        }
        session
            .ctx
            .register_expr_planner(Arc::new(functions::ConcatPlanner))
            .map_err(|e| session.error(e))?;
        let ctx = &session.ctx;
        let schema = schema::schema();
        let graph_flows = Arc::new(Flows {
            files: snap.files.clone(),
            recent: snap.recent.clone(),
        });
        let recent =
            MemTable::try_new(schema.clone(), vec![snap.recent]).map_err(|e| session.error(e))?;
        let table: Arc<dyn TableProvider> = if snap.files.is_empty() {
            Arc::new(recent)
        } else {
            let urls = snap
                .files
                .iter()
                .map(|f| ListingTableUrl::parse(f.path.to_string_lossy()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| session.error(e))?;
            // Statistics (rows per file, from each footer) let the plan's
            // guard see what a join makes (guard::check_joins).
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_collect_stat(true);
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(schema);
            let files = ListingTable::try_new(config).map_err(|e| session.error(e))?;
            // Scans of their own, not tables: SHOW TABLES lists only what
            // a query may read.
            let scan = |name: &str, table: Arc<dyn TableProvider>| {
                LogicalPlanBuilder::scan(name, provider_as_source(table), None)
            };
            let union = scan("flows_memory", Arc::new(recent))
                .and_then(|memory| memory.union(scan("flows_files", Arc::new(files))?.build()?))
                .and_then(|union| union.build())
                .map_err(|e| session.error(e))?;
            DataFrame::new(ctx.state(), union).into_view()
        };
        for rows in [Rows::Nodes, Rows::Edges] {
            ctx.register_table(
                rows.name(),
                Arc::new(GraphTable::new(rows, graph_flows.clone())),
            )
            .map_err(|e| session.error(e))?;
        }
        let policies = history.policies();
        for mode in Mode::BOTH {
            let f = WhatIfFunction::new(mode, table.clone(), policies.clone());
            ctx.register_udtf(mode.name(), Arc::new(f));
        }
        let states = policy_states::table(policies).map_err(|e| session.error(e))?;
        ctx.register_table(policy_states::TABLE, Arc::new(states))
            .map_err(|e| session.error(e))?;
        ctx.register_table(guard::FLOWS, table)
            .map_err(|e| session.error(e))?;
        Ok(session)
    }

    pub fn pool(&self) -> Arc<dyn MemoryPool> {
        self.pool.clone()
    }

    /// Checks `sql`, plans it and binds `values` (when given).
    pub async fn plan(
        &self,
        sql: &str,
        values: Option<Vec<ScalarValue>>,
    ) -> Result<(DataFrame, Described), SqlError> {
        let mut statement = guard::check(sql)?;
        params::number_question_marks(&mut statement)?;
        let state = self.ctx.state();
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
        let parameters = params::types(&plan)?;
        let plan = match values {
            Some(values) => params::bind(plan, &parameters, values)?,
            None => plan,
        };
        let df = self
            .ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| self.error(e))?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        Ok((
            df,
            Described {
                schema,
                parameters,
                reads: None,
            },
        ))
    }

    pub fn error(&self, e: DataFusionError) -> SqlError {
        error(e, &self.pool, &self.limits)
    }
}

/// `e` as the error a user reads: an unknown column with the columns there
/// are, or the memory limit that was reached.
fn error(e: DataFusionError, pool: &QueryPool, limits: &SqlLimits) -> SqlError {
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
        let whatif = Mode::BOTH.into_iter().find(|m| {
            valid_fields.iter().any(|c| {
                c.relation
                    .as_ref()
                    .is_some_and(|t| t.table().starts_with(m.name()))
            })
        });
        let reads_flows = valid_fields.iter().any(|c| {
            c.relation
                .as_ref()
                .is_some_and(|t| t.table() == guard::FLOWS)
        });
        let (table, columns) = match (graph, whatif) {
            (Some(r), _) => (r.name().to_string(), r.column_names()),
            (None, Some(m)) => (m.name().to_string(), super::whatif::rows::column_names()),
            // A relation of the query's own (a CTE, a subquery): its columns
            // as DataFusion found them, not `flows`'.
            (None, None) if !reads_flows && !valid_fields.is_empty() => {
                let mut own: Vec<&str> = valid_fields
                    .iter()
                    .filter_map(|c| c.relation.as_ref().map(|t| t.table()))
                    .collect();
                own.dedup();
                let names: Vec<&str> = valid_fields.iter().map(|c| c.name.as_str()).collect();
                let table = if own.is_empty() {
                    "(subquery)".to_string()
                } else {
                    own.join("`, `")
                };
                (table, names.join(", "))
            }
            (None, None) => (guard::FLOWS.to_string(), schema::column_names()),
        };
        return SqlError::UnknownColumn {
            column: field.name().to_string(),
            table,
            columns,
        };
    }
    if let DataFusionError::ResourcesExhausted(detail) = root {
        let detail = detail.clone();
        return match pool.exhausted() {
            Some(Exhausted::Total) => SqlError::MemoryTotal {
                limit: limits.memory_total_bytes,
                detail,
            },
            _ => SqlError::Memory {
                limit: limits.memory_bytes,
                detail,
            },
        };
    }
    match root {
        // A build hint (`[1, 2]`, `a['k']`): the relay has no array functions.
        e if e.to_string().contains("nested_expressions") => SqlError::Query(
            "arrays and maps (`[1, 2]`, `make_array`, `x['key']`) are not available in the \
                 relay's SQL; array_agg works, and -o csv prints its lists as text"
                .into(),
        ),
        // DataFusion's words for a LIMIT past i64 (read as a float, or a
        // cast that fails) name neither the limit nor the reason.
        e if e.to_string().contains("Expected LIMIT to be an integer") => {
            SqlError::Query(format!("LIMIT is too large: at most {} rows", i64::MAX))
        }
        e if e.to_string().contains("to type Int64")
            && e.to_string().contains("Can't cast value") =>
        {
            SqlError::Query(format!(
                "{}: a whole number there holds at most {}",
                root.strip_backtrace(),
                i64::MAX
            ))
        }
        // A DataFusion bug: an aggregate that reads no column of a recursive
        // CTE (count(*)) plans a projection of nothing.
        e if e.to_string().contains("project index") && e.to_string().contains("out of bounds") => {
            SqlError::Query(format!(
                "{} (DataFusion cannot run count(*) over a recursive CTE: count a column \
                 instead, such as count(n))",
                root.strip_backtrace()
            ))
        }
        // Our own table functions' refusals are whole sentences; DataFusion's
        // "Error during planning: " before them tells a user nothing.
        DataFusionError::Plan(message) => SqlError::Query(message.clone()),
        // DataFusion's own prefix would say "Parquet error" twice.
        DataFusionError::IoError(e) => SqlError::Io(e.to_string()),
        DataFusionError::ParquetError(e) => SqlError::Io(e.to_string()),
        DataFusionError::ObjectStore(e) => SqlError::Io(e.to_string()),
        DataFusionError::External(e)
            if e.is::<std::io::Error>() || e.is::<datafusion::parquet::errors::ParquetError>() =>
        {
            SqlError::Io(e.to_string())
        }
        DataFusionError::Internal(_) => SqlError::Fault(root.strip_backtrace()),
        // A task of ours that panicked (the graph's fold): not the query's fault.
        DataFusionError::External(e) if e.is::<tokio::task::JoinError>() => {
            SqlError::Fault(root.strip_backtrace())
        }
        _ => SqlError::Query(root.strip_backtrace()),
    }
}
