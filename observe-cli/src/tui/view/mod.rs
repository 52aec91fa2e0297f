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
        // After the table, which sets how many rows fit (the header counts
        // the flows below them).
        frame.render_widget(Paragraph::new(self.header(header.width)), header);
        self.render_bar(frame, bar);
        if self.help {
            self.render_help(frame, body);
        }
    }

    /// `12.5 flows/s  19 seen  19 buffered  9 shown  nodes: node1, node2`,
    /// then nodes unavailable and the table's state (paused, or new flows
    /// below a selection that stopped following). On a narrow screen the
    /// node list becomes a count and the buffered count goes first, so the
    /// warnings after them stay on screen.
    fn header(&self, width: u16) -> Line<'_> {
        let s = &self.stats;
        let (rate, seen, shown) = (s.rate.rate(), s.flows_seen, self.shown().matching().len());
        let buffered = self.shown().len();
        let up = s.nodes_in(NodeState::NodeConnected);
        let (nodes, nodes_short) = if s.reconnecting.is_some() {
            (
                "  nodes: unknown".to_string(),
                "  nodes: unknown".to_string(),
            )
        } else if up.is_empty() {
            (String::new(), String::new())
        } else {
            (
                format!("  nodes: {}", up.join(", ")),
                format!("  nodes: {} up", up.len()),
            )
        };
        let down: Vec<&str> = s
            .nodes
            .iter()
            .filter(|(_, st)| **st != NodeState::NodeConnected)
            .map(|(n, _)| n.as_str())
            .collect();
        let mut warnings = Vec::new();
        if !down.is_empty() {
            warnings.push(Span::styled(
                format!("  unavailable: {}", down.join(", ")),
                Style::new().fg(Color::Red),
            ));
        }
        if let Some(frozen) = &self.frozen {
            let new = self.buffer.next_seq() - frozen.next_seq();
            warnings.push(Span::styled(
                format!("  PAUSED (+{new} new)"),
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ));
        } else if let Some(below) = self.rows_below().filter(|n| *n > 0) {
            warnings.push(Span::styled(
                format!("  +{below} below (End: follow)"),
                Style::new().fg(Color::Yellow),
            ));
        }
        let warned: usize = warnings.iter().map(|w| w.content.chars().count()).sum();
        let fits = |counts: &str, nodes: &str| {
            counts.chars().count() + nodes.chars().count() + warned <= usize::from(width)
        };
        let full = format!("{rate:.1} flows/s  {seen} seen  {buffered} buffered  {shown} shown");
        let short = format!("{rate:.1} flows/s  {seen} seen  {shown} shown");
        let (counts, nodes) = if fits(&full, &nodes) {
            (full, nodes)
        } else if fits(&full, &nodes_short) {
            (full, nodes_short)
        } else {
            (short, nodes_short)
        };
        let mut spans = vec![Span::raw(counts), Span::raw(nodes)];
        spans.extend(warnings);
        Line::from(spans)
    }

    /// While a selection holds the table still (not paused): how many
    /// passing flows are below its last row.
    fn rows_below(&self) -> Option<usize> {
        self.selected?;
        let rows = usize::from(self.table_rows.get()).max(1);
        let last_shown = self.top_pos(rows) + rows;
        Some(self.visible_len().saturating_sub(last_shown))
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
            let error = f.error.as_ref().map(|e| format!("  error: {e}"));
            let error_len = error.as_ref().map_or(0, |e| e.chars().count());
            let input = input_tail(
                &f.input,
                input_room(area.width, f.input.chars().count(), error_len),
            );
            let x = area.x + 2 + input.chars().count() as u16;
            let mut spans = vec![Span::raw(format!("/ {input}"))];
            if let Some(e) = error {
                spans.push(Span::styled(e, Style::new().fg(Color::Red)));
            }
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

/// Cells the line being edited (`input` characters long) may take in a bar
/// `width` wide after `/ `, with the cursor after it and an error of
/// `error_len` after that: all of it when everything fits, else what the
/// error leaves, but at least 20 characters (the error is cut at its end).
fn input_room(width: u16, input: usize, error: usize) -> usize {
    let room = usize::from(width).saturating_sub(3);
    room.saturating_sub(error).max(input.min(20)).min(room)
}

/// The end of `input` in `room` cells: the part before the cursor that
/// matters while typing, after `…` when cut.
fn input_tail(input: &str, room: usize) -> std::borrow::Cow<'_, str> {
    let n = input.chars().count();
    if n <= room {
        return input.into();
    }
    let keep = room.saturating_sub(1);
    let tail: String = input.chars().skip(n - keep).collect();
    format!("…{tail}").into()
}
