//! Drawing the app: tabs, the header (flow rate, flows seen, nodes, pause),
//! the lost-events banner, the current tab's body and the filter bar.
//!
//! - `table`: the flow table, its widths from `columns`.
//! - `pane`: the detail pane.
//! - `lists`: the service map and top talkers tabs.
//! - `changes`: the service map's changes view (`c`).
//! - `help`: the key help (`?`), over whatever is shown.

mod changes;
mod columns;
mod help;
mod lists;
mod pane;
mod table;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs};

use super::app::{App, Mode, Tab};
use observer_proto::relay::NodeState;

const HELP: &str = "/ filter  space pause  enter detail  tab view  q quit  ? keys";
/// The service map's help: `c` switches between the map and its changes.
const MAP_HELP: &str = "/ filter  space pause  tab view  c changes  q quit  ? keys";
/// Top talkers have no detail to open.
const TOP_HELP: &str = "/ filter  space pause  tab view  q quit  ? keys";

impl App {
    /// Draws the whole screen.
    pub fn render(&self, frame: &mut Frame) {
        let banner = self.banner();
        let [tabs, header, banner_area, body, bar] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(u16::from(banner.is_some())),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        let titles = Tab::ALL.iter().map(|t| match t {
            Tab::ServiceMap if self.show_changes => "Service map: changes",
            t => t.title(),
        });
        frame.render_widget(
            Tabs::new(titles)
                .select(self.tab.index())
                .highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
            tabs,
        );
        frame.render_widget(Paragraph::new(self.header()), header);
        if let Some(b) = banner {
            frame.render_widget(Paragraph::new(b), banner_area);
        }
        match (self.mode, self.tab) {
            (Mode::Detail, _) => self.render_detail(frame, body),
            (_, Tab::Flows) => self.render_table(frame, body),
            (_, Tab::ServiceMap) if self.show_changes => self.render_changes(frame, body),
            (_, Tab::ServiceMap) => self.render_service_map(frame, body),
            (_, Tab::TopTalkers) => self.render_top_talkers(frame, body),
        }
        self.render_bar(frame, bar);
        if self.help {
            self.render_help(frame, body);
        }
    }

    /// `12.5 flows/s  19 seen  19 buffered  9 shown  nodes: node1, node2`.
    fn header(&self) -> Line<'_> {
        let s = &self.stats;
        let mut spans = vec![Span::raw(format!(
            "{:.1} flows/s  {} seen  {} buffered  {} shown",
            s.rate.rate(),
            s.flows_seen,
            self.shown().len(),
            self.shown().matching().len()
        ))];
        let up = s.nodes_in(NodeState::NodeConnected);
        if s.reconnecting.is_some() {
            spans.push(Span::raw("  nodes: unknown"));
        } else if !up.is_empty() {
            spans.push(Span::raw(format!("  nodes: {}", up.join(", "))));
        }
        let down: Vec<&str> = s
            .nodes
            .iter()
            .filter(|(_, st)| **st != NodeState::NodeConnected)
            .map(|(n, _)| n.as_str())
            .collect();
        if !down.is_empty() {
            spans.push(Span::styled(
                format!("  unavailable: {}", down.join(", ")),
                Style::new().fg(Color::Red),
            ));
        }
        if let Some(frozen) = &self.frozen {
            let new = self.buffer.next_seq() - frozen.next_seq();
            spans.push(Span::styled(
                format!("  PAUSED (+{new} new)"),
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ));
        }
        Line::from(spans)
    }

    /// Lost events (red) and the end of the stream (or the attempt to get it
    /// back), if either happened.
    fn banner(&self) -> Option<Line<'_>> {
        let lost = self.stats.lost_total();
        let mut spans = Vec::new();
        if lost > 0 {
            let by: Vec<String> = self
                .stats
                .lost
                .iter()
                .map(|(src, n)| format!("{src} {n}"))
                .collect();
            spans.push(Span::styled(
                format!("{lost} events lost ({})", by.join(", ")),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
        }
        if let Some(end) = self
            .stats
            .reconnecting
            .as_ref()
            .or(self.stats.stream_end.as_ref())
        {
            if !spans.is_empty() {
                spans.push(Span::raw("  "));
            }
            spans.push(Span::styled(end.clone(), Style::new().fg(Color::Yellow)));
        }
        (!spans.is_empty()).then(|| Line::from(spans))
    }

    /// The filter bar: the applied filter and help, or the line being edited
    /// and its error.
    fn render_bar(&self, frame: &mut Frame, area: Rect) {
        let f = &self.filter;
        let line = if self.mode == Mode::Filter {
            let mut spans = vec![Span::raw(format!("/ {}", f.input))];
            if let Some(e) = &f.error {
                spans.push(Span::styled(
                    format!("  error: {e}"),
                    Style::new().fg(Color::Red),
                ));
            }
            let x = area.x + 2 + f.input.chars().count() as u16;
            frame.set_cursor_position(Position::new(x.min(area.right().saturating_sub(1)), area.y));
            Line::from(spans)
        } else {
            let text = if f.applied.text.is_empty() {
                "none"
            } else {
                f.applied.text.as_str()
            };
            let mut spans = vec![Span::raw(format!("filter: {text}  "))];
            if !self.server_filter.is_empty() {
                spans.push(Span::styled(
                    format!("[server: {}]  ", self.server_filter),
                    Style::new().fg(Color::Cyan),
                ));
            }
            spans.push(Span::styled(
                match self.tab {
                    Tab::ServiceMap => MAP_HELP,
                    Tab::TopTalkers => TOP_HELP,
                    Tab::Flows => HELP,
                },
                Style::new().fg(Color::DarkGray),
            ));
            Line::from(spans)
        };
        frame.render_widget(Paragraph::new(line), area);
    }
}
