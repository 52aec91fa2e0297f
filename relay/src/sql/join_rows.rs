//! The widest row a join may take: a join repeats a row of one side for each
//! row of the other it pairs with, up to a whole batch (8,192 rows). No pool
//! counts what it makes before the batch exists, so a 15 MB value from a
//! scalar subquery, joined to `flows`, asked for 120 GiB for one batch.
//! [`check`] refuses a row past [`MAX_JOINED_ROW_BYTES`] as it reaches a
//! join ([`super::yielding`] reads every join's inputs).

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};

/// The most bytes of text, bytes and lists one row reaching a join may hold:
/// a batch of 8,192 such rows is 512 MiB.
pub const MAX_JOINED_ROW_BYTES: usize = 64 << 10;

/// Refuses `batch` when one of its rows holds more than
/// [`MAX_JOINED_ROW_BYTES`].
pub fn check(batch: &RecordBatch) -> Result<()> {
    // No row holds more than the whole batch.
    if batch.num_rows() == 0 || batch.get_array_memory_size() <= MAX_JOINED_ROW_BYTES {
        return Ok(());
    }
    let mut widths = vec![0usize; batch.num_rows()];
    for column in batch.columns() {
        add_widths(column, &mut widths);
    }
    let widest = widths.iter().copied().max().unwrap_or(0);
    if widest > MAX_JOINED_ROW_BYTES {
        return exec_err!(
            "a row of {widest} bytes reaches a join, which may repeat it for every row of a \
             batch; at most {MAX_JOINED_ROW_BYTES} bytes a row are allowed"
        );
    }
    Ok(())
}

/// Adds each row's bytes of `a` (text, bytes, lists and structs of them;
/// fixed-width values are too small to matter) to `widths`.
fn add_widths(a: &ArrayRef, widths: &mut [usize]) {
    let each = |widths: &mut [usize], len: &dyn Fn(usize) -> usize| {
        for (row, w) in widths.iter_mut().enumerate().take(a.len()) {
            *w = w.saturating_add(len(row));
        }
    };
    match a.data_type() {
        DataType::Utf8 => each(widths, &|i| a.as_string::<i32>().value_length(i) as usize),
        DataType::LargeUtf8 => each(widths, &|i| a.as_string::<i64>().value_length(i) as usize),
        DataType::Utf8View => each(widths, &|i| a.as_string_view().value(i).len()),
        DataType::Binary => each(widths, &|i| a.as_binary::<i32>().value_length(i) as usize),
        DataType::LargeBinary => each(widths, &|i| a.as_binary::<i64>().value_length(i) as usize),
        DataType::BinaryView => each(widths, &|i| a.as_binary_view().value(i).len()),
        DataType::List(_) => {
            let list = a.as_list::<i32>();
            let offsets: Vec<usize> = list.offsets().iter().map(|o| *o as usize).collect();
            nested(list.values(), &offsets, widths);
        }
        DataType::LargeList(_) => {
            let list = a.as_list::<i64>();
            let offsets: Vec<usize> = list.offsets().iter().map(|o| *o as usize).collect();
            nested(list.values(), &offsets, widths);
        }
        DataType::Map(_, _) => {
            let map = a.as_map();
            let offsets: Vec<usize> = map.offsets().iter().map(|o| *o as usize).collect();
            let entries: ArrayRef = std::sync::Arc::new(map.entries().clone());
            nested(&entries, &offsets, widths);
        }
        DataType::Struct(_) => {
            for child in a.as_struct().columns() {
                add_widths(child, widths);
            }
        }
        _ => {}
    }
}

/// Adds to each row the bytes of its values in `values` (`offsets[row]` to
/// `offsets[row + 1]`).
fn nested(values: &ArrayRef, offsets: &[usize], widths: &mut [usize]) {
    let mut inner = vec![0usize; values.len()];
    add_widths(values, &mut inner);
    for (row, w) in widths.iter_mut().enumerate() {
        if let (Some(&from), Some(&to)) = (offsets.get(row), offsets.get(row + 1)) {
            let bytes = inner.get(from..to).map_or(0, |s| s.iter().sum::<usize>());
            *w = w.saturating_add(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, ListArray, StringArray};
    use datafusion::arrow::datatypes::{Field, Int32Type, Schema};

    use super::*;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        let arrays = columns.into_iter().map(|(_, a)| a).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    #[test]
    fn a_row_past_the_bound_is_refused_wherever_its_bytes_are() {
        let wide = "x".repeat(MAX_JOINED_ROW_BYTES - 10);
        let texts: ArrayRef = Arc::new(StringArray::from(vec![wide.as_str(), "short"]));
        let numbers: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        // Within: the widest row holds the bound less 10 bytes.
        assert!(check(&batch(vec![("t", texts.clone()), ("n", numbers)])).is_ok());
        // Two columns of one row together pass it.
        let more: ArrayRef = Arc::new(StringArray::from(vec!["0123456789a", ""]));
        let err = check(&batch(vec![("t", texts.clone()), ("m", more)])).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "a row of {} bytes reaches a join",
                MAX_JOINED_ROW_BYTES + 1
            )),
            "{err}"
        );
        // In a list: its values count for their row.
        let list: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>([
            Some(vec![Some(1)]),
            Some(vec![Some(2)]),
        ]));
        let names: ArrayRef = Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(DataType::Utf8, true)),
            datafusion::arrow::buffer::OffsetBuffer::from_lengths([0, 2]),
            Arc::new(StringArray::from(vec![wide.as_str(), "0123456789a"])),
            None,
        ));
        let err = check(&batch(vec![("l", list), ("names", names)])).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "a row of {} bytes reaches a join",
                MAX_JOINED_ROW_BYTES + 1
            )),
            "{err}"
        );
    }
}
