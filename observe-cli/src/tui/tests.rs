//! The TUI rendered into ratatui's `TestBackend` from the scripted flows of
//! `test_support::graph_flows`: exact rows and colours of the table, the filter
//! bar, the detail pane, the lost-events banner and the graph tabs, and what
//! the keys do. The helpers serve the views' own tests too.

use std::time::Duration;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use observer_proto::flow::{Flow, LostEvent, LostEventSource};
use observer_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use observer_proto::relay::{NodeState, NodeStatusEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

use super::app::{App, Control, Mode, Tab};
use super::reconnect::NoReconnect;
use super::signals::{Signal, Stopped};
use test_support::graph_flows as fixtures;

pub(super) const W: u16 = 140;
pub(super) const H: u16 = 30;

pub(super) fn flow(f: Flow) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: f.node_name.clone(),
        response_types: Some(ResponseTypes::Flow(f)),
        ..Default::default()
    }
}

/// A node-status event: `node` changed to `state`, for `message`.
fn node_status(state: NodeState, node: &str, message: &str) -> GetFlowsResponse {
    GetFlowsResponse {
        response_types: Some(ResponseTypes::NodeStatus(NodeStatusEvent {
            state_change: state as i32,
            node_names: vec![node.into()],
            message: message.into(),
        })),
        ..Default::default()
    }
}

pub(super) fn app_with(flows: &[Flow]) -> App {
    let mut app = App::new("").unwrap();
    for f in flows {
        app.on_response(flow(f.clone()));
    }
    app
}

pub(super) fn draw(app: &App) -> Buffer {
    draw_sized(app, W, H)
}

pub(super) fn draw_sized(app: &App, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    t.backend().buffer().clone()
}

/// Row `y` as text, trailing spaces trimmed.
pub(super) fn row(b: &Buffer, y: u16) -> String {
    let s: String = (0..b.area.width)
        .map(|x| b[(x, y)].symbol().to_string())
        .collect();
    s.trim_end().to_string()
}

pub(super) fn rows(b: &Buffer) -> Vec<String> {
    (0..b.area.height).map(|y| row(b, y)).collect()
}

/// The first row containing `needle`.
pub(super) fn find(b: &Buffer, needle: &str) -> Option<(u16, u16)> {
    (0..b.area.height).find_map(|y| {
        let r = row(b, y);
        r.find(needle).map(|i| (r[..i].chars().count() as u16, y))
    })
}

pub(super) fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub(super) fn type_text(app: &mut App, s: &str) {
    for c in s.chars() {
        assert_eq!(app.handle_event(&key(KeyCode::Char(c))), Control::Continue);
    }
}

#[test]
fn table_rows_and_verdict_colours() {
    let app = app_with(&fixtures::flows());
    let b = draw(&app);
    let r = rows(&b);
    assert_eq!(r[0], " Flows │ Service map │ Top talkers");
    assert_eq!(
        r[1],
        "0.0 flows/s  19 seen  19 buffered  19 shown  nodes: node1, node2"
    );
    // Node, type and verdict as wide as their longest names; source,
    // destination and summary as wide as what they show, the summary taking
    // the rest.
    assert_eq!(
        r[2],
        "TIME         NODE  SOURCE                     DESTINATION                TYPE          VERDICT         SUMMARY"
    );
    // 19 flows fit; the newest is at the bottom, right above the filter bar.
    assert_eq!(
        r[3],
        "15:04:05.000 node1 default/frontend-7d9:40000 default/api-0:8080         from-endpoint FORWARDED       TCP Flags: SYN"
    );
    assert_eq!(
        r[20],
        "15:04:05.040 node1 default/frontend-7d9:41001 203.0.113.7:25 (world)     Policy denied DROPPED         TCP Flags: SYN"
    );
    assert_eq!(
        r[21],
        "15:04:05.050 node2 198.18.0.1:45000 (host)    default/api-0:8080         to-endpoint   FORWARDED       TCP Flags: SYN"
    );
    assert_eq!(
        r[29],
        "filter: none  / filter  space pause  enter detail  tab view  q quit  ? keys"
    );
    let verdict_x = r[2].find("VERDICT").unwrap() as u16;
    assert_eq!(b[(verdict_x, 3)].fg, Color::Green);
    assert_eq!(b[(verdict_x, 20)].fg, Color::Red);
    assert_eq!(b[(verdict_x, 21)].fg, Color::Green);
}

#[test]
fn audit_is_yellow_and_others_default() {
    let mut flows = fixtures::flows();
    flows.truncate(2);
    flows[0].verdict = observer_proto::flow::Verdict::Audit as i32;
    flows[1].verdict = observer_proto::flow::Verdict::Traced as i32;
    let b = draw(&app_with(&flows));
    let (x, y) = find(&b, "AUDIT").unwrap();
    assert_eq!((y, b[(x, y)].fg), (3, Color::Yellow));
    let (x, y) = find(&b, "TRACED").unwrap();
    assert_eq!((y, b[(x, y)].fg), (4, Color::Reset));
}

/// A long type widens its column from when it is first on screen, and the
/// column keeps that width once it has scrolled away: the table does not
/// jump as such rows come and go.
#[test]
fn the_type_column_keeps_the_width_a_long_type_gave_it() {
    let mut app = app_with(&long_value_flows());
    // The TYPE column's width: from its title to the next one.
    let header = |b: &Buffer| {
        let r = row(b, 2);
        r.find("VERDICT").unwrap() - r.find("TYPE").unwrap()
    };
    let b = draw(&app);
    assert!(find(&b, "policy-verdict:L3-L4 INGRESS").is_some());
    let with_long = header(&b);
    let plain = fixtures::flows();
    for i in 0..40 {
        let mut f = plain[i % plain.len()].clone();
        f.uuid = format!("more-{i}");
        app.on_response(flow(f));
    }
    let b = draw(&app);
    assert!(find(&b, "policy-verdict").is_none(), "scrolled away");
    assert_eq!(header(&b), with_long);
}

/// Two flows with the longest values the exploratory test saw cut: a
/// `TRANSLATED` and a `VERDICT_UNKNOWN` verdict, a policy verdict (named by
/// its match and direction), and a connection-close summary.
fn long_value_flows() -> Vec<Flow> {
    let mut flows = fixtures::flows();
    flows.truncate(2);
    flows[0].verdict = observer_proto::flow::Verdict::Translated as i32;
    flows[0].summary = "TCP closed after 2.775 ms, 0 retransmits".into();
    flows[1].verdict = 0;
    flows[1].event_type = Some(observer_proto::flow::CiliumEventType {
        r#type: 5,
        sub_type: 2,
    });
    flows[1].policy_match_type = 2;
    flows
}

#[test]
fn wide_table_cuts_no_type_verdict_or_summary() {
    let r = rows(&draw_sized(&app_with(&long_value_flows()), 160, 6));
    assert_eq!(
        r[2..5],
        [
            "TIME         NODE  SOURCE                     DESTINATION          TYPE                         VERDICT         SUMMARY",
            "15:04:05.000 node1 default/frontend-7d9:40000 default/api-0:8080   from-endpoint                TRANSLATED      TCP closed after 2.775 ms, 0 retransmits",
            "15:04:05.000 node2 default/frontend-7d9:40000 default/api-0:8080   policy-verdict:L3-L4 INGRESS VERDICT_UNKNOWN TCP Flags: SYN",
        ]
    );
}

#[test]
fn narrow_table_drops_node_type_summary_time_then_verdict() {
    let r = rows(&draw_sized(&app_with(&long_value_flows()), 60, 6));
    assert_eq!(
        r[2..5],
        [
            "SOURCE                  DESTINATION          VERDICT",
            "default/frontend-7d9:4… default/api-0:8080   TRANSLATED",
            "default/frontend-7d9:4… default/api-0:8080   VERDICT_UNKNOWN",
        ]
    );
    let r = rows(&draw_sized(&app_with(&long_value_flows()), 40, 6));
    assert_eq!(
        r[2..5],
        [
            "SOURCE               DESTINATION",
            "default/frontend-7d… default/api-0:8080",
            "default/frontend-7d… default/api-0:8080",
        ]
    );
}

#[test]
fn filter_bar_applies_live_and_keeps_the_old_filter_on_error() {
    let mut app = app_with(&fixtures::flows());
    app.handle_event(&key(KeyCode::Char('/')));
    assert_eq!(app.mode, Mode::Filter);
    type_text(&mut app, "--verdict dropped");
    let b = draw(&app);
    assert_eq!(row(&b, 29), "/ --verdict dropped");
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Normal);
    let b = draw(&app);
    assert_eq!(
        row(&b, 1),
        "0.0 flows/s  19 seen  19 buffered  1 shown  nodes: node1, node2"
    );
    assert!(row(&b, 3).starts_with("15:04:05.040 node1 default/frontend-7d9:41001"));
    assert_eq!(row(&b, 4), "");
    assert!(row(&b, 29).starts_with("filter: --verdict dropped  / filter"));
    // New flows go through the same filter.
    app.on_response(flow(fixtures::host_probe()));
    assert_eq!(app.buffer.matching().len(), 1);

    // A bad filter: the error in red, the old filter still applied. The
    // bar opens with the applied filter and a space, ready for more.
    app.handle_event(&key(KeyCode::Char('/')));
    assert_eq!(app.filter.input, "--verdict dropped ");
    for _ in 0.."dropped ".len() {
        app.handle_event(&key(KeyCode::Backspace));
    }
    type_text(&mut app, "maybe");
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Filter);
    let b = draw(&app);
    let bar = row(&b, 29);
    assert_eq!(
        bar,
        "/ --verdict maybe  error: --verdict \"maybe\": unknown verdict (FORWARDED, DROPPED, AUDIT, ERROR, ...)"
    );
    let (x, _) = find(&b, "error:").unwrap();
    assert_eq!(b[(x, 29)].fg, Color::Red);
    assert_eq!(app.filter.applied.text, "--verdict dropped");
    assert_eq!(app.buffer.matching().len(), 1);
    // An edit clears the error until the next Enter.
    app.handle_event(&key(KeyCode::Backspace));
    assert_eq!(row(&draw(&app), 29), "/ --verdict mayb");
    // Esc gives up the edit.
    app.handle_event(&key(KeyCode::Esc));
    assert_eq!(
        (app.mode, app.filter.input.as_str()),
        (Mode::Normal, "--verdict dropped")
    );
}

#[test]
fn cursor_sits_after_the_typed_text() {
    let mut app = app_with(&[]);
    app.handle_event(&key(KeyCode::Char('/')));
    type_text(&mut app, "-4");
    let mut t = Terminal::new(TestBackend::new(W, H)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    t.backend_mut().assert_cursor_position((4, 29));
}

#[test]
fn the_detail_pane_scrolls_no_further_than_its_last_line() {
    let mut app = app_with(&fixtures::flows());
    app.handle_event(&key(KeyCode::Up));
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Detail);
    draw_sized(&app, 60, 15);
    let max = app.detail_max_scroll.get();
    assert!(max > 0 && max < 100, "{max}");
    for _ in 0..100 {
        app.handle_event(&key(KeyCode::Down));
    }
    assert_eq!(app.detail_scroll, max);
    // One Up scrolls back at once.
    app.handle_event(&key(KeyCode::Up));
    assert_eq!(app.detail_scroll, max - 1);
}

#[test]
fn detail_pane_shows_every_field_and_the_hops() {
    let mut app = app_with(&fixtures::flows());
    // Select the ACK,PSH request seen leaving frontend (the 5th flow): up from
    // the newest 14 times.
    for _ in 0..14 {
        app.handle_event(&key(KeyCode::Up));
    }
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Detail);
    let b = draw_sized(&app, 100, 50);
    let r = rows(&b);
    let expected = [
        &format!(
            " flow detail (esc: back, up/down: scroll) {}",
            "─".repeat(58)
        ),
        "  time          Nov 26 15:04:05.002",
        "  uuid          uuid-2000",
        "  node          node1",
        "  verdict       FORWARDED",
        "  type          L3_L4",
        "  event         from-endpoint (4/5)",
        "  observed at   from-endpoint",
        "  direction     EGRESS",
        "  is_reply      false",
        "  interface     lxc1 (index 7)",
        "  ip            198.18.1.10 -> 198.18.1.20 (IPv4)",
        "  l4            TCP 40000 -> 8080 [ACK, PSH]",
        "  summary       TCP Flags: ACK, PSH",
        "  volume        fwd 460 B / 4 pkts, rev 1.5 kB / 2 pkts",
        "Datapath hops (this connection, both ways, in time order)",
        "    15:04:05.000000 node1    from-endpoint  request  FORWARDED  SYN",
        "    15:04:05.000100 node2    to-endpoint    request  FORWARDED  SYN",
        "    15:04:05.001000 node2    from-endpoint  reply    FORWARDED  SYN, ACK",
        "    15:04:05.001100 node1    to-endpoint    reply    FORWARDED  SYN, ACK",
        "  > 15:04:05.002000 node1    from-endpoint  request  FORWARDED  ACK, PSH",
        "    15:04:05.002100 node2    to-endpoint    request  FORWARDED  ACK, PSH",
        "    15:04:05.003000 node1    from-endpoint  request  FORWARDED  ACK, FIN",
        "    15:04:05.003100 node2    to-endpoint    request  FORWARDED  ACK, FIN",
        "Source",
        "  pod           default/frontend-7d9",
        "  ip            198.18.1.10",
        "  port          40000",
        "  identity      12001",
        "  endpoint id   11",
        "  labels        k8s:app=frontend",
        "  workload      frontend (Deployment)",
        "Destination",
        "  pod           default/api-0",
        "  ip            198.18.1.20",
        "  port          8080",
        "  identity      12002",
        "  endpoint id   12",
        "  labels        k8s:app=api",
    ];
    assert_eq!(r[2..2 + expected.len()], expected);
    // Esc goes back to the table, q would quit.
    app.handle_event(&key(KeyCode::Esc));
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn detail_of_a_drop_names_the_reason() {
    let mut app = app_with(&fixtures::flows());
    app.handle_event(&key(KeyCode::Up));
    app.handle_event(&key(KeyCode::Enter));
    let b = draw_sized(&app, 100, 50);
    let r = rows(&b);
    assert_eq!(r[6], "  verdict       DROPPED");
    assert_eq!(r[7], "  drop reason   POLICY_DENIED");
    assert_eq!(r[9], "  event         Policy denied (1/133)");
    assert!(r.contains(
        &"  > 15:04:05.040000 node1    drop                    DROPPED    SYN".to_string()
    ));
}

#[test]
fn lost_events_banner_and_node_status() {
    let mut app = app_with(&fixtures::flows()[..2]);
    app.on_response(GetFlowsResponse {
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: LostEventSource::PerfEventRingBuffer as i32,
            num_events_lost: 40,
            ..Default::default()
        })),
        ..Default::default()
    });
    app.on_response(GetFlowsResponse {
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: LostEventSource::HubbleRingBuffer as i32,
            num_events_lost: 2,
            ..Default::default()
        })),
        ..Default::default()
    });
    app.on_response(node_status(
        NodeState::NodeUnavailable,
        "node3",
        "connection refused",
    ));
    let b = draw(&app);
    assert_eq!(
        row(&b, 1),
        "0.0 flows/s  2 seen  2 buffered  2 shown  nodes: node1, node2  unavailable: node3"
    );
    let (x, _) = find(&b, "unavailable").unwrap();
    assert_eq!(b[(x, 1)].fg, Color::Red);
    assert_eq!(
        row(&b, 2),
        "42 events lost (HUBBLE_RING_BUFFER 2, PERF_EVENT_RING_BUFFER 40)"
    );
    assert_eq!(b[(0, 2)].fg, Color::Red);
    // The table moves down a row to make room.
    assert!(row(&b, 3).starts_with("TIME"));
    // A relay's peer known by its address until named: gone, not unavailable.
    app.on_response(node_status(NodeState::NodeGone, "node3", "named node4"));
    assert_eq!(
        row(&draw(&app), 1),
        "0.0 flows/s  2 seen  2 buffered  2 shown  nodes: node1, node2"
    );
}

/// At 60 columns the node list becomes a count and the buffered count
/// goes, so an unavailable node and the pause stay on screen.
#[test]
fn a_narrow_header_keeps_its_warnings() {
    let flows = fixtures::flows();
    let mut app = app_with(&flows[..10]);
    app.on_response(node_status(
        NodeState::NodeUnavailable,
        "node3",
        "connection refused",
    ));
    app.handle_event(&key(KeyCode::Char(' ')));
    for f in &flows[10..] {
        app.on_response(flow(f.clone()));
    }
    assert_eq!(
        row(&draw_sized(&app, 100, H), 1),
        "0.0 flows/s  19 seen  10 buffered  10 shown  nodes: 2 up  unavailable: node3  PAUSED (+9 new)"
    );
    let b = draw_sized(&app, 80, H);
    assert_eq!(
        row(&b, 1),
        "0.0 flows/s  19 seen  10 shown  nodes: 2 up  unavailable: node3  PAUSED (+9 new)"
    );
    let (x, _) = find(&b, "PAUSED").unwrap();
    assert_eq!(b[(x, 1)].fg, Color::Yellow);
    // Narrower: the counts go, then the node count, then the warnings say less.
    let at = |app: &App, w: u16| row(&draw_sized(app, w, H), 1);
    assert_eq!(
        at(&app, 60),
        "10 shown  nodes: 2 up  unavailable: node3  PAUSED (+9 new)"
    );
    assert_eq!(
        at(&app, 48),
        "10 shown  unavailable: node3  PAUSED (+9 new)"
    );
    assert_eq!(at(&app, 40), "10 shown  1 unavailable  PAUSED +9");
    // Narrower still: cut, with a mark.
    assert_eq!(at(&app, 30), "10 shown  1 unavailable  PAUS…");
    // The count is of the flows a resume shows: those the filter passes.
    app.handle_event(&key(KeyCode::Char('/')));
    type_text(&mut app, "--verdict dropped");
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!(
        at(&app, 100),
        "0.0 flows/s  19 seen  10 buffered  0 shown  nodes: node1, node2  unavailable: node3  PAUSED (+1 new)"
    );
}

/// A selection holds the table still; the header counts the flows that
/// arrive below it until End follows again.
#[test]
fn flows_below_a_held_selection_are_counted() {
    let flows = fixtures::flows();
    let mut app = app_with(&flows[..10]);
    draw(&app);
    app.handle_event(&key(KeyCode::Up));
    assert_eq!(app.selected_pos(), Some(8));
    for f in &flows[10..13] {
        app.on_response(flow(f.clone()));
    }
    // 25 rows fit: the 10 old flows and the 3 new are all on screen.
    assert_eq!(
        row(&draw(&app), 1),
        "0.0 flows/s  13 seen  13 buffered  13 shown  nodes: node1, node2"
    );
    let b = draw_sized(&app, W, 10);
    assert_eq!(
        row(&b, 1),
        "0.0 flows/s  13 seen  13 buffered  13 shown  nodes: node1, node2  +4 below (End: follow)"
    );
    // Not where End does nothing: the other tabs, the detail pane.
    app.handle_event(&key(KeyCode::Tab));
    assert!(!row(&draw_sized(&app, W, 10), 1).contains("below"));
    app.handle_event(&key(KeyCode::BackTab));
    app.handle_event(&key(KeyCode::Enter));
    assert!(!row(&draw_sized(&app, W, 10), 1).contains("below"));
    app.handle_event(&key(KeyCode::Esc));
    app.handle_event(&key(KeyCode::End));
    assert_eq!(
        row(&draw_sized(&app, W, 10), 1),
        "0.0 flows/s  13 seen  13 buffered  13 shown  nodes: node1, node2"
    );
}

/// At 80 columns a long filter shows its end, where the cursor is, and
/// leaves the rest of the bar to its error.
#[test]
fn a_long_filter_scrolls_in_a_narrow_bar() {
    let mut app = app_with(&[]);
    app.handle_event(&key(KeyCode::Char('/')));
    let long = "--from-namespace default --to-namespace kube-system --from-label app=frontend --verdict maybe";
    assert_eq!(long.len(), 93);
    type_text(&mut app, long);
    let mut t = Terminal::new(TestBackend::new(80, H)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    // 77 cells after "/ ": "…" and the last 76 characters, then the cursor.
    assert_eq!(
        row(t.backend().buffer(), H - 1),
        format!("/ …{}", &long[93 - 76..])
    );
    t.backend_mut().assert_cursor_position((79, H - 1));
    app.handle_event(&key(KeyCode::Enter));
    t.draw(|f| app.render(f)).unwrap();
    // The error needs more than the bar: the input keeps 20 cells.
    assert_eq!(
        row(t.backend().buffer(), H - 1),
        format!(
            "/ …{}  error: --verdict \"maybe\": unknown verdict (FORWARDED, D…",
            &long[93 - 19..]
        )
    );
    t.backend_mut().assert_cursor_position((22, H - 1));
}

#[test]
fn flow_rate_in_the_header() {
    let mut app = app_with(&[]);
    // The script's flows all fall within 0.5 s of T0.
    let t0 = std::time::UNIX_EPOCH + Duration::from_secs(fixtures::T0 as u64);
    app.on_tick(t0);
    for f in fixtures::flows() {
        app.on_response(flow(f));
    }
    app.on_tick(t0 + Duration::from_millis(500));
    let b = draw(&app);
    assert!(
        row(&b, 1).starts_with("38.0 flows/s  19 seen"),
        "{}",
        row(&b, 1)
    );
}

/// `--since 2h --follow`: two hours of history arrive within the first
/// tick; the header's rate counts them by their times, not as a burst.
#[test]
fn history_replayed_at_start_is_not_counted_as_a_burst() {
    let mut app = app_with(&[]);
    let t0 = std::time::UNIX_EPOCH + Duration::from_secs(fixtures::T0 as u64 + 7200);
    app.on_tick(t0);
    for f in fixtures::flows() {
        app.on_response(flow(f)); // two hours before t0
    }
    app.on_tick(t0 + Duration::from_millis(100));
    assert!(
        row(&draw(&app), 1).starts_with("0.0 flows/s  19 seen"),
        "{}",
        row(&draw(&app), 1)
    );
}

#[test]
fn pause_freezes_the_view() {
    let flows = fixtures::flows();
    let mut app = app_with(&flows[..10]);
    let before = rows(&draw(&app));
    app.handle_event(&key(KeyCode::Char(' ')));
    for f in &flows[10..] {
        app.on_response(flow(f.clone()));
    }
    let after = rows(&draw(&app));
    assert_eq!(
        after[1],
        "0.0 flows/s  19 seen  10 buffered  10 shown  nodes: node1, node2  PAUSED (+9 new)"
    );
    assert_eq!(before[2..29], after[2..29]);
    // The filter applies to the frozen flows too.
    app.handle_event(&key(KeyCode::Char('/')));
    type_text(&mut app, "--to-port 9999");
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!(app.visible_len(), 2);
    app.handle_event(&key(KeyCode::Char('/')));
    // Ctrl-U clears the line; an empty filter shows everything.
    let ctrl_u = Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    app.handle_event(&ctrl_u);
    assert_eq!(app.filter.input, "");
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!(app.visible_len(), 10);
    // Resuming shows the new flows, newest at the bottom.
    app.handle_event(&key(KeyCode::Char(' ')));
    let resumed = rows(&draw(&app));
    assert!(resumed[21].starts_with("15:04:05.050 node2 198.18.0.1:45000 (host)"));
}

// The reported bug: the map kept counting while the header said PAUSED.
#[test]
fn pause_freezes_the_service_map_and_top_talkers() {
    let flows = fixtures::flows();
    let mut app = app_with(&flows[..10]);
    app.handle_event(&key(KeyCode::Tab));
    let map = rows(&draw(&app));
    app.handle_event(&key(KeyCode::Tab));
    let talkers = rows(&draw(&app));
    app.handle_event(&key(KeyCode::Char(' ')));
    for f in &flows[10..] {
        app.on_response(flow(f.clone()));
    }
    // Top talkers and the map, while paused: as at the pause.
    assert_eq!(rows(&draw(&app))[2..], talkers[2..]);
    app.handle_event(&key(KeyCode::BackTab));
    let paused = rows(&draw(&app));
    assert!(paused[1].ends_with("PAUSED (+9 new)"), "{}", paused[1]);
    assert_eq!(paused[2..], map[2..]);
    assert_eq!(
        paused[3],
        "default/frontend -> default/api        8      2      2.1 kB    forwarded 4 TCP/8080, TCP/9999"
    );
    // A filter applied while paused applies to the frozen flows only: no
    // world edge yet, though a later flow to port 25 has one.
    app.handle_event(&key(KeyCode::Char('/')));
    type_text(&mut app, "--to-port 9999 --to-port 25");
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!(
        rows(&draw(&app))[2..6],
        [
            "SOURCE -> DESTINATION                  FLOWS  CONNS  BYTES     VERDICTS    PORTS",
            "default/frontend -> default/api        2      1      60 B      forwarded 1 TCP/9999",
            "  from-endpoint (1) -> to-endpoint (1)",
            "",
        ]
    );
    // Resuming shows the flows that came meanwhile, under that filter.
    app.handle_event(&key(KeyCode::Char(' ')));
    assert_eq!(
        rows(&draw(&app))[2..8],
        [
            "SOURCE -> DESTINATION                  FLOWS  CONNS  BYTES     VERDICTS        PORTS",
            "default/frontend -> default/api        2      1      60 B      forwarded 1     TCP/9999",
            "  from-endpoint (1) -> to-endpoint (1)",
            "default/frontend -> world              1      1      0 B       dropped 1       TCP/25",
            "  drop (1)                                                     POLICY_DENIED 1",
            "",
        ]
    );
}

// The reported bug: the selection was looked up among the flows that came
// after the pause, so every key landed on the oldest frozen flow.
#[test]
fn keys_move_over_the_frozen_flows_while_paused() {
    let flows = fixtures::flows();
    let mut app = app_with(&flows[..10]);
    draw(&app);
    app.handle_event(&key(KeyCode::Char(' ')));
    for f in &flows[10..] {
        app.on_response(flow(f.clone()));
    }
    let reversed = |b: &Buffer, y: u16| {
        b[(0, y)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
    };
    // Frozen rows 3..=12 hold flows 0..=9; Up selects the second newest.
    app.handle_event(&key(KeyCode::Up));
    assert_eq!(app.current_seq(), Some(8));
    let b = draw(&app);
    assert!(reversed(&b, 11) && !reversed(&b, 3));
    app.handle_event(&key(KeyCode::Up));
    assert_eq!(app.current_seq(), Some(7));
    app.handle_event(&key(KeyCode::Down));
    app.handle_event(&key(KeyCode::Down));
    // The newest frozen flow, still selected: paused, nothing to follow.
    assert_eq!((app.selected, app.current_seq()), (Some(9), Some(9)));
    app.handle_event(&key(KeyCode::Down));
    assert_eq!(app.current_seq(), Some(9));
    app.handle_event(&key(KeyCode::Home));
    assert_eq!(app.current_seq(), Some(0));
    app.handle_event(&key(KeyCode::Down));
    assert_eq!(app.current_seq(), Some(1));
    let b = draw(&app);
    assert!(reversed(&b, 4) && !reversed(&b, 3) && !reversed(&b, 12));
    app.handle_event(&key(KeyCode::PageDown));
    assert_eq!(app.current_seq(), Some(9));
    app.handle_event(&key(KeyCode::PageUp));
    assert_eq!(app.current_seq(), Some(0));
    // Enter opens the selected flow, not the oldest.
    app.handle_event(&key(KeyCode::Down));
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!((app.mode, app.detail), (Mode::Detail, Some(1)));
    let r = rows(&draw_sized(&app, 100, 50));
    // (The oldest, flow 0, was seen on node1.)
    assert_eq!(
        r[3..6],
        [
            "  time          Nov 26 15:04:05.000",
            "  uuid          uuid-100",
            "  node          node2"
        ]
    );
}

#[test]
fn scrolling_keeps_the_selection_still_while_flows_arrive() {
    let flows = fixtures::flows();
    let mut app = app_with(&flows[..10]);
    draw(&app);
    app.handle_event(&key(KeyCode::Up));
    let b = draw(&app);
    // The second newest (row 11) is selected, reversed.
    assert_eq!(app.current_seq(), Some(8));
    assert!(
        b[(0, 11)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
    );
    let before = rows(&b);
    for f in &flows[10..] {
        app.on_response(flow(f.clone()));
    }
    let after = rows(&draw(&app));
    assert_eq!(before[3..13], after[3..13]);
    assert_eq!(app.current_seq(), Some(8));
    // End (or G) follows the newest again.
    app.handle_event(&key(KeyCode::End));
    assert_eq!(app.current_seq(), Some(18));
    app.handle_event(&key(KeyCode::PageUp));
    app.handle_event(&key(KeyCode::Char('G')));
    assert_eq!((app.selected, app.current_seq()), (None, Some(18)));
}

#[test]
fn page_keys_move_by_a_screen() {
    let mut app = app_with(&fixtures::flows());
    draw_sized(&app, W, 10);
    // 10 rows: tabs, header, table header, 6 flow rows, bar.
    assert_eq!(app.table_rows.get(), 6);
    app.handle_event(&key(KeyCode::PageUp));
    assert_eq!(app.current_seq(), Some(13));
    let b = draw_sized(&app, W, 10);
    assert!(
        row(&b, 3).starts_with("15:04:05.021 node2"),
        "{}",
        row(&b, 3)
    );
    app.handle_event(&key(KeyCode::PageDown));
    assert_eq!(app.selected, None);
}

#[test]
fn an_audited_edge_is_yellow_and_says_what_would_be_denied() {
    let mut app = app_with(&fixtures::flows_with_an_audited_probe());
    app.handle_event(&key(KeyCode::Tab));
    let b = draw(&app);
    let r = rows(&b);
    let at = r
        .iter()
        .position(|l| l.starts_with("host -> default/api"))
        .expect("the probe's edge");
    assert!(r[at].contains("audit 1"), "{}", r[at]);
    assert!(
        r[at + 1].contains("1 audit (would be denied)"),
        "{}",
        r[at + 1]
    );
    let verdict_x = r[2].find("VERDICTS").unwrap() as u16;
    assert_eq!(b[(verdict_x, at as u16)].fg, Color::Yellow);
}

#[test]
fn tab_switches_views_and_graph_tabs_render() {
    let mut app = app_with(&fixtures::flows());
    app.handle_event(&key(KeyCode::Tab));
    assert_eq!(app.tab, Tab::ServiceMap);
    let b = draw(&app);
    let r = rows(&b);
    assert_eq!(
        r[2..11],
        [
            "SOURCE -> DESTINATION                     FLOWS  CONNS  BYTES     VERDICTS               PORTS",
            "default/frontend -> default/api           8      2      2.2 kB    forwarded 4            TCP/8080, TCP/9999",
            "  from-endpoint (4) -> to-endpoint (4)",
            "default/frontend -> kube-system/coredns-1 2      1      160 B     forwarded 1            UDP/53",
            "  from-endpoint (1) -> to-endpoint (1)",
            "default/frontend -> world                 2      2      120 B     forwarded 1, dropped 1 TCP/25, TCP/443",
            "  from-endpoint (1) -> drop (1)                                   POLICY_DENIED 1",
            "host -> default/api                       1      1      60 B      forwarded 1            TCP/8080",
            "  to-endpoint (1)",
        ]
    );
    let verdict_x = r[2].find("VERDICTS").unwrap() as u16;
    assert_eq!(b[(verdict_x, 3)].fg, Color::Green);
    assert_eq!(b[(verdict_x, 7)].fg, Color::Red);
    assert_eq!(b[(verdict_x, 8)].fg, Color::Red);

    app.handle_event(&key(KeyCode::Tab));
    assert_eq!(app.tab, Tab::TopTalkers);
    let r = rows(&draw(&app));
    let pad = |s: &str, bytes: &str, flows: &str| format!("{s:<124}{bytes:<10}{flows}");
    assert_eq!(r[2], format!(" by bytes {}", "─".repeat(130)));
    assert_eq!(r[3], pad("#   SOURCE -> DESTINATION", "BYTES", "FLOWS"));
    assert_eq!(
        r[4],
        pad("1   default/frontend -> default/api", "2.2 kB", "8")
    );
    assert_eq!(
        r[5],
        pad(
            "2   default/frontend -> kube-system/coredns-1",
            "160 B",
            "2"
        )
    );
    assert_eq!(r[6], pad("3   default/frontend -> world", "120 B", "2"));
    assert_eq!(r[7], pad("4   host -> default/api", "60 B", "1"));
    assert_eq!(r[16], format!(" by flows {}", "─".repeat(130)));
    assert_eq!(
        r[18],
        pad("1   default/frontend -> default/api", "2.2 kB", "8")
    );
    app.handle_event(&key(KeyCode::Tab));
    assert_eq!(app.tab, Tab::Flows);
    app.handle_event(&key(KeyCode::BackTab));
    assert_eq!(app.tab, Tab::TopTalkers);
}

#[test]
fn the_command_lines_filters_show_as_the_servers() {
    use crate::flows::request::QueryArgs;
    let query = QueryArgs::try_parse_words([
        "--verdict",
        "DROPPED",
        "--not",
        "--protocol",
        "udp",
        "--allowlist",
        r#"{"source_pod":["other/"]}"#,
    ])
    .unwrap();
    let text = super::filter::describe_query(&query);
    assert_eq!(
        text,
        r#"--verdict DROPPED --not (--protocol udp) --allowlist {"source_pod":["other/"]}"#
    );
    // Clearing the bar cannot widen what the server sends: the footer says
    // so, the key hints shrinking to make room.
    let mut app = app_with(&fixtures::flows());
    app.server_filter = text.clone();
    let b = draw(&app);
    assert_eq!(
        row(&b, 29),
        format!("filter: none  [server: {text}]  ? keys")
    );
    // Narrower: the server's filter is cut with a mark.
    let b = draw_sized(&app, 60, H);
    assert_eq!(
        row(&b, 29),
        "filter: none  [server: --verdict DROPPED --not (--p…  ? keys"
    );
    // Both too long: each gets half; a shorter one leaves its rest to the
    // other, no cell blank.
    app.server_filter = "--verdict DROPPED".into();
    app.handle_event(&key(KeyCode::Char('/')));
    type_text(
        &mut app,
        "--from-namespace default --to-namespace kube-system",
    );
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!(
        row(&draw_sized(&app, 60, H), 29),
        "filter: --from-namespace…  [server: --verdict DROPP…  ? keys"
    );
    assert_eq!(
        row(&draw_sized(&app, 70, H), 29),
        "filter: --from-namespace default…  [server: --verdict DROPPED]  ? keys"
    );
}

#[test]
fn esc_leaves_the_maps_changes_before_it_quits() {
    let mut app = app_with(&[]);
    while app.tab != Tab::ServiceMap {
        app.handle_event(&key(KeyCode::Tab));
    }
    app.handle_event(&key(KeyCode::Char('c')));
    assert!(app.show_changes);
    assert_eq!(app.handle_event(&key(KeyCode::Esc)), Control::Continue);
    assert!(!app.show_changes);
    assert_eq!(app.handle_event(&key(KeyCode::Esc)), Control::Quit);
}

#[test]
fn quit_keys() {
    let mut app = app_with(&[]);
    assert_eq!(app.handle_event(&key(KeyCode::Char('q'))), Control::Quit);
    assert_eq!(app.handle_event(&key(KeyCode::Esc)), Control::Quit);
    let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    // Typing in the bar: q is text, Ctrl-C still quits.
    app.handle_event(&key(KeyCode::Char('/')));
    assert_eq!(
        app.handle_event(&key(KeyCode::Char('q'))),
        Control::Continue
    );
    assert_eq!(app.filter.input, "q");
    assert_eq!(app.handle_event(&ctrl_c), Control::Quit);
}

#[test]
fn question_mark_shows_the_keys_and_esc_closes_them() {
    let mut app = app_with(&fixtures::flows());
    let before = rows(&draw(&app));
    assert_eq!(
        app.handle_event(&key(KeyCode::Char('?'))),
        Control::Continue
    );
    let b = draw(&app);
    // A box in the middle of the table: its text, without the borders.
    let (x, y) = find(&b, "┌ keys ─").unwrap();
    let (right, _) = find(&b, "┐").unwrap();
    let inside: Vec<String> = (y + 1..)
        .take_while(|&y| b[(x, y)].symbol() == "│")
        .map(|y| {
            let s: String = (x + 1..right).map(|x| b[(x, y)].symbol()).collect();
            s.trim_end().to_string()
        })
        .collect();
    assert_eq!(
        inside,
        [
            " space         pause / resume",
            " ↑ ↓ k j       move the selection (scroll on the other tabs)",
            " PgUp PgDn     move a page",
            " Home g        oldest flow",
            " End G         follow the newest flow",
            " Enter         flow detail (Esc: back)",
            " /             filter (Enter: apply, Esc: cancel)",
            " Tab           next tab (Shift-Tab: previous)",
            " c             service map: what changed / the map",
            " q Esc Ctrl-C  quit",
            " ?             this help (? or Esc: close)",
        ]
    );
    assert_eq!(b[(x, y + 12)].symbol(), "└");
    // Keys behind it do nothing while it is open.
    app.handle_event(&key(KeyCode::Up));
    app.handle_event(&key(KeyCode::Char('/')));
    assert_eq!((app.selected, app.mode), (None, Mode::Normal));
    // Esc closes it without quitting; the view is as it was.
    assert_eq!(app.handle_event(&key(KeyCode::Esc)), Control::Continue);
    assert_eq!(rows(&draw(&app)), before);
    // `?` closes it too, and opens it over the detail pane; in the filter
    // bar it is text.
    app.handle_event(&key(KeyCode::Char('?')));
    app.handle_event(&key(KeyCode::Char('?')));
    assert_eq!(rows(&draw(&app)), before);
    app.handle_event(&key(KeyCode::Enter));
    app.handle_event(&key(KeyCode::Char('?')));
    assert!(find(&draw(&app), "┌ keys ─").is_some());
    app.handle_event(&key(KeyCode::Esc));
    assert_eq!(app.mode, Mode::Detail);
    app.handle_event(&key(KeyCode::Esc));
    app.handle_event(&key(KeyCode::Char('/')));
    app.handle_event(&key(KeyCode::Char('?')));
    assert_eq!((app.help, app.filter.input.as_str()), (false, "?"));
}

/// On a screen too small for the key help, it says so and scrolls.
#[test]
fn the_key_help_scrolls_on_a_small_screen() {
    let mut app = app_with(&fixtures::flows());
    app.handle_event(&key(KeyCode::Char('?')));
    let inside = |app: &App| {
        let b = draw_sized(app, 70, 10);
        let (x, y) = find(&b, "┌ keys (↑ ↓ more) ─").expect("the title says it scrolls");
        let (right, _) = find(&b, "┐").unwrap();
        (y + 1..)
            .take_while(|&y| b[(x, y)].symbol() == "│")
            .map(|y| {
                let s: String = (x + 1..right).map(|x| b[(x, y)].symbol()).collect();
                s.trim_end().to_string()
            })
            .collect::<Vec<String>>()
    };
    // 7 rows for the box: 5 of the 11 keys.
    assert_eq!(inside(&app).len(), 5);
    assert_eq!(inside(&app)[0], " space         pause / resume");
    for _ in 0..20 {
        app.handle_event(&key(KeyCode::Down));
    }
    assert_eq!(app.help_scroll, 6);
    assert_eq!(
        inside(&app)[4],
        " ?             this help (? or Esc: close)"
    );
    app.handle_event(&key(KeyCode::Up));
    assert_eq!(inside(&app)[4], " q Esc Ctrl-C  quit");
    // Closed and opened again: from the top.
    app.handle_event(&key(KeyCode::Esc));
    app.handle_event(&key(KeyCode::Char('?')));
    assert_eq!(inside(&app)[0], " space         pause / resume");
}

#[test]
fn buffer_is_bounded_and_counters_go_on() {
    let mut app = App::with_capacity("", 5).unwrap();
    for f in fixtures::flows() {
        app.on_response(flow(f));
    }
    assert_eq!((app.buffer.len(), app.stats.flows_seen), (5, 19));
    let b = draw(&app);
    assert_eq!(
        row(&b, 1),
        "0.0 flows/s  19 seen  5 buffered  5 shown  nodes: node1, node2"
    );
    // The graph keeps what the buffer dropped (within its window).
    assert_eq!(app.graph.graph().edges().len(), 4);
}

// Paused time: the clock jumps to the next timer only when every task waits,
// so all the flows are taken before the first key, with two ticks between keys.
#[tokio::test(start_paused = true)]
async fn run_loop_draws_flows_and_quits_on_q() {
    let mut app = App::new("").unwrap();
    let mut terminal = Terminal::new(TestBackend::new(W, H)).unwrap();
    let flows = tokio_stream::iter(fixtures::flows().into_iter().map(|f| Ok(flow(f))));
    // The keys arrive after the flows and a few ticks.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        tx.send(Ok(Event::FocusGained)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        tx.send(Ok(key(KeyCode::Char('q')))).await.unwrap();
    });
    let keys = tokio_stream::wrappers::ReceiverStream::new(rx);
    app.run(
        &mut terminal,
        flows,
        NoReconnect,
        keys,
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(app.stats.flows_seen, 19);
    assert_eq!(app.stats.stream_end.as_deref(), Some("stream ended"));
    let b = terminal.backend().buffer().clone();
    assert!(
        row(&b, 22).starts_with("15:04:05.050 node2"),
        "{:#?}",
        rows(&b)
    );
    assert_eq!(row(&b, 2), "stream ended");
}

/// Frames drawn by a run in which `text` is typed into the filter bar in
/// one burst (keys already waiting when the loop wakes), and what the bar
/// then holds.
async fn frames_after_typing(text: &str) -> (usize, String) {
    let mut app = App::new("").unwrap();
    let mut terminal = Terminal::new(TestBackend::new(W, H)).unwrap();
    let flows = tokio_stream::iter(fixtures::flows().into_iter().map(|f| Ok(flow(f))));
    let mut keys = vec![key(KeyCode::Char('/'))];
    keys.extend(text.chars().map(|c| key(KeyCode::Char(c))));
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        for k in keys {
            tx.send(Ok(k)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        tx.send(Ok(ctrl_c)).await.unwrap();
    });
    let keys = tokio_stream::wrappers::ReceiverStream::new(rx);
    app.run(
        &mut terminal,
        flows,
        NoReconnect,
        keys,
        std::future::pending(),
    )
    .await
    .unwrap();
    (terminal.get_frame().count(), app.filter.input.clone())
}

// Typing fast (or pasting) draws once per burst, not once per key.
#[tokio::test(start_paused = true)]
async fn keys_that_wait_together_are_drawn_once() {
    let (one, typed) = frames_after_typing("-").await;
    assert_eq!(typed, "-");
    let long = "--from-namespace default --to-namespace kube-system";
    let (burst, typed) = frames_after_typing(long).await;
    assert_eq!(typed, long);
    assert_eq!(burst, one);
}

// A signal (here a stand-in future) ends the loop like `q`, with an error that
// names it, so `run` returns and the terminal guard restores the terminal.
#[tokio::test(start_paused = true)]
async fn run_loop_ends_on_a_signal_with_the_signal_as_error() {
    let mut app = App::new("").unwrap();
    let mut terminal = Terminal::new(TestBackend::new(W, H)).unwrap();
    let flows = tokio_stream::iter(fixtures::flows().into_iter().map(|f| Ok(flow(f))));
    // No key ever comes; the stream of keys stays open.
    let keys = tokio_stream::pending::<std::io::Result<Event>>();
    let stop = async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        Signal::Term
    };
    // (Time is paused: the 10 s pass at once if the loop never ends.)
    let run = app.run(&mut terminal, flows, NoReconnect, keys, stop);
    let err = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the signal ends the loop")
        .expect_err("a signal is an error");
    assert_eq!(err.downcast_ref::<Stopped>(), Some(&Stopped(Signal::Term)));
    assert_eq!(format!("{err:#}"), "stopped by SIGTERM");
    // It ran until then: every flow taken and drawn.
    assert_eq!(app.stats.flows_seen, 19);
    let b = terminal.backend().buffer().clone();
    assert!(
        row(&b, 22).starts_with("15:04:05.050 node2"),
        "{:#?}",
        rows(&b)
    );
}

#[test]
fn service_map_says_when_the_connection_cap_forgot_connections() {
    let mut app = app_with(&fixtures::flows());
    app.tab = Tab::ServiceMap;
    assert_eq!(find(&draw(&app), "forgotten"), None);
    // Refold the same flows into a service map capped at 2 connections.
    app.graph = service_graph::GraphBuilder::new().with_max_connections(2);
    for f in fixtures::flows() {
        app.graph.add(&f);
    }
    let forgotten = app.graph.forgotten();
    assert!(forgotten > 0);
    let b = draw(&app);
    let (x, y) = find(&b, "connections tracked").expect("the cap note is shown");
    assert_eq!(y, H - 2, "the note is the last line above the status line");
    assert_eq!(
        row(&b, y).trim_start(),
        format!(
            "{} connections tracked, {forgotten} older ones forgotten (cap 2): a forgotten connection seen again counts again",
            app.graph.connections()
        )
    );
    assert_eq!(b[(x, y)].fg, Color::Yellow);
}

/// Streams handed out in turn, and the `since` each reopening asked for.
struct FakeSource {
    streams: std::collections::VecDeque<Vec<Result<GetFlowsResponse, tonic::Status>>>,
    asked: Vec<Option<prost_types::Timestamp>>,
}

impl FakeSource {
    fn new(streams: Vec<Vec<Result<GetFlowsResponse, tonic::Status>>>) -> Self {
        FakeSource {
            streams: streams.into(),
            asked: Vec::new(),
        }
    }
}

impl super::reconnect::FlowSource for FakeSource {
    fn reopen(
        &mut self,
        since: Option<prost_types::Timestamp>,
    ) -> Option<super::reconnect::Opening> {
        self.asked.push(since);
        let items = self.streams.pop_front()?;
        // Open until the test quits, as a follow stream is.
        let stream =
            tokio_stream::StreamExt::chain(tokio_stream::iter(items), tokio_stream::pending());
        Some(Box::pin(async move {
            Ok(Box::pin(stream) as super::reconnect::FlowStream)
        }))
    }
}

/// The first stream: three flows of node1 and node2, then the relay goes
/// away (as after kill -9) while node2's flow at 100 µs, late, is still on
/// its way. The second, from the margin before the newest flow shown: the
/// three again, the late one and a new one. Returns the flows in the order
/// they show.
fn relay_restart() -> (
    Vec<Result<GetFlowsResponse, tonic::Status>>,
    FakeSource,
    Vec<Flow>,
) {
    let all = fixtures::flows();
    let shown = [&all[0], &all[2], &all[3]];
    let first = shown
        .iter()
        .map(|f| Ok(flow((*f).clone())))
        .chain([Err(tonic::Status::unavailable(
            "h2 protocol error: error reading a body from connection",
        ))])
        .collect();
    let second = all[..5].iter().map(|f| Ok(flow(f.clone()))).collect();
    let want = [&all[0], &all[2], &all[3], &all[1], &all[4]];
    (
        first,
        FakeSource::new(vec![second]),
        want.map(Flow::clone).to_vec(),
    )
}

fn uuids(app: &App) -> Vec<String> {
    app.buffer.iter_matching().map(|f| f.uuid.clone()).collect()
}

// Step by step: the banner and the unknown nodes while the relay is away, the
// reopening a margin before the third flow's time after 1 s, the repeats
// dropped and the late flow shown.
#[tokio::test(start_paused = true)]
async fn relay_gone_shows_reconnecting_then_resumes_without_repeats() {
    use super::reconnect::{Link, Step};
    let (first, mut source, want) = relay_restart();
    let mut app = App::new("").unwrap();
    let mut link = Link::Open(Box::pin(tokio_stream::iter(first)));
    for _ in 0..4 {
        let step = link.step().await;
        app.on_step(step, &mut link, &mut source);
    }
    assert_eq!(uuids(&app), uuids(&app_with(&want[..3])));
    let banner = "relay unavailable: connection lost; reconnecting… \
                  (h2 protocol error: error reading a body from connection)";
    assert_eq!(app.stats.reconnecting.as_deref(), Some(banner));
    assert_eq!(source.asked, [super::reconnect::reopen_from(want[2].time)]);
    let b = draw(&app);
    assert_eq!(
        row(&b, 1),
        "0.0 flows/s  3 seen  3 buffered  3 shown  nodes: unknown"
    );
    assert_eq!(row(&b, 2), banner);
    // Too long for 80 columns: it wraps to a second line, the table below.
    let narrow = draw_sized(&app, 80, H);
    assert_eq!(
        [row(&narrow, 2), row(&narrow, 3)],
        [
            "relay unavailable: connection lost; reconnecting… (h2 protocol error: error",
            "reading a body from connection)",
        ]
    );
    assert!(row(&narrow, 4).starts_with("TIME"), "{}", row(&narrow, 4));
    // Too long for two lines of 40: the second is cut with a mark.
    let tiny = draw_sized(&app, 40, H);
    assert_eq!(
        [row(&tiny, 2), row(&tiny, 3)],
        [
            "relay unavailable: connection lost;",
            "reconnecting… (h2 protocol error: error…",
        ]
    );

    // The first backoff is 1 s, then the second stream opens.
    let start = tokio::time::Instant::now();
    let step = link.step().await;
    assert!(matches!(step, Step::Opened(Ok(_))));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    app.on_step(step, &mut link, &mut source);
    assert_eq!(app.stats.reconnecting, None);
    for _ in 0..5 {
        let step = link.step().await;
        app.on_step(step, &mut link, &mut source);
    }
    let want_ids: Vec<String> = want.iter().map(|f| f.uuid.clone()).collect();
    assert_eq!(uuids(&app), want_ids);
    assert_eq!(app.stats.flows_seen, 5);
    let b = draw(&app);
    assert_eq!(
        row(&b, 1),
        "0.0 flows/s  5 seen  5 buffered  5 shown  nodes: node1, node2"
    );
    // No banner: the table's header is right under the header line.
    assert!(row(&b, 2).starts_with("TIME "), "{:#?}", rows(&b));
    assert_eq!(
        (0..5)
            .map(|y| row(&b, 3 + y)[..18].to_string())
            .collect::<Vec<_>>(),
        want.iter()
            .map(|f| format!(
                "{} {:<5}",
                super::text::clock(f.time.as_ref(), false),
                f.node_name
            ))
            .collect::<Vec<_>>()
    );
}

// The same through the event loop, whose ticks cut in while it waits out the
// backoff: the reopening must not start over at each tick.
#[tokio::test(start_paused = true)]
async fn run_loop_reconnects_after_the_relay_went_away() {
    let (first, mut source, want) = relay_restart();
    let mut app = App::new("").unwrap();
    let mut terminal = Terminal::new(TestBackend::new(W, H)).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        tx.send(Ok(key(KeyCode::Char('q')))).await.unwrap();
    });
    let keys = tokio_stream::wrappers::ReceiverStream::new(rx);
    app.run(
        &mut terminal,
        tokio_stream::iter(first),
        &mut source,
        keys,
        std::future::pending(),
    )
    .await
    .unwrap();
    let want_ids: Vec<String> = want.iter().map(|f| f.uuid.clone()).collect();
    assert_eq!(uuids(&app), want_ids);
    assert_eq!(source.asked, [super::reconnect::reopen_from(want[2].time)]);
    assert_eq!(app.stats.reconnecting, None);
    assert_eq!(app.stats.stream_end, None);
}

fn ctrl(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// The map, top talkers and changes scroll by rows down to the last
/// screenful, not past it: `j` held too long still shows the last edge, and
/// one `k` moves up at once; `G` goes to the end, `g` to the top.
#[test]
fn lists_scroll_no_further_than_their_last_screenful() {
    let mut app = app_with(&fixtures::flows());
    app.handle_event(&key(KeyCode::Tab));
    // 9 rows: tabs, header, then the table (its header, five lines: an
    // edge takes two) above the filter bar.
    let edges = [
        "default/frontend -> default/api",
        "default/frontend -> kube-system/coredns-1",
        "default/frontend -> world",
        "host -> default/api",
    ];
    let shown = |app: &App| {
        let b = draw_sized(app, W, 9);
        rows(&b)
            .into_iter()
            .filter_map(|r| edges.into_iter().find(|e| r.starts_with(e)))
            .collect::<Vec<_>>()
    };
    // Two whole edges, and the first line of a third.
    assert_eq!(shown(&app), edges[..3]);
    for _ in 0..10 {
        app.handle_event(&key(KeyCode::Char('j')));
    }
    // Four edges, two shown: the last two.
    assert_eq!(app.list_scroll, 2);
    assert_eq!(
        shown(&app),
        ["default/frontend -> world", "host -> default/api"]
    );
    app.handle_event(&key(KeyCode::Char('k')));
    assert_eq!(app.list_scroll, 1);
    app.handle_event(&key(KeyCode::Char('g')));
    assert_eq!(app.list_scroll, 0);
    app.handle_event(&key(KeyCode::Char('G')));
    assert_eq!(app.list_scroll, 2);
    app.handle_event(&key(KeyCode::PageUp));
    assert_eq!(app.list_scroll, 0, "a page is the two edges shown");
}

/// In the filter bar, Ctrl-W takes the word before the cursor, Ctrl-H a
/// character; other Ctrl and Alt keys type nothing.
#[test]
fn the_filter_bar_takes_readline_keys_and_types_no_ctrl_or_alt_letters() {
    let mut app = app_with(&fixtures::flows());
    app.handle_event(&key(KeyCode::Char('/')));
    type_text(&mut app, "--verdict dropped --port 80");
    app.handle_event(&ctrl('w'));
    assert_eq!(app.filter.input, "--verdict dropped --port ");
    app.handle_event(&ctrl('w'));
    assert_eq!(app.filter.input, "--verdict dropped ");
    app.handle_event(&ctrl('h'));
    app.handle_event(&ctrl('a'));
    app.handle_event(&ctrl('e'));
    app.handle_event(&Event::Key(KeyEvent::new(
        KeyCode::Char('b'),
        KeyModifiers::ALT,
    )));
    assert_eq!(app.filter.input, "--verdict dropped");
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!(
        (app.mode, app.filter.applied.text.as_str()),
        (Mode::Normal, "--verdict dropped")
    );
}

/// The detail pane keeps showing its flow after the buffer let it go.
#[test]
fn the_detail_pane_keeps_its_flow_after_the_buffer_let_it_go() {
    let all = fixtures::flows();
    let mut app = App::with_capacity("", 5).unwrap();
    for f in &all[..5] {
        app.on_response(flow(f.clone()));
    }
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Detail);
    let before = rows(&draw_sized(&app, 100, 50));
    for f in &all[5..] {
        app.on_response(flow(f.clone()));
    }
    assert!(app.buffer.get(app.detail.unwrap()).is_none(), "evicted");
    let after = rows(&draw_sized(&app, 100, 50));
    // Below the header, whose counts went on.
    let fields = |r: &[String]| r[2..12].to_vec();
    assert_eq!(fields(&after), fields(&before));
    assert!(!after.iter().any(|l| l.contains("left the buffer")));
}

/// Enter on the filter as applied changes nothing: the service map keeps
/// what it counted beyond the buffer's flows.
#[test]
fn applying_the_same_filter_keeps_the_service_map() {
    let mut app = App::with_capacity("", 3).unwrap();
    for f in fixtures::flows() {
        app.on_response(flow(f));
    }
    let flows_of = |app: &App| {
        (app.graph.graph().edges().iter())
            .map(|e| e.edge.flows)
            .sum::<u64>()
    };
    let counted = flows_of(&app);
    assert_eq!(counted, 13);
    app.handle_event(&key(KeyCode::Char('/')));
    app.handle_event(&key(KeyCode::Enter));
    assert_eq!((app.mode, flows_of(&app)), (Mode::Normal, counted));
}

/// A reopened stream sends the lost-event records of its first seconds
/// again: counted once.
#[test]
fn lost_events_sent_again_after_a_reopen_count_once() {
    let mut app = app_with(&fixtures::flows()[..2]);
    let lost = |n| GetFlowsResponse {
        node_name: "node1".into(),
        time: Some(prost_types::Timestamp {
            seconds: 1_795_705_445,
            nanos: 0,
        }),
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: LostEventSource::PerfEventRingBuffer as i32,
            num_events_lost: n,
            ..Default::default()
        })),
    };
    app.on_response(lost(40));
    app.reopened = true;
    app.on_response(lost(40));
    assert_eq!(app.stats.lost_total(), 40);
    app.on_response(lost(3));
    assert_eq!(app.stats.lost_total(), 43);
}

/// A refusal that asking again would not change (credentials the server
/// does not take, a bad filter) ends the stream, shown; nothing is asked
/// again. A stream that opens and fails at once is asked again after a
/// longer wait each time: only a response ends the backoff.
#[tokio::test(start_paused = true)]
async fn a_final_refusal_ends_the_stream_and_quick_failures_back_off() {
    use super::reconnect::{Link, Step};
    let mut app = App::new("").unwrap();
    let mut source = FakeSource::new(Vec::new());
    let refused = vec![Err(tonic::Status::permission_denied("not for you"))];
    let mut link = Link::Open(Box::pin(tokio_stream::iter(refused)));
    let step = link.step().await;
    app.on_step(step, &mut link, &mut source);
    assert!(matches!(link, Link::Closed));
    assert!(source.asked.is_empty());
    assert_eq!(
        (
            app.stats.stream_end.as_deref(),
            app.stats.reconnecting.as_deref()
        ),
        (Some("server: not for you (PermissionDenied)"), None)
    );

    let failing = || vec![Err(tonic::Status::unavailable("gone"))];
    let mut app = App::new("").unwrap();
    let mut source = FakeSource::new(vec![failing(), failing(), failing()]);
    let mut link = Link::Open(Box::pin(tokio_stream::iter(failing())));
    let mut waits = Vec::new();
    for _ in 0..3 {
        let step = link.step().await;
        assert!(matches!(step, Step::Item(Some(Err(_)))));
        app.on_step(step, &mut link, &mut source);
        let start = tokio::time::Instant::now();
        let step = link.step().await;
        assert!(matches!(step, Step::Opened(Ok(_))));
        waits.push(start.elapsed().as_secs());
        app.on_step(step, &mut link, &mut source);
    }
    assert_eq!(waits, [1, 2, 4]);
}

/// Reopens that fail as `observe` words a server's refusal at open, and
/// streams that send node status, then fail.
struct Refusing {
    opens: std::collections::VecDeque<
        Result<Vec<Result<GetFlowsResponse, tonic::Status>>, tonic::Status>,
    >,
    asked: usize,
}

impl super::reconnect::FlowSource for Refusing {
    fn reopen(&mut self, _: Option<prost_types::Timestamp>) -> Option<super::reconnect::Opening> {
        self.asked += 1;
        let next = self.opens.pop_front()?;
        Some(Box::pin(async move {
            match next {
                Ok(items) => {
                    Ok(Box::pin(tokio_stream::iter(items)) as super::reconnect::FlowStream)
                }
                Err(status) => Err(crate::connect::status_error(status)),
            }
        }))
    }
}

/// A refusal at open (the server took the call but not its request) ends
/// the stream as one in it does; a stream that only says which nodes it has
/// before it fails does not end the backoff.
#[tokio::test(start_paused = true)]
async fn a_refusal_at_open_ends_the_stream_and_node_status_alone_backs_off() {
    use super::reconnect::{Link, Step};
    let gone = || Err(tonic::Status::unavailable("gone"));
    let status_then_gone = || {
        Ok(vec![
            Ok(node_status(NodeState::NodeConnected, "node1", "")),
            gone(),
        ])
    };
    let mut source = Refusing {
        opens: [
            status_then_gone(),
            status_then_gone(),
            Err(tonic::Status::unauthenticated("who are you")),
        ]
        .into(),
        asked: 0,
    };
    let mut app = App::new("").unwrap();
    let mut link = Link::Open(Box::pin(tokio_stream::iter(vec![gone()])));
    let mut waits = Vec::new();
    let mut last = tokio::time::Instant::now();
    while !matches!(link, Link::Closed) {
        let step = link.step().await;
        if matches!(step, Step::Opened(_)) {
            waits.push(last.elapsed().as_secs());
        }
        last = tokio::time::Instant::now();
        app.on_step(step, &mut link, &mut source);
    }
    assert_eq!(waits, [1, 2, 4], "the backoff went on through node status");
    assert_eq!(source.asked, 3);
    assert_eq!(
        (
            app.stats.stream_end.as_deref(),
            app.stats.reconnecting.as_deref()
        ),
        (Some("server: who are you (Unauthenticated)"), None)
    );
}
