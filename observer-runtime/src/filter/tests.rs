use super::*;
use observer_proto::flow::{
    CiliumEventType, DropReason, Ip, IpVersion, Layer4, Service, TrafficDirection, Udp,
    flow_filter::Experimental,
};
use observer_proto::flow::{IcmPv4, IcmPv6};
use test_support::flows::{endpoint, flags, ip, tcp};

/// u1: frontend → backend SYN; u2: DNS to the world on another cluster;
/// u3: backend's SYN-ACK reply; u4: dropped ICMPv6; u5: traced, encrypted ICMPv4.
fn flows() -> Vec<Flow> {
    let mut frontend = endpoint(
        "default",
        "frontend-abc",
        256,
        &["k8s:app=frontend", "k8s:tier=web"],
    );
    frontend.workloads = vec![Workload {
        name: "frontend".into(),
        kind: "Deployment".into(),
    }];
    frontend.cluster_name = "default".into();
    let backend = endpoint("shop", "backend-xyz", 257, &["k8s:app=backend"]);
    let world = endpoint("", "", 2, &["reserved:world"]);
    vec![
        Flow {
            uuid: "u1".into(),
            verdict: Verdict::Forwarded as i32,
            ip: ip("10.0.0.1", "10.0.1.5"),
            l4: tcp(40000, 80, flags("SYN")),
            source: Some(frontend.clone()),
            destination: Some(backend.clone()),
            destination_service: Some(Service {
                name: "backend-svc".into(),
                namespace: "shop".into(),
            }),
            node_name: "node-a".into(),
            traffic_direction: TrafficDirection::Egress as i32,
            is_reply: Some(false),
            event_type: Some(CiliumEventType {
                r#type: 4,
                sub_type: 0,
            }),
            ..Default::default()
        },
        Flow {
            uuid: "u2".into(),
            verdict: Verdict::Forwarded as i32,
            ip: ip("10.0.0.1", "198.18.0.10"),
            l4: Some(Layer4 {
                protocol: Some(Protocol::Udp(Udp {
                    source_port: 5353,
                    destination_port: 53,
                })),
            }),
            source: Some(frontend.clone()),
            destination: Some(world),
            destination_names: vec!["dns.example.com".into()],
            node_name: "cluster-b/node-b".into(),
            traffic_direction: TrafficDirection::Egress as i32,
            is_reply: Some(false),
            event_type: Some(CiliumEventType {
                r#type: 4,
                sub_type: 0,
            }),
            ..Default::default()
        },
        Flow {
            uuid: "u3".into(),
            verdict: Verdict::Forwarded as i32,
            ip: ip("10.0.1.5", "10.0.0.1"),
            l4: tcp(
                80,
                40000,
                TcpFlags {
                    syn: true,
                    ack: true,
                    ..Default::default()
                },
            ),
            source: Some(backend),
            destination: Some(frontend.clone()),
            source_service: Some(Service {
                name: "backend-svc".into(),
                namespace: "shop".into(),
            }),
            node_name: "node-a".into(),
            traffic_direction: TrafficDirection::Ingress as i32,
            is_reply: Some(true),
            event_type: Some(CiliumEventType {
                r#type: 4,
                sub_type: 0,
            }),
            ..Default::default()
        },
        Flow {
            uuid: "u4".into(),
            verdict: Verdict::Dropped as i32,
            drop_reason_desc: DropReason::PolicyDenied as i32,
            ip: ip("fd00::1", "fd00::2"),
            l4: Some(Layer4 {
                protocol: Some(Protocol::IcmPv6(IcmPv6 {
                    r#type: 128,
                    code: 0,
                })),
            }),
            node_name: "node-b".into(),
            event_type: Some(CiliumEventType {
                r#type: 1,
                sub_type: 133,
            }),
            ..Default::default()
        },
        Flow {
            uuid: "u5".into(),
            verdict: Verdict::Traced as i32,
            ip: Some(Ip {
                encrypted: true,
                ..ip("10.0.0.1", "198.18.5.5").unwrap_or_default()
            }),
            l4: Some(Layer4 {
                protocol: Some(Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 })),
            }),
            source: Some(frontend),
            node_name: "node-a".into(),
            interface: Some(NetworkInterface {
                index: 2,
                name: "eth0".into(),
            }),
            ..Default::default()
        },
    ]
}

/// UUIDs of the flows that pass.
fn pass(white: &[&FlowFilter], black: &[&FlowFilter]) -> Vec<String> {
    let owned = |list: &[&FlowFilter]| list.iter().map(|f| (*f).clone()).collect::<Vec<_>>();
    let m = compile(&owned(white), &owned(black)).expect("filters compile");
    flows()
        .into_iter()
        .filter(|f| m.matches(f))
        .map(|f| f.uuid)
        .collect()
}

/// UUIDs selected by a single whitelist filter.
fn only(f: FlowFilter) -> Vec<String> {
    pass(&[&f], &[])
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn err(f: FlowFilter) -> FilterError {
    compile(&[f], &[]).expect_err("filter must be rejected")
}

#[test]
fn no_filters_match_everything() {
    assert_eq!(pass(&[], &[]), strs(&["u1", "u2", "u3", "u4", "u5"]));
    assert!(FlowMatcher::default().is_match_all());
    // An empty filter has no conditions: it matches all flows...
    assert_eq!(only(FlowFilter::default()).len(), 5);
    // ...so as a blacklist entry it excludes all of them.
    assert!(pass(&[], &[&FlowFilter::default()]).is_empty());
}

#[test]
fn ip_exact_and_cidr() {
    let src = |v: &[&str]| FlowFilter {
        source_ip: strs(v),
        ..Default::default()
    };
    let dst = |v: &[&str]| FlowFilter {
        destination_ip: strs(v),
        ..Default::default()
    };
    assert_eq!(only(src(&["10.0.1.5"])), strs(&["u3"]));
    assert_eq!(only(dst(&["198.18.0.0/16"])), strs(&["u2", "u5"]));
    assert_eq!(only(dst(&["198.18.0.0/24"])), strs(&["u2"]));
    assert_eq!(only(dst(&["10.0.1.5", "fd00::/64"])), strs(&["u1", "u4"]));
    assert_eq!(only(dst(&["0.0.0.0/0"])), strs(&["u1", "u2", "u3", "u5"]));
    // Host bits in the prefix are ignored, as with Go's netip.
    assert_eq!(only(src(&["10.0.0.77/24"])), strs(&["u1", "u2", "u5"]));
    // Unset source_xlated never matches.
    let xlated = FlowFilter {
        source_ip_xlated: strs(&["0.0.0.0/0"]),
        ..Default::default()
    };
    assert!(only(xlated).is_empty());
}

#[test]
fn invalid_ip_entries_are_rejected_by_value() {
    for bad in [
        "10.0.0.0/33",
        "not-an-ip",
        "10.0.0.1/",
        "10.0.0.0/+8",
        "fd00::/129",
        "",
    ] {
        let e = err(FlowFilter {
            destination_ip: strs(&["10.0.0.1", bad]),
            ..Default::default()
        });
        assert_eq!(
            e,
            FilterError::InvalidCidr {
                field: "destination_ip",
                value: bad.into()
            }
        );
        assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
    }
}

#[test]
fn pods_follow_hubble_namespace_rules() {
    let src = |v: &[&str]| FlowFilter {
        source_pod: strs(v),
        ..Default::default()
    };
    let dst = |v: &[&str]| FlowFilter {
        destination_pod: strs(v),
        ..Default::default()
    };
    assert_eq!(only(src(&["default/"])), strs(&["u1", "u2", "u5"]));
    assert_eq!(only(src(&["default/frontend"])), strs(&["u1", "u2", "u5"]));
    assert_eq!(only(src(&["shop/back"])), strs(&["u3"]));
    // No slash means the "default" namespace.
    assert_eq!(only(src(&["frontend-"])), strs(&["u1", "u2", "u5"]));
    assert!(only(src(&["backend"])).is_empty());
    // A leading slash means any namespace.
    assert_eq!(only(src(&["/backend"])), strs(&["u3"]));
    assert_eq!(
        only(dst(&["shop/", "default/frontend-abc"])),
        strs(&["u1", "u3"])
    );
    // The world endpoint has no namespace or pod: never matched.
    assert_eq!(only(dst(&["/"])), strs(&["u1", "u3"]));
    assert_eq!(
        err(src(&[""])),
        FilterError::EmptyName {
            field: "source_pod"
        }
    );
}

#[test]
fn services_use_pod_syntax() {
    let dst = |v: &[&str]| FlowFilter {
        destination_service: strs(v),
        ..Default::default()
    };
    assert_eq!(only(dst(&["shop/backend"])), strs(&["u1"]));
    assert_eq!(only(dst(&["shop/"])), strs(&["u1"]));
    assert!(
        only(dst(&["backend-svc"])).is_empty(),
        "bare name is namespace default"
    );
    let src = FlowFilter {
        source_service: strs(&["/backend-svc"]),
        ..Default::default()
    };
    assert_eq!(only(src), strs(&["u3"]));
}

#[test]
fn label_selectors() {
    let src = |v: &[&str]| FlowFilter {
        source_label: strs(v),
        ..Default::default()
    };
    let dst = |v: &[&str]| FlowFilter {
        destination_label: strs(v),
        ..Default::default()
    };
    let front = strs(&["u1", "u2", "u5"]);
    assert_eq!(only(src(&["k8s:app=frontend"])), front);
    assert_eq!(
        only(src(&["app=frontend"])),
        front,
        "no source = any source"
    );
    assert_eq!(only(src(&["any:app==frontend"])), front);
    assert!(only(src(&["container:app=frontend"])).is_empty());
    assert_eq!(only(src(&["k8s:app=frontend,k8s:tier=web"])), front);
    assert!(
        only(src(&["app=frontend, tier=db"])).is_empty(),
        "comma is AND"
    );
    assert_eq!(
        only(src(&["tier=db", "app=backend"])),
        strs(&["u3"]),
        "entries OR"
    );
    assert_eq!(only(src(&["app in (backend, other)"])), strs(&["u3"]));
    assert_eq!(only(src(&["app notin (frontend)"])), strs(&["u3", "u4"]));
    assert_eq!(only(src(&["app!=frontend"])), strs(&["u3", "u4"]));
    assert_eq!(only(src(&["tier"])), front);
    assert_eq!(only(src(&["!tier"])), strs(&["u3", "u4"]));
    assert_eq!(only(dst(&["reserved:world"])), strs(&["u2"]));
    assert_eq!(only(dst(&["app=backend,!tier"])), strs(&["u1"]));
    for bad in [
        "app=(x",
        "app in x",
        "app in ()",
        "=x",
        "app =x y",
        "app>one",
    ] {
        assert!(
            matches!(
                err(src(&[bad])),
                FilterError::InvalidLabelSelector { field: "source_label", ref selector, .. }
                    if selector == bad
            ),
            "{bad:?} should be rejected"
        );
    }
}

#[test]
fn ports() {
    let src = |v: &[&str]| FlowFilter {
        source_port: strs(v),
        ..Default::default()
    };
    let dst = |v: &[&str]| FlowFilter {
        destination_port: strs(v),
        ..Default::default()
    };
    assert_eq!(only(dst(&["80"])), strs(&["u1"]));
    assert_eq!(only(src(&["80"])), strs(&["u3"]));
    assert_eq!(only(dst(&["53", "40000"])), strs(&["u2", "u3"]));
    // ICMP flows have no ports, not port 0.
    assert!(only(dst(&["0"])).is_empty());
    for bad in ["http", "70000", "+80", "", "-1", " 80"] {
        assert_eq!(
            err(dst(&[bad])),
            FilterError::InvalidPort {
                field: "destination_port",
                value: bad.into()
            }
        );
    }
}

#[test]
fn protocols() {
    let p = |v: &[&str]| FlowFilter {
        protocol: strs(v),
        ..Default::default()
    };
    assert_eq!(only(p(&["tcp"])), strs(&["u1", "u3"]));
    assert_eq!(only(p(&["UDP"])), strs(&["u2"]));
    assert_eq!(only(p(&["icmp"])), strs(&["u4", "u5"]));
    assert_eq!(only(p(&["ICMPv4"])), strs(&["u5"]));
    assert_eq!(only(p(&["icmpv6"])), strs(&["u4"]));
    assert_eq!(only(p(&["udp", "icmpv6"])), strs(&["u2", "u4"]));
    assert!(
        only(p(&["http"])).is_empty(),
        "valid, but our flows carry no L7"
    );
    assert!(only(p(&["sctp"])).is_empty());
    assert_eq!(
        err(p(&["tcp", "quic"])),
        FilterError::UnknownProtocol {
            value: "quic".into()
        }
    );
}

#[test]
fn verdict_direction_version_uuid() {
    let v = |v: &[Verdict]| FlowFilter {
        verdict: v.iter().map(|v| *v as i32).collect(),
        ..Default::default()
    };
    assert_eq!(only(v(&[Verdict::Dropped])), strs(&["u4"]));
    assert_eq!(only(v(&[Verdict::Forwarded])), strs(&["u1", "u2", "u3"]));
    assert_eq!(
        only(v(&[Verdict::Dropped, Verdict::Traced])),
        strs(&["u4", "u5"])
    );
    let dir = FlowFilter {
        traffic_direction: vec![TrafficDirection::Ingress as i32],
        ..Default::default()
    };
    assert_eq!(only(dir), strs(&["u3"]));
    let ver = FlowFilter {
        ip_version: vec![IpVersion::IPv6 as i32],
        ..Default::default()
    };
    assert_eq!(only(ver), strs(&["u4"]));
    let ids = FlowFilter {
        uuid: strs(&["u2", "u5", "nope"]),
        ..Default::default()
    };
    assert_eq!(only(ids), strs(&["u2", "u5"]));
}

#[test]
fn drop_reason_needs_a_drop() {
    let d = |r: DropReason| FlowFilter {
        drop_reason_desc: vec![r as i32],
        ..Default::default()
    };
    assert_eq!(only(d(DropReason::PolicyDenied)), strs(&["u4"]));
    assert!(only(d(DropReason::PolicyDeny)).is_empty());
    // Forwarded flows carry reason 0 but are not drops.
    assert!(only(d(DropReason::Unknown)).is_empty());
}

#[test]
fn tcp_flags_entry_is_a_subset_test() {
    let f = |flags: Vec<TcpFlags>| FlowFilter {
        tcp_flags: flags,
        ..Default::default()
    };
    let ack = TcpFlags {
        ack: true,
        ..Default::default()
    };
    let syn_ack = TcpFlags {
        syn: true,
        ack: true,
        ..Default::default()
    };
    let fin = TcpFlags {
        fin: true,
        ..Default::default()
    };
    assert_eq!(only(f(vec![flags("SYN")])), strs(&["u1", "u3"]));
    assert_eq!(only(f(vec![syn_ack])), strs(&["u3"]));
    assert!(only(f(vec![fin])).is_empty());
    assert_eq!(only(f(vec![fin, ack])), strs(&["u3"]), "entries OR");
}

#[test]
fn event_type_and_sub_type() {
    let e = |t: i32, m: bool, s: i32| FlowFilter {
        event_type: vec![EventTypeFilter {
            r#type: t,
            match_sub_type: m,
            sub_type: s,
        }],
        ..Default::default()
    };
    assert_eq!(
        only(e(4, false, 99)),
        strs(&["u1", "u2", "u3"]),
        "sub_type ignored"
    );
    assert_eq!(only(e(1, true, 133)), strs(&["u4"]));
    assert!(only(e(1, true, 5)).is_empty());
    // Type 0 is a wildcard, but a flow without event type never matches.
    assert_eq!(only(e(0, false, 0)), strs(&["u1", "u2", "u3", "u4"]));
}

#[test]
fn node_name_patterns() {
    let n = |v: &[&str]| FlowFilter {
        node_name: strs(v),
        ..Default::default()
    };
    assert_eq!(only(n(&["node-a"])), strs(&["u1", "u3", "u5"]));
    assert_eq!(
        only(n(&["Node-A"])),
        strs(&["u1", "u3", "u5"]),
        "pattern lowercased"
    );
    // A pattern without a cluster part matches in every cluster...
    assert_eq!(only(n(&["node-b"])), strs(&["u2", "u4"]));
    // ...while a flow's bare node name is in cluster "default".
    assert_eq!(only(n(&["default/node-b"])), strs(&["u4"]));
    assert_eq!(only(n(&["cluster-b/"])), strs(&["u2"]));
    assert_eq!(only(n(&["*/node-b"])), strs(&["u2", "u4"]));
    assert_eq!(
        only(n(&["default/node-*"])),
        strs(&["u1", "u3", "u4", "u5"])
    );
    assert_eq!(only(n(&["node-*", "cluster-*/"])).len(), 5);
    assert!(only(n(&["node"])).is_empty(), "no implicit prefix match");
    for bad in ["a/b/c", "node_a!", "", "."] {
        assert!(matches!(
            err(n(&[bad])),
            FilterError::InvalidPattern { field: "node_name", ref value, .. } if value == bad
        ));
    }
}

#[test]
fn reply_follows_hubble_rule() {
    let r = |v: &[bool]| FlowFilter {
        reply: v.to_vec(),
        ..Default::default()
    };
    assert_eq!(only(r(&[true])), strs(&["u3"]));
    // Unknown direction counts as "not a reply" only for drops (u4), not u5.
    assert_eq!(only(r(&[false])), strs(&["u1", "u2", "u4"]));
    assert_eq!(only(r(&[true, false])), strs(&["u1", "u2", "u3", "u4"]));
}

#[test]
fn identity_workload_cluster_fqdn_interface_encrypted() {
    let f = FlowFilter {
        source_identity: vec![257],
        ..Default::default()
    };
    assert_eq!(only(f), strs(&["u3"]));
    let f = FlowFilter {
        destination_identity: vec![2, 256],
        ..Default::default()
    };
    assert_eq!(only(f), strs(&["u2", "u3"]));

    let w = |name: &str, kind: &str| FlowFilter {
        source_workload: vec![Workload {
            name: name.into(),
            kind: kind.into(),
        }],
        ..Default::default()
    };
    assert_eq!(only(w("frontend", "")), strs(&["u1", "u2", "u5"]));
    assert_eq!(only(w("", "Deployment")), strs(&["u1", "u2", "u5"]));
    assert!(only(w("frontend", "DaemonSet")).is_empty());

    let c = FlowFilter {
        source_cluster_name: strs(&["default"]),
        ..Default::default()
    };
    // The backend's pod has no cluster name: Cilium's unnamed cluster.
    assert_eq!(only(c), strs(&["u1", "u2", "u3", "u5"]));
    let c = FlowFilter {
        destination_cluster_name: strs(&["default"]),
        ..Default::default()
    };
    // Not u2: the world is in no cluster.
    assert_eq!(only(c), strs(&["u1", "u3"]));
    let c = FlowFilter {
        destination_cluster_name: strs(&[""]),
        ..Default::default()
    };
    assert_eq!(
        err(c),
        FilterError::EmptyName {
            field: "destination_cluster_name"
        }
    );

    let q = |v: &[&str]| FlowFilter {
        destination_fqdn: strs(v),
        ..Default::default()
    };
    assert_eq!(only(q(&["*.example.com"])), strs(&["u2"]));
    assert_eq!(only(q(&["DNS.example.com."])), strs(&["u2"]));
    assert!(only(q(&["example.com"])).is_empty());

    let i = |index: u32, name: &str| FlowFilter {
        interface: vec![NetworkInterface {
            index,
            name: name.into(),
        }],
        ..Default::default()
    };
    assert_eq!(only(i(2, "")), strs(&["u5"]));
    assert_eq!(only(i(0, "eth0")), strs(&["u5"]));
    assert!(only(i(3, "eth0")).is_empty());

    let e = FlowFilter {
        encrypted: vec![true],
        ..Default::default()
    };
    assert_eq!(only(e), strs(&["u5"]));
}

#[test]
fn fields_and_within_filter_or_across_filters() {
    let tcp_80 = FlowFilter {
        protocol: strs(&["tcp"]),
        destination_port: strs(&["80"]),
        ..Default::default()
    };
    assert_eq!(only(tcp_80), strs(&["u1"]));
    let mixed = FlowFilter {
        source_pod: strs(&["default/"]),
        verdict: vec![Verdict::Forwarded as i32],
        destination_ip: strs(&["198.18.0.0/15"]),
        ..Default::default()
    };
    assert_eq!(only(mixed), strs(&["u2"]));
    let udp = FlowFilter {
        protocol: strs(&["udp"]),
        ..Default::default()
    };
    let dropped = FlowFilter {
        verdict: vec![Verdict::Dropped as i32],
        ..Default::default()
    };
    assert_eq!(pass(&[&udp, &dropped], &[]), strs(&["u2", "u4"]));
}

#[test]
fn blacklist_subtracts() {
    let tcp = FlowFilter {
        protocol: strs(&["tcp"]),
        ..Default::default()
    };
    let replies = FlowFilter {
        reply: vec![true],
        ..Default::default()
    };
    let node_a = FlowFilter {
        node_name: strs(&["node-a"]),
        ..Default::default()
    };
    assert_eq!(pass(&[&tcp], &[&replies]), strs(&["u1"]));
    assert_eq!(pass(&[], &[&node_a]), strs(&["u2", "u4"]));
    assert_eq!(pass(&[], &[&node_a, &replies]), strs(&["u2", "u4"]));
    assert!(pass(&[&tcp], &[&tcp]).is_empty());
}

#[test]
fn errors_in_blacklist_count_too() {
    let bad = FlowFilter {
        source_port: strs(&["x"]),
        ..Default::default()
    };
    assert!(compile(&[], &[bad]).is_err());
}

#[test]
fn l7_trace_and_cel_filters_match_no_flow_as_hubbles_do_without_l7_data() {
    let http = FlowFilter {
        http_status_code: strs(&["200"]),
        ..Default::default()
    };
    let dns = FlowFilter {
        dns_query: strs(&[r".*\.example\.com"]),
        ..Default::default()
    };
    let trace = FlowFilter {
        trace_id: strs(&["4bf92f3577b34da6a3ce929d0e0e4736"]),
        ..Default::default()
    };
    let cel = FlowFilter {
        experimental: Some(Experimental {
            cel_expression: strs(&["true"]),
        }),
        ..Default::default()
    };
    for f in [http, dns, trace, cel] {
        // A whitelist of it selects nothing; a blacklist of it removes nothing.
        assert!(only(f.clone()).is_empty(), "{f:?}");
        let m = compile(&[], std::slice::from_ref(&f)).expect("accepted in a blacklist");
        assert_eq!(
            flows().into_iter().filter(|fl| m.matches(fl)).count(),
            5,
            "{f:?}"
        );
    }
    // Status codes are checked as Hubble checks them.
    for good in ["200", "599", "4+", "40+"] {
        let f = FlowFilter {
            http_status_code: strs(&[good]),
            ..Default::default()
        };
        assert!(only(f).is_empty(), "{good}");
    }
    for bad in ["600", "abc", "2000", "+", "4", "099", "404+", "٣٠٠"] {
        let f = FlowFilter {
            http_status_code: strs(&[bad]),
            ..Default::default()
        };
        assert_eq!(
            compile(&[f], &[]).unwrap_err().to_string(),
            format!(
                "http_status_code: invalid status code prefix {bad:?} (a code such as 404, or a prefix such as 4+ or 40+)"
            )
        );
    }
    // Regular expressions are checked as Hubble compiles them (RE2).
    let with = |field: &str, v: &str| {
        let mut f = FlowFilter::default();
        match field {
            "http_path" => f.http_path = strs(&[v]),
            "http_url" => f.http_url = strs(&[v]),
            _ => f.dns_query = strs(&[v]),
        }
        compile(&[f], &[])
    };
    for field in ["http_path", "http_url", "dns_query"] {
        assert!(with(field, r"^/api/v[0-9]+/\w+$").is_ok(), "{field}");
    }
    // What Go takes and regex-syntax alone would not: a brace that starts
    // no repetition is a literal; octal escapes.
    for good in [
        "/users/{id}",
        "a{",
        "a{2",
        "x{,3}",
        "/a/{b}/{c}",
        "é{x}",
        r"\012",
        "a{2,3}",
    ] {
        assert!(with("http_path", good).is_ok(), "{good}");
    }
    for (field, bad, reason) in [
        ("http_path", "(", "unclosed group"),
        ("http_url", "[a-", "unclosed character class"),
        (
            "dns_query",
            "*.example.com",
            "repetition operator missing expression",
        ),
        ("http_path", "{2}", "repetition operator missing expression"),
        (
            "http_path",
            "a{3,2}",
            "invalid repetition count range, the start must be <= the end",
        ),
        ("http_path", "(/users/{id}", "unclosed group"),
    ] {
        assert_eq!(
            with(field, bad).unwrap_err().to_string(),
            format!("{field}: invalid regular expression {bad:?}: {reason}")
        );
    }
    // An empty Experimental block is harmless.
    let empty = FlowFilter {
        experimental: Some(Experimental::default()),
        ..Default::default()
    };
    assert_eq!(only(empty).len(), 5);
}

#[test]
fn from_request_uses_both_lists() {
    let req = GetFlowsRequest {
        whitelist: vec![FlowFilter {
            protocol: strs(&["tcp"]),
            ..Default::default()
        }],
        blacklist: vec![FlowFilter {
            source_port: strs(&["80"]),
            ..Default::default()
        }],
        ..Default::default()
    };
    let m = FlowMatcher::from_request(&req).expect("valid");
    assert!(!m.is_match_all());
    let uuids: Vec<_> = flows()
        .into_iter()
        .filter(|f| m.matches(f))
        .map(|f| f.uuid)
        .collect();
    assert_eq!(uuids, strs(&["u1"]));
}
