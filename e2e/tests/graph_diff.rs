//! `observe graph --against` end to end: the built-in lab scenario with its
//! real flow-probes (one per node) and a relay over them; a first window of its traffic without `api -> db` (item
//! 2), a second window of all of it, then the real `observe graph` binary
//! comparing the second window with the first, bounds taken from the flows'
//! own times. Exactly `api -> db` is new; every other edge and every node is
//! unchanged.
//!
//! Both windows keep TCP and UDP only (`--protocol tcp --protocol udp`), as
//! the test's own wait does: ICMPv6 neighbour discovery comes and goes with
//! the neighbour caches, not with the scenario, and the lab sends every echo
//! request of a process with one identifier, so the datapath takes the
//! second round's ping for the first one's flow, already reported.

use std::collections::BTreeMap;

use e2e::scenario_graph::SCENARIO_EDGES;
use observe_cli::graph_command::diff_args::rfc3339;
use observe_lab::{Scenario, run_traffic_once};
use observer_proto::flow::{Flow, layer4::Protocol};
use observer_proto::time;
use serde_json::{Value, json};
use service_graph::{GraphBuilder, ServiceGraph};

/// The edge only item 2 of the scenario draws.
const LEFT_OUT: &str = "default/api->default/db";

/// Request flows per edge of one round's TCP and UDP (see
/// `e2e::scenario_graph` for where they come from: a connection's SYN and
/// FIN, each seen leaving and entering; client -> frontend is the SYN to 9999
/// at client's egress, FORWARDED, and at frontend's policy, AUDIT).
const ROUND: [(&str, u64); 5] = [
    ("default/api->default/db", 4),
    ("default/frontend->default/api", 18),
    ("other/client->default/api", 2),
    ("other/client->default/db", 2),
    ("other/client->default/frontend", 2),
];

fn tcp_or_udp(f: &Flow) -> bool {
    matches!(
        f.l4.as_ref().and_then(|l| l.protocol.as_ref()),
        Some(Protocol::Tcp(_) | Protocol::Udp(_))
    )
}

fn flow_ns(f: &Flow) -> i128 {
    time::nanos(f.time.as_ref().expect("flows carry their time"))
}

/// The graph of the TCP and UDP flows after `after_ns`, as the command sees them.
fn graph_after(flows: &[Flow], after_ns: i128) -> ServiceGraph {
    GraphBuilder::build(
        flows
            .iter()
            .filter(|f| tcp_or_udp(f) && flow_ns(f) > after_ns),
    )
}

/// `g` has exactly the round's edges (without `api -> db` unless `with_db`),
/// each with all of its flows.
fn round_done(g: &ServiceGraph, with_db: bool) -> bool {
    let want: Vec<(&str, u64)> = ROUND
        .into_iter()
        .filter(|(id, _)| with_db || *id != LEFT_OUT)
        .collect();
    let have: Vec<(String, u64)> = g.edges().iter().map(|e| (e.id(), e.edge.flows)).collect();
    have.len() == want.len()
        && have
            .iter()
            .zip(&want)
            .all(|((id, n), (want_id, want_n))| id == want_id && n == want_n)
}

fn observe_graph(args: &[&str]) -> String {
    e2e::observe(&[&["graph"], args].concat())
}

/// `id -> (change, whole edge)` of a diff's JSON.
fn by_id(v: &Value, what: &str) -> BTreeMap<String, (String, Value)> {
    v[what]
        .as_array()
        .unwrap_or_else(|| panic!("{what} in {v}"))
        .iter()
        .map(|e| {
            (
                e["id"].as_str().expect("id").to_string(),
                (e["change"].as_str().expect("change").to_string(), e.clone()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_with_one_more_traffic_item_shows_exactly_that_edge_as_new() {
    let scenario = Scenario::builtin_default();
    let mut without_db = scenario.clone();
    let item = without_db.traffic.remove(2);
    assert_eq!(
        (item.from.as_str(), item.to.as_str(), item.port),
        ("api", "db", Some(5432))
    );
    let mut env = e2e::start(&scenario, &[]);
    // client runs on node2, the others on node1: the relay sees both sides.
    let probes = env.probes.clone();
    let relay =
        observe_lab::node_probes::start_relay(&mut env.lab, &probes, 0).expect("relay starts");
    let server = env.server(relay.addr);

    // Window 1: every item but api -> db.
    let report = tokio::task::block_in_place(|| run_traffic_once(&env.lab, &without_db))
        .expect("traffic runs");
    assert!(report.all_as_expected(), "{report}");
    let flows = server
        .wait_for("the first window's flows", |flows| {
            round_done(&graph_after(flows, i128::MIN), false)
        })
        .await;
    let first = flows.iter().map(flow_ns).min().expect("flows");
    let first_end = flows.iter().map(flow_ns).max().expect("flows");

    // Window 2: all of them, from the nanosecond after window 1's last flow.
    let report = tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario))
        .expect("traffic runs");
    assert!(report.all_as_expected(), "{report}");
    let flows = server
        .wait_for("the second window's flows", |flows| {
            round_done(&graph_after(flows, first_end), true)
        })
        .await;
    let second_end = flows.iter().map(flow_ns).max().expect("flows");

    let server_args = env.server_args(relay.addr);
    let since = rfc3339(first_end + 1);
    let until = rfc3339(second_end);
    let against = format!("{}..{}", rfc3339(first), rfc3339(first_end));
    let args = |format: &'static str| {
        vec![
            "-o".to_string(),
            format.to_string(),
            "--since".into(),
            since.clone(),
            "--until".into(),
            until.clone(),
            "--against".into(),
            against.clone(),
            "--protocol".into(),
            "tcp".into(),
            "--protocol".into(),
            "udp".into(),
        ]
        .into_iter()
        .chain(server_args.iter().cloned())
        .collect::<Vec<String>>()
    };
    let words = args("json");
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let v: Value = serde_json::from_str(&observe_graph(&words)).expect("JSON");

    assert_eq!(
        v["compared"],
        json!({"window": format!("{since}..{until}"), "against": against})
    );
    assert_eq!(
        v["counts"],
        json!({"new": 1, "vanished": 0, "changed": 0, "unchanged": 4}),
        "{v}"
    );
    let edges = by_id(&v, "edges");
    let changes: Vec<(&str, &str)> = edges
        .iter()
        .map(|(id, (c, _))| (id.as_str(), c.as_str()))
        .collect();
    let expected: Vec<(&str, &str)> = SCENARIO_EDGES
        .iter()
        .map(|id| (*id, if *id == LEFT_OUT { "new" } else { "unchanged" }))
        .collect();
    assert_eq!(changes, expected, "{v}");
    let (_, db) = &edges[LEFT_OUT];
    assert_eq!(db["before"], Value::Null);
    assert_eq!(db["after"]["flows"], 4, "{db}");
    assert_eq!(db["after"]["connections"], 1, "{db}");
    assert_eq!(db["ports"], json!(["TCP/5432"]));
    assert_eq!(db["color"], "#2e7d32");
    // The unchanged edges had the same flows in both windows.
    for (id, (_, e)) in &edges {
        if id != LEFT_OUT {
            assert_eq!(e["before"]["flows"], e["after"]["flows"], "{id}: {e}");
            assert_eq!(e["reasons"], json!([]), "{id}: {e}");
        }
    }
    // Nodes: the four workloads, in both windows (db is client's target too).
    let nodes: Vec<(String, String)> = by_id(&v, "nodes")
        .into_iter()
        .map(|(id, (c, _))| (id, c))
        .collect();
    let unchanged = |id: &str| (id.to_string(), "unchanged".to_string());
    assert_eq!(
        nodes,
        [
            unchanged("default/api"),
            unchanged("default/db"),
            unchanged("default/frontend"),
            unchanged("other/client"),
        ]
    );

    // The same diff as DOT renders with Graphviz; as text, the new edge first.
    let words = args("dot");
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let svg = test_support::graphviz::svg(&observe_graph(&words));
    assert!(svg.contains("verdict flipped"), "{svg}");
    let words = args("text");
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let text = observe_graph(&words);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[2].starts_with("new       default/api -> default/db"),
        "{text}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("edges: 1 new, 0 vanished, 0 changed (0 with a verdict flip), 4 unchanged"),
        "{text}"
    );

    // --diff 1h: the hour before the lab was empty, so every edge is new.
    let mut words = vec![
        "-o",
        "json",
        "--diff",
        "1h",
        "--protocol",
        "tcp",
        "--protocol",
        "udp",
    ];
    words.extend(server_args.iter().map(String::as_str));
    let v: Value = serde_json::from_str(&observe_graph(&words)).expect("JSON");
    assert_eq!(
        v["counts"],
        json!({"new": 5, "vanished": 0, "changed": 0, "unchanged": 0}),
        "{v}"
    );
}
