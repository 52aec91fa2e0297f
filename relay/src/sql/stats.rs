//! [`SqlStats`]: what an engine has done since start, as Prometheus metrics
//! (registered by [`crate::metrics`]).

use super::SqlError;

/// Upper bounds (seconds) of the query duration histogram's buckets.
pub const QUERY_SECONDS_BUCKETS: &[f64] = &[0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0];

/// Queries run by [`super::SqlEngine`] (GetFlows history reads included) and
/// their durations, whatever the outcome; queries refused (not read-only, or
/// over a statement limit) and refused as busy; queries running now; and the
/// memory all of them hold.
pub struct SqlStats {
    pub queries: prometheus::IntCounter,
    pub refused: prometheus::IntCounter,
    pub busy: prometheus::IntCounter,
    pub failed: prometheus::IntCounter,
    pub running: prometheus::IntGauge,
    pub memory: prometheus::IntGauge,
    pub duration: prometheus::Histogram,
}

impl SqlStats {
    pub fn new() -> Self {
        let counter = |name: &str, help: &str| {
            prometheus::IntCounter::new(name, help).expect("a valid metric name")
        };
        let gauge = |name: &str, help: &str| {
            prometheus::IntGauge::new(name, help).expect("a valid metric name")
        };
        SqlStats {
            queries: counter("observe_relay_sql_queries_total", "SQL queries run"),
            refused: counter(
                "observe_relay_sql_queries_refused_total",
                "SQL queries refused: not read-only queries of the relay's tables, or over a \
                 statement limit",
            ),
            busy: counter(
                "observe_relay_sql_queries_busy_total",
                "SQL queries refused because --sql-max-concurrent queries were running",
            ),
            failed: counter(
                "observe_relay_sql_queries_failed_total",
                "SQL queries that ended in an error while planned or run: syntax, unknown \
                 names, a runtime error, a memory or time limit, a fault, or the relay \
                 stopping (refusals are counted apart)",
            ),
            running: gauge(
                "observe_relay_sql_queries_running",
                "SQL queries being planned or run now",
            ),
            memory: gauge(
                "observe_relay_sql_memory_reserved_bytes",
                "Memory reserved by the running SQL queries (limit: --sql-memory-total)",
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

    pub(super) fn count_refused<T>(&self, result: &Result<T, SqlError>) {
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
