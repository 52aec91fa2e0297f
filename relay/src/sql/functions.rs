//! Functions whose result could outgrow every memory limit before anything
//! counts it, bounded. DataFusion counts the state of joins, sorts and
//! aggregates in the query's pool, not the values an expression computes:
//! `repeat('x', 10000000000)` asked the allocator for 10 GB at once. Here
//! `repeat` is DataFusion's own, checked first: one call makes at most
//! [`MAX_REPEAT_BYTES`]; and `arrow_cast` to a `Large` type, whose strings
//! and lists have no 2 GiB bound, is refused ([`refused_call`]).

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::length::length;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Value,
};

/// The most bytes one call of `repeat` makes (all its rows together).
pub const MAX_REPEAT_BYTES: u64 = 64 << 20;

/// Why the call `f` is refused, if it is.
pub fn refused_call(f: &Function) -> Option<String> {
    let name = f.name.0.last()?.as_ident()?.value.to_lowercase();
    if name != "arrow_cast" {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    list.args.iter().find_map(|a| match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
            Value::SingleQuotedString(t) if t.to_lowercase().contains("large") => Some(format!(
                "arrow_cast to {t} is not allowed: the memory limits do not bound its values"
            )),
            _ => None,
        },
        _ => None,
    })
}

/// The functions that replace DataFusion's.
pub fn bounded() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(BoundedRepeat {
        inner: datafusion::functions::string::repeat(),
    })]
}

/// DataFusion's `repeat`, refused past [`MAX_REPEAT_BYTES`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct BoundedRepeat {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for BoundedRepeat {
    fn name(&self) -> &str {
        self.inner.name()
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
        if let [text, count] = args.args.as_slice() {
            let bytes = repeated_bytes(text, count, args.number_rows)?;
            if bytes > MAX_REPEAT_BYTES {
                return exec_err!(
                    "repeat would make {bytes} bytes; at most {MAX_REPEAT_BYTES} (64 MiB) \
                     are allowed per call"
                );
            }
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
}

fn text_bytes(v: &ColumnarValue) -> Result<PerRow> {
    Ok(match v {
        ColumnarValue::Scalar(s) => PerRow::All(match s {
            ScalarValue::Utf8(Some(t)) | ScalarValue::LargeUtf8(Some(t)) => t.len() as u64,
            ScalarValue::Utf8View(Some(t)) => t.len() as u64,
            _ => 0,
        }),
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

/// What `repeat(text, count)` makes over `rows` rows.
fn repeated_bytes(text: &ColumnarValue, count: &ColumnarValue, rows: usize) -> Result<u64> {
    let (t, n) = (text_bytes(text)?, counts(count)?);
    if let (PerRow::All(t), PerRow::All(n)) = (&t, &n) {
        return Ok(t.saturating_mul(*n));
    }
    Ok((0..rows).fold(0u64, |total, row| {
        total.saturating_add(t.get(row).saturating_mul(n.get(row)))
    }))
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

    #[test]
    fn the_bytes_repeat_would_make() {
        assert_eq!(repeated_bytes(&scalar("ab"), &count(3), 1).unwrap(), 6);
        assert_eq!(repeated_bytes(&scalar("ab"), &count(-3), 1).unwrap(), 0);
        assert_eq!(
            repeated_bytes(&scalar("x"), &count(i64::MAX), 1).unwrap(),
            i64::MAX as u64
        );
        let texts =
            ColumnarValue::Array(Arc::new(datafusion::arrow::array::StringArray::from(vec![
                Some("a"),
                None,
                Some("abc"),
            ])));
        assert_eq!(repeated_bytes(&texts, &count(10), 3).unwrap(), 40);
        let counts =
            ColumnarValue::Array(Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                1, 2, 3,
            ])));
        assert_eq!(repeated_bytes(&scalar("ab"), &counts, 3).unwrap(), 12);
    }
}
