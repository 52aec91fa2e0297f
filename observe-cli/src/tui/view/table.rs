//! The flow table: time, node, source, destination, type, verdict (coloured)
//! and summary; the newest flow at the bottom while following, the selected
//! row reversed once the user moves.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use crate::tui::app::App;
use crate::tui::text;

const WIDTHS: [Constraint; 7] = [
    Constraint::Length(12),
    Constraint::Length(8),
    Constraint::Fill(3),
    Constraint::Fill(3),
    Constraint::Length(13),
    Constraint::Length(9),
    Constraint::Fill(2),
];

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
        let body = (top..end).filter_map(|pos| {
            let seq = self.shown().matching()[pos];
            let f = self.shown().get(seq)?;
            let (src, dst) = text::source_and_destination(f);
            let row = Row::new(vec![
                Cell::from(text::clock(f.time.as_ref(), false)),
                Cell::from(f.node_name.clone()),
                Cell::from(src),
                Cell::from(dst),
                Cell::from(text::kind(f)),
                Cell::from(observer_proto::names::verdict(f.verdict))
                    .style(Style::new().fg(text::verdict_colour(f))),
                Cell::from(f.summary.clone()),
            ]);
            Some(if selected == Some(pos) {
                row.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                row
            })
        });
        let header = Row::new([
            "TIME",
            "NODE",
            "SOURCE",
            "DESTINATION",
            "TYPE",
            "VERDICT",
            "SUMMARY",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD));
        frame.render_widget(Table::new(body, WIDTHS).header(header), area);
    }
}
