//! Positional parameters: `$1`, `$2`, ... as DataFusion plans them, and `?`
//! as JDBC and ODBC clients write them (numbered here in the order they
//! appear in the text). [`types`] lists what the plan expects, [`bind`]
//! puts the values in.

use std::ops::ControlFlow;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{
    Expr, Statement as Sql, Value, visit_expressions, visit_expressions_mut,
};

use super::SqlError;

/// Numbers each `?` of `statement` as `$1`, `$2`, ... in text order;
/// refuses a statement that mixes `?` with `$1`-style parameters.
pub fn number_question_marks(statement: &mut Statement) -> Result<(), SqlError> {
    let Some(sql) = sql_mut(statement) else {
        return Ok(());
    };
    let mut marks = Vec::new();
    let mut numbered = false;
    let _ = visit_expressions(sql, |e: &Expr| {
        if let Expr::Value(v) = e
            && let Value::Placeholder(p) = &v.value
        {
            if p == "?" {
                marks.push((v.span.start.line, v.span.start.column));
            } else {
                numbered = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    if marks.is_empty() {
        return Ok(());
    }
    if numbered {
        return Err(SqlError::Parameters(
            "use either `?` or `$1`, `$2`, ... for parameters, not both".into(),
        ));
    }
    marks.sort_unstable();
    let _ = visit_expressions_mut(sql, |e: &mut Expr| {
        if let Expr::Value(v) = e
            && let Value::Placeholder(p) = &mut v.value
            && p == "?"
            && let Ok(i) = marks.binary_search(&(v.span.start.line, v.span.start.column))
        {
            *p = format!("${}", i + 1);
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(())
}

fn sql_mut(statement: &mut Statement) -> Option<&mut Sql> {
    match statement {
        Statement::Statement(s) => Some(s),
        Statement::Explain(e) => sql_mut(&mut e.statement),
        _ => None,
    }
}

/// The plan's parameters in order, `$1` first, each with its type when the
/// plan gives it one; refuses named (`$name`) and missing positions.
pub fn types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, SqlError> {
    let found = plan
        .get_parameter_types()
        .map_err(|e| SqlError::Parameters(e.strip_backtrace()))?;
    let mut params = Vec::with_capacity(found.len());
    for (name, data_type) in found {
        let position = name
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                SqlError::Parameters(format!(
                    "`{name}` is not a positional parameter: use `$1`, `$2`, ... or `?`"
                ))
            })?;
        params.push((position, data_type));
    }
    params.sort_unstable_by_key(|(n, _)| *n);
    for (i, (n, _)) in params.iter().enumerate() {
        if *n != i + 1 {
            return Err(SqlError::Parameters(format!(
                "the parameters skip `${}`: number them from $1 without gaps",
                i + 1
            )));
        }
    }
    Ok(params.into_iter().map(|(_, t)| t).collect())
}

/// `plan` with `values` in place of its parameters (`values[0]` is `$1`),
/// each cast to the type the plan expects.
pub fn bind(
    plan: LogicalPlan,
    expected: &[Option<DataType>],
    values: Vec<ScalarValue>,
) -> Result<LogicalPlan, SqlError> {
    if values.len() != expected.len() {
        return Err(SqlError::Parameters(format!(
            "the statement has {} parameter(s) and {} value(s) were bound",
            expected.len(),
            values.len()
        )));
    }
    if values.is_empty() {
        return Ok(plan);
    }
    let values = values
        .into_iter()
        .zip(expected)
        .enumerate()
        .map(|(i, (v, t))| match t {
            Some(t) if v.data_type() != *t && !v.is_null() => v.cast_to(t).map_err(|e| {
                SqlError::Parameters(format!(
                    "${}: {v} does not fit the type {t}: {}",
                    i + 1,
                    e.strip_backtrace()
                ))
            }),
            Some(t) if v.is_null() => ScalarValue::try_from(t)
                .map_err(|e| SqlError::Parameters(format!("${}: {}", i + 1, e.strip_backtrace()))),
            _ => Ok(v),
        })
        .collect::<Result<Vec<_>, _>>()?;
    plan.with_param_values(values)
        .map_err(|e| SqlError::Parameters(e.strip_backtrace()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn numbered(sql: &str) -> Result<String, SqlError> {
        let mut s = DFParser::parse_sql(sql).unwrap().pop_front().unwrap();
        number_question_marks(&mut s)?;
        Ok(s.to_string())
    }

    #[test]
    fn question_marks_are_numbered_in_text_order() {
        assert_eq!(
            numbered("SELECT ? FROM flows WHERE a = ? AND b IN (?, ?) LIMIT ?").unwrap(),
            "SELECT $1 FROM flows WHERE a = $2 AND b IN ($3, $4) LIMIT $5"
        );
        assert_eq!(
            numbered("SELECT a\nFROM flows\nWHERE a = ?\n  OR b = ?").unwrap(),
            "SELECT a FROM flows WHERE a = $1 OR b = $2"
        );
        assert_eq!(
            numbered("SELECT $2, $1").unwrap(),
            "SELECT $2, $1",
            "numbered ones stay"
        );
        assert_eq!(
            numbered("SELECT ?, $1").unwrap_err().to_string(),
            "parameters: use either `?` or `$1`, `$2`, ... for parameters, not both"
        );
    }
}
