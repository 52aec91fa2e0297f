//! The `table` format: a header and aligned columns, as `hubble observe -o
//! table` prints them (three spaces between columns, the last one unpadded).
//! A bounded query is buffered so the widths fit every row; a followed stream
//! is printed as it comes, from fixed widths that a longer cell widens for
//! the rows after it, up to twice the first (its own line is pushed along,
//! as it is printed; the header keeps the first widths). [`Columns`] does
//! the aligning for any rows (`observe agent-events -o table` too);
//! [`Table`] makes a flow's row of cells.

use super::color::paint_verdict;
use super::fields::Row;

/// Space between two columns.
const GAP: usize = 3;
/// Column widths a followed table starts with: timestamp, node, source,
/// destination, type, verdict (the summary is last and unpadded).
const FOLLOW_WIDTHS: [usize; 6] = [19, 12, 30, 30, 14, 10];

/// Aligned columns under a header: rows waiting for their widths, or the
/// state of a followed table.
#[derive(Debug, Default)]
pub struct Columns {
    header: Vec<String>,
    /// The widths a followed table starts from; `None`: buffered.
    follow_start: Option<Vec<usize>>,
    rows: Vec<Vec<String>>,
    /// While following: the widths so far (empty before the first row).
    follow_widths: Vec<usize>,
    /// The column coloured as a verdict, when colour is on.
    verdict: Option<usize>,
}

impl Columns {
    /// A table printed at [`Self::finish`], every column as wide as its
    /// widest cell.
    pub fn buffered(header: Vec<String>) -> Columns {
        Columns {
            header,
            ..Columns::default()
        }
    }

    /// A table printed row by row, from widths `start` (one per column but
    /// the last).
    pub fn followed(header: Vec<String>, start: Vec<usize>) -> Columns {
        Columns {
            header,
            follow_start: Some(start),
            ..Columns::default()
        }
    }

    /// Colours column `i` as a verdict.
    fn with_verdict(mut self, i: usize) -> Columns {
        self.verdict = Some(i);
        self
    }

    /// Takes a row; returns what can be printed now (while following).
    pub fn push(&mut self, cells: Vec<String>) -> String {
        let Some(first) = &self.follow_start else {
            self.rows.push(cells);
            return String::new();
        };
        let mut out = String::new();
        if self.follow_widths.is_empty() {
            self.follow_widths = first.clone();
            out += &self.line(&self.header, &self.follow_widths, false);
        }
        for ((w, first), cell) in self.follow_widths.iter_mut().zip(first).zip(&cells) {
            *w = (*w).max(cell.chars().count().min(2 * first));
        }
        out += &self.line(&cells, &self.follow_widths, self.verdict.is_some());
        out
    }

    /// The buffered table, header first; empty when no row came.
    pub fn finish(&mut self) -> String {
        if self.rows.is_empty() {
            return String::new();
        }
        let mut widths = vec![0; self.header.len().saturating_sub(1)];
        for cells in std::iter::once(&self.header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(cells) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = self.line(&self.header, &widths, false);
        for cells in std::mem::take(&mut self.rows) {
            out += &self.line(&cells, &widths, self.verdict.is_some());
        }
        out
    }

    /// One line: every cell but the last padded to its width plus the gap;
    /// the verdict column coloured when `color`.
    fn line(&self, cells: &[String], widths: &[usize], color: bool) -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let Some(&w) = widths.get(i) else {
                out += cell;
                break;
            };
            let pad = w.saturating_sub(cell.chars().count()) + GAP;
            if self.verdict == Some(i) {
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

/// `observe flows -o table`: a flow's cells in [`Columns`].
#[derive(Debug, Default)]
pub struct Table {
    print_node: bool,
    columns: Columns,
}

impl Table {
    pub fn new(follow: bool, print_node: bool, color: bool) -> Table {
        let mut header = vec!["TIMESTAMP"];
        if print_node {
            header.push("NODE");
        }
        header.extend(["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]);
        let header: Vec<String> = header.into_iter().map(str::to_string).collect();
        let verdict = header.len() - 2;
        let columns = if follow {
            let start = if print_node {
                FOLLOW_WIDTHS.to_vec()
            } else {
                [&FOLLOW_WIDTHS[..1], &FOLLOW_WIDTHS[2..]].concat()
            };
            Columns::followed(header, start)
        } else {
            Columns::buffered(header)
        };
        Table {
            print_node,
            columns: if color {
                columns.with_verdict(verdict)
            } else {
                columns
            },
        }
    }

    /// Takes a row; returns what can be printed now (while following).
    pub fn push(&mut self, row: &Row) -> String {
        let cells = self.cells(row);
        self.columns.push(cells)
    }

    /// The buffered table, header first; empty when no row came.
    pub fn finish(&mut self) -> String {
        self.columns.finish()
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
}
