//! [`SqlEngine`]: runs SQL over one relay's history. Each query is admitted
//! ([`super::admission`]), then runs as one task on the SQL runtime
//! ([`super::runtime`]) with a [`Session`] of its own, which checks, plans
//! and binds it; the task sends its description, then its batches
//! ([`super::stream`]), and ends once its caller has taken the last one, at
//! the time limit (waiting on a caller that does not read counts), at
//! shutdown, or when its caller drops the stream. Its place, and the batches
//! its caller has not taken, are given back when it ends.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer, MemoryPool};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;

use observer_proto::observer::GetFlowsResponse;

use super::admission::{Admission, Admitted};
use super::session::Session;
use super::stats::SqlStats;
use super::stream::{
    self, AbortOnDrop, Described, Ending, Leases, Msg, QueryStream, Running, Watchdog,
};
use super::{QueryResult, SqlError, SqlLimits, runtime};
use crate::history::{History, read};

/// Runs SQL over one relay's history.
#[derive(Clone)]
pub struct SqlEngine {
    inner: Arc<Inner>,
}

struct Inner {
    history: Option<Arc<History>>,
    limits: SqlLimits,
    stats: Arc<SqlStats>,
    admission: Admission,
    /// Memory of all queries together.
    memory: Arc<GreedyMemoryPool>,
}

/// What a task does once its session is ready.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Plan only: describe the result.
    Describe,
    /// Plan and send the batches.
    Execute,
}

impl SqlEngine {
    pub fn new(history: Option<Arc<History>>, limits: SqlLimits) -> Self {
        let stats = Arc::new(SqlStats::new());
        SqlEngine {
            inner: Arc::new(Inner {
                history,
                admission: Admission::new(limits.max_concurrent, limits.queue_wait, stats.clone()),
                memory: Arc::new(GreedyMemoryPool::new(limits.memory_total_bytes)),
                limits,
                stats,
            }),
        }
    }

    /// The history queried, if any.
    pub fn history(&self) -> Option<&Arc<History>> {
        self.inner.history.as_ref()
    }

    /// Queries run, refused, busy and running, and their durations.
    pub fn stats(&self) -> &Arc<SqlStats> {
        &self.inner.stats
    }

    pub fn has_history(&self) -> bool {
        self.inner.history.is_some()
    }

    pub fn limits(&self) -> SqlLimits {
        self.inner.limits
    }

    /// Bytes the running queries hold in the shared pool.
    pub fn memory_reserved(&self) -> usize {
        self.inner.memory.reserved()
    }

    /// Cancels every running query and refuses new ones (the relay stops).
    pub fn shutdown(&self) {
        self.inner.admission.shutdown();
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

    /// Checks and plans `sql` (nothing runs yet): the result's schema.
    pub async fn schema(&self, sql: &str) -> Result<SchemaRef, SqlError> {
        Ok(self.describe(sql, None).await?.schema)
    }

    /// Checks and plans `sql`: its result's schema and its parameters. With
    /// `values`, they are bound first (and must fit).
    pub async fn describe(
        &self,
        sql: &str,
        values: Option<Vec<ScalarValue>>,
    ) -> Result<Described, SqlError> {
        let result = async {
            let mut running = self.start(sql, values, Run::Describe).await?;
            let described = running.described().await?;
            // The task ends right after: wait for it, so it is not counted
            // as running once this returns.
            running.ended().await;
            Ok(described)
        }
        .await;
        self.inner.stats.count_refused(&result);
        result
    }

    /// Runs `sql` to the end within the limits, every batch counted against
    /// the query's memory until the last is in.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, SqlError> {
        self.stream(sql, Vec::new()).await?.into_result().await
    }

    /// Starts `sql` with `values` bound to its parameters; the batches come
    /// as they are computed. Dropping the stream cancels the query.
    pub async fn stream(
        &self,
        sql: &str,
        values: Vec<ScalarValue>,
    ) -> Result<QueryStream, SqlError> {
        let result = async {
            let mut running = self.start(sql, Some(values), Run::Execute).await?;
            let d = running.described().await?;
            Ok(running.into_stream(d.schema))
        }
        .await;
        self.inner.stats.count_refused(&result);
        result
    }

    /// Admits the query and spawns its task on the SQL runtime; the
    /// caller's watchdog starts with it.
    async fn start(
        &self,
        sql: &str,
        values: Option<Vec<ScalarValue>>,
        run: Run,
    ) -> Result<Running, SqlError> {
        let admitted = self.inner.admission.admit().await?;
        let (tx, rx) = mpsc::channel(stream::CHANNEL);
        let ending = Arc::new(Ending::default());
        let task = self.task(admitted, tx, ending.clone(), sql.to_string(), values, run);
        let handle = runtime::handle()?.spawn(task);
        Ok(Running {
            rx,
            ending,
            task: AbortOnDrop(handle),
            watchdog: Watchdog::start(self.inner.limits.timeout),
        })
    }

    /// The query's whole life, within its time limit and the relay's.
    fn task(
        &self,
        mut admitted: Admitted,
        tx: mpsc::Sender<Msg>,
        ending: Arc<Ending>,
        sql: String,
        values: Option<Vec<ScalarValue>>,
        run: Run,
    ) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            let stats = this.inner.stats.clone();
            // Executions are counted and timed, descriptions are not.
            let timer = (run == Run::Execute).then(|| {
                stats.queries.inc();
                stats.duration.start_timer()
            });
            let timeout = this.inner.limits.timeout;
            // Keeps the channel open until the ending is told.
            let open = tx.clone();
            let mut leases = Leases::default();
            // A panic (inside DataFusion or arrow) ends the query, not the task
            // unheard: the caller and the failure count learn of it.
            let running =
                AssertUnwindSafe(this.run(&sql, values, run, tx, &mut leases)).catch_unwind();
            let outcome = tokio::select! {
                r = tokio::time::timeout(timeout, running) => match r {
                    Err(_) => Err(SqlError::Timeout(timeout)),
                    Ok(Err(_panic)) => Err(SqlError::Fault(stream::DIED.into())),
                    Ok(Ok(done)) => done,
                },
                () = admitted.stopping() => Err(SqlError::ShuttingDown),
            };
            // Planned or run (a syntax error fails while planned, before any
            // run); refusals have their own count.
            if let Err(e) = &outcome
                && !matches!(e, SqlError::Refused(_))
            {
                stats.failed.inc();
            }
            // Counted and freed before the caller hears of the end.
            drop(timer);
            drop(admitted);
            let failed = outcome.is_err();
            ending.set(outcome);
            // Batches the caller has not taken go with a failed query, once
            // it is told why (one that succeeded waited for the caller to
            // take them all).
            if failed {
                leases.take_back();
            }
            drop(open);
        }
    }

    async fn run(
        &self,
        sql: &str,
        values: Option<Vec<ScalarValue>>,
        run: Run,
        tx: mpsc::Sender<Msg>,
        leases: &mut Leases,
    ) -> Result<(), SqlError> {
        let inner = &self.inner;
        let session =
            Session::open(inner.history.as_ref(), inner.limits, inner.memory.clone()).await?;
        let (df, mut described) = session.plan(sql, values).await?;
        if run == Run::Describe {
            let plan = df
                .clone()
                .into_optimized_plan()
                .map_err(|e| session.error(e))?;
            described.reads = super::missing::reads(&plan);
        }
        if tx.send(Msg::Described(described)).await.is_err() || run == Run::Describe {
            return Ok(());
        }
        let task = Arc::new(df.task_ctx());
        let (state, plan) = df.into_parts();
        let plan = state.optimize(&plan).map_err(|e| session.error(e))?;
        super::functions::check_constants(&plan)?;
        let plan = state
            .query_planner()
            .create_physical_plan(&plan, &state)
            .await
            .map_err(|e| session.error(e))?;
        super::guard::check_joins(&plan)?;
        let plan = super::guard::cooperative_joins(plan).map_err(|e| session.error(e))?;
        let mut batches =
            datafusion::physical_plan::execute_stream(plan, task).map_err(|e| session.error(e))?;
        let results = MemoryConsumer::new("results").register(&session.pool());
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| session.error(e))?;
            let memory = results.new_empty();
            memory
                .try_grow(batch.get_array_memory_size())
                .map_err(|e| session.error(e))?;
            if tx
                .send(Msg::Batch(leases.lend(batch, memory)))
                .await
                .is_err()
            {
                // The caller is gone.
                return Ok(());
            }
        }
        // Done once the caller has taken every batch (the channel is empty),
        // within the time limit: a caller that stops reading does not keep
        // the last batches, their memory and the query's place.
        let _ = tx.reserve_many(stream::CHANNEL).await;
        Ok(())
    }
}
