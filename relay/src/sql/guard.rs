//! The read-only check every SQL text passes before it is planned: within
//! the [`shape`] limits, exactly one statement, a query (`SELECT`, `WITH`,
//! `VALUES`) or an `EXPLAIN` of one, that reads no table but the relay's own
//! ([`TABLES`]: `flows`, the service graph's `graph_nodes` and
//! `graph_edges`, and `policy_states`, also as `public.flows` or
//! `observe.public.flows`), the relay's own table functions
//! ([`TABLE_FUNCTIONS`]: the policy what-if) and its own `WITH` names.
//! What describes them runs too: `DESCRIBE flows`, `SHOW TABLES`, `SHOW
//! COLUMNS FROM flows` and the [`INFORMATION_SCHEMA`] views they read.
//! Everything else, DDL, DML, `COPY`, `CREATE EXTERNAL TABLE`, `SET`, a file
//! path used as a table or another table function such as `read_csv(...)`
//! or `generate_series(...)`, is refused with the reason.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast::{Query, SetExpr, Statement as Sql};
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::yielding::YieldEachBatchExec;
use super::{SqlError, shape};

/// The flow history.
pub const FLOWS: &str = "flows";
/// The only tables there are: the flows, the service graph built from
/// them, and the policies in force.
pub const TABLES: [&str; 4] = [FLOWS, "graph_nodes", "graph_edges", "policy_states"];
/// The only table functions there are: the policy what-if over the flows
/// (`super::whatif`); they read nothing else.
pub const TABLE_FUNCTIONS: [&str; 2] = ["policy_whatif", "policy_replay"];
/// The views of `information_schema` a query may read: what tables and
/// columns there are (not DataFusion's settings).
pub const INFORMATION_SCHEMA: [&str; 4] = ["tables", "columns", "views", "schemata"];
/// The one catalog, as Flight SQL clients list it.
pub const CATALOG: &str = "observe";
/// The one schema of [`CATALOG`].
pub const SCHEMA: &str = "public";

/// What the parser says, without the wrappers' names (DataFusion shows its
/// parser's error with `Debug`: `SQL error: ParserError("Expected: ...")`).
fn parser_message(e: &ParserError) -> String {
    match e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Parses `sql` and checks it is one read-only query of [`TABLES`], within
/// the [`shape`] limits.
pub fn check(sql: &str) -> Result<Statement, SqlError> {
    let tokens = shape::tokens(sql)?;
    // Named from the text: printing a long statement back walks all of it.
    let first_word = tokens
        .iter()
        .find_map(|t| match &t.token {
            Token::Word(w) => Some(w.value.to_uppercase()),
            _ => None,
        })
        .unwrap_or_else(|| "this statement".into());
    let parse_error = |e: DataFusionError| match e {
        DataFusionError::SQL(e, _) if matches!(*e, ParserError::RecursionLimitExceeded) => {
            shape::too_deep()
        }
        DataFusionError::SQL(e, _) => SqlError::Parse(parser_message(&e)),
        e => SqlError::Parse(e.to_string()),
    };
    let mut statements = DFParserBuilder::new(tokens)
        .with_dialect(&shape::DIALECT)
        .with_recursion_limit(shape::PARSER_RECURSION)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(parse_error)?;
    let statement = match (statements.pop_front(), statements.is_empty()) {
        (Some(s), true) => s,
        (None, _) => return Err(SqlError::Refused("the query is empty".into())),
        (Some(_), false) => {
            return Err(SqlError::Refused(
                "give one statement at a time (found several separated by `;`)".into(),
            ));
        }
    };
    if let Statement::Statement(s) = &statement
        && let Sql::ShowTables { show_options, .. } = s.as_ref()
    {
        if show_options.show_in.is_some() || show_options.filter_position.is_some() {
            return Err(SqlError::Refused(
                "SHOW TABLES takes no FROM, IN or LIKE here; it lists every table \
                 (ask information_schema.tables with a WHERE for fewer)"
                    .into(),
            ));
        }
        // DataFusion's own listing names views no query may read.
        return check(&show_tables());
    }
    let shows_columns = match query(&statement, &first_word)? {
        Some(q) => {
            shape::check(q)?;
            false
        }
        None => {
            matches!(&statement, Statement::Statement(s) if matches!(s.as_ref(), Sql::ShowColumns { .. }))
        }
    };
    let (tables, _ctes) =
        resolve_table_references(&statement, true).map_err(|e| SqlError::Parse(e.to_string()))?;
    for table in tables {
        let name = table.table();
        let catalog_ok = table.catalog().is_none_or(|c| c == CATALOG);
        let ours = ((TABLES.contains(&name) || TABLE_FUNCTIONS.contains(&name))
            && table.schema().is_none_or(|s| s == SCHEMA)
            && catalog_ok)
            // SHOW COLUMNS names every view DataFusion may read for it; it
            // reads `columns`.
            || ((shows_columns || INFORMATION_SCHEMA.contains(&name))
                && table.schema() == Some("information_schema")
                && catalog_ok);
        if !ours {
            return Err(SqlError::Refused(format!(
                "only the tables `flows`, `graph_nodes`, `graph_edges` and `policy_states`, \
                 the table functions `policy_whatif(...)` and `policy_replay(...)`, and \
                 `information_schema`'s `tables`, `columns`, `views` and `schemata` can be \
                 read, not `{table}` \
                 (files, URLs and other table functions are not readable)"
            )));
        }
    }
    Ok(statement)
}

/// What `SHOW TABLES` runs: the tables a query may read.
fn show_tables() -> String {
    let views = INFORMATION_SCHEMA.map(|v| format!("'{v}'")).join(", ");
    format!(
        "SELECT table_catalog, table_schema, table_name, table_type \
         FROM information_schema.tables \
         WHERE table_schema <> 'information_schema' OR table_name IN ({views}) \
         ORDER BY table_schema, table_name"
    )
}

/// The query `statement` runs (itself, or what `EXPLAIN` explains), `None`
/// for a statement that describes the tables (`DESCRIBE`, `SHOW COLUMNS`;
/// `check` turns `SHOW TABLES` into a query first), or why it is refused.
fn query<'s>(statement: &'s Statement, first_word: &str) -> Result<Option<&'s Sql>, SqlError> {
    let refuse = |what: &str| {
        Err(SqlError::Refused(format!(
            "{what} is not allowed: history is read-only, only SELECT, WITH, EXPLAIN, \
             DESCRIBE, SHOW TABLES and SHOW COLUMNS run"
        )))
    };
    let read_only = |s: &'s Sql, q: &Query| match writes(q) {
        Some(what) => refuse(what),
        None => Ok(Some(s)),
    };
    match statement {
        Statement::Statement(s) => match s.as_ref() {
            Sql::Query(q) => read_only(s, q),
            Sql::Explain { statement, .. } => match statement.as_ref() {
                Sql::Query(q) => read_only(statement, q),
                _ => refuse("EXPLAIN of anything but a query"),
            },
            Sql::ExplainTable { .. } | Sql::ShowColumns { .. } => Ok(None),
            _ => refuse(first_word),
        },
        Statement::CreateExternalTable(_) => refuse("CREATE EXTERNAL TABLE"),
        Statement::CopyTo(_) => refuse("COPY"),
        Statement::Reset(_) => refuse("RESET"),
        Statement::Explain(e) => match e.statement.as_ref() {
            Statement::Statement(s) => match s.as_ref() {
                Sql::Query(q) => read_only(s, q),
                _ => refuse("EXPLAIN of anything but a query"),
            },
            _ => refuse("EXPLAIN of anything but a query"),
        },
    }
}

/// What a query would write, if anything: `WITH … INSERT` (or `UPDATE`,
/// `DELETE`, `MERGE`) and `SELECT … INTO` parse as queries.
fn writes(q: &Query) -> Option<&'static str> {
    let in_ctes = q.with.iter().flat_map(|w| &w.cte_tables);
    in_ctes
        .into_iter()
        .find_map(|c| writes(&c.query))
        .or_else(|| body_writes(&q.body))
}

fn body_writes(body: &SetExpr) -> Option<&'static str> {
    match body {
        SetExpr::Insert(_) => Some("INSERT"),
        SetExpr::Update(_) => Some("UPDATE"),
        SetExpr::Delete(_) => Some("DELETE"),
        SetExpr::Merge(_) => Some("MERGE"),
        SetExpr::Select(s) if s.into.is_some() => Some("SELECT INTO"),
        SetExpr::Query(q) => writes(q),
        SetExpr::SetOperation { left, right, .. } => {
            body_writes(left).or_else(|| body_writes(right))
        }
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => None,
    }
}

/// Pairs of rows a join without an equality condition (a cross join, or one
/// on `<` or `!=`: every row of one side with every row of the other) may
/// take, by the plan's statistics: a few large tables make more than any
/// query could go through in its time limit, and without columns to hold
/// (as under `count(*)`) no memory limit stops it.
pub const MAX_UNCONDITIONED_JOIN_ROWS: usize = 1_000_000_000;

/// At most how many rows `p` makes, as far as statistics tell: its own, or
/// where it has none (a join on `<` knows nothing of how many pairs pass),
/// the product of a join's sides and the sum of any other node's inputs
/// (a filter or a projection makes no more than it reads).
fn upper_rows(p: &Arc<dyn ExecutionPlan>) -> Option<usize> {
    let own = p
        .partition_statistics(None)
        .ok()
        .and_then(|s| s.num_rows.get_value().copied());
    if own.is_some() {
        return own;
    }
    let children = p.children();
    if children.is_empty() {
        return None;
    }
    let sides = children
        .into_iter()
        .map(upper_rows)
        .collect::<Option<Vec<usize>>>()?;
    Some(if p.is::<CrossJoinExec>() || p.is::<NestedLoopJoinExec>() {
        sides.into_iter().fold(1, usize::saturating_mul)
    } else {
        sides.into_iter().fold(0, usize::saturating_add)
    })
}

/// Refuses a plan with a join without an equality condition over
/// [`MAX_UNCONDITIONED_JOIN_ROWS`] pairs (as far as statistics know, a
/// filtered join taken at its most).
pub fn check_joins(plan: &Arc<dyn ExecutionPlan>) -> Result<(), SqlError> {
    if plan.is::<CrossJoinExec>() || plan.is::<NestedLoopJoinExec>() {
        let [left, right] = plan.children()[..] else {
            return Ok(());
        };
        if let (Some(l), Some(r)) = (upper_rows(left), upper_rows(right)) {
            let product = l.saturating_mul(r);
            if product > MAX_UNCONDITIONED_JOIN_ROWS {
                return Err(SqlError::Refused(format!(
                    "a join without an equality condition pairs each of {l} rows with each \
                     of {r}: {product} pairs, over the {MAX_UNCONDITIONED_JOIN_ROWS} allowed; \
                     join on an equality, or narrow its sides first"
                )));
            }
        }
    }
    plan.children().into_iter().try_for_each(check_joins)
}

/// `plan` with every join made cooperative, so that a stopped query
/// (dropped, past its time limit, shut down) ends at its next batch:
/// - each batch a join hands up spends the task's scheduling budget.
///   Otherwise a join that makes many batches of each it reads (a cross
///   join streaming over sides it holds; a hash join whose key matches every
///   row of the other side) never returns to the scheduler again, and keeps
///   its thread until it is done, for hours perhaps, with the time limit's
///   timer starved on the same threads;
/// - before each batch a join reads, the thread goes back to the scheduler
///   ([`super::yielding`]): one that reads many without making one (a
///   filter no pair passes) kept it for seconds after its time limit, and
///   its place with it.
pub fn cooperative_joins(
    plan: Arc<dyn ExecutionPlan>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        if !(node.is::<CrossJoinExec>()
            || node.is::<NestedLoopJoinExec>()
            || node.is::<HashJoinExec>()
            || node.is::<SortMergeJoinExec>()
            || node.is::<SymmetricHashJoinExec>())
        {
            return Ok(Transformed::no(node));
        }
        let inputs = node
            .children()
            .into_iter()
            .map(|c| Arc::new(YieldEachBatchExec::new(c.clone())) as Arc<dyn ExecutionPlan>)
            .collect();
        let node = node.with_new_children(inputs)?;
        Ok(Transformed::yes(
            Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
        ))
    })
    .map(|t| t.data)
}
