//! The Grafana service map (`dashboards/servicemap.json`) against a real relay:
//! the built-in lab with its flow-probe and a relay, one round of traffic, then
//! every SQL query of the dashboard, with Grafana's `$__timeFilter` expanded as
//! Grafana's SQL data sources expand it, through the real `observe query`
//! (Arrow Flight SQL, as Grafana's Flight SQL data source asks). The node graph's
//! nodes and edges must be exactly the service graph `observe graph` builds
//! from the same flows: ids, flows, drops and connections per edge, plus the
//! bytes and observation points computed here from the flows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use observe_lab::node_probes;
use observe_lab::{Scenario, run_traffic_once};
use observer_proto::flow::{Flow, TraceObservationPoint};
use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::observer::{GetFlowsRequest, get_flows_response::ResponseTypes};
use observer_proto::time::rfc3339;
use serde_json::Value;
use service_graph::{GraphBuilder, group_of, l4};
use tokio_stream::StreamExt;

/// Cilium's monitor type of socket-translation traces.
const TYPE_TRACE_SOCK: i32 = 7;

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

/// Rows of `observe query -o json` (one JSON object per line).
fn observe_query(server: &str, sql: &str) -> Vec<Value> {
    let out = Command::new(e2e::observe_binary())
        .args(["query", "-o", "json", "--server", server, sql])
        .stderr(Stdio::piped())
        .output()
        .expect("run observe query");
    assert!(
        out.status.success(),
        "observe query failed: {}\n{sql}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect()
}

async fn relay_flows(addr: &str) -> Vec<Flow> {
    let mut client = ObserverClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the relay");
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

/// One edge as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EdgeRow {
    flows: u64,
    dropped: u64,
    connections: u64,
    bytes: u64,
    points: String,
}

/// A connection as the dashboard's SQL groups it: edge, protocol, addresses
/// and ports (none for ICMP).
type ConnKey = (
    String,
    &'static str,
    Option<String>,
    u32,
    Option<String>,
    u32,
);

/// The edges the dashboard must show for `flows`: the edges, their flows and
/// drops from `GraphBuilder` (what `observe graph` prints); connections, bytes
/// (the largest volume a request-direction report gave each connection) and
/// observation points computed here.
fn expected_edges(flows: &[Flow]) -> BTreeMap<String, EdgeRow> {
    let requests: Vec<&Flow> = flows
        .iter()
        .filter(|f| f.is_reply != Some(true) && f.tcp_lifecycle.is_none())
        .collect();
    let mut volume: BTreeMap<ConnKey, u64> = BTreeMap::new();
    let mut points: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for f in &requests {
        let id = format!(
            "{}->{}",
            group_of(f.source.as_ref()).id,
            group_of(f.destination.as_ref()).id
        );
        if let Ok(p) = TraceObservationPoint::try_from(f.trace_observation_point)
            && p != TraceObservationPoint::UnknownPoint
        {
            points
                .entry(id.clone())
                .or_default()
                .insert(p.as_str_name());
        }
        if f.event_type
            .as_ref()
            .is_some_and(|e| e.r#type == TYPE_TRACE_SOCK)
        {
            continue;
        }
        let (proto, sport, dport) = l4(f);
        let v = f.volume.as_ref().map_or(0, |v| v.fwd_bytes + v.rev_bytes);
        let ip = f.ip.as_ref();
        let key = (
            id,
            proto,
            ip.map(|i| i.source.clone()),
            sport,
            ip.map(|i| i.destination.clone()),
            dport,
        );
        let e = volume.entry(key).or_default();
        *e = (*e).max(v);
    }
    let graph = GraphBuilder::build(flows);
    graph
        .edges()
        .iter()
        .map(|e| {
            let id = e.id();
            let w = e.edge;
            let (connections, bytes) = volume
                .iter()
                .filter(|(k, _)| k.0 == id)
                .fold((0, 0), |(n, b), (_, v)| (n + 1, b + v));
            let points = points
                .get(&id)
                .map(|p| p.iter().copied().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            let row = EdgeRow {
                flows: w.flows,
                dropped: w.verdicts.dropped,
                connections,
                bytes,
                points,
            };
            (id, row)
        })
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a count: {v}"))
}

fn edge_rows(rows: &[Value]) -> BTreeMap<String, EdgeRow> {
    rows.iter()
        .map(|r| {
            let id = r["id"].as_str().expect("edge id").to_string();
            assert_eq!(
                format!(
                    "{}->{}",
                    r["source"].as_str().unwrap(),
                    r["target"].as_str().unwrap()
                ),
                id
            );
            let row = EdgeRow {
                flows: u(&r["mainstat"]),
                dropped: u(&r["secondarystat"]),
                connections: u(&r["detail__connections"]),
                bytes: u(&r["detail__bytes"]),
                points: r["detail__observation_points"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            };
            (id, row)
        })
        .collect()
}

/// Nodes from the expected edges: `(title, subtitle, flows out, flows in)`.
fn expected_nodes(
    edges: &BTreeMap<String, EdgeRow>,
) -> BTreeMap<String, (String, String, u64, u64)> {
    let mut out: BTreeMap<String, (String, String, u64, u64)> = BTreeMap::new();
    for (id, e) in edges {
        let (a, b) = id.split_once("->").unwrap();
        for (node, sent, received) in [(a, e.flows, 0), (b, 0, e.flows)] {
            let (title, subtitle) = match node.split_once('/') {
                Some((ns, name)) => (name.to_string(), ns.to_string()),
                None => (node.to_string(), String::new()),
            };
            let n = out
                .entry(node.to_string())
                .or_insert((title, subtitle, 0, 0));
            n.2 += sent;
            n.3 += received;
        }
    }
    out
}

fn node_rows(rows: &[Value]) -> BTreeMap<String, (String, String, u64, u64)> {
    rows.iter()
        .map(|r| {
            (
                r["id"].as_str().expect("node id").to_string(),
                (
                    r["title"].as_str().unwrap().to_string(),
                    r["subtitle"].as_str().unwrap().to_string(),
                    u(&r["mainstat"]),
                    u(&r["secondarystat"]),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_map_dashboard_shows_the_service_graph_from_the_relay() {
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

    let scenario = Scenario::builtin_default();
    let mut env = e2e::start(&scenario, &[]);
    let relay = node_probes::start_relay(&mut env.lab, std::slice::from_ref(&env.probe), 0)
        .expect("relay starts");
    let relay_addr = relay.addr.to_string();
    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    env.wait_for(
        "frontend -> api through the service, client -> frontend",
        |flows| {
            let g = GraphBuilder::build(flows);
            g.find("default/frontend", "default/api")
                .is_some_and(|e| e.connections == 4)
                && g.find("other/client", "default/frontend").is_some()
        },
    )
    .await;

    let now = observer_proto::time::now_nanos() as i64 / 1_000_000_000;
    let (from, to) = (now - 3600, now + 3600);
    let nodes_sql = expand_time_filter(&queries[0].2, from, to);
    let edges_sql = expand_time_filter(&queries[1].2, from, to);
    assert!(!nodes_sql.contains("$__") && !edges_sql.contains("$__"));

    // The relay's flows and its SQL table agree once nothing new arrives.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (want, got, flows) = loop {
        let flows = relay_flows(&relay_addr).await;
        let want = expected_edges(&flows);
        let got = edge_rows(&tokio::task::block_in_place(|| {
            observe_query(&relay_addr, &edges_sql)
        }));
        let settled = relay_flows(&relay_addr).await.len() == flows.len();
        // Up to the scenario's last item (client -> frontend, audited).
        let complete = want
            .get("default/frontend->default/api")
            .is_some_and(|e| e.connections == 4)
            && want.contains_key("other/client->default/frontend");
        if (settled && complete && got == want) || Instant::now() > deadline {
            break (want, got, flows);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        got,
        want,
        "dashboard edges vs the service graph of {} flows",
        flows.len()
    );

    // The scenario's edges are there, with the exact facts of frontend -> api:
    // two direct connections and two through the service VIP, each SYN, ACK,
    // ACK+PSH, ACK+FIN leaving frontend and entering api, plus one socket
    // translation per VIP connection.
    for id in [
        "default/api->default/db",
        "default/frontend->default/api",
        "other/client->default/api",
        "other/client->default/db",
        "other/client->default/frontend",
    ] {
        assert!(got.contains_key(id), "edge {id} missing: {got:#?}");
    }
    let fa = &got["default/frontend->default/api"];
    assert_eq!((fa.flows, fa.dropped, fa.connections), (34, 0, 4), "{fa:?}");
    assert_eq!(fa.points, "FROM_ENDPOINT, TO_ENDPOINT");
    // The scenario's denied paths drop at api's and db's ingress.
    let dropped: u64 = got.values().map(|e| e.dropped).sum();
    assert!(dropped >= 2, "policy drops on the map: {got:#?}");

    let nodes = node_rows(&tokio::task::block_in_place(|| {
        observe_query(&relay_addr, &nodes_sql)
    }));
    assert_eq!(nodes, expected_nodes(&got));
    assert_eq!(
        nodes["default/frontend"].0, "frontend",
        "titles are workload names"
    );
    assert_eq!(nodes["default/frontend"].1, "default");
}
