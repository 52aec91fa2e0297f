//! The read-only check every SQL text passes before it is planned: exactly one
//! statement, a query (`SELECT`, `WITH`, `VALUES`) or an `EXPLAIN` of one, that
//! reads no table but the relay's own ([`TABLES`]: `flows` and the service
//! graph's `graph_nodes` and `graph_edges`) and its own `WITH` names. Everything else, DDL,
//! DML, `COPY`, `CREATE EXTERNAL TABLE`, `SET`, a file path used as a table or
//! a table function such as `read_csv(...)`, is refused with the reason.

use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast::Statement as Sql;

use super::SqlError;

/// The flow history.
pub const FLOWS: &str = "flows";
/// The only tables there are: the flows and the service graph built from them.
pub const TABLES: [&str; 3] = [FLOWS, "graph_nodes", "graph_edges"];

/// Parses `sql` and checks it is one read-only query of [`TABLES`].
pub fn check(sql: &str) -> Result<Statement, SqlError> {
    let mut statements = DFParser::parse_sql(sql).map_err(|e| SqlError::Parse(e.to_string()))?;
    let statement = match (statements.pop_front(), statements.is_empty()) {
        (Some(s), true) => s,
        (None, _) => return Err(SqlError::Refused("the query is empty".into())),
        (Some(_), false) => {
            return Err(SqlError::Refused(
                "give one statement at a time (found several separated by `;`)".into(),
            ));
        }
    };
    kind(&statement)?;
    let (tables, _ctes) =
        resolve_table_references(&statement, true).map_err(|e| SqlError::Parse(e.to_string()))?;
    for table in tables {
        if !TABLES.contains(&table.table()) || table.schema().is_some() {
            return Err(SqlError::Refused(format!(
                "only the tables `flows`, `graph_nodes` and `graph_edges` can be read, \
                 not `{table}` (files, URLs and table functions are not readable)"
            )));
        }
    }
    Ok(statement)
}

fn kind(statement: &Statement) -> Result<(), SqlError> {
    let refuse = |what: &str| {
        Err(SqlError::Refused(format!(
            "{what} is not allowed: history is read-only, only SELECT, WITH and \
             EXPLAIN queries run"
        )))
    };
    match statement {
        Statement::Statement(s) => match s.as_ref() {
            Sql::Query(_) => Ok(()),
            Sql::Explain { statement, .. } => match statement.as_ref() {
                Sql::Query(_) => Ok(()),
                _ => refuse("EXPLAIN of anything but a query"),
            },
            other => {
                let text = other.to_string();
                let word = text.split_whitespace().next().unwrap_or("this statement");
                refuse(&word.to_uppercase())
            }
        },
        Statement::CreateExternalTable(_) => refuse("CREATE EXTERNAL TABLE"),
        Statement::CopyTo(_) => refuse("COPY"),
        Statement::Reset(_) => refuse("RESET"),
        Statement::Explain(e) => match e.statement.as_ref() {
            Statement::Statement(s) if matches!(s.as_ref(), Sql::Query(_)) => Ok(()),
            _ => refuse("EXPLAIN of anything but a query"),
        },
    }
}
