//! The Grafana service map (`dashboards/servicemap.json`) against a real relay:
//! the built-in lab with its flow-probe and a relay, one round of the
//! scenario's traffic, then every SQL query of the dashboard, with Grafana's
//! `$__timeFilter` expanded as Grafana's SQL data sources expand it, through
//! the real `observe query` (Arrow Flight SQL, as Grafana's Flight SQL data
//! source asks). The relay's `graph_nodes` and `graph_edges` must be exactly
//! what `observe graph -o json` prints for the same window through the same
//! relay (one builder behind both): every node and edge with its flows,
//! bytes, connections, packets, verdicts, ports, drop reasons and hops; and
//! the scenario's edges must carry the facts its traffic produces.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::scenario_graph::{SCENARIO_EDGES, scenario_done};
use observe_lab::node_probes;
use observe_lab::{Scenario, run_traffic_once};
use observer_proto::flow::Flow;
use observer_proto::observer::{GetFlowsRequest, get_flows_response::ResponseTypes};
use observer_proto::time::rfc3339;
use serde_json::Value;
use service_graph::GraphBuilder;
use tokio_stream::StreamExt;

/// `(panel title, refId, SQL)` of every target of the service map dashboard.
fn dashboard_sql() -> Vec<(String, String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards/servicemap.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push((
                p["title"].as_str().unwrap().to_string(),
                t["refId"].as_str().unwrap().to_string(),
                t["queryText"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// `$__timeFilter(col)` as Grafana's SQL plugins write it.
fn expand_time_filter(sql: &str, from: i64, to: i64) -> String {
    let (from, to) = (rfc3339(from), rfc3339(to));
    sql.replace(
        "$__timeFilter(time)",
        &format!("time >= '{from}' AND time <= '{to}'"),
    )
}

/// Rows of `observe query -o json` (one JSON object per line); `server`:
/// `--server` and the TLS flags.
fn observe_query(server: &[String], sql: &str) -> Vec<Value> {
    let mut args: Vec<&str> = vec!["query", "-o", "json"];
    args.extend(server.iter().map(String::as_str));
    args.extend(["--", sql]);
    e2e::observe(&args)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect()
}

async fn relay_flows(env: &e2e::Env, addr: SocketAddr) -> Vec<Flow> {
    let mut client = env.client_of(addr).await;
    let mut stream = client
        .get_flows(GetFlowsRequest::default())
        .await
        .expect("GetFlows")
        .into_inner();
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        if let Some(ResponseTypes::Flow(f)) = item.expect("a response").response_types {
            out.push(f);
        }
    }
    out
}

/// A node as both views show it: title, subtitle, flows, bytes, kind.
type NodeRow = (String, String, u64, u64, String);

/// An edge as both views show it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EdgeRow {
    source: String,
    target: String,
    flows: u64,
    bytes: u64,
    connections: u64,
    packets: u64,
    /// Forwarded, dropped, audit, other.
    verdicts: [u64; 4],
    ports: String,
    drop_reasons: String,
    hops: String,
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a count: {v}"))
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not text: {v}"))
        .to_string()
}

/// The dashboard's node rows, by id.
fn sql_nodes(rows: &[Value]) -> BTreeMap<String, NodeRow> {
    rows.iter()
        .map(|r| {
            let row = (
                s(&r["title"]),
                s(&r["subtitle"]),
                u(&r["mainstat"]),
                u(&r["secondarystat"]),
                s(&r["detail__kind"]),
            );
            (s(&r["id"]), row)
        })
        .collect()
}

/// The dashboard's edge rows, by id.
fn sql_edges(rows: &[Value]) -> BTreeMap<String, EdgeRow> {
    rows.iter()
        .map(|r| {
            let row = EdgeRow {
                source: s(&r["source"]),
                target: s(&r["target"]),
                flows: u(&r["mainstat"]),
                bytes: u(&r["secondarystat"]),
                connections: u(&r["detail__connections"]),
                packets: u(&r["detail__packets"]),
                verdicts: ["forwarded", "dropped", "audit", "other"]
                    .map(|v| u(&r[format!("detail__{v}").as_str()])),
                ports: s(&r["detail__ports"]),
                drop_reasons: s(&r["detail__drop_reasons"]),
                hops: s(&r["detail__hops"]),
            };
            (s(&r["id"]), row)
        })
        .collect()
}

/// `observe graph -o json`'s nodes and edges, in the same shape.
fn graph_json(v: &Value) -> (BTreeMap<String, NodeRow>, BTreeMap<String, EdgeRow>) {
    let nodes = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let row = (
                s(&n["title"]),
                s(&n["subtitle"]),
                u(&n["mainstat"]),
                u(&n["secondarystat"]),
                s(&n["kind"]),
            );
            (s(&n["id"]), row)
        })
        .collect();
    let edges = v["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            let drops: Vec<String> = e["drops"]
                .as_object()
                .expect("drops")
                .iter()
                .map(|(reason, n)| format!("{reason} ({})", u(n)))
                .collect();
            let hops: Vec<String> = e["hops"]
                .as_array()
                .expect("hops")
                .iter()
                .map(|h| format!("{} ({})", s(&h["hop"]), u(&h["count"])))
                .collect();
            let ports: Vec<String> = e["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .map(s)
                .collect();
            let row = EdgeRow {
                source: s(&e["source"]),
                target: s(&e["target"]),
                flows: u(&e["mainstat"]),
                bytes: u(&e["secondarystat"]),
                connections: u(&e["connections"]),
                packets: u(&e["packets"]),
                verdicts: ["forwarded", "dropped", "audit", "other"].map(|k| u(&e["verdicts"][k])),
                ports: ports.join(", "),
                drop_reasons: drops.join(", "),
                hops: hops.join(" -> "),
            };
            (s(&e["id"]), row)
        })
        .collect();
    (nodes, edges)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_map_dashboard_shows_the_relays_service_graph() {
    let queries = dashboard_sql();
    let refs: Vec<(&str, &str)> = queries
        .iter()
        .map(|(p, r, _)| (p.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        refs,
        [
            ("Service map", "nodes"),
            ("Service map", "edges"),
            ("Edges and the datapath they were observed on", "edges"),
        ]
    );
    assert_eq!(
        queries[1].2, queries[2].2,
        "the table shows the graph's edges"
    );
    assert!(
        queries[0]
            .2
            .contains("FROM graph_nodes\nWHERE $__timeFilter(time) ")
    );
    assert!(
        queries[1]
            .2
            .contains("FROM graph_edges\nWHERE $__timeFilter(time) ")
    );

    let scenario = Scenario::builtin_default();
    let mut env = e2e::start(&scenario, &[]);
    // Both nodes' probes: each sees its own endpoints' veths.
    let probes = env.probes.clone();
    let relay = node_probes::start_relay(&mut env.lab, &probes, 0).expect("relay starts");
    // The relay serves and follows the probes over mTLS (the lab's default).
    assert!(relay.tls);
    let relay_server = env.server_args(relay.addr);
    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");

    // Until the relay holds every flow of the scenario.
    let deadline = Instant::now() + e2e::WAIT;
    let flows = loop {
        let flows = relay_flows(&env, relay.addr).await;
        if scenario_done(&GraphBuilder::build(&flows)) {
            break flows;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never had the scenario's flows; it has {}",
            flows.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A window that ends after the last of them (Grafana's bounds are whole
    // seconds, both included): from here on both views read a closed set.
    let last = flows
        .iter()
        .filter_map(|f| f.time.as_ref().map(|t| t.seconds))
        .max()
        .expect("flows have times");
    let (from, to) = (last - 3600, last + 1);
    let nodes_sql = expand_time_filter(&queries[0].2, from, to);
    let edges_sql = expand_time_filter(&queries[1].2, from, to);
    assert!(!nodes_sql.contains("$__") && !edges_sql.contains("$__"));
    let (since, until) = (rfc3339(from), rfc3339(to));
    let mut graph_args = vec!["graph", "-o", "json", "--since", &since, "--until", &until];
    graph_args.extend(relay_server.iter().map(String::as_str));

    // The relay's tables read its history, which follows its ring (what
    // GetFlows and so `observe graph` read): wait until both hold the window.
    let deadline = Instant::now() + e2e::WAIT;
    let (nodes, edges, want_nodes, want_edges) = loop {
        let (want_nodes, want_edges) = tokio::task::block_in_place(|| {
            graph_json(&serde_json::from_str(&e2e::observe(&graph_args)).expect("graph JSON"))
        });
        let (nodes, edges) = tokio::task::block_in_place(|| {
            (
                sql_nodes(&observe_query(&relay_server, &nodes_sql)),
                sql_edges(&observe_query(&relay_server, &edges_sql)),
            )
        });
        let same = nodes == want_nodes && edges == want_edges;
        let done = edges
            .get("default/frontend->default/api")
            .is_some_and(|e| e.connections == 4 && e.flows == 18)
            && edges
                .get("other/client->default/frontend")
                .is_some_and(|e| e.verdicts[2] == 3);
        if (same && done) || Instant::now() > deadline {
            break (nodes, edges, want_nodes, want_edges);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(edges, want_edges, "graph_edges vs observe graph");
    assert_eq!(nodes, want_nodes, "graph_nodes vs observe graph");

    // Every edge besides the scenario's is neighbour discovery / MLD.
    for (id, e) in &edges {
        if !SCENARIO_EDGES.contains(&id.as_str()) {
            assert_eq!(e.ports, "ICMPv6", "unexpected edge {id}: {e:?}");
        }
    }
    let edge = |id: &str| {
        edges
            .get(id)
            .unwrap_or_else(|| panic!("edge {id} missing: {edges:#?}"))
    };
    // frontend -> api: two direct connections (IPv4, IPv6) and two through the
    // service VIP (socket LB to api or api-2, both workload `api`); each SYN
    // and FIN leaving frontend and entering api (the SYN judged by policy),
    // plus one translation per VIP connection (a flow, no packet: no
    // verdict).
    let fa = edge("default/frontend->default/api");
    assert_eq!(
        (fa.flows, fa.connections, fa.verdicts),
        (18, 4, [8, 0, 0, 0]),
        "{fa:?}"
    );
    assert_eq!(fa.ports, "TCP/8080");
    assert_eq!(fa.drop_reasons, "");
    assert_eq!(
        fa.hops,
        "trace-sock (2) -> from-endpoint (8) -> policy-verdict (4) -> to-endpoint (4)"
    );
    let ad = edge("default/api->default/db");
    assert_eq!(
        (ad.flows, ad.connections, ad.verdicts, ad.ports.as_str()),
        (4, 1, [2, 0, 0, 0], "TCP/5432"),
        "{ad:?}"
    );
    // client -> api: default deny; the SYN is dropped at api's ingress.
    let ca = edge("other/client->default/api");
    assert_eq!(
        (ca.flows, ca.connections, ca.verdicts, ca.ports.as_str()),
        (2, 1, [0, 1, 0, 0], "TCP/8080"),
        "{ca:?}"
    );
    assert_eq!(ca.drop_reasons, "POLICY_DENIED (1)");
    // client -> db: the explicit deny of one 64-byte datagram.
    let cd = edge("other/client->default/db");
    assert_eq!(
        (cd.flows, cd.connections, cd.verdicts, cd.ports.as_str()),
        (2, 1, [0, 1, 0, 0], "UDP/5353"),
        "{cd:?}"
    );
    assert_eq!(cd.drop_reasons, "POLICY_DENY (1)");
    // client -> frontend: audited pings (both families) and a refused SYN.
    let cf = edge("other/client->default/frontend");
    assert_eq!(
        (cf.connections, cf.verdicts, cf.ports.as_str()),
        (3, [0, 0, 3, 0], "ICMPv4, ICMPv6, TCP/9999"),
        "{cf:?}"
    );
    assert_eq!(cf.drop_reasons, "");
    // Hops: leaving the client, then dropped at the peer's ingress (a Drop,
    // which as Cilium's has no observation point; its policy verdict is the
    // same packet, counted once), or judged there (audit: a policy verdict and
    // no trace at to-endpoint); api -> db's first packet judged by policy.
    assert_eq!(ca.hops, "from-endpoint (1) -> drop (1)");
    assert_eq!(cd.hops, "from-endpoint (1) -> drop (1)");
    assert_eq!(cf.hops, "from-endpoint (3) -> policy-verdict (3)");
    assert_eq!(
        ad.hops,
        "from-endpoint (2) -> policy-verdict (1) -> to-endpoint (1)"
    );
    // Bytes (Ethernet frames as tc sees them) of the exchanges whose size is
    // fixed: one SYN with options (14 + 20 + 40); one datagram of 64 bytes
    // (14 + 20 + 8 + 64); two 56-byte pings with their replies, IPv4
    // (2 × 98) and IPv6 (2 × 118), and a SYN answered by RST+ACK (74 + 54).
    assert_eq!(
        [ca.bytes, cd.bytes, cf.bytes],
        [74, 106, 196 + 236 + 128],
        "bytes of the single-packet and echo exchanges"
    );

    // The four workloads with their totals: flows and bytes on their edges.
    for (id, title, ns) in [
        ("default/api", "api", "default"),
        ("default/db", "db", "default"),
        ("default/frontend", "frontend", "default"),
        ("other/client", "client", "other"),
    ] {
        let n = &nodes[id];
        let (flows, bytes) = edges
            .iter()
            .filter(|(_, e)| e.source == id || e.target == id)
            .fold((0, 0), |(f, b), (_, e)| (f + e.flows, b + e.bytes));
        assert_eq!(
            n,
            &(
                title.to_string(),
                ns.to_string(),
                flows,
                bytes,
                "workload".to_string()
            )
        );
    }
}
