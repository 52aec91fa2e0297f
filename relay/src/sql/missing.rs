//! How many flows of a query's time range history is missing, per node: the
//! hook `observe query` uses to say whether an answer is complete.
//!
//! The range is read from the optimized plan the way [`super::graph::window`]
//! reads the graph tables' window: the comparisons of `time` with a constant
//! on every scan of `flows` (and of the graph tables and the what-if
//! functions, which replay flows), pushed into the scan
//! or in a filter right above it. Several scans take the hull of their
//! windows; a scan without a bound reads the whole history. A condition on
//! `time` that is not a bound cannot narrow the range and is ignored, so the
//! count may be larger than what the query's rows lack, never smaller.
//! Conditions `node = '…'` and `node IN (…)` narrow the nodes the same way
//! (the union over scans; a scan without one reads every node's); other
//! conditions cannot tell which lost flows they would have kept.
//!
//! Flight SQL carries the counts in `FlightInfo.app_metadata` of the
//! statement ([`encode`]), which other clients ignore.

use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, TableScan};
use observer_proto::tsv;

use super::graph::window::Window;
use super::whatif::Mode;
use super::{SqlEngine, SqlError, guard};
use crate::history::losses::Missing;

/// The tables whose scans read flows.
const FLOW_TABLES: &[&str] = &[
    guard::FLOWS,
    "flows_memory",
    "flows_files",
    "graph_nodes",
    "graph_edges",
];

/// What a query reads of the flows: a time range, and the nodes when its
/// conditions name them (`None`: every node).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowReads {
    pub window: Window,
    pub nodes: Option<BTreeSet<String>>,
}

/// The bounds on `time` and the nodes named among `exprs` (each split into
/// its conjuncts).
fn bounds<'a>(exprs: impl IntoIterator<Item = &'a Expr>) -> FlowReads {
    let mut r = FlowReads::default();
    for e in exprs {
        for c in split_conjunction(e) {
            if let Ok(Some(b)) = Window::bound(c) {
                r.window.from = r.window.from.max(b.from);
                r.window.to = match (r.window.to, b.to) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            } else if let Some(named) = nodes_named(c) {
                r.nodes = Some(match r.nodes {
                    Some(before) => before.intersection(&named).cloned().collect(),
                    None => named,
                });
            }
        }
    }
    r
}

/// The nodes a condition `node = '…'` or `node IN (…)` keeps (which the
/// optimizer may have made `node = '…' OR node = '…'`).
fn nodes_named(e: &Expr) -> Option<BTreeSet<String>> {
    let is_node = |e: &Expr| matches!(strip_cast(e), Expr::Column(c) if c.name == "node");
    let text = |e: &Expr| match strip_cast(e) {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => {
            Some(s.clone())
        }
        Expr::Literal(ScalarValue::Dictionary(_, v), _) => match v.as_ref() {
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    };
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let value = match (is_node(left), is_node(right)) {
                (true, false) => text(right)?,
                (false, true) => text(left)?,
                _ => return None,
            };
            Some(BTreeSet::from([value]))
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => Some(&nodes_named(left)? | &nodes_named(right)?),
        Expr::InList(l) if !l.negated && is_node(&l.expr) => l.list.iter().map(text).collect(),
        _ => None,
    }
}

fn strip_cast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip_cast(&c.expr),
        Expr::TryCast(c) => strip_cast(&c.expr),
        other => other,
    }
}

/// A scan of flows: of a table of [`FLOW_TABLES`], or of a what-if
/// function's table (which DataFusion names `policy_whatif()`), which
/// replays flows.
fn flow_scan(plan: &LogicalPlan) -> Option<&TableScan> {
    let reads_flows = |table: &str| {
        FLOW_TABLES.contains(&table)
            || table
                .strip_suffix("()")
                .is_some_and(|f| Mode::BOTH.iter().any(|m| m.name() == f))
    };
    match plan {
        LogicalPlan::TableScan(s) if reads_flows(s.table_name.table()) => Some(s),
        _ => None,
    }
}

/// What every scan of flows in `plan` reads together: the hull of their
/// time windows and the union of their nodes; `None` when it scans none.
pub fn reads(plan: &LogicalPlan) -> Option<FlowReads> {
    let mut scans: Vec<FlowReads> = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::Filter(f) => {
                if let Some(scan) = flow_scan(&f.input) {
                    scans.push(bounds(scan.filters.iter().chain([&f.predicate])));
                    // The scan is counted here, with the filter.
                    return Ok(TreeNodeRecursion::Jump);
                }
            }
            _ => {
                if let Some(scan) = flow_scan(node) {
                    scans.push(bounds(&scan.filters));
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    let first = scans.first()?.clone();
    Some(scans.iter().fold(first, |all, r| {
        FlowReads {
            window: Window {
                from: all.window.from.zip(r.window.from).map(|(a, b)| a.min(b)),
                to: all.window.to.zip(r.window.to).map(|(a, b)| a.max(b)),
            },
            nodes: all
                .nodes
                .zip(r.nodes.clone())
                .map(|(a, b)| a.union(&b).cloned().collect()),
        }
    }))
}

impl SqlEngine {
    /// Per node, the flows history did not keep in the time range `sql`
    /// reads (none when it reads no flows).
    pub async fn history_missing(&self, sql: &str) -> Result<Vec<Missing>, SqlError> {
        let described = self.describe(sql, None).await?;
        Ok(self.missing_in(described.reads.as_ref()))
    }

    /// Per node, the flows history did not keep of what a described
    /// statement reads (`Described::reads`).
    pub fn missing_in(&self, reads: Option<&FlowReads>) -> Vec<Missing> {
        match (self.history(), reads) {
            (Some(history), Some(r)) => {
                let mut missing = history.losses().between(r.window.from, r.window.to);
                if let Some(nodes) = &r.nodes {
                    missing.retain(|m| nodes.contains(&m.node));
                }
                missing
            }
            _ => Vec::new(),
        }
    }
}

/// The line prefix of a count in `app_metadata`.
const PREFIX: &str = "history_missing";

/// `missing` as `app_metadata`: one line per node,
/// `history_missing<TAB>node<TAB>flows`, the node as [`tsv::field`] writes it.
pub fn encode(missing: &[Missing]) -> Vec<u8> {
    missing
        .iter()
        .map(|m| format!("{PREFIX}\t{}\t{}\n", tsv::field(&m.node), m.flows))
        .collect::<String>()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use observer_proto::flow::Flow;
    use observer_proto::observer::GetFlowsResponse;
    use observer_proto::observer::get_flows_response::ResponseTypes;

    use super::*;
    use crate::history::{History, HistoryConfig};
    use crate::sql::SqlLimits;

    const S: i64 = 1_000_000_000;
    /// 2024-05-01T10:00:00Z
    const T: i64 = 1_714_557_600 * S;

    #[tokio::test]
    async fn the_missing_flows_of_the_range_a_query_reads() {
        let dir = test_support::scratch::ScratchDir::new("sql-missing");
        let h = History::open(HistoryConfig {
            retention_age: Duration::from_secs(100 * 365 * 86_400),
            ..HistoryConfig::new(dir.path())
        })
        .unwrap();
        h.ingest(Arc::new(GetFlowsResponse {
            node_name: "node1".into(),
            time: Some(observer_proto::time::timestamp(i128::from(T))),
            response_types: Some(ResponseTypes::Flow(Flow::default())),
        }));
        h.flush().unwrap();
        // 10:00:30 and 10:30:00 on node1, 11:00:00 on node2.
        h.losses().record("node1", T + 30 * S, 1_234);
        h.losses().record("node1", T + 1800 * S, 6);
        h.losses().record("node2", T + 3600 * S, 5);
        let e = SqlEngine::new(Some(h), SqlLimits::default());
        let count = |sql: &'static str| {
            let e = e.clone();
            async move {
                e.history_missing(sql)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|m| (m.node, m.flows))
                    .collect::<Vec<_>>()
            }
        };
        let n = |node: &str, flows: u64| (node.to_string(), flows);
        assert_eq!(
            count("SELECT count(*) FROM flows").await,
            [n("node1", 1_240), n("node2", 5)]
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM flows WHERE time >= '2024-05-01T10:00:00Z' \
                 AND time < '2024-05-01T10:10:00Z' AND verdict = 'DROPPED'"
            )
            .await,
            [n("node1", 1_234)]
        );
        assert_eq!(
            count("SELECT * FROM graph_edges WHERE time BETWEEN '2024-05-01T10:20:00Z' AND '2024-05-01T12:00:00Z'")
                .await,
            [n("node1", 6), n("node2", 5)]
        );
        // Two scans: the hull of their windows.
        assert_eq!(
            count(
                "SELECT 1 FROM flows WHERE time > '2024-05-01T10:59:00Z' UNION ALL \
                 SELECT 1 FROM flows WHERE time <= '2024-05-01T10:00:40Z' AND time >= '2024-05-01T10:00:20Z'"
            )
            .await,
            [n("node1", 1_240), n("node2", 5)]
        );
        // Nodes named: only theirs; in every scan, or any scan reads all.
        assert_eq!(
            count("SELECT count(*) FROM flows WHERE node = 'node2'").await,
            [n("node2", 5)]
        );
        assert_eq!(
            count("SELECT count(*) FROM flows WHERE 'node1' = node AND verdict = 'DROPPED'").await,
            [n("node1", 1_240)]
        );
        assert_eq!(
            count("SELECT count(*) FROM flows WHERE node IN ('node2', 'node3')").await,
            [n("node2", 5)]
        );
        assert!(
            count("SELECT count(*) FROM flows WHERE node = 'node1' AND node = 'node2'")
                .await
                .is_empty()
        );
        assert_eq!(
            count(
                "SELECT 1 FROM flows WHERE node = 'node1' AND time < '2024-05-01T10:10:00Z' \
                 UNION ALL SELECT 1 FROM flows WHERE node = 'node2'"
            )
            .await,
            [n("node1", 1_240), n("node2", 5)]
        );
        assert_eq!(
            count("SELECT 1 FROM flows WHERE node = 'node2' UNION ALL SELECT 1 FROM flows").await,
            [n("node1", 1_240), n("node2", 5)]
        );
        // Not a plain naming of nodes: every node.
        assert_eq!(
            count("SELECT count(*) FROM flows WHERE node <> 'node1' OR node = 'node2'").await,
            [n("node1", 1_240), n("node2", 5)]
        );
        // The what-if functions replay the flows of the window their
        // condition on `time` chooses.
        assert_eq!(
            count(
                "SELECT count(*) FROM policy_whatif('') WHERE time BETWEEN \
                 '2024-05-01T10:20:00Z' AND '2024-05-01T12:00:00Z'"
            )
            .await,
            [n("node1", 6), n("node2", 5)]
        );
        assert_eq!(
            count("SELECT * FROM policy_replay('') WHERE node = 'node1'").await,
            [n("node1", 1_240)]
        );
        assert!(count("SELECT 1").await.is_empty(), "no flows read");
        assert!(
            count("SELECT * FROM flows WHERE time > '2024-05-01T12:00:00Z'")
                .await
                .is_empty()
        );
    }

    #[test]
    fn counts_travel_in_app_metadata() {
        let m = [Missing {
            node: "node1".into(),
            flows: 1_234,
            first_sec: 1,
            last_sec: 2,
        }];
        // `observe query` reads these lines (query_command::decode_missing).
        assert_eq!(encode(&m), b"history_missing\tnode1\t1234\n");
        // A peer names itself: its tab or line break stays in its field.
        let odd = [Missing {
            node: "a\tb\nhistory_missing\tnode1\t999".into(),
            ..m[0].clone()
        }];
        assert_eq!(
            encode(&odd),
            b"history_missing\ta\\tb\\nhistory_missing\\tnode1\\t999\t1234\n"
        );
    }
}
