//! The seed corpus of every target in `targets.rs`, committed in
//! `tests/__fuzz__/<target>/corpus/`: valid inputs of each shape, and a few
//! refusals. [`the_committed_corpus_is_current`] checks the files against
//! what is built here and that the valid seeds are accepted; after a format
//! changes, rewrite them with
//! `cargo test -p fuzz --test write_corpus -- --ignored`.

use std::path::PathBuf;

use flow_probe::kernel::events::{
    self, EVENT_FLOW, EVENT_SOCK_XLATE, EVENT_TCP_LIFECYCLE, EVENT_VERSION, EventHeader, FlowEvent,
    FlowKey, SockXlateEvent, TcpLifecycleEvent,
};
use observer_proto::flow::{FlowFilter, LostEvent, TcpFlags, Workload};
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use observer_proto::relay::NodeStatusEvent;
use observer_proto::time::timestamp;
use prost::Message;

type Seeds = Vec<(&'static str, Vec<u8>)>;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/__fuzz__")
        .join(target)
        .join("corpus")
}

fn header(r#type: u8, len: usize) -> EventHeader {
    EventHeader {
        r#type,
        version: EVENT_VERSION,
        len: len as u16,
        _pad0: 0,
    }
}

fn events() -> Seeds {
    let tcp = FlowEvent {
        hdr: header(EVENT_FLOW, size_of::<FlowEvent>()),
        ktime_ns: 42,
        key: FlowKey {
            saddr: [198, 18, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [198, 18, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sport: 40000,
            dport: 8080,
            proto: 6,
            family: 4,
            ifindex: 7,
            ..Default::default()
        },
        packets: 3,
        bytes: 300,
        tcp_flags: 0x12,
        ..Default::default()
    };
    let mut v6 = [0u8; 16];
    v6[..2].copy_from_slice(&[0xfd, 0x42]);
    v6[15] = 2;
    let udp6_drop = FlowEvent {
        key: FlowKey {
            saddr: v6,
            daddr: v6,
            sport: 5353,
            dport: 53,
            proto: 17,
            family: 6,
            hook: 1,
            ifindex: 7,
            ..Default::default()
        },
        verdict: 2,
        kind: 2,
        drop_reason: 133,
        policy_id: 7,
        remote_identity: 300,
        ..tcp
    };
    let xlate = SockXlateEvent {
        hdr: header(EVENT_SOCK_XLATE, size_of::<SockXlateEvent>()),
        ktime_ns: 7,
        socket_cookie: 99,
        vip: tcp.key.daddr,
        backend: tcp.key.saddr,
        vip_port: 80,
        backend_port: 8080,
        family: 4,
        proto: 6,
        xlate_point: 2,
        service_id: 1,
        src: tcp.key.saddr,
        src_port: 40000,
        netns_cookie: 4097,
        ..Default::default()
    };
    let size = size_of::<TcpLifecycleEvent>();
    let mut lifecycle = vec![0u8; size];
    lifecycle[..2].copy_from_slice(&[EVENT_TCP_LIFECYCLE, EVENT_VERSION]);
    lifecycle[2..4].copy_from_slice(&(size as u16).to_ne_bytes());
    let flow = events::encode_flow(&tcp);
    let mut old_version = flow.clone();
    old_version[1] = EVENT_VERSION - 1;
    vec![
        ("flow-tcp-v4", flow.clone()),
        ("flow-udp-v6-drop", events::encode_flow(&udp6_drop)),
        ("sock-xlate", events::encode_sock_xlate(&xlate)),
        ("tcp-lifecycle", lifecycle),
        ("short", flow[..20].to_vec()),
        ("old-version", old_version),
    ]
}

fn requests() -> Seeds {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let rich = FlowFilter {
        source_ip: s(&["198.18.0.2", "10.0.0.0/8", "fd42::/16"]),
        source_pod: s(&["default/front", "/api", "kube-system/"]),
        destination_label: s(&["k8s:app=api", "tier in (data, web)", "!canary"]),
        node_name: s(&["node*", "prod/k8s-*"]),
        destination_port: s(&["8080", "53"]),
        protocol: s(&["tcp", "UDP", "icmpv6"]),
        tcp_flags: vec![TcpFlags {
            syn: true,
            ..Default::default()
        }],
        source_workload: vec![Workload {
            name: "frontend".into(),
            kind: "Deployment".into(),
        }],
        ..Default::default()
    };
    let request = |whitelist, blacklist| GetFlowsRequest {
        number: 20,
        since: Some(timestamp(1)),
        whitelist,
        blacklist,
        ..Default::default()
    };
    vec![
        (
            "rich-whitelist",
            request(vec![rich.clone()], vec![]).encode_to_vec(),
        ),
        (
            "blacklist",
            request(
                vec![],
                vec![FlowFilter {
                    verdict: vec![2],
                    reply: vec![true],
                    ..Default::default()
                }],
            )
            .encode_to_vec(),
        ),
        (
            "bad-cidr",
            request(
                vec![FlowFilter {
                    destination_ip: s(&["10.0.0.0/33"]),
                    ..Default::default()
                }],
                vec![],
            )
            .encode_to_vec(),
        ),
        (
            "first-and-follow",
            GetFlowsRequest {
                first: true,
                follow: true,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    ]
}

fn responses() -> Seeds {
    let flows = test_support::graph_flows::flows();
    let flow = |i: usize| test_support::history_flows::response(flows[i].clone()).encode_to_vec();
    let other = |r| {
        GetFlowsResponse {
            node_name: "node1".into(),
            time: Some(timestamp(5)),
            response_types: Some(r),
        }
        .encode_to_vec()
    };
    vec![
        ("flow-first", flow(0)),
        ("flow-last", flow(flows.len() - 1)),
        (
            "lost-events",
            other(ResponseTypes::LostEvents(LostEvent {
                source: 2,
                num_events_lost: 6,
                ..Default::default()
            })),
        ),
        (
            "node-status",
            other(ResponseTypes::NodeStatus(NodeStatusEvent {
                state_change: 2,
                node_names: vec!["node2".into()],
                message: "unavailable".into(),
            })),
        ),
    ]
}

const POLICY: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-from-frontend, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: frontend}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}]}]
  egressDeny:
  - toCIDR: [203.0.113.0/24]
";

fn text(seeds: &[(&'static str, &str)]) -> Seeds {
    seeds
        .iter()
        .map(|(name, t)| (*name, t.as_bytes().to_vec()))
        .collect()
}

/// Every target's seeds.
fn corpus() -> Vec<(&'static str, Seeds)> {
    let mut all = vec![
        ("event_decoder", events()),
        ("flow_filter", requests()),
        ("protojson", responses()),
    ];
    let two = format!("{POLICY}---\n{}", POLICY.replace("api-from", "db-from"));
    let nested = format!("spec: {}", "[".repeat(40));
    all.push((
        "policy_file",
        text(&[
            ("allow-and-deny", POLICY),
            ("two-documents", &two),
            ("unknown-field", &POLICY.replace("ingress:", "ingres:")),
            ("nested", &nested),
        ]),
    ));
    all.push((
        "services_and_endpoints_files",
        text(&[
            (
                "services",
                "services:\n- name: api\n  namespace: default\n  vip: {ipv4: 198.18.100.10, ipv6: 'fd42:100::10'}\n  ports: [{port: 80, protocol: TCP, targetPort: 8080}, {port: 53, protocol: UDP}]\n  selector: {app: api}\n",
            ),
            (
                "endpoints",
                "endpoints:\n- {id: 1, name: a, namespace: ns, labels: {app: a}, ipv4: 198.18.0.2, node: n1}\n- {id: 2, name: b, namespace: ns, labels: {app: b}, ipv6: 'fd42::3', node: n2}\n",
            ),
            (
                "duplicate-id",
                "endpoints:\n- {id: 1, name: a, namespace: ns}\n- {id: 1, name: b, namespace: ns}\n",
            ),
        ]),
    ));
    all.push((
        "scenario_file",
        text(&[
            ("default", include_str!("../../lab/scenarios/default.yaml")),
            ("capture", include_str!("../../lab/scenarios/capture.yaml")),
            (
                "unknown-endpoint",
                "endpoints:\n- {name: a, namespace: ns}\ntraffic:\n- {from: a, to: b, protocol: tcp, port: 80}\n",
            ),
        ]),
    ));
    let nested = format!("SELECT {}1{}", "(".repeat(10), ")".repeat(10));
    all.push((
        "sql_guard",
        text(&[
            (
                "select",
                "SELECT verdict, count(*) FROM flows GROUP BY verdict ORDER BY 2 DESC LIMIT 5",
            ),
            (
                "with-join",
                "WITH e AS (SELECT * FROM graph_edges) SELECT n.id FROM graph_nodes n JOIN e ON n.id = e.source",
            ),
            (
                "explain",
                "EXPLAIN SELECT * FROM flows WHERE source_port = 80",
            ),
            ("drop", "DROP TABLE flows"),
            ("copy", "COPY flows TO '/tmp/x.csv'"),
            ("read-csv", "SELECT * FROM read_csv('/etc/passwd')"),
            ("two-statements", "SELECT 1; SELECT 2"),
            ("nested", &nested),
        ]),
    ));
    all
}

#[test]
#[ignore = "writes the committed corpus; run by hand after a format changes"]
fn write_seed_corpus() {
    for (target, seeds) in corpus() {
        let dir = corpus_dir(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

#[test]
fn the_committed_corpus_is_current() {
    for (target, seeds) in corpus() {
        let mut on_disk: Vec<String> = std::fs::read_dir(corpus_dir(target))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut names: Vec<String> = seeds.iter().map(|(n, _)| n.to_string()).collect();
        names.sort();
        assert_eq!(
            on_disk, names,
            "{target}: rewrite the corpus (see the top of this file)"
        );
        for (name, bytes) in seeds {
            let file = corpus_dir(target).join(name);
            assert!(
                std::fs::read(&file).unwrap() == bytes,
                "{} is stale",
                file.display()
            );
        }
    }
}

#[test]
fn the_valid_seeds_are_accepted() {
    let seeds = corpus();
    let seed = |target: &str, name: &str| {
        let (_, seeds) = seeds.iter().find(|(t, _)| *t == target).unwrap();
        let (_, bytes) = seeds.iter().find(|(n, _)| *n == name).unwrap();
        bytes.clone()
    };
    let text = |target: &str, name: &str| String::from_utf8(seed(target, name)).unwrap();
    for name in [
        "flow-tcp-v4",
        "flow-udp-v6-drop",
        "sock-xlate",
        "tcp-lifecycle",
    ] {
        assert!(
            events::decode(&seed("event_decoder", name)).is_ok(),
            "{name}"
        );
    }
    for name in ["rich-whitelist", "blacklist"] {
        let request = GetFlowsRequest::decode(seed("flow_filter", name).as_slice()).unwrap();
        let query = observer_runtime::query::FlowQuery::parse(&request);
        assert!(query.is_ok(), "{name}: {:?}", query.err());
    }
    for name in ["allow-and-deny", "two-documents"] {
        let parsed = cluster_spec::policy::parse(&text("policy_file", name), name);
        assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
    }
    for name in ["default", "capture"] {
        let parsed = observe_lab::Scenario::parse(&text("scenario_file", name), name);
        assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
    }
    for name in ["select", "with-join", "explain", "nested"] {
        let checked = relay::sql::guard::check(&text("sql_guard", name));
        assert!(checked.is_ok(), "{name}: {:?}", checked.err());
    }
}
