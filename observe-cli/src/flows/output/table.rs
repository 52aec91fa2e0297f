//! The `table` format: a header and aligned columns, as `hubble observe -o
//! table` prints them (three spaces between columns, the last one unpadded).
//! A bounded query is buffered so the widths fit every row; a followed stream
//! is printed as it comes, from fixed widths that a longer cell widens for
//! the rows after it, up to twice the first (its own line is pushed along,
//! as it is printed; the header keeps the first widths).

use super::color::paint_verdict;
use super::fields::Row;

/// Space between two columns.
const GAP: usize = 3;
/// Column widths a followed table starts with: timestamp, node, source,
/// destination, type, verdict (the summary is last and unpadded).
const FOLLOW_WIDTHS: [usize; 6] = [19, 12, 30, 30, 14, 10];

/// Rows waiting for their widths, or the state of a followed table.
#[derive(Debug, Default)]
pub struct Table {
    follow: bool,
    print_node: bool,
    color: bool,
    rows: Vec<Vec<String>>,
    /// While following: the widths so far and the first ones (empty before
    /// the first row).
    follow_widths: Vec<usize>,
    follow_first: Vec<usize>,
}

impl Table {
    pub fn new(follow: bool, print_node: bool, color: bool) -> Table {
        Table {
            follow,
            print_node,
            color,
            ..Table::default()
        }
    }

    /// Takes a row; returns what can be printed now (while following).
    pub fn push(&mut self, row: &Row) -> String {
        let cells = self.cells(row);
        if !self.follow {
            self.rows.push(cells);
            return String::new();
        }
        let mut out = String::new();
        if self.follow_widths.is_empty() {
            self.follow_first = self.follow_start();
            self.follow_widths = self.follow_first.clone();
            out += &self.line(&self.header(), &self.follow_widths, false);
        }
        let first = &self.follow_first;
        for ((w, first), cell) in self.follow_widths.iter_mut().zip(first).zip(&cells) {
            *w = (*w).max(cell.chars().count().min(2 * first));
        }
        out += &self.line(&cells, &self.follow_widths, self.color);
        out
    }

    /// The widths a followed table starts from.
    fn follow_start(&self) -> Vec<usize> {
        if self.print_node {
            FOLLOW_WIDTHS.to_vec()
        } else {
            [&FOLLOW_WIDTHS[..1], &FOLLOW_WIDTHS[2..]].concat()
        }
    }

    /// The buffered table, header first; empty when no row came.
    pub fn finish(&mut self) -> String {
        if self.rows.is_empty() {
            return String::new();
        }
        let header = self.header();
        let mut widths = vec![0; header.len() - 1];
        for cells in std::iter::once(&header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(cells) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = self.line(&header, &widths, false);
        for cells in std::mem::take(&mut self.rows) {
            out += &self.line(&cells, &widths, self.color);
        }
        out
    }

    fn header(&self) -> Vec<String> {
        let mut h = vec!["TIMESTAMP"];
        if self.print_node {
            h.push("NODE");
        }
        h.extend(["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]);
        h.into_iter().map(str::to_string).collect()
    }

    /// The row's cells (their flow text already escaped by `fields::row`).
    fn cells(&self, row: &Row) -> Vec<String> {
        let mut c = vec![row.time.clone()];
        if self.print_node {
            c.push(row.node.clone());
        }
        c.extend([
            row.source.clone(),
            row.destination.clone(),
            row.kind.clone(),
            row.verdict.clone(),
            row.summary.clone(),
        ]);
        c
    }

    /// One line: every cell but the last padded to its width plus the gap; the
    /// verdict (second to last) coloured when `color`.
    fn line(&self, cells: &[String], widths: &[usize], color: bool) -> String {
        let verdict_col = cells.len() - 2;
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let Some(&w) = widths.get(i) else {
                out += cell;
                break;
            };
            let pad = w.saturating_sub(cell.chars().count()) + GAP;
            if i == verdict_col {
                out += &paint_verdict(cell, color);
            } else {
                out += cell;
            }
            out.extend(std::iter::repeat_n(' ', pad));
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
        out
    }
}
