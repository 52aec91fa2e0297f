//! Scenario parsing, validation errors and topology plans (no root needed).

use std::time::Duration;

use crate::*;

fn parse_err(text: &str) -> String {
    shown(Scenario::parse(text, "lab.yaml").unwrap_err())
}

/// An error as `observe` prints it: with its chain of sources, each once.
fn shown(e: ScenarioError) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

const TWO: &str = "endpoints:\n\
    - {name: a, namespace: ns}\n\
    - {name: b, namespace: ns}\n";

#[test]
fn builtin_scenarios_plan_the_documented_topology() {
    check_builtin_topology(&Scenario::builtin_capture());
    // The default adds api-2, a second backend of the api service, after api,
    // and puts it and the client on a second node.
    let d = Scenario::builtin_default();
    let names: Vec<(&str, &str)> = d
        .endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.node.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("frontend", "node1"),
            ("api", "node1"),
            ("api-2", "node2"),
            ("db", "node1"),
            ("client", "node2")
        ]
    );
    let t = Topology::plan(&d, "obs12345").unwrap();
    let nodes: Vec<&str> = t.nodes.iter().map(|n| n.netns.as_str()).collect();
    assert_eq!(nodes, ["obs12345-node1", "obs12345-node2"]);
    let plan: Vec<(u32, &str, String, String, &str)> = t
        .endpoints
        .iter()
        .map(|e| {
            (
                e.id,
                e.name.as_str(),
                e.ipv4.to_string(),
                e.ipv6.to_string(),
                e.node_netns.as_str(),
            )
        })
        .collect();
    let row = |id, name, v4: &str, v6: &str, node| (id, name, v4.to_string(), v6.to_string(), node);
    assert_eq!(
        plan,
        [
            row(
                1,
                "frontend",
                "198.18.1.10",
                "fd42:0:0:1::10",
                "obs12345-node1"
            ),
            row(2, "api", "198.18.1.11", "fd42:0:0:1::11", "obs12345-node1"),
            row(
                3,
                "api-2",
                "198.18.2.10",
                "fd42:0:0:2::10",
                "obs12345-node2"
            ),
            row(4, "db", "198.18.1.12", "fd42:0:0:1::12", "obs12345-node1"),
            row(
                5,
                "client",
                "198.18.2.11",
                "fd42:0:0:2::11",
                "obs12345-node2"
            ),
        ]
    );
    assert_eq!(t.node_links.len(), 1, "node2's bridge cabled to node1's");
    assert_eq!(d.services.len(), 1);
}

fn check_builtin_topology(s: &Scenario) {
    assert_eq!(s.endpoints.len(), 4, "{}", s.origin);
    assert_eq!(s.traffic.len(), 8, "{}", s.origin);
    let t = Topology::plan(s, "obs12345").unwrap();
    assert_eq!(t.nodes.len(), 1);
    assert_eq!(t.nodes[0].netns, "obs12345-node1");
    assert_eq!(t.nodes[0].bridge, "br0");
    let rows: Vec<(u32, &str, String, String, &str, &str)> = t
        .endpoints
        .iter()
        .map(|e| {
            (
                e.id,
                e.netns.as_str(),
                e.ipv4.to_string(),
                e.ipv6.to_string(),
                e.host_interface.as_str(),
                e.interface.as_str(),
            )
        })
        .collect();
    let want = [
        (
            1,
            "obs12345-frontend",
            "198.18.1.10",
            "fd42:0:0:1::10",
            "lxc1",
            "eth0",
        ),
        (
            2,
            "obs12345-api",
            "198.18.1.11",
            "fd42:0:0:1::11",
            "lxc2",
            "eth0",
        ),
        (
            3,
            "obs12345-db",
            "198.18.1.12",
            "fd42:0:0:1::12",
            "lxc3",
            "eth0",
        ),
        (
            4,
            "obs12345-client",
            "198.18.1.13",
            "fd42:0:0:1::13",
            "lxc4",
            "eth0",
        ),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|w| (w.0, w.1, w.2.to_string(), w.3.to_string(), w.4, w.5))
        .collect();
    assert_eq!(rows, want);
    assert!(
        t.endpoints
            .iter()
            .all(|e| e.routes_v4.is_empty() && e.routes_v6.is_empty())
    );
    let file = t.endpoints_file();
    assert_eq!(file.endpoints[3].namespace, "other");
    assert_eq!(file.endpoints[3].interface.as_deref(), Some("lxc4"));
    assert_eq!(file.endpoints[3].node, "node1");
}

#[test]
fn explicit_addresses_are_kept_and_skipped_and_nodes_get_subnets() {
    let s = Scenario::parse(
        "endpoints:\n\
         - {name: a, namespace: ns, ipv6: 'fd42:0:0:1::11'}\n\
         - {name: b, namespace: ns, ipv4: 198.18.1.10}\n\
         - {name: c, namespace: ns, node: node2}\n",
        "x.yaml",
    )
    .unwrap();
    let t = Topology::plan(&s, "obsabc").unwrap();
    let addrs: Vec<String> = t
        .endpoints
        .iter()
        .map(|e| format!("{} {}", e.ipv4, e.ipv6))
        .collect();
    assert_eq!(
        addrs,
        [
            "198.18.1.11 fd42:0:0:1::11",
            "198.18.1.10 fd42:0:0:1::10",
            "198.18.2.10 fd42:0:0:2::10"
        ]
    );
    assert_eq!(
        t.endpoints[0].routes_v4,
        ["198.18.2.0".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(
        t.endpoints[2].routes_v6,
        ["fd42:0:0:1::".parse::<std::net::Ipv6Addr>().unwrap()]
    );
    assert_eq!(t.node_links.len(), 1);
    assert_eq!(
        (
            t.node_links[0].netns_a.as_str(),
            t.node_links[0].dev_a.as_str()
        ),
        ("obsabc-node1", "nlk2")
    );
    assert_eq!(
        (
            t.node_links[0].netns_b.as_str(),
            t.node_links[0].dev_b.as_str()
        ),
        ("obsabc-node2", "nlk1")
    );
}

#[test]
fn scenario_errors_name_file_field_and_problem() {
    let traffic = |items: &str| format!("{TWO}traffic:\n{items}");
    let ok = "  - {from: a, to: b, protocol: tcp, port: 80}\n";
    assert_eq!(
        parse_err(&traffic(&format!(
            "{ok}{ok}  - {{from: a, to: apii, protocol: tcp, port: 80}}\n"
        ))),
        r#"scenario lab.yaml: traffic[2].to: unknown endpoint "apii""#
    );
    assert_eq!(
        parse_err("endpoints:\n- {name: a, namespace: ns}\n- {name: a, namespace: x}\n"),
        r#"scenario lab.yaml: endpoints[1].name: duplicate endpoint name "a" (also endpoints[0])"#
    );
    assert_eq!(
        parse_err(&traffic("  - {from: a, to: b, protocol: tcp, port: 0}\n")),
        "scenario lab.yaml: traffic[0].port: 0 is not a valid port (1-65535)"
    );
    assert_eq!(
        parse_err(&traffic("  - {from: a, to: b, protocol: udp}\n")),
        "scenario lab.yaml: traffic[0].port: required for udp"
    );
    assert_eq!(
        parse_err(&traffic("  - {from: a, to: b, protocol: icmp, port: 7}\n")),
        "scenario lab.yaml: traffic[0].port: not allowed for icmp"
    );
    assert_eq!(
        parse_err(&traffic(
            "  - {from: a, to: b, protocol: icmp, expect: refused}\n"
        )),
        "scenario lab.yaml: traffic[0].expect: refused applies only to tcp and udp"
    );
    assert_eq!(
        parse_err(&traffic("  - {from: a, to: a, protocol: icmp}\n")),
        r#"scenario lab.yaml: traffic[0].to: same endpoint as from ("a"); traffic must cross the lab network"#
    );
    assert_eq!(
        parse_err(&traffic(
            "  - {from: a, to: b, protocol: udp, port: 53, response_bytes: 9}\n"
        )),
        "scenario lab.yaml: traffic[0].response_bytes: not allowed for udp (the reply echoes the request)"
    );
    assert_eq!(
        parse_err(&traffic(
            "  - {from: a, to: b, protocol: tcp, port: 1, expect: refused, request_bytes: 5}\n"
        )),
        "scenario lab.yaml: traffic[0].request_bytes: not allowed with expect: refused (no connection, no data)"
    );
    assert_eq!(
        parse_err("endpoints:\n- {name: a, namespace: ns, ipv4: 192.0.2.5}\n"),
        "scenario lab.yaml: endpoints[0].ipv4: 192.0.2.5 is outside the lab range 198.18.0.0/15"
    );
    assert_eq!(
        parse_err("endpoints:\n- {name: a, namespace: ns, ipv6: 'fd00::5'}\n"),
        "scenario lab.yaml: endpoints[0].ipv6: fd00::5 is outside the lab range fd42::/16"
    );
    assert_eq!(
        parse_err(
            "endpoints:\n- {name: a, namespace: ns, ipv4: 198.18.1.9}\n- {name: b, namespace: ns, ipv4: 198.18.1.9}\n"
        ),
        "scenario lab.yaml: endpoints[1].ipv4: 198.18.1.9 is already used by endpoints[0] (a)"
    );
    assert_eq!(
        parse_err("endpoints:\n- {name: Front_End, namespace: ns}\n"),
        "scenario lab.yaml: endpoints[0].name: name \"Front_End\" must be 1-20 characters of a-z, 0-9 \
         and '-', starting and ending with a letter or digit"
    );
    assert_eq!(
        parse_err("endpoints:\n- {name: node1, namespace: ns}\n"),
        r#"scenario lab.yaml: endpoints[0].name: "node1" is also the name of a node"#
    );
    assert_eq!(
        parse_err("endpoints: []\n"),
        "scenario lab.yaml: endpoints: at least one endpoint is needed"
    );
}

#[test]
fn serde_errors_carry_the_file_and_the_field_path() {
    let err = parse_err("endpoints:\n- {name: a, namespace: ns, colour: red}\n");
    assert!(
        err.starts_with("scenario lab.yaml: endpoints[0]: unknown field `colour`"),
        "{err}"
    );
    let err = parse_err(&format!(
        "{TWO}traffic:\n- {{from: a, to: b, protocol: tcp, port: 70000}}\n"
    ));
    assert_eq!(
        err,
        "scenario lab.yaml: traffic[0].port: invalid u16 at line 5 column 41"
    );
    let err = parse_err(&format!(
        "{TWO}traffic:\n- {{from: a, to: b, protocol: sctp, port: 1}}\n"
    ));
    assert!(
        err.starts_with("scenario lab.yaml: traffic[0].protocol: unknown variant `sctp`"),
        "{err}"
    );
    let err = shown(Scenario::load(std::path::Path::new("/nonexistent/lab.yaml")).unwrap_err());
    assert_eq!(
        err,
        "scenario /nonexistent/lab.yaml: No such file or directory (os error 2)"
    );
}

#[test]
fn only_regular_files_of_bounded_depth_are_read() {
    let dir = test_support::scratch::ScratchDir::new("scenario-inputs");
    let fifo = dir.fifo("scenario.yaml");
    assert_eq!(
        shown(Scenario::load(&fifo).unwrap_err()),
        format!(
            "scenario {}: not a regular file but a FIFO; only regular files are read",
            fifo.display()
        )
    );
    let nested = dir.path().join("nested.yaml");
    std::fs::write(&nested, format!("endpoints: {}", "[".repeat(200_000))).unwrap();
    let err = shown(Scenario::load(&nested).unwrap_err());
    assert_eq!(
        err,
        format!(
            "scenario {}: nested deeper than the limit of 32 levels at line 1 column 44",
            nested.display()
        )
    );
}

#[test]
fn cleanup_prefix_refuses_unsafe_prefixes() {
    for bad in ["", "ob", "obs-", "a*", "OBS123"] {
        assert!(cleanup_prefix(bad).is_err(), "{bad:?}");
    }
    assert_eq!(cleanup_prefix("obsnone0").unwrap(), Vec::<String>::new());
}

/// One traffic item as (from, to, protocol, port, family, expect, request, response).
type Row = (
    String,
    String,
    Protocol,
    Option<u16>,
    Family,
    Expect,
    u32,
    u32,
);

fn rows(s: &Scenario) -> Vec<Row> {
    s.traffic
        .iter()
        .map(|t| {
            (
                t.from.clone(),
                t.to.clone(),
                t.protocol,
                t.port,
                t.family,
                t.expect,
                t.request_bytes(),
                t.response_bytes(),
            )
        })
        .collect()
}

fn row(
    (from, to): (&str, &str),
    protocol: Protocol,
    port: Option<u16>,
    family: Family,
    expect: Expect,
    (request, response): (u32, u32),
) -> Row {
    (
        from.to_string(),
        to.to_string(),
        protocol,
        port,
        family,
        expect,
        request,
        response,
    )
}

#[test]
fn builtin_capture_scenario_is_the_policy_free_traffic_mix() {
    use Expect::{Ok as Fine, Refused};
    use Family::{Ipv4, Ipv6};
    use Protocol::{Icmp, Tcp, Udp};
    let s = Scenario::builtin_capture();
    assert_eq!(s.origin, "<built-in capture>");
    assert!(s.policies.is_empty());
    assert_eq!(
        rows(&s),
        [
            row(
                ("frontend", "api"),
                Tcp,
                Some(8080),
                Ipv4,
                Fine,
                (100, 1000)
            ),
            row(
                ("frontend", "api"),
                Tcp,
                Some(8080),
                Ipv6,
                Fine,
                (200, 2000)
            ),
            row(("api", "db"), Tcp, Some(5432), Ipv4, Fine, (300, 3000)),
            row(("client", "api"), Tcp, Some(9999), Ipv4, Refused, (0, 0)),
            row(("client", "db"), Udp, Some(5353), Ipv4, Fine, (64, 64)),
            row(("client", "db"), Udp, Some(5353), Ipv6, Fine, (48, 48)),
            row(("client", "frontend"), Icmp, None, Ipv4, Fine, (56, 56)),
            row(("client", "frontend"), Icmp, None, Ipv6, Fine, (56, 56)),
        ]
    );
    // The default's endpoints, without the second api backend, all on one node.
    let mut defaults = Scenario::builtin_default().endpoints;
    defaults.retain(|e| e.name != "api-2");
    for e in &mut defaults {
        e.node = "node1".to_string();
    }
    assert_eq!(s.endpoints, defaults);
}

#[test]
fn builtin_default_scenario_has_policies_and_traffic_for_every_verdict() {
    use Expect::{Dropped, Ok as Fine, Refused};
    use Family::{Ipv4, Ipv6};
    use Protocol::{Icmp, Tcp, Udp};
    let s = Scenario::builtin_default();
    assert_eq!(
        rows(&s),
        [
            row(
                ("frontend", "api"),
                Tcp,
                Some(8080),
                Ipv4,
                Fine,
                (100, 1000)
            ),
            row(
                ("frontend", "api"),
                Tcp,
                Some(8080),
                Ipv6,
                Fine,
                (200, 2000)
            ),
            row(("api", "db"), Tcp, Some(5432), Ipv4, Fine, (300, 3000)),
            row(("frontend", ""), Tcp, Some(80), Ipv4, Fine, (100, 1000)),
            row(("frontend", ""), Tcp, Some(80), Ipv6, Fine, (100, 1000)),
            row(("client", "api"), Tcp, Some(8080), Ipv4, Dropped, (0, 0)),
            row(("client", "db"), Udp, Some(5353), Ipv4, Dropped, (64, 0)),
            row(("client", "frontend"), Icmp, None, Ipv4, Fine, (56, 56)),
            row(("client", "frontend"), Icmp, None, Ipv6, Fine, (56, 56)),
            row(
                ("client", "frontend"),
                Tcp,
                Some(9999),
                Ipv4,
                Refused,
                (0, 0)
            ),
        ]
    );
    // The servers of dropped items run with the sizes of ok items.
    assert_eq!(s.traffic[3].to_service.as_deref(), Some("api"));
    assert_eq!(s.traffic[5].exchange_bytes(), (100, 1000));
    assert_eq!(s.traffic[6].exchange_bytes(), (64, 64));

    let yaml = |text: &str| -> serde_json::Value { cluster_spec::yaml::from_str(text).unwrap() };
    let want = [
        yaml(
            "apiVersion: cilium.io/v2\n\
             kind: CiliumNetworkPolicy\n\
             metadata: {name: api-allow-frontend, namespace: default}\n\
             spec:\n  \
               endpointSelector: {matchLabels: {app: api}}\n  \
               ingress:\n  \
               - fromEndpoints: [{matchLabels: {app: frontend}}]\n    \
                 toPorts: [{ports: [{port: '8080', protocol: TCP}]}]\n",
        ),
        yaml(
            "apiVersion: cilium.io/v2\n\
             kind: CiliumNetworkPolicy\n\
             metadata: {name: db-deny-client, namespace: default}\n\
             spec:\n  \
               endpointSelector: {matchLabels: {app: db}}\n  \
               ingress:\n  \
               - fromEndpoints: [{matchLabels: {app: api}}]\n    \
                 toPorts: [{ports: [{port: '5432', protocol: TCP}]}]\n  \
               ingressDeny:\n  \
               - fromEndpoints: [{matchLabels: {app: client, io.kubernetes.pod.namespace: other}}]\n",
        ),
        yaml(
            "apiVersion: cilium.io/v2\n\
             kind: CiliumNetworkPolicy\n\
             metadata: {name: frontend-audit, namespace: default, annotations: {observe.io/audit: 'true'}}\n\
             spec:\n  \
               endpointSelector: {matchLabels: {app: frontend}}\n  \
               ingress: [{fromEndpoints: [{matchLabels: {app: api}}]}]\n",
        ),
    ];
    assert_eq!(s.policies, want);
    // Ports are strings, as in Cilium; the audit annotation is the string "true".
    assert_eq!(
        s.policies[0]["spec"]["ingress"][0]["toPorts"][0]["ports"][0]["port"].as_str(),
        Some("8080")
    );
    assert_eq!(
        s.policies[2]["metadata"]["annotations"]["observe.io/audit"].as_str(),
        Some("true")
    );
}

const TWO_POLICIES: &str = "endpoints:\n\
    - {name: a, namespace: ns}\n\
    policies:\n\
    - apiVersion: cilium.io/v2\n  \
      kind: CiliumNetworkPolicy\n  \
      metadata: {name: one, namespace: ns}\n  \
      spec: {endpointSelector: {matchLabels: {app: a}}, ingress: [{fromCIDR: [10.0.0.0/8]}]}\n\
    - {apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: two.x-1}, spec: {endpointSelector: {}, egressDeny: [{toPorts: [{ports: [{port: '53', protocol: UDP}]}]}]}}\n";

#[test]
fn policies_are_kept_as_written_and_survive_the_state_file() {
    let s = Scenario::parse(TWO_POLICIES, "p.yaml").unwrap();
    assert_eq!(s.policies.len(), 2);
    assert_eq!(s.policies[0]["metadata"]["name"].as_str(), Some("one"));
    assert_eq!(
        s.policies[0]["spec"]["ingress"][0]["fromCIDR"][0].as_str(),
        Some("10.0.0.0/8")
    );
    assert_eq!(s.policies[1]["metadata"]["name"].as_str(), Some("two.x-1"));
    assert_eq!(
        s.policies[1]["spec"]["egressDeny"][0]["toPorts"][0]["ports"][0]["protocol"].as_str(),
        Some("UDP")
    );
    // state.json carries the scenario as JSON; the policies come back unchanged.
    let json = serde_json::to_string(&s).unwrap();
    let mut back: Scenario = serde_json::from_str(&json).unwrap();
    back.origin = s.origin.clone();
    assert_eq!(back, s);
    // And a scenario without policies does not mention them.
    let none = Scenario::parse(TWO, "two.yaml").unwrap();
    assert!(none.policies.is_empty());
    assert!(!serde_json::to_string(&none).unwrap().contains("policies"));
}

#[test]
fn policy_errors_name_the_field_and_problem() {
    let with =
        |items: &str| format!("endpoints:\n- {{name: a, namespace: ns}}\npolicies:\n{items}");
    let ok = "- {kind: CiliumNetworkPolicy, metadata: {name: ok}}\n";
    assert_eq!(
        parse_err(&with(&format!(
            "{ok}- {{kind: CiliumNetworkPolicy, metadata: {{namespace: ns}}}}\n"
        ))),
        "scenario lab.yaml: policies[1].metadata.name: missing"
    );
    assert_eq!(
        parse_err(&with(&format!("{ok}- {{kind: CiliumNetworkPolicy}}\n"))),
        "scenario lab.yaml: policies[1].metadata.name: missing"
    );
    assert_eq!(
        parse_err(&with("- {kind: CiliumNetworkPolicy, metadata: [x]}\n")),
        "scenario lab.yaml: policies[0].metadata: must be a mapping, not a sequence"
    );
    assert_eq!(
        parse_err(&with(
            "- {kind: CiliumNetworkPolicy, metadata: {name: 7}}\n"
        )),
        "scenario lab.yaml: policies[0].metadata.name: must be a string, not a number"
    );
    assert_eq!(
        parse_err(&with(
            "- {kind: CiliumNetworkPolicy, metadata: {name: Allow_All}}\n"
        )),
        "scenario lab.yaml: policies[0].metadata.name: name \"Allow_All\" must be 1-253 characters \
         of a-z, 0-9, '-' and '.', starting and ending with a letter or digit"
    );
    assert_eq!(
        parse_err(&with(
            "- {kind: CiliumNetworkPolicy, metadata: {name: ''}}\n"
        )),
        "scenario lab.yaml: policies[0].metadata.name: name \"\" must be 1-253 characters \
         of a-z, 0-9, '-' and '.', starting and ending with a letter or digit"
    );
    assert_eq!(
        parse_err(&with(
            "- {kind: CiliumNetworkPolicy, metadata: {name: ../x}}\n"
        )),
        "scenario lab.yaml: policies[0].metadata.name: name \"../x\" must be 1-253 characters \
         of a-z, 0-9, '-' and '.', starting and ending with a letter or digit"
    );
    assert_eq!(
        parse_err(&with(
            "- {kind: CiliumNetworkPolicy, metadata: {name: x, namespace: [ns]}}\n"
        )),
        "scenario lab.yaml: policies[0].metadata.namespace: must be a string, not a sequence"
    );
    assert_eq!(
        parse_err(&with("- {metadata: {name: x}}\n")),
        "scenario lab.yaml: policies[0].kind: missing"
    );
    assert_eq!(
        parse_err(&with("- {kind: NetworkPolicy, metadata: {name: x}}\n")),
        "scenario lab.yaml: policies[0].kind: \"NetworkPolicy\" is not supported (only CiliumNetworkPolicy)"
    );
    assert_eq!(
        parse_err(&with(
            "- {kind: [CiliumNetworkPolicy], metadata: {name: x}}\n"
        )),
        "scenario lab.yaml: policies[0].kind: must be the string CiliumNetworkPolicy, not a sequence"
    );
    assert_eq!(
        parse_err(&with(&format!(
            "{ok}- {{kind: CiliumNetworkPolicy, metadata: {{name: ok2}}}}\n- just text\n"
        ))),
        "scenario lab.yaml: policies[2]: must be a mapping (a CiliumNetworkPolicy document), not a string"
    );
    assert_eq!(
        parse_err(&with(
            "- {kind: CiliumNetworkPolicy, metadata: {name: p, namespace: ns}}\n\
             - {kind: CiliumNetworkPolicy, metadata: {name: p, namespace: other}}\n\
             - {kind: CiliumNetworkPolicy, metadata: {name: p}}\n\
             - {kind: CiliumNetworkPolicy, metadata: {name: p, namespace: ns}}\n"
        )),
        "scenario lab.yaml: policies[3].metadata.name: duplicate policy \"ns/p\" (also policies[0])"
    );
    assert_eq!(
        parse_err(&with(
            "- {kind: CiliumNetworkPolicy, metadata: {name: p}}\n\
             - {kind: CiliumNetworkPolicy, metadata: {name: p}}\n"
        )),
        "scenario lab.yaml: policies[1].metadata.name: duplicate policy \"p\" (also policies[0])"
    );
    let err = parse_err(
        "endpoints:\n- {name: a, namespace: ns}\npolicies: {kind: CiliumNetworkPolicy}\n",
    );
    assert_eq!(
        err,
        "scenario lab.yaml: policies: expected sequence start at line 3 column 11"
    );
}

/// Each node runs a flow-probe: 33 nodes are refused before anything is
/// built, 32 parse.
#[test]
fn a_scenario_of_more_nodes_than_probes_to_start_is_refused() {
    let nodes = |n: usize| {
        let eps: String = (0..n)
            .map(|i| format!("- {{name: ep{i}, namespace: ns, node: n{i}}}\n"))
            .collect();
        format!("endpoints:\n{eps}")
    };
    assert_eq!(
        Scenario::parse(&nodes(32), "lab.yaml")
            .unwrap()
            .nodes()
            .len(),
        32
    );
    assert_eq!(
        parse_err(&nodes(33)),
        "scenario lab.yaml: endpoints: 33 nodes; at most 32 are supported: each runs a \
         flow-probe of its own (about 60 MB), started one after another"
    );
}

/// A policy flow-probe would refuse (it keeps what was in force, here
/// nothing: the endpoint stays open) is refused with the scenario, naming
/// the policy, the field and the problem.
#[test]
fn policies_the_probes_would_refuse_are_refused_up_front() {
    let with = |spec: &str| {
        format!(
            "endpoints:\n- {{name: a, namespace: ns, labels: {{app: a}}}}\npolicies:\n\
             - apiVersion: cilium.io/v2\n  kind: CiliumNetworkPolicy\n  \
             metadata: {{name: p, namespace: ns}}\n  spec: {spec}\n"
        )
    };
    let port = "{endpointSelector: {matchLabels: {app: a}}, ingress: [{toPorts: [{ports: \
                [{port: '99999', protocol: TCP}]}]}]}";
    let err = parse_err(&with(port));
    assert!(
        err.starts_with(
            "scenario lab.yaml: policies[0].spec.ingress[0].toPorts[0].ports[0].port: "
        ) && err.contains("99999"),
        "{err}"
    );
    let unknown = "{endpointSelector: {matchLabels: {app: a}}, ingres: []}";
    let err = parse_err(&with(unknown));
    assert!(
        err.starts_with("scenario lab.yaml: policies[0].spec") && err.contains("ingres"),
        "{err}"
    );
    assert!(
        !err.contains(" line "),
        "no line of a text the user never wrote: {err}"
    );
    let fine = "{endpointSelector: {matchLabels: {app: a}}, ingress: [{toPorts: [{ports: \
                [{port: '8080', protocol: TCP}]}]}]}";
    assert_eq!(
        Scenario::parse(&with(fine), "lab.yaml")
            .unwrap()
            .policies
            .len(),
        1
    );
}

#[test]
fn dropped_items_parse_size_and_validate() {
    let s = Scenario::parse(
        &format!(
            "{TWO}traffic:\n\
             - {{from: a, to: b, protocol: tcp, port: 80, expect: dropped}}\n\
             - {{from: a, to: b, protocol: udp, port: 53, request_bytes: 30, expect: dropped}}\n\
             - {{from: a, to: b, protocol: udp, port: 53, family: ipv6, expect: dropped}}\n\
             - {{from: a, to: b, protocol: icmp, expect: dropped}}\n\
             - {{from: a, to: b, protocol: icmp, request_bytes: 0, expect: dropped}}\n"
        ),
        "d.yaml",
    )
    .unwrap();
    assert!(s.traffic.iter().all(|t| t.expect == Expect::Dropped));
    let sizes: Vec<_> = s
        .traffic
        .iter()
        .map(|t| (t.request_bytes(), t.response_bytes(), t.exchange_bytes()))
        .collect();
    assert_eq!(
        sizes,
        [
            (0, 0, (100, 1000)),
            (30, 0, (30, 30)),
            (64, 0, (64, 64)),
            (56, 0, (56, 56)),
            (0, 0, (0, 0)),
        ]
    );
    // Other expectations size the exchange as they always did.
    let ok = Scenario::parse(
        &format!(
            "{TWO}traffic:\n\
             - {{from: a, to: b, protocol: tcp, port: 80, request_bytes: 5, response_bytes: 7}}\n\
             - {{from: a, to: b, protocol: udp, port: 80, expect: refused}}\n"
        ),
        "ok.yaml",
    )
    .unwrap();
    assert_eq!(ok.traffic[0].exchange_bytes(), (5, 7));
    assert_eq!(ok.traffic[1].exchange_bytes(), (64, 0));
    assert_eq!(
        [Expect::Ok, Expect::Refused, Expect::Dropped].map(|e| e.to_string()),
        ["ok", "refused", "dropped"]
    );
    assert_eq!(
        serde_json::to_string(&Expect::Dropped).unwrap(),
        "\"dropped\""
    );

    let traffic = |item: &str| format!("{TWO}traffic:\n{item}");
    assert_eq!(
        parse_err(&traffic(
            "- {from: a, to: b, protocol: tcp, port: 80, expect: dropped, response_bytes: 5}\n"
        )),
        "scenario lab.yaml: traffic[0].response_bytes: not allowed with expect: dropped (no connection, no data)"
    );
    assert_eq!(
        parse_err(&traffic(
            "- {from: a, to: b, protocol: tcp, port: 80, expect: dropped, request_bytes: 5}\n"
        )),
        "scenario lab.yaml: traffic[0].request_bytes: not allowed with expect: dropped (no connection, no data)"
    );
    assert_eq!(
        parse_err(&traffic(
            "- {from: a, to: b, protocol: udp, port: 80, expect: dropped, response_bytes: 5}\n"
        )),
        "scenario lab.yaml: traffic[0].response_bytes: not allowed for udp (the reply echoes the request)"
    );
    assert_eq!(
        parse_err(&traffic(
            "- {from: a, to: b, protocol: icmp, expect: dropped, request_bytes: 1401}\n"
        )),
        "scenario lab.yaml: traffic[0].request_bytes: 1401 is over 1400 for icmp"
    );
    let err = parse_err(&traffic(
        "- {from: a, to: b, protocol: icmp, expect: drop}\n",
    ));
    assert_eq!(
        err,
        "scenario lab.yaml: traffic[0].expect: unknown variant `drop`, expected one of ok, refused, \
         dropped at line 5 column 44"
    );
}

fn item(expect: Expect, outcome: Outcome) -> ItemReport {
    ItemReport {
        index: 3,
        from: "client".into(),
        to: "api".into(),
        protocol: Protocol::Tcp,
        family: Family::Ipv4,
        expect,
        src_ip: "198.18.1.13".parse().unwrap(),
        dst_ip: "198.18.1.11".parse().unwrap(),
        src_port: Some(40312),
        dst_port: Some(8080),
        icmp_id: None,
        icmp_seq: None,
        outcome,
        bytes_sent: 0,
        bytes_received: 0,
        server_bytes_received: 0,
        server_bytes_sent: 0,
        started_unix_ns: 1,
        finished_unix_ns: 2,
    }
}

#[test]
fn dropped_outcomes_match_only_dropped_expectations() {
    let failed = Outcome::Failed { error: "x".into() };
    let outcomes = [
        Outcome::Completed,
        Outcome::Refused,
        Outcome::Dropped,
        failed,
    ];
    for expect in [Expect::Ok, Expect::Refused, Expect::Dropped] {
        let matched: Vec<bool> = outcomes
            .iter()
            .map(|o| item(expect, o.clone()).as_expected())
            .collect();
        let want = match expect {
            Expect::Ok => [true, false, false, false],
            Expect::Refused => [false, true, false, false],
            Expect::Dropped => [false, false, true, false],
        };
        assert_eq!(matched, want, "{expect}");
    }
    assert_eq!(Outcome::Dropped.to_string(), "dropped");
    assert_eq!(
        serde_json::to_string(&Outcome::Dropped).unwrap(),
        r#"{"kind":"dropped"}"#
    );
    assert_eq!(
        item(Expect::Dropped, Outcome::Dropped).to_string(),
        "[3] tcp client 198.18.1.13:40312 -> api 198.18.1.11:8080: dropped, sent 0 B, received 0 B"
    );
    assert_eq!(
        item(Expect::Dropped, Outcome::Completed).to_string(),
        "[3] tcp client 198.18.1.13:40312 -> api 198.18.1.11:8080: completed, sent 0 B, \
         received 0 B (UNEXPECTED: wanted dropped)"
    );
    assert_eq!(
        item(Expect::Ok, Outcome::Dropped).to_string(),
        "[3] tcp client 198.18.1.13:40312 -> api 198.18.1.11:8080: dropped, sent 0 B, \
         received 0 B (UNEXPECTED: wanted ok)"
    );
    assert_eq!(DROP_WAIT, Duration::from_millis(500));
}

#[test]
fn a_summary_counts_rounds_items_and_the_unexpected() {
    let round = |outcomes: [Outcome; 2]| TrafficReport {
        prefix: "obsx".into(),
        items: outcomes.into_iter().map(|o| item(Expect::Ok, o)).collect(),
    };
    let mut summary = TrafficSummary::default();
    summary.add(&round([Outcome::Completed, Outcome::Completed]));
    assert_eq!(summary.to_string(), "1 round, 2 items, 0 not as expected");
    assert_eq!(summary.last_unexpected, None);
    summary.add(&round([Outcome::Dropped, Outcome::Completed]));
    assert_eq!(summary.to_string(), "2 rounds, 4 items, 1 not as expected");
    assert_eq!(
        summary.last_unexpected,
        Some(item(Expect::Ok, Outcome::Dropped))
    );
}
