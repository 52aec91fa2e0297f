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
/// The hints when the filters need the bar.
const SHORT_HELP: &str = "? keys";

impl App {
    /// Notes a list of `rows` of which `fit` show at once, for scrolling
    /// ([`App::list_max_scroll`], [`App::list_page`]); returns how many rows
    /// to skip: `list_scroll`, or fewer where that would show less than a
    /// screenful.
    fn list_window(&self, rows: usize, fit: usize) -> usize {
        let max = rows.saturating_sub(fit.max(1));
        self.list_max_scroll.set(max);
        self.list_page.set(fit.max(1));
        self.list_scroll.min(max)
    }

    /// Draws the whole screen.
    pub fn render(&self, frame: &mut Frame) {
        // A long banner (a reconnect's cause) wraps to a second line, and is
        // cut with a mark past that.
        let banner = self
            .banner()
            .map(|b| columns::wrap_line(b, frame.area().width, 2))
            .unwrap_or_default();
        let banner_lines = u16::try_from(banner.len()).unwrap_or(2);
        let [tabs, header, banner_area, body, bar] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(banner_lines),
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
        if !banner.is_empty() {
            frame.render_widget(Paragraph::new(banner), banner_area);
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
    /// then nodes unavailable and the table's state (paused, or passing
    /// flows below a selection that stopped following). On a narrow screen
    /// the node list becomes a count, then the counts and the node count go,
    /// then the warnings say less, so that they stay whole on screen.
    fn header(&self, width: u16) -> Line<'static> {
        let s = &self.stats;
        let (rate, seen, shown) = (s.rate.rate(), s.flows_seen, self.shown().matching().len());
        let buffered = self.shown().len();
        let counts = [
            format!("{rate:.1} flows/s  {seen} seen  {buffered} buffered  {shown} shown"),
            format!("{rate:.1} flows/s  {seen} seen  {shown} shown"),
            format!("{shown} shown"),
        ];
        let up = s.nodes_in(NodeState::NodeConnected);
        let nodes = if s.reconnecting.is_some() {
            [
                "  nodes: unknown".to_string(),
                "  nodes: unknown".to_string(),
            ]
        } else if up.is_empty() {
            [String::new(), String::new()]
        } else {
            [
                format!("  nodes: {}", up.join(", ")),
                format!("  nodes: {} up", up.len()),
            ]
        };
        let down: Vec<&str> = s
            .nodes
            .iter()
            .filter(|(_, st)| **st != NodeState::NodeConnected)
            .map(|(n, _)| n.as_str())
            .collect();
        let warnings = |short: bool| {
            let mut w = Vec::new();
            if !down.is_empty() {
                w.push(Span::styled(
                    if short {
                        format!("  {} unavailable", down.len())
                    } else {
                        format!("  unavailable: {}", down.join(", "))
                    },
                    Style::new().fg(Color::Red),
                ));
            }
            if self.frozen.is_some() {
                // The passing flows a resume will show.
                let new = self.buffer.matching().len();
                w.push(Span::styled(
                    if short {
                        format!("  PAUSED +{new}")
                    } else {
                        format!("  PAUSED (+{new} new)")
                    },
                    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
                ));
            } else if let Some(below) = self.rows_below().filter(|n| *n > 0) {
                w.push(Span::styled(
                    if short {
                        format!("  +{below} below")
                    } else {
                        format!("  +{below} below (End: follow)")
                    },
                    Style::new().fg(Color::Yellow),
                ));
            }
            w
        };
        let cells = |spans: &[Span]| {
            spans
                .iter()
                .map(|w| w.content.chars().count())
                .sum::<usize>()
        };
        let none = String::new();
        // (counts, nodes, short warnings), from the most said to the least.
        let stages = [
            (&counts[0], &nodes[0], false),
            (&counts[0], &nodes[1], false),
            (&counts[1], &nodes[1], false),
            (&counts[2], &nodes[1], false),
            (&counts[2], &none, false),
            (&counts[2], &none, true),
        ];
        let fits = |(c, n, short): &&(&String, &String, bool)| {
            c.chars().count() + n.chars().count() + cells(&warnings(*short)) <= usize::from(width)
        };
        let (c, n, short) = stages
            .iter()
            .find(fits)
            .unwrap_or(&stages[stages.len() - 1]);
        let mut spans = vec![Span::raw((*c).clone()), Span::raw((*n).clone())];
        spans.extend(warnings(*short));
        // Narrower than all that: cut, with a mark.
        columns::fit_line(Line::from(spans), width)
    }

    /// While a selection holds the flow table still (not paused, on screen):
    /// how many passing flows are below its last row.
    fn rows_below(&self) -> Option<usize> {
        self.selected?;
        if self.tab != Tab::Flows || self.mode == Mode::Detail {
            return None;
        }
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
                // Cut with a mark, so a cut error does not read as whole.
                let room = area.width.saturating_sub(x - area.x);
                spans.push(Span::styled(
                    columns::fit(&e, room),
                    Style::new().fg(Color::Red),
                ));
            }
            frame.set_cursor_position(Position::new(x.min(area.right().saturating_sub(1)), area.y));
            Line::from(spans)
        } else {
            let text = if f.applied.text.is_empty() {
                "none"
            } else {
                f.applied.text.as_str()
            };
            let server = (!self.server_filter.is_empty())
                .then(|| format!("[server: {}]  ", self.server_filter));
            let help = match self.tab {
                Tab::ServiceMap => MAP_HELP,
                Tab::TopTalkers => TOP_HELP,
                Tab::Flows => HELP,
            };
            let applied = format!("filter: {text}  ");
            // Too long for the bar: the key hints shrink to `? keys`, and
            // the filters share what is left, each cut with a mark.
            let width = usize::from(area.width);
            let whole = applied.chars().count()
                + server.as_ref().map_or(0, |s| s.chars().count())
                + help.chars().count();
            let (help, rooms) = if whole <= width {
                (help, [usize::MAX; 2])
            } else {
                let left = width.saturating_sub(SHORT_HELP.len());
                match &server {
                    None => (SHORT_HELP, [left, 0]),
                    Some(server) => {
                        // Each at least half, if it needs it; the rest to
                        // the applied filter.
                        let own = applied.chars().count().min(left / 2);
                        let theirs = server.chars().count().min(left - own);
                        (SHORT_HELP, [left - theirs, theirs])
                    }
                }
            };
            // Each keeps its two spaces after a cut.
            let cut = |text: &str, i: usize| {
                let room = u16::try_from(rooms[i].saturating_sub(2)).unwrap_or(u16::MAX);
                format!("{}  ", columns::fit(text.trim_end(), room))
            };
            let mut spans = vec![Span::raw(cut(&applied, 0))];
            if let Some(server) = server {
                spans.push(Span::styled(cut(&server, 1), Style::new().fg(Color::Cyan)));
            }
            spans.push(Span::styled(help, Style::new().fg(Color::DarkGray)));
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
