//! The service map tab (every edge of the graph of the filtered flows, its
//! hops and drops on a second line) and the top talkers tab (source →
//! destination pairs by bytes and by flows).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Text};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

use crate::tui::app::App;
use service_graph::{EdgeView, human_bytes, labels};

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

impl App {
    pub(super) fn render_service_map(&self, frame: &mut Frame, area: Rect) {
        let (graph, connections, forgotten) = self.shown_map();
        let edges = graph.edges();
        if edges.is_empty() {
            frame.render_widget(Paragraph::new("no flows yet"), area);
            return;
        }
        // Two lines per edge: the hops under its name, the drops (and what
        // an audit-mode policy would have denied) under its verdicts.
        let cells: Vec<[String; 4]> = edges
            .iter()
            .map(|e| {
                let w = e.edge;
                let mut under: Vec<String> =
                    w.drops.iter().map(|(r, n)| format!("{r} {n}")).collect();
                under.extend(labels::audit(w));
                [
                    format!("{} -> {}", e.source.id, e.target.id),
                    format!("  {}", w.hops.path()),
                    labels::verdicts(w),
                    under.join(", "),
                ]
            })
            .collect();
        let width = |i: usize, j: usize, min: usize| {
            let w = cells
                .iter()
                .map(|c| c[i].chars().count().max(c[j].chars().count()))
                .max()
                .unwrap_or(0);
            Constraint::Length(u16::try_from(w.max(min)).unwrap_or(u16::MAX))
        };
        let widths = [
            width(0, 1, 21),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(9),
            width(2, 3, 8),
            Constraint::Fill(1),
        ];
        let rows = edges
            .iter()
            .zip(&cells)
            .skip(self.list_scroll)
            .map(|(e, c)| {
                let w = e.edge;
                // As the flows' verdicts and the DOT drawing: red where
                // something was dropped, yellow where policy only audited.
                let verdict_style = if w.verdicts.dropped > 0 {
                    Style::new().fg(Color::Red)
                } else if w.verdicts.audit > 0 {
                    Style::new().fg(Color::Yellow)
                } else {
                    Style::new().fg(Color::Green)
                };
                Row::new(vec![
                    Cell::from(Text::from(vec![
                        Line::raw(c[0].clone()),
                        Line::raw(c[1].clone()),
                    ])),
                    Cell::from(w.flows.to_string()),
                    Cell::from(w.connections.to_string()),
                    Cell::from(human_bytes(w.bytes)),
                    Cell::from(Text::from(vec![
                        Line::raw(c[2].clone()),
                        Line::raw(c[3].clone()),
                    ]))
                    .style(verdict_style),
                    Cell::from(w.ports.iter().cloned().collect::<Vec<_>>().join(", ")),
                ])
                .height(2)
            });
        let header = Row::new([
            "SOURCE -> DESTINATION",
            "FLOWS",
            "CONNS",
            "BYTES",
            "VERDICTS",
            "PORTS",
        ])
        .style(bold());
        let table_area = if forgotten > 0 {
            let [table, note] =
                Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(area);
            let text = format!(
                "{} connections tracked, {forgotten} older ones forgotten (cap {}): a forgotten connection seen again counts again",
                connections,
                self.graph.max_connections().unwrap_or_default(),
            );
            frame.render_widget(
                Paragraph::new(text).style(Style::new().fg(Color::Yellow)),
                note,
            );
            table
        } else {
            area
        };
        frame.render_widget(Table::new(rows, widths).header(header), table_area);
    }

    pub(super) fn render_top_talkers(&self, frame: &mut Frame, area: Rect) {
        let [by_bytes, by_flows] =
            Layout::vertical([Constraint::Fill(1), Constraint::Fill(1)]).areas(area);
        let mut edges = self.shown_map().0.edges();
        edges.sort_by(|a, b| b.edge.bytes.cmp(&a.edge.bytes).then(a.id().cmp(&b.id())));
        self.talkers(frame, by_bytes, " by bytes ", &edges);
        edges.sort_by(|a, b| b.edge.flows.cmp(&a.edge.flows).then(a.id().cmp(&b.id())));
        self.talkers(frame, by_flows, " by flows ", &edges);
    }

    fn talkers(&self, frame: &mut Frame, area: Rect, title: &str, edges: &[EdgeView<'_>]) {
        let rows = edges
            .iter()
            .enumerate()
            .skip(self.list_scroll)
            .map(|(i, e)| {
                Row::new(vec![
                    (i + 1).to_string(),
                    format!("{} -> {}", e.source.id, e.target.id),
                    human_bytes(e.edge.bytes),
                    e.edge.flows.to_string(),
                ])
            });
        let header = Row::new(["#", "SOURCE -> DESTINATION", "BYTES", "FLOWS"]).style(bold());
        let widths = [
            Constraint::Length(3),
            Constraint::Fill(1),
            Constraint::Length(9),
            Constraint::Length(6),
        ];
        let block = Block::new().borders(Borders::TOP).title(title.to_string());
        frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
    }
}
