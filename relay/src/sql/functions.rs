//! Functions whose result could outgrow every memory limit before anything
//! counts it, bounded. DataFusion counts the state of joins, sorts and
//! aggregates in the query's pool, not the values an expression computes:
//! `repeat('x', 10000000000)` asked the allocator for 10 GB at once, and
//! `rpad('a', 1000000000)` (folded to a constant while planning, where no
//! timeout can stop it) ran 168 s and took 4 GB. Here the functions that can
//! make more than their arguments hold (`repeat`, `lpad`, `rpad`, `replace`,
//! `regexp_replace`) are DataFusion's own, checked first: one call makes at
//! most [`MAX_REPEAT_BYTES`], and a statement calls them at most
//! [`MAX_EXPANDING_CALLS`] times ([`refused_call`] counts), so what they make
//! together stays within one query's memory limit; `arrow_cast` to a `Large`
//! type, whose strings and lists have no 2 GiB bound, is refused.
//!
//! Joining texts makes what its arguments hold, but a constant argument
//! counts once for every row: `concat(uuid, <a 16 MB constant>)` asked for
//! 128 GiB for one batch of 8,192 rows, which aborts the process. So
//! `concat`, `concat_ws` and the `||` operator ([`ConcatPlanner`]) are
//! bounded the same way (and counted, [`MAX_JOINING_CALLS`]), and a plan
//! may hold no constant larger than [`MAX_CONSTANT_BYTES`], nor more than
//! [`MAX_CONSTANTS_BYTES`] in all, once its constant expressions are worked
//! out ([`check_constants`]): any function, and a projection, may repeat a
//! constant for every row of a batch.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::length::length;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    Value,
};

use super::SqlError;

/// The most bytes one call of a function that makes more than its arguments
/// hold makes (all its rows together).
pub const MAX_REPEAT_BYTES: u64 = 64 << 20;

/// The most calls of those functions in one statement.
pub const MAX_EXPANDING_CALLS: usize = 8;

/// The functions that can make more than their arguments hold (`to_char`
/// writes up to 16 times its format: `%+` is 32 characters of a date).
pub const EXPANDING: [&str; 7] = [
    "repeat",
    "lpad",
    "rpad",
    "replace",
    "regexp_replace",
    "to_char",
    "date_format",
];

/// The functions whose work grows with the product of their arguments'
/// lengths: `levenshtein` compares every character of one text with every
/// one of the other, all of a batch's rows in one step no time limit can
/// interrupt.
pub const COMPARING: [&str; 1] = ["levenshtein"];

/// The most calls of [`COMPARING`] in one statement.
pub const MAX_COMPARING_CALLS: usize = 4;

/// The most pairs of characters one call of [`COMPARING`] compares (all
/// its rows together): a fraction of a second.
pub const MAX_COMPARED_PAIRS: u64 = 100_000_000;

/// The functions that join texts (and the `||` operator, counted with them).
pub const JOINING: [&str; 2] = ["concat", "concat_ws"];

/// The most calls of [`JOINING`] and `||` in one statement: each can make
/// up to [`MAX_REPEAT_BYTES`] of a batch.
pub const MAX_JOINING_CALLS: usize = 16;

/// The lower-case name a call `f` calls.
pub fn call_name(f: &Function) -> Option<String> {
    Some(f.name.0.last()?.as_ident()?.value.to_lowercase())
}

/// Why the call `f` is refused, if it is.
pub fn refused_call(f: &Function) -> Option<String> {
    let name = call_name(f)?;
    if name != "arrow_cast" {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    list.args.iter().find_map(|a| match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v))) => match &v.value {
            Value::SingleQuotedString(t) if t.to_lowercase().contains("large") => Some(format!(
                "arrow_cast to {t} is not allowed: the memory limits do not bound its values"
            )),
            _ => None,
        },
        _ => None,
    })
}

/// The largest constant a plan may hold once its constant expressions are
/// worked out (text, or a list or struct's values): a batch of 8,192 rows
/// repeats it to at most 32 MiB.
pub const MAX_CONSTANT_BYTES: usize = 4096;

/// What all of a plan's constants may hold together: a batch repeats each
/// one it projects.
pub const MAX_CONSTANTS_BYTES: usize = 64 << 10;

/// Refuses a plan that holds a constant larger than [`MAX_CONSTANT_BYTES`],
/// or constants past [`MAX_CONSTANTS_BYTES`] in all (literals, bound
/// parameters, and what calls on constants made while the plan was
/// optimized).
pub fn check_constants(plan: &LogicalPlan) -> std::result::Result<(), SqlError> {
    let (mut largest, mut total) = (0, 0usize);
    // Each once in a filter or join (a filter pushed into both scans of
    // `flows` holds its constants twice more); each time it is written in a
    // projection, aggregate or window, which make a column of it for every
    // batch: `SELECT $1 AS a, $1 AS b, ...` is as many columns.
    let mut seen = std::collections::HashSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        let makes_columns = matches!(
            node,
            LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Window(_)
        );
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Literal(value, _) = e {
                    let bytes = constant_bytes(value);
                    largest = largest.max(bytes);
                    if bytes > 0 && (makes_columns || seen.insert(value.clone())) {
                        total = total.saturating_add(bytes);
                    }
                }
                // All of them counted: the error says how much they hold.
                Ok(if largest > MAX_CONSTANT_BYTES {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })
        })
    });
    let why = "a constant is repeated for every row of a batch";
    if largest > MAX_CONSTANT_BYTES {
        return Err(SqlError::Refused(format!(
            "the query holds a constant of {largest} bytes (as written, bound, or made by a \
             call on constants); at most {MAX_CONSTANT_BYTES} are allowed: {why}"
        )));
    }
    if total > MAX_CONSTANTS_BYTES {
        return Err(SqlError::Refused(format!(
            "the query's constants hold {total} bytes in all; at most {MAX_CONSTANTS_BYTES} \
             are allowed: {why}"
        )));
    }
    Ok(())
}

/// Bytes of a constant's text, binary or nested values (0 for a number).
fn constant_bytes(value: &ScalarValue) -> usize {
    match value {
        ScalarValue::Utf8(Some(t)) | ScalarValue::LargeUtf8(Some(t)) => t.len(),
        ScalarValue::Utf8View(Some(t)) => t.len(),
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b))
        | ScalarValue::FixedSizeBinary(_, Some(b)) => b.len(),
        ScalarValue::List(a) => a.get_array_memory_size(),
        ScalarValue::LargeList(a) => a.get_array_memory_size(),
        ScalarValue::FixedSizeList(a) => a.get_array_memory_size(),
        ScalarValue::Struct(a) => a.get_array_memory_size(),
        ScalarValue::Map(a) => a.get_array_memory_size(),
        ScalarValue::Union(Some((_, v)), _, _) => constant_bytes(v),
        ScalarValue::Dictionary(_, inner) => constant_bytes(inner),
        _ => 0,
    }
}

/// Plans `a || b` as a bounded call ([`concat_operator`]) instead of
/// DataFusion's operator, which no limit sees.
#[derive(Debug)]
pub struct ConcatPlanner;

impl ExprPlanner for ConcatPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let binary = |e: &Expr| {
            e.get_type(schema).is_ok_and(|t| {
                matches!(
                    t,
                    DataType::Binary
                        | DataType::LargeBinary
                        | DataType::BinaryView
                        | DataType::FixedSizeBinary(_)
                )
            })
        };
        // Bytes stay DataFusion's to join (as bytes, not text).
        if expr.op != BinaryOperator::StringConcat || binary(&expr.left) || binary(&expr.right) {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::new(concat_operator()), vec![expr.left, expr.right]),
        )))
    }
}

/// `||`, bounded as [`bounded`]'s functions are.
pub fn concat_operator() -> ScalarUDF {
    ScalarUDF::new_from_impl(Bounded {
        inner: Arc::new(ScalarUDF::new_from_impl(ConcatOperator {
            signature: Signature::user_defined(Volatility::Immutable),
        })),
        made: joined_bytes,
        limit: &BYTES,
    })
}

/// DataFusion's `||` on texts, as a function: the operator itself works
/// out each batch.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConcatOperator {
    signature: Signature,
}

/// The text type both sides of `||` are cast to.
fn joined_type(types: &[DataType]) -> DataType {
    if types.contains(&DataType::Utf8View) {
        DataType::Utf8View
    } else if types.contains(&DataType::LargeUtf8) {
        DataType::LargeUtf8
    } else {
        DataType::Utf8
    }
}

impl ScalarUDFImpl for ConcatOperator {
    fn name(&self) -> &str {
        "||"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(vec![joined_type(arg_types); arg_types.len()])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(joined_type(arg_types))
    }

    /// As the operator names its column: `a || b`.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        let [left, right] = args else {
            return exec_err!("|| takes two arguments, not {}", args.len());
        };
        Ok(format!("{} || {}", left.schema_name(), right.schema_name()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let constant = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [left, right] = &arrays[..] else {
            return exec_err!("|| takes two arguments, not {}", arrays.len());
        };
        let field = |name: &str, a: &ArrayRef| Field::new(name, a.data_type().clone(), true);
        let schema = Schema::new(vec![field("left", left), field("right", right)]);
        let batch = RecordBatch::try_new(Arc::new(schema), arrays.clone())?;
        let operator = BinaryExpr::new(
            Arc::new(Column::new("left", 0)),
            Operator::StringConcat,
            Arc::new(Column::new("right", 1)),
        );
        let joined = operator.evaluate(&batch)?;
        if constant {
            let one = joined.into_array(1)?;
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&one, 0)?));
        }
        Ok(joined)
    }
}

/// What `concat(...)` or `||` makes at most: every argument's text on
/// every row.
fn joined_bytes(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    args.iter().try_fold(0u64, |total, arg| {
        Ok(total.saturating_add(text_bytes(arg)?.total(rows)))
    })
}

/// What `concat_ws(separator, ...)` makes at most: the texts, and the
/// separator between each two of them.
fn separated_bytes(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let Some(separator) = args.first() else {
        return Ok(0);
    };
    let between = args.len().saturating_sub(2) as u64;
    let separators = text_bytes(separator)?.total(rows).saturating_mul(between);
    Ok(joined_bytes(&args[1..], rows)?.saturating_add(separators))
}

/// The functions that replace DataFusion's (under their names and aliases:
/// `date_format` is `to_char`).
pub fn bounded() -> Vec<ScalarUDF> {
    let bound = |inner: Arc<ScalarUDF>, made: Made| {
        ScalarUDF::new_from_impl(Bounded {
            inner,
            made,
            limit: &BYTES,
        })
    };
    vec![
        bound(datafusion::functions::string::concat(), joined_bytes),
        bound(datafusion::functions::string::concat_ws(), separated_bytes),
        bound(datafusion::functions::string::repeat(), repeated_bytes),
        bound(datafusion::functions::unicode::lpad(), padded_bytes),
        bound(datafusion::functions::unicode::rpad(), padded_bytes),
        bound(datafusion::functions::string::replace(), replaced_bytes),
        bound(
            datafusion::functions::regex::regexp_replace(),
            replaced_bytes,
        ),
        bound(datafusion::functions::datetime::to_char(), formatted_bytes),
        ScalarUDF::new_from_impl(Bounded {
            inner: datafusion::functions::string::levenshtein(),
            made: compared_pairs,
            limit: &PAIRS,
        }),
    ]
}

/// At most how much a call makes (or does) over `rows` rows, from its
/// arguments, in its [`Limit`]'s unit.
type Made = fn(&[ColumnarValue], usize) -> Result<u64>;

/// What a [`Bounded`] call may make or do, and how its refusal says so.
#[derive(Debug)]
struct Limit {
    most: u64,
    /// "make up to N bytes" / "compare up to N pairs of characters".
    verb: &'static str,
    unit: &'static str,
    most_text: &'static str,
}

const BYTES: Limit = Limit {
    most: MAX_REPEAT_BYTES,
    verb: "make",
    unit: "bytes",
    most_text: "67108864 (64 MiB)",
};

const PAIRS: Limit = Limit {
    most: MAX_COMPARED_PAIRS,
    verb: "compare",
    unit: "pairs of characters",
    most_text: "100000000",
};

/// One of DataFusion's functions, refused past its [`Limit`].
#[derive(Debug)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    made: Made,
    limit: &'static Limit,
}

// The inner function says which one it is (`made` follows from it).
impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for Bounded {}

impl std::hash::Hash for Bounded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let made = (self.made)(&args.args, args.number_rows)?;
        let Limit {
            most,
            verb,
            unit,
            most_text,
        } = self.limit;
        if made > *most {
            return exec_err!(
                "{} would {verb} up to {made} {unit}; at most {most_text} are allowed per call",
                self.inner.name()
            );
        }
        self.inner.invoke_with_args(args)
    }
}

/// Bytes of each row's text, or of the one text for all rows.
enum PerRow {
    All(u64),
    Each(Vec<u64>),
}

impl PerRow {
    fn get(&self, row: usize) -> u64 {
        match self {
            PerRow::All(v) => *v,
            PerRow::Each(v) => v.get(row).copied().unwrap_or(0),
        }
    }

    /// The sum over `rows` rows (a constant counts on every row).
    fn total(&self, rows: usize) -> u64 {
        match self {
            PerRow::All(v) => v.saturating_mul(rows as u64),
            PerRow::Each(v) => v.iter().fold(0u64, |t, b| t.saturating_add(*b)),
        }
    }
}

fn text_bytes(v: &ColumnarValue) -> Result<PerRow> {
    Ok(match v {
        ColumnarValue::Scalar(s) => PerRow::All(constant_bytes(s) as u64),
        ColumnarValue::Array(a) => {
            let lengths = cast(&length(a)?, &DataType::Int64)?;
            let lengths = lengths.as_primitive::<Int64Type>();
            PerRow::Each(
                lengths
                    .iter()
                    .map(|l| l.unwrap_or(0).max(0) as u64)
                    .collect(),
            )
        }
    })
}

fn counts(v: &ColumnarValue) -> Result<PerRow> {
    Ok(match v {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(n) => PerRow::All(n.unwrap_or(0).max(0) as u64),
            _ => PerRow::All(0),
        },
        ColumnarValue::Array(a) => {
            let a = cast(a, &DataType::Int64)?;
            PerRow::Each(
                a.as_primitive::<Int64Type>()
                    .iter()
                    .map(|n| n.unwrap_or(0).max(0) as u64)
                    .collect(),
            )
        }
    })
}

/// The sum over `rows` rows of `per_row(a, b)`, once when both are scalars.
fn over_rows(a: &PerRow, b: &PerRow, rows: usize, per_row: impl Fn(u64, u64) -> u64) -> u64 {
    if let (PerRow::All(a), PerRow::All(b)) = (a, b) {
        return per_row(*a, *b);
    }
    (0..rows).fold(0u64, |total, row| {
        total.saturating_add(per_row(a.get(row), b.get(row)))
    })
}

/// What `repeat(text, count)` makes: the text, count times.
fn repeated_bytes(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let [text, count] = args else {
        return Ok(0);
    };
    let (t, n) = (text_bytes(text)?, counts(count)?);
    Ok(over_rows(&t, &n, rows, u64::saturating_mul))
}

/// What `lpad`/`rpad(text, length[, fill])` makes: `length` characters of
/// up to 4 bytes each.
fn padded_bytes(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let Some(length) = args.get(1) else {
        return Ok(0);
    };
    let n = counts(length)?;
    Ok(over_rows(&n, &PerRow::All(4), rows, u64::saturating_mul))
}

/// What `replace(text, from, to)` or `regexp_replace(text, pattern,
/// replacement[, flags])` makes at most: every byte of the text replaced, or
/// with the replacement put beside it (an empty `from` matches between
/// bytes); a replacement that names a match (`$0`, `\1`) can hold the whole
/// text each time.
fn replaced_bytes(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let (Some(text), Some(to)) = (args.first(), args.get(2)) else {
        return Ok(0);
    };
    let (t, r) = (text_bytes(text)?, text_bytes(to)?);
    let names_a_match = match to {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(r)) | ScalarValue::Utf8View(Some(r))) => {
            r.contains('$') || r.contains('\\')
        }
        ColumnarValue::Scalar(_) => false,
        ColumnarValue::Array(_) => true,
    };
    Ok(over_rows(&t, &r, rows, |t, r| {
        let each = if names_a_match {
            r.saturating_mul(t)
        } else {
            r
        };
        t.saturating_mul(each.saturating_add(1))
    }))
}

/// What `to_char(value, format)` makes at most: 16 bytes for each byte of
/// the format (`%+`, two, writes a date of 32), and a little for each row.
fn formatted_bytes(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let Some(format) = args.get(1) else {
        return Ok(0);
    };
    let per_row = (rows as u64).saturating_mul(64);
    Ok(text_bytes(format)?
        .total(rows)
        .saturating_mul(16)
        .saturating_add(per_row))
}

/// What `levenshtein(a, b)` compares: each character of `a` with each of
/// `b`, on every row (bytes count for characters: at least as many).
fn compared_pairs(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let [a, b] = args else {
        return Ok(0);
    };
    let (a, b) = (text_bytes(a)?, text_bytes(b)?);
    Ok(over_rows(&a, &b, rows, u64::saturating_mul))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(s: &str) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s.into())))
    }

    fn count(n: i64) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(n)))
    }

    fn repeat(text: &ColumnarValue, n: &ColumnarValue, rows: usize) -> u64 {
        repeated_bytes(&[text.clone(), n.clone()], rows).unwrap()
    }

    #[test]
    fn the_bytes_repeat_would_make() {
        assert_eq!(repeat(&scalar("ab"), &count(3), 1), 6);
        assert_eq!(repeat(&scalar("ab"), &count(-3), 1), 0);
        assert_eq!(repeat(&scalar("x"), &count(i64::MAX), 1), i64::MAX as u64);
        let texts =
            ColumnarValue::Array(Arc::new(datafusion::arrow::array::StringArray::from(vec![
                Some("a"),
                None,
                Some("abc"),
            ])));
        assert_eq!(repeat(&texts, &count(10), 3), 40);
        let counts =
            ColumnarValue::Array(Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                1, 2, 3,
            ])));
        assert_eq!(repeat(&scalar("ab"), &counts, 3), 12);
    }

    #[test]
    fn what_to_char_makes_and_levenshtein_compares_at_most() {
        let format = |f: &str, rows| formatted_bytes(&[count(0), scalar(f)], rows).unwrap();
        assert_eq!(format("%+", 1), 2 * 16 + 64);
        assert_eq!(format("%Y-%m", 8192), 8192 * (5 * 16 + 64));
        let pairs = |a: &str, b: &str, rows| compared_pairs(&[scalar(a), scalar(b)], rows).unwrap();
        assert_eq!(pairs("abc", "de", 1), 6);
        let texts =
            ColumnarValue::Array(Arc::new(datafusion::arrow::array::StringArray::from(vec![
                Some("a"),
                None,
                Some("abcd"),
            ])));
        assert_eq!(compared_pairs(&[texts, scalar("xyz")], 3).unwrap(), 15);
        // date_format is to_char, bounded under both names.
        let to_char = bounded()
            .into_iter()
            .find(|f| f.name() == "to_char")
            .unwrap();
        assert_eq!(to_char.aliases(), ["date_format"]);
    }

    #[test]
    fn the_bytes_padding_and_replacing_would_make_at_most() {
        let pad =
            |n: i64, rows| padded_bytes(&[scalar("a"), count(n), scalar("xy")], rows).unwrap();
        assert_eq!(pad(10, 1), 40);
        assert_eq!(pad(1_000_000_000, 1), 4_000_000_000);
        let replace = |text: &str, to: &str| {
            replaced_bytes(&[scalar(text), scalar("a"), scalar(to)], 1).unwrap()
        };
        assert_eq!(replace("abc", "xy"), 9);
        assert_eq!(replace("abc", ""), 3);
        // A replacement naming the match can hold the text each time.
        assert_eq!(replace("abcd", "$0$0"), 4 * (4 * 4 + 1));
    }
}
