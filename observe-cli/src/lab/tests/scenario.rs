//! Scenario parsing, validation errors and topology plans (no root needed).

use crate::lab::*;

fn parse_err(text: &str) -> String {
    Scenario::parse(text, "lab.yaml").unwrap_err().to_string()
}

const TWO: &str = "endpoints:\n\
    - {name: a, namespace: ns}\n\
    - {name: b, namespace: ns}\n";

#[test]
fn builtin_default_scenario_plans_the_documented_topology() {
    let s = Scenario::builtin_default();
    assert_eq!(s.endpoints.len(), 4);
    assert_eq!(s.traffic.len(), 8);
    let t = Topology::plan(&s, "obs12345").unwrap();
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
    assert!(
        err.starts_with("scenario lab.yaml: traffic[0].port: invalid value: integer `70000`"),
        "{err}"
    );
    let err = parse_err(&format!(
        "{TWO}traffic:\n- {{from: a, to: b, protocol: sctp, port: 1}}\n"
    ));
    assert!(
        err.starts_with("scenario lab.yaml: traffic[0].protocol: unknown variant `sctp`"),
        "{err}"
    );
    let err = Scenario::load(std::path::Path::new("/nonexistent/lab.yaml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "scenario /nonexistent/lab.yaml: No such file or directory (os error 2)"
    );
}

#[test]
fn cleanup_prefix_refuses_unsafe_prefixes() {
    for bad in ["", "ob", "obs-", "a*", "OBS123"] {
        assert!(cleanup_prefix(bad).is_err(), "{bad:?}");
    }
    assert_eq!(cleanup_prefix("obsnone0").unwrap(), Vec::<String>::new());
}
