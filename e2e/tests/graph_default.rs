//! `observe graph` end to end: the built-in lab scenario with its real
//! flow-probes (two nodes) and a relay, one round of its traffic, then the
//! real `observe graph` binary against the relay. The JSON must hold exactly the scenario's workloads and
//! edges (neighbour discovery may add ICMPv6-only edges, nothing else), with
//! the verdicts, drop reasons, ports and connections the scenario produces and
//! the datapath hops of frontend → api in order; the DOT must render with
//! Graphviz.

use std::collections::{BTreeMap, BTreeSet};

use e2e::scenario_graph::{SCENARIO_EDGES, scenario_done};
use observe_lab::node_probes;
use observe_lab::{Scenario, run_traffic_once};
use serde_json::{Value, json};
use service_graph::GraphBuilder;

fn observe_graph(server: &[String], format: &str) -> String {
    let mut args: Vec<&str> = vec!["graph", "-o", format];
    args.extend(server.iter().map(String::as_str));
    e2e::observe(&args)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn graph_of_the_default_scenario() {
    let scenario = Scenario::builtin_default();
    let mut env = e2e::start(&scenario, &[]);
    // Each node's probe sees its own endpoints' veths; the relay merges them.
    let probes = env.probes.clone();
    let relay = node_probes::start_relay(&mut env.lab, &probes, 0).expect("relay starts");
    tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic runs");
    // Until the last item's flows (client -> frontend:9999, AUDIT) and the
    // four frontend -> api connections are in the relay's ring.
    env.server(relay.addr)
        .wait_for("the scenario's flows", |flows| {
            scenario_done(&GraphBuilder::build(flows))
        })
        .await;
    let addr = env.server_args(relay.addr);

    let v: Value = serde_json::from_str(&observe_graph(&addr, "json")).expect("JSON");
    let edges: BTreeMap<&str, &Value> = v["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| (e["id"].as_str().expect("edge id"), e))
        .collect();
    // Every edge besides the scenario's is neighbour discovery / MLD.
    for (id, e) in &edges {
        if !SCENARIO_EDGES.contains(id) {
            assert_eq!(
                strings(&e["ports"]),
                ["ICMPv6"],
                "unexpected edge {id}: {e}"
            );
        }
    }
    let present: Vec<&str> = SCENARIO_EDGES
        .iter()
        .copied()
        .filter(|id| edges.contains_key(id))
        .collect();
    assert_eq!(present, SCENARIO_EDGES);

    // Nodes: the four workloads (api and api-2 are one), plus `world` only
    // as the far end of ICMPv6 multicast.
    let nodes: BTreeMap<&str, &Value> = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| (n["id"].as_str().expect("node id"), n))
        .collect();
    let on_scenario_edges: BTreeSet<&str> = SCENARIO_EDGES
        .iter()
        .flat_map(|id| id.split("->"))
        .collect();
    for (id, n) in &nodes {
        if !on_scenario_edges.contains(id) {
            assert_eq!(*id, "world", "unexpected node {n}");
        }
    }
    let workloads: Vec<(&str, &str, &str, &str)> = on_scenario_edges
        .iter()
        .map(|id| {
            let n = nodes.get(id).unwrap_or_else(|| panic!("node {id}"));
            (
                n["id"].as_str().unwrap(),
                n["title"].as_str().unwrap(),
                n["subtitle"].as_str().unwrap(),
                n["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        workloads,
        [
            ("default/api", "api", "default", "workload"),
            ("default/db", "db", "default", "workload"),
            ("default/frontend", "frontend", "default", "workload"),
            ("other/client", "client", "other", "workload"),
        ]
    );

    // frontend -> api: two direct connections (IPv4, IPv6) and two through the
    // service VIP (socket LB to api or api-2, both workload `api`).
    let fa = edges["default/frontend->default/api"];
    assert_eq!(fa["connections"], 4, "{fa}");
    // The socket translation names the backend's port, as Cilium's
    // post-translation event does.
    assert_eq!(strings(&fa["ports"]), ["TCP/8080"]);
    // Each connection: its SYN and its FIN at from-endpoint and again at
    // api's ingress (the SYN judged by policy; the datapath reports a
    // connection's first packet and its SYN/FIN/RST, not every packet), plus
    // one TRANSLATED socket event per VIP connection. A verdict counts once
    // per packet, where it arrived: 8 forwarded; a translation is no packet.
    assert_eq!(fa["mainstat"], 18, "{fa}");
    assert_eq!(
        fa["verdicts"],
        json!({"forwarded": 8, "dropped": 0, "audit": 0, "other": 0})
    );
    assert_eq!(fa["drops"], json!({}));
    assert_eq!(
        fa["hops"],
        json!([
            {"hop": "trace-sock", "count": 2},
            {"hop": "from-endpoint", "count": 8},
            {"hop": "policy-verdict", "count": 4},
            {"hop": "to-endpoint", "count": 4},
        ]),
        "{fa}"
    );

    let ad = edges["default/api->default/db"];
    assert_eq!(ad["connections"], 1);
    assert_eq!(strings(&ad["ports"]), ["TCP/5432"]);
    assert_eq!(
        ad["verdicts"],
        json!({"forwarded": 2, "dropped": 0, "audit": 0, "other": 0})
    );

    // client -> api: default deny; the SYN is dropped at api's ingress.
    let ca = edges["other/client->default/api"];
    assert_eq!(ca["connections"], 1);
    assert_eq!(strings(&ca["ports"]), ["TCP/8080"]);
    assert_eq!(ca["drops"], json!({"POLICY_DENIED": 1}));
    assert_eq!(
        ca["verdicts"],
        json!({"forwarded": 0, "dropped": 1, "audit": 0, "other": 0})
    );

    // client -> db: the explicit deny.
    let cd = edges["other/client->default/db"];
    assert_eq!(strings(&cd["ports"]), ["UDP/5353"]);
    assert_eq!(cd["drops"], json!({"POLICY_DENY": 1}));
    assert_eq!(
        cd["verdicts"],
        json!({"forwarded": 0, "dropped": 1, "audit": 0, "other": 0})
    );

    // client -> frontend: audited ping (both families) and SYN to 9999.
    let cf = edges["other/client->default/frontend"];
    assert_eq!(strings(&cf["ports"]), ["ICMPv4", "ICMPv6", "TCP/9999"]);
    assert_eq!(cf["connections"], 3);
    assert_eq!(cf["drops"], json!({}));
    assert_eq!(
        cf["verdicts"],
        json!({"forwarded": 0, "dropped": 0, "audit": 3, "other": 0})
    );

    // Asked for one direction, an edge keeps both directions' bytes: the
    // replies to the client come with it (as volume only: the same flows,
    // connections and verdicts). Its pings would otherwise lose their echo
    // replies' bytes.
    let mut from_other = addr.clone();
    from_other.extend(["--from-namespace".to_string(), "other".to_string()]);
    let v: Value = serde_json::from_str(&observe_graph(&from_other, "json")).expect("JSON");
    let filtered = v["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["id"] == "other/client->default/frontend")
        .expect("client -> frontend from namespace other");
    for field in [
        "secondarystat",
        "packets",
        "connections",
        "mainstat",
        "verdicts",
    ] {
        assert_eq!(filtered[field], cf[field], "{field}: {filtered} vs {cf}");
    }

    // DOT renders with Graphviz.
    let dot = observe_graph(&addr, "dot");
    assert!(
        dot.contains("\"default/frontend\" -> \"default/api\""),
        "{dot}"
    );
    let svg = test_support::graphviz::svg(&dot);
    assert!(svg.contains("frontend"), "{svg}");
}
