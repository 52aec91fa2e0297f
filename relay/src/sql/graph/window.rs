//! The time window of a graph table: the conditions on its `time` column that
//! DataFusion offers the scan, read as bounds on the flows to build from.
//!
//! Only comparisons of `time` with a constant choose the window (`=`, `<`,
//! `<=`, `>`, `>=` with `time` on either side, and `BETWEEN`), which is what
//! Grafana's `$__timeFilter(time)` expands to; several of them intersect. Any
//! other condition naming `time` is refused: it cannot be applied to the
//! flows, and applied to the graph's rows it would not choose the flows.
//! The policy what-if's tables (`crate::sql::whatif`) choose their window
//! the same way: [`pushdown`] serves every table built from a window of
//! flows; [`scan`] reads the what-if's (each first packet is replayed on its
//! own, in any order), while the graph reads history in time order itself
//! (`super::exec`).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, LogicalPlanBuilder, Operator, TableProviderFilterPushDown, col, lit,
};
use datafusion::physical_plan::ExecutionPlan;

/// What a table built from a window of flows takes of `filters`: bounds on
/// `time` choose the window (and, applied again to the rows, keep them all:
/// every row's time is one of the window's flows'); the rest are left to
/// DataFusion.
pub fn pushdown(filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
    filters
        .iter()
        .map(|f| {
            Ok(match Window::bound(f)? {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
        })
        .collect()
}

/// The plan reading `columns` of `flows` within the window `filters` choose,
/// and where `condition` holds.
pub async fn scan(
    state: &dyn Session,
    flows: &Arc<dyn TableProvider>,
    columns: &[&str],
    filters: &[Expr],
    condition: Option<Expr>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let window = Window::of(filters)?;
    let schema = flows.schema();
    let columns = columns
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<Result<Vec<_>, _>>()?;
    let source = provider_as_source(flows.clone());
    let mut plan = LogicalPlanBuilder::scan("flows", source, Some(columns))?;
    let condition = match (condition, window.filter()) {
        (Some(c), Some(w)) => Some(c.and(w)),
        (c, w) => c.or(w),
    };
    if let Some(c) = condition {
        plan = plan.filter(c)?;
    }
    state.create_physical_plan(&plan.build()?).await
}

/// The column of the graph tables (and of `flows`) that holds flow time.
pub const TIME: &str = "time";

/// Flow times to build the graph from, both ends included, in Unix
/// nanoseconds; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Window {
    /// The intersection of the bounds in `filters`; filters that do not name
    /// `time` are left to DataFusion. Fails on a condition on `time` that is
    /// not a bound.
    pub fn of(filters: &[Expr]) -> Result<Window> {
        let mut w = Window::default();
        for f in filters {
            if let Some(b) = Window::bound(f)? {
                w.from = w.from.max(b.from);
                w.to = match (w.to, b.to) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        Ok(w)
    }

    /// The window `filter` sets: `None` when it does not name `time`.
    pub fn bound(filter: &Expr) -> Result<Option<Window>> {
        if !filter.column_refs().iter().any(|c| c.name == TIME) {
            return Ok(None);
        }
        match comparison(filter) {
            Some(w) => Ok(Some(w)),
            // A prepared statement's `time >= ?` described before its values
            // are bound: no bound yet (the run binds them first).
            None if has_placeholder(filter) => Ok(Some(Window::default())),
            None => plan_err!(
                "the graph tables and the policy what-if read a condition on `{TIME}` as the \
                 window of flows to build from, so it must compare `{TIME}` with a constant \
                 (`time >= '...'`, `time < '...'`, `time BETWEEN '...' AND '...'`); not \
                 `{filter}`"
            ),
        }
    }

    /// The condition on `flows` that selects this window, if it is bounded.
    pub fn filter(&self) -> Option<Expr> {
        let at = |n: i64| {
            lit(ScalarValue::TimestampNanosecond(
                Some(n),
                Some("UTC".into()),
            ))
        };
        let from = self.from.map(|n| col(TIME).gt_eq(at(n)));
        let to = self.to.map(|n| col(TIME).lt_eq(at(n)));
        match (from, to) {
            (Some(a), Some(b)) => Some(a.and(b)),
            (a, b) => a.or(b),
        }
    }
}

fn has_placeholder(e: &Expr) -> bool {
    use datafusion::common::tree_node::TreeNode;
    e.exists(|e| Ok(matches!(e, Expr::Placeholder(_))))
        .unwrap_or(false)
}

fn is_time(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == TIME)
}

/// `time <op> constant`, `constant <op> time` or `time BETWEEN a AND b`.
fn comparison(e: &Expr) -> Option<Window> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, value) = if is_time(left) {
                (*op, instant(right)?)
            } else if is_time(right) {
                (op.swap()?, instant(left)?)
            } else {
                return None;
            };
            let (from, to) = match op {
                Operator::Eq => (Some(value), Some(value)),
                Operator::GtEq => (Some(value), None),
                Operator::Gt => (Some(value.checked_add(1)?), None),
                Operator::LtEq => (None, Some(value)),
                Operator::Lt => (None, Some(value.checked_sub(1)?)),
                _ => return None,
            };
            Some(Window { from, to })
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_time(expr) => Some(Window {
            from: Some(instant(low)?),
            to: Some(instant(high)?),
        }),
        _ => None,
    }
}

/// A constant as Unix nanoseconds: a timestamp of any unit, an RFC 3339
/// string, or a cast of one.
fn instant(e: &Expr) -> Option<i64> {
    let ns = DataType::Timestamp(TimeUnit::Nanosecond, None);
    match constant(e)?.cast_to(&ns).ok()? {
        ScalarValue::TimestampNanosecond(Some(n), _) => Some(n),
        _ => None,
    }
}

fn constant(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v.clone()),
        Expr::Cast(c) => constant(&c.expr)?.cast_to(c.field.data_type()).ok(),
        Expr::TryCast(c) => constant(&c.expr)?.cast_to(c.field.data_type()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_714_557_600_000_000_000;

    fn at(s: &str) -> Expr {
        lit(s)
    }

    #[test]
    fn grafanas_time_filter_is_a_closed_window() {
        let filters = [
            col(TIME).gt_eq(at("2024-05-01T10:00:00Z")),
            col(TIME).lt_eq(at("2024-05-01T11:00:00Z")),
        ];
        let w = Window::of(&filters).unwrap();
        assert_eq!(
            w,
            Window {
                from: Some(T),
                to: Some(T + 3_600_000_000_000)
            }
        );
        assert_eq!(
            w.filter().unwrap().to_string(),
            format!(
                "time >= TimestampNanosecond({T}, Some(\"UTC\")) AND \
                 time <= TimestampNanosecond({}, Some(\"UTC\"))",
                T + 3_600_000_000_000
            )
        );
    }

    #[test]
    fn strict_bounds_either_side_and_between_intersect() {
        let ts = |n: i64| lit(ScalarValue::TimestampNanosecond(Some(n), None));
        let filters = [
            ts(T).lt(col(TIME)),
            col(TIME).lt(ts(T + 100)),
            col(TIME).between(ts(T - 50), ts(T + 50)),
            col("source").eq(lit("world")),
        ];
        assert_eq!(
            Window::of(&filters).unwrap(),
            Window {
                from: Some(T + 1),
                to: Some(T + 50)
            }
        );
        assert_eq!(
            Window::of(&[col(TIME).eq(ts(T))]).unwrap(),
            Window {
                from: Some(T),
                to: Some(T)
            }
        );
        assert_eq!(Window::of(&[]).unwrap().filter(), None);
    }

    #[test]
    fn other_conditions_on_time_are_refused_with_the_reason() {
        for bad in [
            col(TIME).not_eq(at("2024-05-01T10:00:00Z")),
            col(TIME)
                .gt_eq(at("2024-05-01T10:00:00Z"))
                .or(col("source").eq(lit("world"))),
            col(TIME).is_not_null(),
            col(TIME).gt_eq(at("yesterday")),
        ] {
            let err = Window::of(std::slice::from_ref(&bad)).unwrap_err();
            assert!(
                err.to_string()
                    .contains("must compare `time` with a constant"),
                "{bad}: {err}"
            );
        }
    }
}
