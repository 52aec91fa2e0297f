//! Prometheus metrics of the relay, read from [`RelayState`] at every scrape:
//! peers by state, flows taken from each node, what the reorder window did,
//! and the history: rows written, failed writes, flows it could not keep
//! per node, its queue, compactions, files and bytes on disk, SQL queries run, refused,
//! refused as busy, running, their memory and their durations
//! ([`crate::sql::SqlStats`]).
//! [`serve`] answers `GET /metrics` (text format) on its own listener.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

use crate::sql::SqlStats;
use crate::state::RelayState;

/// Default `/metrics` listen address.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9966";

/// The relay's metrics over its state.
pub struct RelayMetrics {
    state: Arc<RelayState>,
    registry: Registry,
    names: Vec<&'static str>,
    peers: IntGaugeVec,
    ingested: IntCounterVec,
    released: IntCounter,
    late: IntCounter,
    forced: IntCounter,
    history_rows: IntCounter,
    history_files: IntGauge,
    history_bytes: IntGauge,
    history_lost: IntCounterVec,
    history_queue: IntGauge,
    history_compactions: IntCounter,
    history_write_failures: IntCounter,
    /// Counts already added: per peer (flows seen), and released, late,
    /// forced; and the node names whose ingest series exists.
    last: Mutex<(Vec<u64>, [u64; 3], BTreeSet<String>)>,
    /// History counts already added: rows, compactions, failed writes,
    /// lost per node.
    last_history: Mutex<(u64, u64, u64, BTreeMap<String, u64>)>,
}

/// The SQL engine's own counters and histogram, taken from whichever engine
/// the state holds at scrape time (it is set once history is open).
struct SqlCollector {
    state: Arc<RelayState>,
    /// Same names and help as every engine's stats: the descriptions.
    template: SqlStats,
}

impl Collector for SqlCollector {
    fn desc(&self) -> Vec<&Desc> {
        let t = &self.template;
        [
            t.queries.desc(),
            t.refused.desc(),
            t.busy.desc(),
            t.failed.desc(),
            t.running.desc(),
            t.memory.desc(),
            t.duration.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let engine = self.state.sql();
        let s = engine.stats();
        s.memory
            .set(i64::try_from(engine.memory_reserved()).unwrap_or(i64::MAX));
        [
            s.queries.collect(),
            s.refused.collect(),
            s.busy.collect(),
            s.failed.collect(),
            s.running.collect(),
            s.memory.collect(),
            s.duration.collect(),
        ]
        .concat()
    }
}

impl RelayMetrics {
    pub fn new(state: Arc<RelayState>) -> Self {
        Self::build(state).expect("metric names and labels are valid and unique")
    }

    fn build(state: Arc<RelayState>) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let peers = IntGaugeVec::new(
            Opts::new("observe_relay_peers", "Peers (flow-probes) by state"),
            &["state"],
        )?;
        let ingested = IntCounterVec::new(
            Opts::new(
                "observe_relay_flows_ingested_total",
                "Flows and other records taken from each node",
            ),
            &["node"],
        )?;
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let released = counter(
            "observe_relay_reorder_released_total",
            "Flows released by the reorder window",
        )?;
        let late = counter(
            "observe_relay_reorder_late_total",
            "Flows older than one already released: passed on at once, out of order",
        )?;
        let forced = counter(
            "observe_relay_reorder_forced_total",
            "Flows released before their hold was over because the window was full",
        )?;
        let history_rows = counter(
            "observe_relay_history_rows_written_total",
            "Flows written to history files",
        )?;
        let history_files = IntGauge::new(
            "observe_relay_history_files",
            "History files on disk (0 when history is off)",
        )?;
        let history_bytes = IntGauge::new(
            "observe_relay_history_bytes",
            "Bytes of the history files on disk (0 when history is off)",
        )?;
        let history_lost = IntCounterVec::new(
            Opts::new(
                "observe_relay_history_flows_lost_total",
                "Flows history did not keep since the relay started (its writer fell behind, writes \
                 kept failing, or a probe's buffer dropped them before the relay read them), by \
                 node",
            ),
            &["node"],
        )?;
        let history_queue = IntGauge::new(
            "observe_relay_history_queue_flows",
            "Flows waiting in the queue to the history writer",
        )?;
        let history_compactions = counter(
            "observe_relay_history_compactions_total",
            "Compactions of small history files into a larger one",
        )?;
        let history_write_failures = counter(
            "observe_relay_history_write_failures_total",
            "Writes of history rows to a file that failed (a full disk, a folder the relay may not \
             write): the rows stay in memory to be tried again, the oldest beyond 4 batches are \
             dropped and counted as lost",
        )?;
        let mut names = Vec::new();
        for (name, c) in [
            (
                "observe_relay_peers",
                Box::new(peers.clone()) as Box<dyn prometheus::core::Collector>,
            ),
            (
                "observe_relay_flows_ingested_total",
                Box::new(ingested.clone()),
            ),
            (
                "observe_relay_reorder_released_total",
                Box::new(released.clone()),
            ),
            ("observe_relay_reorder_late_total", Box::new(late.clone())),
            (
                "observe_relay_reorder_forced_total",
                Box::new(forced.clone()),
            ),
            (
                "observe_relay_history_rows_written_total",
                Box::new(history_rows.clone()),
            ),
            (
                "observe_relay_history_files",
                Box::new(history_files.clone()),
            ),
            (
                "observe_relay_history_bytes",
                Box::new(history_bytes.clone()),
            ),
            (
                "observe_relay_history_flows_lost_total",
                Box::new(history_lost.clone()),
            ),
            (
                "observe_relay_history_queue_flows",
                Box::new(history_queue.clone()),
            ),
            (
                "observe_relay_history_compactions_total",
                Box::new(history_compactions.clone()),
            ),
            (
                "observe_relay_history_write_failures_total",
                Box::new(history_write_failures.clone()),
            ),
        ] {
            registry.register(c)?;
            names.push(name);
        }
        registry.register(Box::new(SqlCollector {
            state: state.clone(),
            template: SqlStats::new(),
        }))?;
        names.extend([
            "observe_relay_sql_queries_total",
            "observe_relay_sql_queries_refused_total",
            "observe_relay_sql_queries_busy_total",
            "observe_relay_sql_queries_failed_total",
            "observe_relay_sql_queries_running",
            "observe_relay_sql_memory_reserved_bytes",
            "observe_relay_sql_query_duration_seconds",
        ]);
        Ok(RelayMetrics {
            last: Mutex::new((vec![0; state.peers().len()], [0; 3], BTreeSet::new())),
            state,
            registry,
            names,
            peers,
            ingested,
            released,
            late,
            forced,
            history_rows,
            history_files,
            history_bytes,
            history_lost,
            history_queue,
            history_compactions,
            history_write_failures,
            last_history: Mutex::new((0, 0, 0, BTreeMap::new())),
        })
    }

    /// Names of every metric family the relay exports.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Brings the metrics up to date with the state and encodes them.
    pub fn render(&self) -> String {
        let views = self.state.peers().views();
        let connected = views.iter().filter(|v| v.is_connected()).count();
        self.peers
            .with_label_values(&["connected"])
            .set(connected as i64);
        self.peers
            .with_label_values(&["unavailable"])
            .set((views.len() - connected) as i64);
        let stats = self.state.reorder_stats();
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let (seen_all, reorder, started) = &mut *last;
            for (seen, v) in seen_all.iter_mut().zip(&views) {
                // A peer is named by its address until it says its name: no
                // series under that passing name while it has sent nothing.
                if !v.named && v.flows_seen == *seen {
                    continue;
                }
                let node = self.ingested.with_label_values(&[v.name.as_str()]);
                // A new series shows 0 first and counts from the next scrape:
                // one that appeared holding its first flows would lose them
                // from rate().
                if started.insert(v.name.clone()) {
                    continue;
                }
                node.inc_by(v.flows_seen.saturating_sub(*seen));
                *seen = v.flows_seen.max(*seen);
            }
            let now = [stats.released, stats.late, stats.forced];
            for ((c, then), now) in [&self.released, &self.late, &self.forced]
                .into_iter()
                .zip(reorder)
                .zip(now)
            {
                c.inc_by(now.saturating_sub(*then));
                *then = now.max(*then);
            }
        }
        self.history_metrics();
        if self.state.sql().history().is_some() {
            // Every connected node has its series of lost flows from the
            // start, 0 until it loses one, so a rate over it has data.
            for v in views.iter().filter(|v| v.is_connected()) {
                self.history_lost.with_label_values(&[v.name.as_str()]);
            }
        }
        self.encode()
    }

    /// The metrics as they stand, nothing brought up to date: what a `HEAD`
    /// looks at (a new series' first 0 stays for the next scrape).
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::warn!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl RelayMetrics {
    /// Rows written, flows lost, compactions, the queue, and files and bytes
    /// readers see now.
    fn history_metrics(&self) {
        let engine = self.state.sql();
        let Some(history) = engine.history() else {
            return;
        };
        let mut last = self.last_history.lock().unwrap_or_else(|p| p.into_inner());
        let (rows, compactions) = (history.written_rows(), history.compactions());
        self.history_rows.inc_by(rows.saturating_sub(last.0));
        last.0 = rows.max(last.0);
        self.history_compactions
            .inc_by(compactions.saturating_sub(last.1));
        last.1 = compactions.max(last.1);
        let failures = history.write_failures();
        self.history_write_failures
            .inc_by(failures.saturating_sub(last.2));
        last.2 = failures.max(last.2);
        for (node, lost) in history.losses().since_start() {
            let seen = last.3.entry(node.clone()).or_default();
            self.history_lost
                .with_label_values(&[node.as_str()])
                .inc_by(lost.saturating_sub(*seen));
            *seen = lost.max(*seen);
        }
        drop(last);
        if let Some(feed) = self.state.history_feed() {
            self.history_queue
                .set(i64::try_from(feed.depth()).unwrap_or(i64::MAX));
        }
        match history.disk_usage() {
            Ok((files, bytes)) => {
                self.history_files
                    .set(i64::try_from(files).unwrap_or(i64::MAX));
                self.history_bytes
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            Err(e) => log::warn!("metrics: listing history files: {e}"),
        }
    }
}

/// Names of every metric the relay exports (for checking dashboards).
pub fn metric_names() -> Vec<&'static str> {
    let state = Arc::new(RelayState::new(
        observer_runtime::store::FlowStore::new(1),
        crate::peer::Peers::new(&[]),
    ));
    RelayMetrics::new(state).names().to_vec()
}

/// The `/metrics` endpoint: [`observer_runtime::metrics_http`], shared with flow-probe.
pub use observer_runtime::metrics_http::parse_listen;

/// Answers `GET /metrics` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<RelayMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let render = Arc::new(move |ask| match ask {
        observer_runtime::metrics_http::Ask::Scrape => metrics.render(),
        observer_runtime::metrics_http::Ask::Look => metrics.encode(),
    });
    observer_runtime::metrics_http::serve(listener, render, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Peers;
    use crate::reorder::ReorderStats;
    use observer_runtime::store::FlowStore;

    #[test]
    fn peers_ingest_and_reorder_counts() {
        let state = Arc::new(RelayState::new(
            FlowStore::new(10),
            Peers::new(&["a:1".into(), "b:2".into()]),
        ));
        let m = RelayMetrics::new(state.clone());
        for _ in 0..3 {
            state.peers().count_flow(0);
        }
        state.set_reorder_stats(ReorderStats {
            released: 5,
            late: 2,
            forced: 1,
        });
        let text = m.render();
        // History and SQL metrics: `history_and_sql_counts`.
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("_history_") && !l.contains("_sql_"))
            .collect();
        // a, unnamed, sent flows: its series shows 0 first; b, unnamed,
        // sent nothing: none yet (it would be named by its address).
        assert_eq!(
            lines,
            [
                r#"observe_relay_flows_ingested_total{node="a:1"} 0"#,
                r#"observe_relay_peers{state="connected"} 0"#,
                r#"observe_relay_peers{state="unavailable"} 2"#,
                "observe_relay_reorder_forced_total 1",
                "observe_relay_reorder_late_total 2",
                "observe_relay_reorder_released_total 5",
            ]
        );
        // A second scrape adds only what is new.
        state.peers().count_flow(0);
        let text = m.render();
        assert!(
            text.contains(r#"observe_relay_flows_ingested_total{node="a:1"} 4"#),
            "{text}"
        );
        assert!(text.contains("observe_relay_reorder_released_total 5"));
        let mut names = metric_names();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "observe_relay_flows_ingested_total",
                "observe_relay_history_bytes",
                "observe_relay_history_compactions_total",
                "observe_relay_history_files",
                "observe_relay_history_flows_lost_total",
                "observe_relay_history_queue_flows",
                "observe_relay_history_rows_written_total",
                "observe_relay_history_write_failures_total",
                "observe_relay_peers",
                "observe_relay_reorder_forced_total",
                "observe_relay_reorder_late_total",
                "observe_relay_reorder_released_total",
                "observe_relay_sql_memory_reserved_bytes",
                "observe_relay_sql_queries_busy_total",
                "observe_relay_sql_queries_failed_total",
                "observe_relay_sql_queries_refused_total",
                "observe_relay_sql_queries_running",
                "observe_relay_sql_queries_total",
                "observe_relay_sql_query_duration_seconds",
            ]
        );
    }

    #[tokio::test]
    async fn history_and_sql_counts() {
        use crate::history::{History, HistoryConfig};
        use crate::sql::{SqlEngine, SqlError};
        use observer_proto::flow::Flow;
        use observer_proto::observer::GetFlowsResponse;
        use observer_proto::observer::get_flows_response::ResponseTypes;

        let dir = std::env::temp_dir().join(format!("relay-metrics-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = HistoryConfig::new(&dir);
        cfg.retention_age = std::time::Duration::from_secs(100 * 365 * 86_400);
        let history = History::open(cfg).unwrap();
        let state = Arc::new(RelayState::new(FlowStore::new(10), Peers::new(&[])));
        state.set_sql(SqlEngine::new(Some(history.clone()), Default::default()));
        // A queue of one flow and no writer: one waits, two are lost.
        let (feed, _intake) = crate::history::feed::channel(1, history.losses().clone());
        state.set_history_feed(feed);
        let m = RelayMetrics::new(state.clone());
        for _ in 0..3 {
            state.publish(GetFlowsResponse {
                node_name: "n9".into(),
                time: Some(observer_proto::time::timestamp(2_000_000_000)),
                response_types: Some(ResponseTypes::Flow(Flow::default())),
            });
        }
        for (i, uuid) in ["a", "b", "c"].into_iter().enumerate() {
            history.ingest(Arc::new(GetFlowsResponse {
                time: Some(observer_proto::time::timestamp(1_000_000_000 + i as i128)),
                response_types: Some(ResponseTypes::Flow(Flow {
                    uuid: uuid.into(),
                    ..Default::default()
                })),
                ..Default::default()
            }));
        }
        history.flush().unwrap();
        let engine = state.sql();
        let rows = engine.query("SELECT count(*) FROM flows").await.unwrap();
        assert_eq!(rows.batches[0].num_rows(), 1);
        assert!(matches!(
            engine.query("DROP TABLE flows").await,
            Err(SqlError::Refused(_))
        ));
        assert!(matches!(
            engine.schema("DELETE FROM flows").await,
            Err(SqlError::Refused(_))
        ));
        // Failed: while planned (an unknown column), and while run.
        assert!(matches!(
            engine.query("SELECT nosuch FROM flows").await,
            Err(SqlError::UnknownColumn { .. })
        ));
        assert!(matches!(
            engine.query("SELECT CAST(uuid AS INT) FROM flows").await,
            Err(SqlError::Query(_))
        ));
        let (files, bytes) = history.disk_usage().unwrap();
        assert_eq!(files, 1);
        assert!(bytes > 0);
        // A write that failed: its rows stay in memory, the failure counts.
        history.ingest(Arc::new(GetFlowsResponse {
            time: Some(observer_proto::time::timestamp(1_000_000_009)),
            response_types: Some(ResponseTypes::Flow(Flow::default())),
            ..Default::default()
        }));
        for segment in history.seal(false) {
            history.write_failed(segment.id);
        }

        let text = m.render();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.starts_with('#')
                    && (l.contains("history") || l.contains("sql"))
                    && !l.contains("_bucket")
                    && !l.contains("_sum")
            })
            .collect();
        let expected = [
            format!("observe_relay_history_bytes {bytes}"),
            "observe_relay_history_compactions_total 0".to_string(),
            "observe_relay_history_files 1".to_string(),
            r#"observe_relay_history_flows_lost_total{node="n9"} 2"#.to_string(),
            "observe_relay_history_queue_flows 1".to_string(),
            "observe_relay_history_rows_written_total 3".to_string(),
            "observe_relay_history_write_failures_total 1".to_string(),
            "observe_relay_sql_memory_reserved_bytes 0".to_string(),
            "observe_relay_sql_queries_busy_total 0".to_string(),
            "observe_relay_sql_queries_failed_total 2".to_string(),
            "observe_relay_sql_queries_refused_total 2".to_string(),
            "observe_relay_sql_queries_running 0".to_string(),
            "observe_relay_sql_queries_total 4".to_string(),
            "observe_relay_sql_query_duration_seconds_count 4".to_string(),
        ];
        assert_eq!(lines, expected);
        // Four queries run (one refused, two failed), each well under the
        // largest bucket.
        assert!(
            text.contains(r#"observe_relay_sql_query_duration_seconds_bucket{le="+Inf"} 4"#),
            "{text}"
        );
        // A second scrape adds only what is new.
        let text = m.render();
        assert!(text.contains("observe_relay_history_rows_written_total 3"));
        assert!(text.contains(r#"observe_relay_history_flows_lost_total{node="n9"} 2"#));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A peer is named by its address until it says its name: its ingest
    /// series was made under the address at the first scrape and stayed
    /// there, flat, beside the named one, which appeared holding its first
    /// flows (lost from rate()).
    #[test]
    fn a_peer_named_later_has_one_ingest_series_that_starts_at_0() {
        let state = Arc::new(RelayState::new(
            FlowStore::new(10),
            Peers::new(&["a:1".into()]),
        ));
        let m = RelayMetrics::new(state.clone());
        let ingest = || -> Vec<String> {
            m.render()
                .lines()
                .filter(|l| l.starts_with("observe_relay_flows_ingested_total{"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(ingest(), Vec::<String>::new());
        state.peers().learn_name(0, "node1");
        for _ in 0..2 {
            state.peers().count_flow(0);
        }
        assert_eq!(
            ingest(),
            [r#"observe_relay_flows_ingested_total{node="node1"} 0"#]
        );
        state.peers().count_flow(0);
        assert_eq!(
            ingest(),
            [r#"observe_relay_flows_ingested_total{node="node1"} 3"#]
        );
    }

    #[test]
    fn listen_flag() {
        assert_eq!(parse_listen("off"), Ok(None));
        assert!(parse_listen("127.0.0.1:9966").unwrap().is_some());
        assert!(parse_listen("x").is_err());
    }
}
