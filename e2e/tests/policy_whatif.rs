//! Policy what-if end to end: the built-in scenario (two nodes) with its real
//! flow-probes and a relay keeping history, one round of its traffic, then
//! the relay's `policy_replay` and the real `observe policy whatif`.
//!
//! - Held to the kernel: with an empty draft every connection's first
//!   packet in history (its PolicyVerdict flow, or its NEW trace where no
//!   policy judged it) is replayed once, none flips, and the replayed
//!   verdict and rule are the datapath's own (the flow's verdict and the
//!   policy it names).
//! - A draft denying `other/client -> default/frontend` reports exactly the
//!   first packets frontend received from client (audited today) as allowed
//!   → denied by the draft's rule, and exits 3.
//! - A draft allowing `other/client -> default/api:8080` reports exactly
//!   the POLICY_DENIED flows as denied → allowed by the draft's rule, exit 0.
//! - A draft that changes nothing reports nothing and exits 0.
//!
//! The expected flows are picked from the relay's ring with the flows' own
//! fields, not with the replay's code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use observe_cli::connect::Target;
use observe_lab::{ItemReport, Scenario, node_probes, run_traffic_once};
use observer_proto::flow::layer4::Protocol;
use observer_proto::flow::{
    DropReason, Flow, TraceObservationPoint, TraceReason, TrafficDirection, Verdict,
};
use serde_json::Value;

const DENY_CLIENT_FRONTEND: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: frontend-deny-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: frontend}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client, io.kubernetes.pod.namespace: other}}]
";

const ALLOW_CLIENT_API: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-allow-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client, io.kubernetes.pod.namespace: other}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}]}]
";

/// The scenario's own api policy again, and a policy that selects nothing.
const NO_CHANGE: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-allow-frontend, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: frontend}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: nobody, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: nobody}}
  ingressDeny:
  - fromEndpoints: [{}]
";

/// Cilium's monitor message types of drops, traces and policy verdicts.
const DROP: i32 = 1;
const TRACE: i32 = 4;
const POLICY_VERDICT: i32 = 5;

fn event_type(f: &Flow) -> Option<i32> {
    f.event_type.as_ref().map(|t| t.r#type)
}

/// A connection's first packet on an endpoint's interface, once: the
/// PolicyVerdict of what the datapath judged (a denial's, not its Drop),
/// or the NEW trace of what no policy judged.
fn first_packet(f: &Flow) -> bool {
    event_type(f) == Some(POLICY_VERDICT)
        || (event_type(f) == Some(TRACE)
            && f.trace_reason() == TraceReason::New
            && f.is_reply == Some(false)
            && matches!(
                point(f),
                TraceObservationPoint::FromEndpoint | TraceObservationPoint::ToEndpoint
            ))
}

/// Where a first packet was seen: its observation point, or for a denial
/// (which has none, as in Hubble) the end its direction names.
fn point(f: &Flow) -> TraceObservationPoint {
    match (f.trace_observation_point(), f.traffic_direction()) {
        (TraceObservationPoint::UnknownPoint, TrafficDirection::Ingress) => {
            TraceObservationPoint::ToEndpoint
        }
        (TraceObservationPoint::UnknownPoint, TrafficDirection::Egress) => {
            TraceObservationPoint::FromEndpoint
        }
        (p, _) => p,
    }
}

fn pod(e: &Option<observer_proto::flow::Endpoint>) -> String {
    e.as_ref()
        .map(|e| format!("{}/{}", e.namespace, e.pod_name))
        .unwrap_or_default()
}

/// `f` is the first packet of `item`'s connection, seen at `at`: from its
/// client's address and port (the server's may be a service's VIP).
fn sent_by(f: &Flow, item: &ItemReport, at: TraceObservationPoint) -> bool {
    let source = f.ip.as_ref().map(|ip| ip.source.as_str());
    // TCP and UDP by port, ICMP as an echo request.
    let port = match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => Some(t.source_port),
        Some(Protocol::Udp(u)) => Some(u.source_port),
        Some(Protocol::IcmPv4(i)) if i.r#type == 8 => None,
        Some(Protocol::IcmPv6(i)) if i.r#type == 128 => None,
        _ => return false,
    };
    first_packet(f)
        && point(f) == at
        && source == Some(item.src_ip.to_string().as_str())
        && port == item.src_port.map(u32::from)
}

/// IPv6 neighbour discovery and multicast listener messages: never judged.
fn exempt(f: &Flow) -> bool {
    observer_proto::icmpv6::flow_is_link_housekeeping(f)
}

/// The rule the datapath named for a flow: the policy in its verdict,
/// `default deny` for a verdict without one, none for a plain trace.
fn recorded_rule(f: &Flow) -> Option<String> {
    let named = [
        &f.ingress_allowed_by,
        &f.ingress_denied_by,
        &f.egress_allowed_by,
        &f.egress_denied_by,
    ]
    .into_iter()
    .flatten()
    .map(|p| format!("{}/{}", p.namespace, p.name))
    .next();
    match (event_type(f) == Some(POLICY_VERDICT), named) {
        (false, _) => None,
        (true, Some(n)) => Some(n),
        (true, None) => Some("default deny".into()),
    }
}

/// Text columns of a SQL answer, by row.
async fn sql_rows(target: &Target, sql: &str, columns: &[&str]) -> Vec<Vec<Option<String>>> {
    use arrow::array::{Array, AsArray};
    let (_, batches) = observe_cli::query_command::query(target, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:#}"));
    let mut rows = Vec::new();
    for b in &batches {
        let cols: Vec<_> = columns
            .iter()
            .map(|c| b.column_by_name(c).expect(c).as_string::<i32>())
            .collect();
        for i in 0..b.num_rows() {
            rows.push(
                cols.iter()
                    .map(|a| a.is_valid(i).then(|| a.value(i).to_string()))
                    .collect(),
            );
        }
    }
    rows
}

/// Runs `observe policy whatif` on `draft`: its exit code and its output.
fn whatif(env_args: &[String], dir: &Path, draft: &str, format: &str) -> (i32, String) {
    let file = dir.join(format!("draft-{format}-{}.yaml", draft.len()));
    std::fs::write(&file, draft).unwrap();
    let mut args: Vec<String> = [
        "policy",
        "whatif",
        "--since",
        "30m",
        "--examples",
        "100",
        "-o",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format.into());
    args.push(file.display().to_string());
    args.extend(env_args.iter().cloned());
    let out = std::process::Command::new(e2e::observe_binary())
        .args(&args)
        .output()
        .expect("run observe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.is_empty() || out.status.code() == Some(3),
        "observe {args:?}: {stderr}"
    );
    (
        out.status.code().expect("an exit code"),
        String::from_utf8(out.stdout).expect("utf-8"),
    )
}

/// `observe policy whatif -o json` on `draft`, which must exit with `code`.
fn whatif_json(server: &[String], dir: &Path, draft: &str, code: i32) -> Value {
    let (exit, out) = whatif(server, dir, draft, "json");
    assert_eq!(exit, code, "{out}");
    serde_json::from_str(&out).expect("JSON")
}

/// The JSON report has exactly one group: `change` on `source -> target`
/// by `rule` (after), with exactly the flows `uuids` (every one an example).
fn assert_one_group(v: &Value, want: [&str; 4], uuids: &BTreeSet<String>) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let groups: Vec<([String; 4], BTreeSet<String>)> = v["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|g| {
            let examples: BTreeSet<String> = g["examples"]
                .as_array()
                .expect("examples")
                .iter()
                .map(|e| s(&e["uuid"]))
                .collect();
            assert_eq!(g["flows"].as_u64(), Some(examples.len() as u64), "{g}");
            let key = [
                &g["change"],
                &g["source"],
                &g["target"],
                &g["after"]["rule"],
            ]
            .map(s);
            (key, examples)
        })
        .collect();
    assert_eq!(groups, [(want.map(String::from), uuids.clone())], "{v}");
    assert_eq!(v["unreplayed"], serde_json::json!([]), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draft_replayed_over_the_default_scenarios_history() {
    let scenario = Scenario::builtin_default();
    let mut env = e2e::start(&scenario, &[]);
    let probes = env.probes.clone();
    let relay = node_probes::start_relay(&mut env.lab, &probes, 0).expect("relay starts");
    let report = tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario))
        .expect("traffic runs");
    assert!(report.all_as_expected(), "{report}");
    // Every item's first packet, where it left and where it arrived.
    let ring = env
        .server(relay.addr)
        .wait_for("every item's first packet at both ends", |flows| {
            report.items.iter().all(|item| {
                [
                    TraceObservationPoint::FromEndpoint,
                    TraceObservationPoint::ToEndpoint,
                ]
                .iter()
                .all(|at| flows.iter().any(|f| sent_by(f, item, *at)))
            })
        })
        .await;
    let firsts: BTreeMap<String, &Flow> = ring
        .iter()
        .filter(|f| first_packet(f))
        .map(|f| (f.uuid.clone(), f))
        .collect();
    let target = env.connect_args(relay.addr).target(&[]).expect("flags");

    // Both nodes' policies are recorded, with the scenario's three policies.
    let deadline = std::time::Instant::now() + e2e::WAIT;
    let states = loop {
        let rows = sql_rows(
            &target,
            "SELECT node, policies FROM policy_states ORDER BY node",
            &["node", "policies"],
        )
        .await;
        if rows.len() == 2 || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let policies = "default/api-allow-frontend,default/db-deny-client,default/frontend-audit";
    assert_eq!(
        states,
        [
            [Some("node1".into()), Some(policies.into())],
            [Some("node2".into()), Some(policies.into())]
        ]
    );

    // Held to the kernel: every first packet replays to its own verdict.
    let replay_sql = "SELECT uuid, verdict, verdict_before, rule_before, change, problem \
                      FROM policy_replay('')";
    let columns = [
        "uuid",
        "verdict",
        "verdict_before",
        "rule_before",
        "change",
        "problem",
    ];
    let deadline = std::time::Instant::now() + e2e::WAIT;
    let replayed = loop {
        let rows = sql_rows(&target, replay_sql, &columns).await;
        let seen: BTreeSet<&str> = rows.iter().filter_map(|r| r[0].as_deref()).collect();
        if firsts.keys().all(|u| seen.contains(u.as_str())) || std::time::Instant::now() > deadline
        {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let mut checked = 0;
    for r in &replayed {
        let uuid = r[0].as_deref().expect("uuid");
        assert_eq!(r[4].as_deref(), Some("UNCHANGED"), "{r:?}");
        assert_eq!(r[5], None, "{r:?}");
        let Some(f) = firsts.get(uuid) else {
            continue; // flows of before the round: history has them, the ring may not
        };
        let kernel = Verdict::try_from(f.verdict).expect("verdict").as_str_name();
        assert_eq!(
            (r[2].as_deref(), r[3].clone()),
            (Some(kernel), recorded_rule(f)),
            "the replay of {uuid} ({} -> {}) differs from the datapath's",
            pod(&f.source),
            pod(&f.destination)
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        firsts.len(),
        "every first packet of the ring is replayed"
    );
    let verdicts: BTreeSet<&str> = replayed.iter().filter_map(|r| r[2].as_deref()).collect();
    assert_eq!(verdicts, BTreeSet::from(["AUDIT", "DROPPED", "FORWARDED"]));

    let dir = env.state_dir.clone();
    let server = env.server_args(relay.addr);

    // Deny client -> frontend: the first packets frontend got from client.
    let to_frontend: BTreeSet<String> = firsts
        .values()
        .filter(|f| {
            point(f) == TraceObservationPoint::ToEndpoint
                && pod(&f.destination) == "default/frontend"
                && !exempt(f)
        })
        .map(|f| {
            assert_eq!(pod(&f.source), "other/client", "{f:?}");
            assert_eq!(f.verdict(), Verdict::Audit, "{f:?}");
            f.uuid.clone()
        })
        .collect();
    assert_eq!(to_frontend.len(), 3, "ICMPv4, ICMPv6 and TCP/9999");
    let v = whatif_json(&server, &dir, DENY_CLIENT_FRONTEND, 3);
    let want = [
        "ALLOWED_TO_DENIED",
        "other/client",
        "default/frontend",
        "default/frontend-deny-client",
    ];
    assert_one_group(&v, want, &to_frontend);
    assert_eq!(v["edges"][0]["before"]["verdict"], "AUDIT");
    assert_eq!(v["edges"][0]["after"]["verdict"], "DROPPED");
    let (code, dot) = whatif(&server, &dir, DENY_CLIENT_FRONTEND, "dot");
    assert_eq!(code, 3);
    assert!(
        dot.contains("\"other/client\" -> \"default/frontend\" [label=")
            && dot.contains("3 would be denied (default/frontend-deny-client)\", color=red"),
        "{dot}"
    );
    assert!(
        dot.contains("\"default/frontend\" -> \"default/api\" [label=")
            && dot.contains("color=grey"),
        "{dot}"
    );
    test_support::graphviz::svg(&dot);

    // Allow client -> api:8080: exactly the POLICY_DENIED verdicts of
    // default deny; their Drop twins are not first packets.
    let denied: BTreeSet<String> = ring
        .iter()
        .filter(|f| {
            f.drop_reason_desc() == DropReason::PolicyDenied
                && event_type(f) == Some(POLICY_VERDICT)
        })
        .map(|f| {
            assert_eq!(
                (pod(&f.source).as_str(), pod(&f.destination).as_str()),
                ("other/client", "default/api")
            );
            f.uuid.clone()
        })
        .collect();
    let drops = ring
        .iter()
        .filter(|f| f.drop_reason_desc() == DropReason::PolicyDenied && event_type(f) == Some(DROP))
        .count();
    assert!(!denied.is_empty());
    assert_eq!(drops, denied.len(), "a Drop for every denial's verdict");
    let v = whatif_json(&server, &dir, ALLOW_CLIENT_API, 0);
    let want = [
        "DENIED_TO_ALLOWED",
        "other/client",
        "default/api",
        "default/api-allow-client",
    ];
    assert_one_group(&v, want, &denied);
    assert_eq!(v["edges"][0]["before"]["rule"], "default deny");

    // Nothing changes: nothing reported, exit 0.
    let (code, out) = whatif(&server, &dir, NO_CHANGE, "table");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "allowed today, denied with the draft: 0 flows\n\
         denied today, allowed with the draft: 0 flows\n"
    );
}
