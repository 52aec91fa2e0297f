//! The flow table: time, node, source, destination, type, verdict (coloured)
//! and summary; the newest flow at the bottom while following, the selected
//! row reversed once the user moves. Column widths come from `columns`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::columns::{self, NODE, TITLES, TYPE};
use crate::tui::app::App;
use crate::tui::text;

impl App {
    pub(super) fn render_table(&self, frame: &mut Frame, area: Rect) {
        let rows = area.height.saturating_sub(1);
        self.table_rows.set(rows);
        if self.visible_len() == 0 {
            let msg = if self.shown().is_empty() {
                "waiting for flows..."
            } else {
                "no flow matches the filter"
            };
            frame.render_widget(Paragraph::new(msg), area);
            return;
        }
        let top = self.top_pos(usize::from(rows));
        let end = (top + usize::from(rows)).min(self.visible_len());
        let selected = self.selected.and(self.selected_pos());
        // The cells first: the flexible columns are as wide as what they show.
        let cells: Vec<(usize, [String; 7], Color)> = (top..end)
            .filter_map(|pos| {
                let seq = self.shown().matching()[pos];
                let f = self.shown().get(seq)?;
                let (src, dst) = text::source_and_destination(f);
                let texts = [
                    text::clock(f.time.as_ref(), false),
                    f.node_name.clone(),
                    src,
                    dst,
                    text::kind(f),
                    observer_proto::names::verdict(f.verdict).to_string(),
                    f.summary.clone(),
                ];
                Some((pos, texts, text::verdict_colour(f)))
            })
            .collect();
        let mut want = TITLES.map(columns::cells);
        for (_, texts, _) in &cells {
            for (w, t) in want.iter_mut().zip(texts) {
                *w = (*w).max(columns::cells(t));
            }
        }
        // Nodes not on screen count too, so the column keeps its width.
        for n in self.stats.nodes.keys() {
            want[NODE] = want[NODE].max(columns::cells(n));
        }
        want[NODE] = want[NODE].min(columns::NODE_MAX);
        want[columns::TIME] = columns::TIME_WIDTH;
        want[TYPE] = want[TYPE]
            .max(*columns::TYPE_WIDTH)
            .max(self.type_width.get());
        self.type_width.set(want[TYPE]);
        want[columns::VERDICT] = *columns::VERDICT_WIDTH;
        let widths = columns::widths(area.width, want);
        let kept: Vec<usize> = (0..7).filter(|&i| widths[i].is_some()).collect();
        let body = cells.into_iter().map(|(pos, texts, colour)| {
            let row = Row::new(kept.iter().map(|&i| {
                let width = widths[i].unwrap_or(0);
                let cell = Cell::from(columns::fit(&texts[i], width));
                if i == columns::VERDICT {
                    cell.style(Style::new().fg(colour))
                } else {
                    cell
                }
            }));
            if selected == Some(pos) {
                row.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        });
        let header = Row::new(kept.iter().map(|&i| TITLES[i]))
            .style(Style::new().add_modifier(Modifier::BOLD));
        let constraints = kept
            .iter()
            .filter_map(|&i| widths[i].map(Constraint::Length));
        frame.render_widget(
            Table::new(body, constraints)
                .header(header)
                .column_spacing(columns::GAP),
            area,
        );
    }
}
