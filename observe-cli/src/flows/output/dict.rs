//! The `dict` format: a block of right-aligned `KEY: value` lines per flow,
//! blocks separated by a dashed line, as `hubble observe -o dict` prints them.

use super::color::paint_verdict;
use super::fields::Row;

/// The line between two blocks.
pub const SEPARATOR: &str = "------------";

/// One block, each line ending in a newline; NODE only with `print_node`.
pub fn block(row: &Row, print_node: bool, color: bool) -> String {
    let verdict = paint_verdict(&row.verdict, color);
    let mut lines: Vec<(&str, &str)> = vec![("TIMESTAMP", &row.time)];
    if print_node {
        lines.push(("NODE", &row.node));
    }
    lines.extend([
        ("SOURCE", row.source.as_str()),
        ("DESTINATION", row.destination.as_str()),
        ("TYPE", row.kind.as_str()),
        ("VERDICT", verdict.as_str()),
        ("SUMMARY", row.summary.as_str()),
    ]);
    lines
        .into_iter()
        .map(|(key, value)| format!("{}\n", format!("{key:>11}: {value}").trim_end()))
        .collect()
}
