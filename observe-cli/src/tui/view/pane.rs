//! The detail pane: the selected flow's fields, its connection's hops, then
//! its endpoints.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::tui::app::App;
use crate::tui::{detail, path};

impl App {
    pub(super) fn render_detail(&self, frame: &mut Frame, area: Rect) {
        let shown = self.detail.and_then(|s| self.shown().get(s));
        let Some(f) = shown.or(self.detail_flow.as_deref()) else {
            frame.render_widget(Paragraph::new("the flow left the buffer"), area);
            return;
        };
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let text = |l: String| {
            if l.starts_with(' ') {
                Line::raw(l)
            } else {
                Line::styled(l, bold)
            }
        };
        let mut lines: Vec<Line> = detail::field_lines(f).into_iter().map(text).collect();
        lines.push(Line::styled(
            "Datapath hops (this connection, both ways, in time order)",
            bold,
        ));
        for l in path::hop_lines(f, self.shown().iter()) {
            lines.push(Line::raw(format!("  {l}")));
        }
        lines.extend(detail::endpoint_lines(f).into_iter().map(text));
        // A long value is cut with a mark, not silently by the edge.
        let lines: Vec<Line> = lines
            .into_iter()
            .map(|l| super::columns::fit_line(l, area.width))
            .collect();
        let block = Block::new()
            .borders(Borders::TOP)
            .title(" flow detail (esc: back, up/down: scroll) ");
        // Lines below the top border; scrolled no further than the last line.
        let visible = area.height.saturating_sub(1);
        let max = u16::try_from(lines.len())
            .unwrap_or(u16::MAX)
            .saturating_sub(visible);
        self.detail_max_scroll.set(max);
        frame.render_widget(
            Paragraph::new(lines)
                .block(block)
                .scroll((self.detail_scroll.min(max), 0)),
            area,
        );
    }
}
