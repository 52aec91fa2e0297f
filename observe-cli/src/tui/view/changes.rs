//! The service map's changes view: what is compared on the first line, then
//! one row per edge of either window, coloured by what happened to it (new
//! green, vanished grey, changed yellow, a verdict flip red).

use std::rc::Rc;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Paragraph, Row, Table};
use service_graph::diff::{EdgeDiff, Paint};
use service_graph::{Change, Threshold, human_bytes, labels};

use super::columns::fit;
use crate::tui::app::{App, GRAPH_WINDOW};
use crate::tui::changes::{Changes, ChangesKey, compare};

/// The terminal's nearest colour to a paint; `None` leaves the default.
fn colour(p: Paint) -> Option<Color> {
    match p {
        Paint::New => Some(Color::Green),
        Paint::Vanished => Some(Color::DarkGray),
        Paint::Changed => Some(Color::Yellow),
        Paint::Flipped => Some(Color::Red),
        Paint::Plain => None,
    }
}

/// `new`, `vanished`, `changed`, `flipped`; nothing when unchanged.
fn word(p: Paint) -> &'static str {
    match p {
        Paint::New => "new",
        Paint::Vanished => "vanished",
        Paint::Changed => "changed",
        Paint::Flipped => "flipped",
        Paint::Plain => "",
    }
}

/// What changed, or the verdicts of an edge that is new, vanished or the same.
fn detail(e: &EdgeDiff) -> String {
    match e.change {
        Change::Changed => e.reasons_text(),
        _ => labels::verdicts(e.edge()),
    }
}

impl App {
    /// The changes of the flows on screen that pass the filter.
    fn changes(&self) -> Rc<Option<Changes>> {
        let shown = self.shown();
        let key = ChangesKey {
            next_seq: shown.next_seq(),
            matching: shown.matching().len(),
            paused: self.frozen.is_some(),
            filter: self.filter.applied.text.clone(),
        };
        self.changes_cache.get_or(key, || {
            compare(shown.iter_matching(), GRAPH_WINDOW, Threshold::DEFAULT)
        })
    }

    pub(super) fn render_changes(&self, frame: &mut Frame, area: Rect) {
        let changes = self.changes();
        let Some(c) = changes.as_ref() else {
            frame.render_widget(
                Paragraph::new("changes: not enough flows yet (they must cover some time)"),
                area,
            );
            return;
        };
        let [top, table] =
            Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
        frame.render_widget(Paragraph::new(fit(&c.describe(), area.width)), top);
        let names: Vec<String> = c
            .diff
            .edges
            .iter()
            .map(|e| format!("{} -> {}", e.source.id, e.target.id))
            .collect();
        let name_want = names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .max(21);
        // The fixed columns and four gaps; what changed gets at least 20
        // cells before the names give way, and every cut is marked.
        let room = usize::from(area.width).saturating_sub(8 + 6 + 9 + 4);
        let name_w = name_want.min(room.saturating_sub(20).max(21)).min(room);
        let [name_w, detail_w] =
            [name_w, room - name_w].map(|w| u16::try_from(w).unwrap_or(u16::MAX));
        let widths = [
            Constraint::Length(name_w),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(detail_w),
        ];
        let skip = self.list_window(names.len(), usize::from(table.height.saturating_sub(1)));
        let rows = c.diff.edges.iter().zip(names).skip(skip).map(|(e, name)| {
            let p = e.paint();
            let w = e.edge();
            let row = Row::new(vec![
                fit(&name, name_w),
                word(p).to_string(),
                fit(&w.flows.to_string(), 6),
                human_bytes(w.bytes),
                fit(&detail(e), detail_w),
            ]);
            match colour(p) {
                Some(col) => row.style(Style::new().fg(col)),
                None => row,
            }
        });
        let header = Row::new([
            "SOURCE -> DESTINATION",
            "CHANGE",
            "FLOWS",
            "BYTES",
            "WHAT CHANGED",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD));
        frame.render_widget(Table::new(rows, widths).header(header), table);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crossterm::event::KeyCode;
    use observer_proto::flow::Flow;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::style::Color;
    use test_support::graph_flows as fixtures;

    use crate::tui::app::{App, Tab};
    use crate::tui::tests::{H, W, app_with, draw, draw_sized, flow, key, row, type_text};

    /// The script without its drop and host probe at T0, then the script
    /// without its DNS exchange a second later: in the newer window the host
    /// probe is new, DNS vanished, frontend -> world drops (a flip).
    fn two_windows() -> Vec<Flow> {
        let mut flows: Vec<Flow> = fixtures::flows().into_iter().take(17).collect();
        flows.extend(
            fixtures::flows()
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !(11..=14).contains(i))
                .map(|(_, mut f)| {
                    f.time.as_mut().expect("scripted flows have a time").seconds += 1;
                    f
                }),
        );
        flows
    }

    fn line(name: &str, change: &str, flows: &str, bytes: &str, what: &str) -> String {
        format!("{name:<41} {change:<8} {flows:<6} {bytes:<9} {what}")
            .trim_end()
            .to_string()
    }

    const DESCRIBED: &str = "15:04:05.525-15:04:06.050 against 15:04:05.000-15:04:05.525 (525.0ms each: as far back as the flows go; flows, bytes beyond 50%)";

    #[test]
    fn c_shows_each_edge_coloured_by_its_change_and_back() {
        let mut app = app_with(&two_windows());
        app.handle_event(&key(KeyCode::Tab));
        app.handle_event(&key(KeyCode::Char('c')));
        assert!(app.show_changes);
        // Wide enough for the longest line of what changed.
        let b = draw_sized(&app, 170, H);
        assert_eq!(row(&b, 0), " Flows │ Service map: changes │ Top talkers");
        assert_eq!(row(&b, 2), DESCRIBED);
        assert_eq!(
            row(&b, 3),
            line(
                "SOURCE -> DESTINATION",
                "CHANGE",
                "FLOWS",
                "BYTES",
                "WHAT CHANGED"
            )
        );
        let expected = [
            (
                line(
                    "default/frontend -> default/api",
                    "",
                    "8",
                    "2.2 kB",
                    "forwarded 4",
                ),
                Color::Reset,
            ),
            (
                line(
                    "default/frontend -> kube-system/coredns-1",
                    "vanished",
                    "2",
                    "160 B",
                    "forwarded 1",
                ),
                Color::DarkGray,
            ),
            (
                line(
                    "default/frontend -> world",
                    "flipped",
                    "2",
                    "120 B",
                    "DROPPED appeared (1 flow); new drop reason POLICY_DENIED (1 flow); flows 1 -> 2 (+100%)",
                ),
                Color::Red,
            ),
            (
                line("host -> default/api", "new", "1", "60 B", "forwarded 1"),
                Color::Green,
            ),
        ];
        for (i, (text, colour)) in expected.iter().enumerate() {
            let y = 4 + i as u16;
            assert_eq!(&row(&b, y), text);
            // The whole row: name, change and what changed.
            for x in [0, 42, 68] {
                assert_eq!(b[(x, y)].fg, *colour, "row {y} column {x}");
            }
        }
        assert_eq!(row(&b, 8), "");
        assert_eq!(
            row(&b, H - 1),
            "filter: none  / filter  space pause  tab view  c changes  q quit  ? keys"
        );

        // At 80 columns the names give way until what changed has 20 cells;
        // every cut is marked.
        let b = draw_sized(&app, 80, H);
        assert_eq!(
            row(&b, 2),
            "15:04:05.525-15:04:06.050 against 15:04:05.000-15:04:05.525 (525.0ms each: as f…"
        );
        assert_eq!(
            row(&b, 6),
            "default/frontend -> world         flipped  2      120 B     DROPPED appeared (1…"
        );
        assert_eq!(
            row(&b, 5),
            "default/frontend -> kube-system/… vanished 2      160 B     forwarded 1"
        );

        // c again: the map.
        app.handle_event(&key(KeyCode::Char('c')));
        let b = draw(&app);
        assert_eq!(row(&b, 0), " Flows │ Service map │ Top talkers");
        assert!(
            row(&b, 2).starts_with("SOURCE -> DESTINATION"),
            "{}",
            row(&b, 2)
        );
        assert!(row(&b, 2).contains("CONNS"), "{}", row(&b, 2));
    }

    #[test]
    fn c_does_nothing_on_the_other_tabs() {
        let mut app = app_with(&two_windows());
        app.handle_event(&key(KeyCode::Char('c')));
        assert!(!app.show_changes);
        app.tab = Tab::TopTalkers;
        app.handle_event(&key(KeyCode::Char('c')));
        assert!(!app.show_changes);
    }

    #[test]
    fn the_view_follows_new_flows_and_the_filter() {
        let flows = two_windows();
        let mut app = app_with(&flows[..1]);
        app.tab = Tab::ServiceMap;
        app.show_changes = true;
        assert_eq!(
            row(&draw(&app), 2),
            "changes: not enough flows yet (they must cover some time)"
        );
        for f in &flows[1..] {
            app.on_response(flow(f.clone()));
        }
        let b = draw(&app);
        assert_eq!(row(&b, 2), DESCRIBED);
        assert!(
            row(&b, 7).starts_with("host -> default/api"),
            "{}",
            row(&b, 7)
        );
        // Without the host's flows the newer window has no host edge.
        app.handle_event(&key(KeyCode::Char('/')));
        type_text(&mut app, "--from-pod default/");
        app.handle_event(&key(KeyCode::Enter));
        let b = draw(&app);
        assert!(
            row(&b, 6).starts_with("default/frontend -> world"),
            "{}",
            row(&b, 6)
        );
        assert_eq!(row(&b, 7), "");
    }

    // Paused time: every flow is in before the first key, ticks come between keys.
    #[tokio::test(start_paused = true)]
    async fn c_in_the_run_loop_draws_the_changes() {
        let mut app = App::new("").unwrap();
        app.tab = Tab::ServiceMap;
        let mut terminal = Terminal::new(TestBackend::new(W, H)).unwrap();
        let flows = tokio_stream::iter(two_windows().into_iter().map(|f| Ok(flow(f))));
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            tx.send(Ok(key(KeyCode::Char('c')))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
            tx.send(Ok(key(KeyCode::Char('q')))).await.unwrap();
        });
        let keys = tokio_stream::wrappers::ReceiverStream::new(rx);
        app.run(
            &mut terminal,
            flows,
            crate::tui::reconnect::NoReconnect,
            keys,
            std::future::pending(),
        )
        .await
        .unwrap();
        let b = terminal.backend().buffer().clone();
        assert_eq!(row(&b, 0), " Flows │ Service map: changes │ Top talkers");
        // The stream's end is in the banner; the view starts below it.
        assert_eq!(row(&b, 2), "stream ended");
        assert_eq!(row(&b, 3), DESCRIBED);
        let (x, y) = (0, 8);
        assert!(
            row(&b, y).starts_with("host -> default/api"),
            "{}",
            row(&b, y)
        );
        assert_eq!(b[(x, y)].fg, Color::Green);
    }
}
