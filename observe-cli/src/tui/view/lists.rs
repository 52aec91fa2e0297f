//! The service map tab (every edge of the graph of the filtered flows, its
//! hops and drops on a second line) and the top talkers tab (source →
//! destination pairs by bytes and by flows).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Text};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

use super::columns;
use crate::tui::app::App;
use service_graph::group::Group;
use service_graph::{EdgeView, human_bytes, labels};

/// What the service map's flexible columns need: the edge column (its name
/// and hops lines), the names alone, the verdicts and the ports.
struct MapWants {
    edge: usize,
    name: usize,
    verdicts: usize,
    ports: usize,
}

/// Cells of the fixed columns (flows, connections, bytes) and the gaps
/// between the six.
const MAP_FIXED: usize = 6 + 6 + 9 + 5;

/// Widths of the edge, verdicts and ports columns in a map `total` cells
/// wide. Each gets what it needs when all fit; else the hops give way first
/// (down to the names), then the ports, then the names, then the verdicts,
/// each to a floor; on a screen too narrow for the floors the ports, the
/// verdicts and the edge column shrink further, so the table never needs
/// more than the screen (ratatui would cut its cells again, unmarked).
fn map_widths(total: u16, want: MapWants) -> [u16; 3] {
    let room = usize::from(total).saturating_sub(MAP_FIXED);
    let mut w = [want.edge.max(21), want.verdicts.max(8), want.ports.max(5)];
    let floors = [
        (0, want.name.max(21)),
        (2, want.ports.clamp(5, 12)),
        (0, 21),
        (1, 8),
        (2, 0),
        (1, 0),
        (0, 0),
    ];
    for (i, floor) in floors {
        let over = (w[0] + w[1] + w[2]).saturating_sub(room);
        w[i] = w[i].saturating_sub(over).max(floor.min(w[i]));
    }
    w.map(|n| u16::try_from(n).unwrap_or(u16::MAX))
}

/// `source -> destination` in at most `width` cells. When it does not fit,
/// each end shares the room (a short one leaves its spare to the other) and
/// an end too long for its share drops its namespace (`…/api`), then is cut
/// at its end: two edges between long names of one namespace still read
/// apart, where cutting the whole line left only the source.
fn edge_name(e: &EdgeView<'_>, width: u16) -> String {
    const ARROW: &str = " -> ";
    let cells = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
    let len = |s: &str| s.chars().count();
    let (source, target) = (&e.source.id, &e.target.id);
    let width = usize::from(width);
    if len(source) + ARROW.len() + len(target) <= width {
        return format!("{source}{ARROW}{target}");
    }
    if width < ARROW.len() + 2 {
        // No room for even one cell of each end.
        return columns::fit(&format!("{source}{ARROW}{target}"), cells(width));
    }
    let room = width - ARROW.len();
    // The target's share first: what the source does not take is its own.
    let source_room = if len(target) <= room - room / 2 {
        room - len(target)
    } else {
        room / 2
    };
    let source = end_in(e.source, source_room);
    let target = end_in(e.target, room - len(&source));
    format!("{source}{ARROW}{target}")
}

/// A graph node's name in `room` cells: whole, else without its namespace
/// (marked), else cut.
fn end_in(g: &Group, room: usize) -> String {
    let cells = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
    if g.id.chars().count() <= room {
        return g.id.clone();
    }
    if g.namespace.is_empty() {
        return columns::fit(&g.id, cells(room));
    }
    if g.title.chars().count() + 2 <= room {
        return format!("…/{}", g.title);
    }
    columns::fit(&g.title, cells(room))
}

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
        let longest = |f: &dyn Fn(&[String; 4]) -> usize| cells.iter().map(f).max().unwrap_or(0);
        let ports: Vec<String> = edges
            .iter()
            .map(|e| e.edge.ports.iter().cloned().collect::<Vec<_>>().join(", "))
            .collect();
        let [edge_w, verdict_w, ports_w] = map_widths(
            area.width,
            MapWants {
                edge: longest(&|c| c[0].chars().count().max(c[1].chars().count())),
                name: longest(&|c| c[0].chars().count()),
                verdicts: longest(&|c| c[2].chars().count().max(c[3].chars().count())),
                ports: ports.iter().map(|p| p.chars().count()).max().unwrap_or(0),
            },
        );
        let widths = [
            Constraint::Length(edge_w),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(verdict_w),
            Constraint::Length(ports_w),
        ];
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
        // Two lines a row, under the header.
        let fit = usize::from(table_area.height.saturating_sub(1)) / 2;
        let skip = self.list_window(edges.len(), fit);
        // Cut with a mark: a cut count must not read as a smaller one.
        let cut = |s: &str, w: u16| Line::raw(columns::fit(s, w));
        let rows = edges
            .iter()
            .zip(&cells)
            .zip(&ports)
            .skip(skip)
            .map(|((e, c), ports)| {
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
                        Line::raw(edge_name(e, edge_w)),
                        cut(&c[1], edge_w),
                    ])),
                    Cell::from(cut(&w.flows.to_string(), 6)),
                    Cell::from(cut(&w.connections.to_string(), 6)),
                    Cell::from(human_bytes(w.bytes)),
                    Cell::from(Text::from(vec![
                        cut(&c[2], verdict_w),
                        cut(&c[3], verdict_w),
                    ]))
                    .style(verdict_style),
                    Cell::from(cut(ports, ports_w)),
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
        // What the fixed columns and the three gaps leave the names.
        let name_w = area.width.saturating_sub(3 + 9 + 6 + 3);
        // Under the title's border and the header.
        let skip = self.list_window(edges.len(), usize::from(area.height.saturating_sub(2)));
        let rows = edges.iter().enumerate().skip(skip).map(|(i, e)| {
            Row::new(vec![
                (i + 1).to_string(),
                edge_name(e, name_w),
                human_bytes(e.edge.bytes),
                columns::fit(&e.edge.flows.to_string(), 6),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_narrow_edge_name_keeps_both_ends_apart() {
        use service_graph::group::GroupKind;
        use service_graph::model::Edge;
        let group = |namespace: &str, title: &str| Group {
            id: if namespace.is_empty() {
                title.to_string()
            } else {
                format!("{namespace}/{title}")
            },
            title: title.to_string(),
            namespace: namespace.to_string(),
            kind: GroupKind::Workload,
        };
        let edge = Edge::default();
        let name = |source: &Group, target: &Group, width| {
            edge_name(
                &EdgeView {
                    source,
                    target,
                    edge: &edge,
                },
                width,
            )
        };
        let front = group("production", "frontend");
        let (checkout, cart) = (group("production", "checkout"), group("production", "cart"));
        let world = group("", "world");
        assert_eq!(
            name(&front, &checkout, 60),
            "production/frontend -> production/checkout"
        );
        // Cut as one line, both would read `production/frontend -> p…`.
        assert_eq!(name(&front, &checkout, 26), "…/frontend -> …/checkout");
        assert_eq!(name(&front, &cart, 26), "…/frontend -> …/cart");
        // A short end is whole and leaves the rest to the other.
        assert_eq!(name(&world, &checkout, 26), "world -> …/checkout");
        assert_eq!(name(&checkout, &world, 21), "…/checkout -> world");
        // Too narrow for the marked name: its end is cut.
        assert_eq!(name(&front, &checkout, 16), "front… -> check…");
        assert_eq!(name(&front, &checkout, 5), "prod…");
        assert_eq!(name(&front, &checkout, 0), "");
    }

    #[test]
    fn the_hops_give_way_first_then_the_ports_the_names_and_the_verdicts() {
        let want = || MapWants {
            edge: 60,
            name: 35,
            verdicts: 26,
            ports: 30,
        };
        // All fit in 60 + 26 + 30 + 26.
        assert_eq!(map_widths(142, want()), [60, 26, 30]);
        assert_eq!(map_widths(200, want()), [60, 26, 30]);
        // The hops shrink to the names.
        assert_eq!(map_widths(120, want()), [38, 26, 30]);
        assert_eq!(map_widths(100, want()), [35, 26, 13]);
        // The ports to 12, then the names to 21, then the verdicts to 8.
        assert_eq!(map_widths(80, want()), [21, 21, 12]);
        assert_eq!(map_widths(67, want()), [21, 8, 12]);
        // Narrower than the floors: the ports, then the verdicts, then the
        // edge column give way, the columns never more than the room.
        assert_eq!(map_widths(60, want()), [21, 8, 5]);
        assert_eq!(map_widths(50, want()), [21, 3, 0]);
        assert_eq!(map_widths(30, want()), [4, 0, 0]);
        assert_eq!(map_widths(10, want()), [0, 0, 0]);
        // Small wants stay as they are.
        let small = MapWants {
            edge: 10,
            name: 10,
            verdicts: 5,
            ports: 3,
        };
        assert_eq!(map_widths(80, small), [21, 8, 5]);
    }
}
