//! `observe flows` without a kernel: flag words → (whitelist, blacklist) compiled
//! with the server's matcher over a known flow set, and the exact text of every
//! output format.

use std::collections::BTreeSet;

use observer_proto::flow::{
    CiliumEventType, Endpoint, Flow, FlowFilter, IcmPv4, Ip, IpVersion, Layer4, LostEvent,
    LostEventSource, Policy, TraceObservationPoint, TrafficDirection, Verdict, layer4::Protocol,
};
use observer_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use observer_proto::relay::{NodeState, NodeStatusEvent};
use observer_runtime::filter::compile;

use test_support::flows::{flags, l4, tcp, udp};

use super::output::{Emit, Format, Options, Printer};
use super::request::QueryArgs;

/// An endpoint from `namespace/pod` (labelled `k8s:app=pod`), or the world.
fn ep(name: &str) -> Endpoint {
    match name.split_once('/') {
        Some((ns, pod)) => Endpoint {
            identity: 300 + pod.len() as u32,
            namespace: ns.into(),
            pod_name: pod.into(),
            labels: vec![format!("k8s:app={pod}")],
            ..Default::default()
        },
        None => Endpoint {
            identity: 2,
            labels: vec!["reserved:world".into()],
            ..Default::default()
        },
    }
}

/// One flow: (pod, ip) on each side, an L4 protocol, a verdict, a node.
fn flow(
    n: i64,
    (src, sip): (&str, &str),
    (dst, dip): (&str, &str),
    l4: Option<Layer4>,
    verdict: Verdict,
    node: &str,
) -> Flow {
    let v6 = sip.contains(':');
    Flow {
        uuid: format!("f{n}"),
        time: Some(prost_types::Timestamp {
            seconds: 1_795_705_445 + n,
            nanos: 123_000_000,
        }),
        verdict: verdict as i32,
        ip: Some(Ip {
            source: sip.into(),
            destination: dip.into(),
            ip_version: if v6 { IpVersion::IPv6 } else { IpVersion::IPv4 } as i32,
            ..Default::default()
        }),
        l4,
        source: Some(ep(src)),
        destination: Some(ep(dst)),
        node_name: node.into(),
        is_reply: Some(false),
        event_type: Some(CiliumEventType {
            r#type: 4,
            sub_type: 0,
        }),
        trace_observation_point: TraceObservationPoint::ToEndpoint as i32,
        summary: "TCP Flags: SYN".into(),
        ..Default::default()
    }
}

const FRONTEND: (&str, &str) = ("default/frontend", "198.18.1.2");
const API: (&str, &str) = ("default/api", "198.18.1.3");
const DB: (&str, &str) = ("default/db", "198.18.1.4");
const CLIENT: (&str, &str) = ("other/client", "198.18.2.2");
const WORLD: (&str, &str) = ("", "203.0.113.9");

/// f1 frontend→api:8080, f2 its reply, f3 other/client→api:8080 dropped on
/// node2, f4 api→db:5432, f5 frontend→db:5353 over UDP/IPv6, f6 world→frontend:80
/// audited, f7 db→frontend ICMP.
fn flows() -> Vec<Flow> {
    let mut reply = flow(
        2,
        API,
        FRONTEND,
        tcp(8080, 40000, flags("SYN,ACK")),
        Verdict::Forwarded,
        "node1",
    );
    reply.is_reply = Some(true);
    reply.summary = "TCP Flags: SYN, ACK".into();
    let mut udp6 = flow(
        5,
        ("default/frontend", "fd42::2"),
        ("default/db", "fd42::4"),
        udp(41000, 5353),
        Verdict::Forwarded,
        "node1",
    );
    udp6.summary = "UDP".into();
    let mut icmp = flow(
        7,
        DB,
        FRONTEND,
        l4(Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 })),
        Verdict::Forwarded,
        "node1",
    );
    icmp.summary = "ICMPv4 EchoRequest".into();
    vec![
        flow(
            1,
            FRONTEND,
            API,
            tcp(40000, 8080, flags("SYN")),
            Verdict::Forwarded,
            "node1",
        ),
        reply,
        flow(
            3,
            CLIENT,
            API,
            tcp(50000, 8080, flags("SYN")),
            Verdict::Dropped,
            "node2",
        ),
        flow(
            4,
            API,
            DB,
            tcp(41000, 5432, flags("SYN")),
            Verdict::Forwarded,
            "node1",
        ),
        udp6,
        flow(
            6,
            WORLD,
            FRONTEND,
            tcp(33000, 80, flags("SYN")),
            Verdict::Audit,
            "node1",
        ),
        icmp,
    ]
}

/// The uuids the flags select, through the server's own matcher.
fn select(words: &[&str]) -> Result<BTreeSet<String>, String> {
    let q = QueryArgs::try_parse_words(words).map_err(|e| e.to_string())?;
    let (white, black) = q.filter_lists().map_err(|e| e.to_string())?;
    let m = compile(&white, &black).map_err(|e| e.to_string())?;
    Ok(flows()
        .into_iter()
        .filter(|f| m.matches(f))
        .map(|f| f.uuid)
        .collect())
}

fn set(uuids: &[&str]) -> BTreeSet<String> {
    uuids.iter().map(|u| u.to_string()).collect()
}

#[test]
fn each_flag_alone_and_combined_selects_exactly() {
    let all = ["f1", "f2", "f3", "f4", "f5", "f6", "f7"];
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &all),
        (&["--from-pod", "default/frontend"], &["f1", "f5"]),
        (&["--to-pod", "default/api"], &["f1", "f3"]),
        (&["--pod", "default/db"], &["f4", "f5", "f7"]),
        // A pod in any namespace, as hubble's `-A --pod db` and `--pod /db`.
        (&["-A", "--pod", "db"], &["f4", "f5", "f7"]),
        (&["-A", "--pod", "default/db"], &["f4", "f5", "f7"]),
        (&["--pod", "/db"], &["f4", "f5", "f7"]),
        (&["--from-pod", "/front"], &["f1", "f5"]),
        (&["--from-ip", "198.18.1.3"], &["f2", "f4"]),
        (
            &["--to-ip", "198.18.1.0/24"],
            &["f1", "f2", "f3", "f4", "f6", "f7"],
        ),
        (&["--ip", "198.18.1.3"], &["f1", "f2", "f3", "f4"]),
        (&["--from-namespace", "other"], &["f3"]),
        (&["--to-namespace", "other"], &[]),
        (&["-n", "other"], &["f3"]),
        // Any namespace: not the world's flow, from no pod (f6).
        (
            &["--from-all-namespaces"],
            &["f1", "f2", "f3", "f4", "f5", "f7"],
        ),
        (&["--to-all-namespaces"], &all),
        (&["-A"], &all),
        (&["--not", "--from-all-namespaces"], &["f6"]),
        (&["--from-all-namespaces", "--to-namespace", "other"], &[]),
        (&["--from-label", "app=api"], &["f2", "f4"]),
        (&["--to-label", "app=frontend"], &["f2", "f6", "f7"]),
        (&["-l", "app=db"], &["f4", "f5", "f7"]),
        (&["--from-port", "8080"], &["f2"]),
        (&["--to-port", "8080"], &["f1", "f3"]),
        (&["--port", "8080"], &["f1", "f2", "f3"]),
        (&["--protocol", "udp"], &["f5"]),
        (&["--protocol", "icmp"], &["f7"]),
        (&["--verdict", "DROPPED"], &["f3"]),
        (
            &["--verdict", "dropped", "--verdict", "audit"],
            &["f3", "f6"],
        ),
        (&["--tcp-flags", "SYN,ACK"], &["f2"]),
        (&["--type", "trace:to-endpoint"], &all),
        (&["--type", "drop"], &[]),
        (&["--node-name", "node2"], &["f3"]),
        (&["-6"], &["f5"]),
        (&["--ipv4"], &["f1", "f2", "f3", "f4", "f6", "f7"]),
        // Different kinds AND, one kind ORs.
        (
            &["--pod", "default/api", "--verdict", "FORWARDED"],
            &["f1", "f2", "f4"],
        ),
        (
            &["--to-port", "8080", "--from-pod", "other/client"],
            &["f3"],
        ),
        (&["--to-port", "80", "--to-port", "5432"], &["f4", "f6"]),
        (&["--pod", "default/db", "--protocol", "tcp"], &["f4"]),
        // Neutral flags together: all at the source, or all at the destination.
        (
            &["--ip", "198.18.1.3", "--port", "8080"],
            &["f1", "f2", "f3"],
        ),
        (&["--ip", "198.18.1.3", "--port", "5432"], &[]),
        // A namespace with pods: the pods of that side, in the namespace.
        (&["-n", "default", "--pod", "db"], &["f4", "f5", "f7"]),
        (&["-n", "other", "--pod", "api"], &[]),
        (
            &["--from-namespace", "other", "--to-pod", "default/api"],
            &["f3"],
        ),
        (
            &["--from-namespace", "default", "--from-pod", "frontend"],
            &["f1", "f5"],
        ),
        (
            &["--to-namespace", "default", "--to-pod", "api"],
            &["f1", "f3"],
        ),
        // One end by namespace, the other by address (one end named both
        // ways is refused, as in Hubble).
        (
            &["--from-namespace", "other", "--to-ip", "198.18.1.3"],
            &["f3"],
        ),
        (
            &["--from-namespace", "default", "--to-namespace", "other"],
            &[],
        ),
    ];
    for (words, want) in cases {
        assert_eq!(select(words).unwrap(), set(want), "{words:?}");
    }
}

#[test]
fn not_negates_the_next_filter_flag_only() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--not", "--to-port", "8080"],
            &["f2", "f4", "f5", "f6", "f7"],
        ),
        (
            &["--not", "--to-port=8080"],
            &["f2", "f4", "f5", "f6", "f7"],
        ),
        // Direction-neutral: either side blacklisted.
        (&["--not", "--pod", "default/db"], &["f1", "f2", "f3", "f6"]),
        (&["--not", "--ip", "198.18.1.3"], &["f5", "f6", "f7"]),
        (&["--not", "-n", "default"], &[]),
        (&["--not", "--label", "app=frontend"], &["f3", "f4"]),
        (&["--not", "--port", "8080"], &["f4", "f5", "f6", "f7"]),
        // Whitelist and blacklist together, in either order.
        (
            &["--to-pod", "default/api", "--not", "--verdict", "DROPPED"],
            &["f1"],
        ),
        (
            &["--not", "--verdict", "DROPPED", "--to-pod", "default/api"],
            &["f1"],
        ),
        // Only the next flag: the second --verdict is a whitelist entry.
        (
            &["--not", "--verdict", "DROPPED", "--verdict", "AUDIT"],
            &["f6"],
        ),
        // Non-filter flags in between do not take the --not.
        (
            &["--not", "--last", "5", "--port", "8080"],
            &["f4", "f5", "f6", "f7"],
        ),
        (&["--not", "-6"], &["f1", "f2", "f3", "f4", "f6", "f7"]),
        (&["--protocol", "udp", "--not", "-4"], &["f5"]),
        // Repeated negations of one kind OR (either excluded)...
        (
            &["--not", "--protocol", "tcp", "--not", "--protocol", "icmp"],
            &["f5"],
        ),
        // ...negations of different kinds AND in one blacklist filter, as Hubble's.
        (
            &[
                "--not",
                "--pod",
                "default/frontend",
                "--not",
                "--protocol",
                "udp",
            ],
            &["f1", "f2", "f3", "f4", "f6", "f7"],
        ),
    ];
    for (words, want) in cases {
        assert_eq!(select(words).unwrap(), set(want), "{words:?}");
    }
}

#[test]
fn raw_allowlist_and_denylist_join_the_flags_filters() {
    // An allowlist filter ORs with the flags' filter; a denylist one leaves
    // its flows out, as `--not` does.
    let cases: &[(&[&str], &[&str])] = &[
        (&["--allowlist", r#"{"verdict":["DROPPED"]}"#], &["f3"]),
        (
            &[
                "--from-pod",
                "default/frontend",
                "--allowlist",
                r#"{"verdict":["AUDIT"]} {"source_pod":["other/"]}"#,
            ],
            &["f1", "f3", "f5", "f6"],
        ),
        (
            &[
                "--to-port",
                "8080",
                "--denylist",
                r#"{"source_pod":["other/client"]}"#,
            ],
            &["f1"],
        ),
        (
            &[
                "--allowlist",
                r#"{"destinationPort":["5432"]}"#,
                "--allowlist",
                r#"{"protocol":["udp"]}"#,
            ],
            &["f4", "f5"],
        ),
    ];
    for (words, want) in cases {
        assert_eq!(select(words).unwrap(), set(want), "{words:?}");
    }
    // --print-raw-filters shows them with the flags' own.
    let q = QueryArgs::try_parse_words([
        "--to-port",
        "53",
        "--allowlist",
        r#"{"verdict":["DROPPED"]}"#,
        "--denylist",
        r#"{"source_ip":["198.18.0.0/15"]}"#,
    ])
    .unwrap();
    assert_eq!(
        super::raw_filters(&q).unwrap(),
        "allowlist:\n    - '{\"destination_port\":[\"53\"]}'\n    - '{\"verdict\":[\"DROPPED\"]}'\n\
         denylist:\n    - '{\"source_ip\":[\"198.18.0.0/15\"]}'\n"
    );
}

#[test]
fn a_raw_filter_that_is_not_one_names_its_flag_and_the_problem() {
    for (words, error) in [
        (
            ["--allowlist", r#"{"source_pods":["a/"]}"#],
            r#"--allowlist "{\"source_pods\":[\"a/\"]}": not a JSON FlowFilter: unrecognized field name 'source_pods' at line 1 column 14"#,
        ),
        (
            ["--denylist", r#"{"verdict":["SOMETIMES"]}"#],
            r#"--denylist "{\"verdict\":[\"SOMETIMES\"]}": not a JSON FlowFilter: unrecognized enum value 'SOMETIMES' at line 1 column 23"#,
        ),
        (
            ["--allowlist", "{"],
            r#"--allowlist "{": not a JSON FlowFilter: EOF while parsing an object at line 1 column 1"#,
        ),
    ] {
        let err = select(&words).unwrap_err();
        assert_eq!(err, error, "{words:?}");
    }
    let err = select(&["--allowlist", r#"{"source_ip":["nope"]}"#]).unwrap_err();
    assert!(
        err.starts_with(r#"--allowlist "{\"source_ip\":[\"nope\"]}": "#),
        "{err}"
    );
    // A list too long to show is shown by its start and length: the reason
    // stays readable.
    let ips: Vec<String> = (0..5000)
        .map(|i| format!("\"10.{}.{}.1\"", i / 256, i % 256))
        .collect();
    let huge = format!("{{\"source_ip\":[{}]}}", ips.join(","));
    let err = select(&["--allowlist", &huge]).unwrap_err();
    assert_eq!(
        err,
        format!(
            r#"--allowlist "{{\"source_ip\":[\"10.0.0.1\",\"10.0.1.1\",\"10.0.2.1\",\"10.0.3.1\",\"10.0.4.1\",\"10.0.5.1\","… ({} characters): source_ip: too many entries: 5000 (limit 4096 per field)"#,
            huge.len()
        )
    );
}

#[test]
fn negated_neutral_flag_blacklists_both_variants() {
    let q = QueryArgs::try_parse_words(["--from-pod", "a/x", "--not", "--pod", "b/y"]).unwrap();
    let (white, black) = q.filter_lists().unwrap();
    assert_eq!(
        white,
        [FlowFilter {
            source_pod: vec!["a/x".into()],
            ..Default::default()
        }]
    );
    assert_eq!(
        black,
        [
            FlowFilter {
                source_pod: vec!["b/y".into()],
                ..Default::default()
            },
            FlowFilter {
                destination_pod: vec!["b/y".into()],
                ..Default::default()
            },
        ]
    );
    let req = q.request().unwrap();
    assert_eq!((req.whitelist, req.blacklist), (white, black));
}

#[test]
fn a_trailing_not_is_an_error() {
    let err = select(&["--to-port", "8080", "--not"]).unwrap_err();
    assert!(
        err.contains("--not must be followed by the filter flag it negates"),
        "{err}"
    );
    let err = select(&["--not", "--last", "3"]).unwrap_err();
    assert!(err.contains("--not must be followed"), "{err}");
    let err = select(&["--not", "--not", "--verdict", "DROPPED"]).unwrap_err();
    assert!(
        err.contains("--not twice before one filter flag: each --not negates the one after it"),
        "{err}"
    );
    // One --not each: both negated.
    assert_eq!(
        select(&[
            "--not",
            "--verdict",
            "DROPPED",
            "--not",
            "--verdict",
            "AUDIT"
        ])
        .unwrap(),
        set(&["f1", "f2", "f4", "f5", "f7"])
    );
}

#[test]
fn an_ip_or_label_that_does_not_parse_is_named_by_its_flag() {
    assert_eq!(
        select(&["--ip", "198.18.1.0/33"]).unwrap_err(),
        "--ip \"198.18.1.0/33\": not an IP address or CIDR"
    );
    assert_eq!(
        select(&["--not", "--to-ip", "fd42::1::2"]).unwrap_err(),
        "--to-ip \"fd42::1::2\": not an IP address or CIDR"
    );
    let err = select(&["--label", "!!!"]).unwrap_err();
    assert!(
        err.starts_with("--label \"!!!\": not a label selector: "),
        "{err}"
    );
    let err = select(&["--from-label", "app=web", "--to-label", "a b"]).unwrap_err();
    assert!(
        err.starts_with("--to-label \"a b\": not a label selector: "),
        "{err}"
    );
}

#[test]
fn a_port_that_is_no_port_is_named_by_its_flag() {
    assert_eq!(
        select(&["--port", "abc"]).unwrap_err(),
        "--port \"abc\": not a port number (0 to 65535)"
    );
    assert_eq!(
        select(&["--not", "--to-port", "70000"]).unwrap_err(),
        "--to-port \"70000\": not a port number (0 to 65535)"
    );
    // Rust's parse takes a sign; the server does not.
    assert_eq!(
        select(&["--port", "+80"]).unwrap_err(),
        "--port \"+80\": not a port number (0 to 65535)"
    );
}

#[test]
fn an_event_type_number_is_unsigned() {
    for v in ["-5", "trace:-1", "drop:+133", "4294967295"] {
        let err = select(&[&format!("--type={v}")]).unwrap_err();
        assert!(
            err.starts_with(&format!("--type \"{v}\": unknown ")),
            "{err}"
        );
    }
    assert_eq!(
        select(&["--type", "4:0"]),
        select(&["--type", "trace:to-endpoint"])
    );
}

fn resp(f: Flow) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: f.node_name.clone(),
        time: f.time,
        response_types: Some(ResponseTypes::Flow(f)),
    }
}

/// f1 forwarded, f3 dropped by policy, and a lost-events notice.
fn sample() -> Vec<GetFlowsResponse> {
    let fl = flows();
    let mut dropped = fl[2].clone();
    dropped.event_type = Some(CiliumEventType {
        r#type: 1,
        sub_type: 133,
    });
    dropped.trace_observation_point = 0;
    dropped.is_reply = None;
    let lost = GetFlowsResponse {
        node_name: "node2".into(),
        time: fl[3].time,
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: LostEventSource::PerfEventRingBuffer as i32,
            num_events_lost: 7,
            ..Default::default()
        })),
    };
    vec![resp(fl[0].clone()), resp(dropped), lost]
}

/// A plain printer of `format` that tells every node status (`--debug`).
fn debug_printer(format: Format) -> Printer {
    Printer::new(Options {
        format,
        print_node: false,
        color: false,
        follow: false,
        debug: true,
        time: Default::default(),
        ip_translation: true,
        print_policies: false,
    })
}

fn print(format: Format, print_node: bool, color: bool, follow: bool) -> String {
    let mut p = Printer::new(Options {
        format,
        print_node,
        color,
        follow,
        debug: false,
        time: Default::default(),
        ip_translation: true,
        print_policies: false,
    });
    let mut out = String::new();
    for r in sample() {
        let emit = p.push(&r).unwrap();
        assert_eq!(emit.err, "");
        out += &emit.out;
    }
    out + &p.finish()
}

#[test]
fn compact_lines() {
    let cases = [
        (
            false,
            false,
            "Nov 26 15:04:06.123: default/frontend:40000 (ID:308) -> default/api:8080 (ID:303) to-endpoint FORWARDED (TCP Flags: SYN)\n\
             Nov 26 15:04:08.123: other/client:50000 (ID:306) <> default/api:8080 (ID:303) Policy denied DROPPED (TCP Flags: SYN)\n\
             Nov 26 15:04:09.123: EVENTS LOST: PERF_EVENT_RING_BUFFER 7\n",
        ),
        (
            true,
            false,
            "Nov 26 15:04:06.123 [node1]: default/frontend:40000 (ID:308) -> default/api:8080 (ID:303) to-endpoint FORWARDED (TCP Flags: SYN)\n\
             Nov 26 15:04:08.123 [node2]: other/client:50000 (ID:306) <> default/api:8080 (ID:303) Policy denied DROPPED (TCP Flags: SYN)\n\
             Nov 26 15:04:09.123 [node2]: EVENTS LOST: PERF_EVENT_RING_BUFFER 7\n",
        ),
        (
            false,
            true,
            // Hubble's colours: hosts cyan with their ports yellow,
            // identities magenta, verdicts by outcome.
            "Nov 26 15:04:06.123: \x1b[36mdefault/frontend:\x1b[33m40000\x1b[0m\x1b[0m \x1b[35m(ID:308)\x1b[0m -> \x1b[36mdefault/api:\x1b[33m8080\x1b[0m\x1b[0m \x1b[35m(ID:303)\x1b[0m to-endpoint \x1b[32mFORWARDED\x1b[0m (TCP Flags: SYN)\n\
             Nov 26 15:04:08.123: \x1b[36mother/client:\x1b[33m50000\x1b[0m\x1b[0m \x1b[35m(ID:306)\x1b[0m <> \x1b[36mdefault/api:\x1b[33m8080\x1b[0m\x1b[0m \x1b[35m(ID:303)\x1b[0m Policy denied \x1b[31mDROPPED\x1b[0m (TCP Flags: SYN)\n\
             Nov 26 15:04:09.123: EVENTS LOST: PERF_EVENT_RING_BUFFER 7\n",
        ),
    ];
    for (node, color, want) in cases {
        assert_eq!(print(Format::Compact, node, color, false), want);
        assert_eq!(print(Format::Compact, node, color, true), want);
    }
}

const DICT: &str = "  TIMESTAMP: Nov 26 15:04:06.123
     SOURCE: default/frontend:40000
DESTINATION: default/api:8080
       TYPE: to-endpoint
    VERDICT: FORWARDED
    SUMMARY: TCP Flags: SYN
------------
  TIMESTAMP: Nov 26 15:04:08.123
     SOURCE: other/client:50000
DESTINATION: default/api:8080
       TYPE: Policy denied
    VERDICT: DROPPED
    SUMMARY: TCP Flags: SYN
------------
  TIMESTAMP: Nov 26 15:04:09.123
     SOURCE: PERF_EVENT_RING_BUFFER
DESTINATION:
       TYPE: EVENTS LOST
    VERDICT:
    SUMMARY: 7
";

#[test]
fn dict_blocks() {
    assert_eq!(print(Format::Dict, false, false, false), DICT);
    let with_node = DICT
        .replace(
            "  TIMESTAMP: Nov 26 15:04:06.123\n",
            "  TIMESTAMP: Nov 26 15:04:06.123\n       NODE: node1\n",
        )
        .replace(
            "  TIMESTAMP: Nov 26 15:04:08.123\n",
            "  TIMESTAMP: Nov 26 15:04:08.123\n       NODE: node2\n",
        )
        .replace(
            "  TIMESTAMP: Nov 26 15:04:09.123\n",
            "  TIMESTAMP: Nov 26 15:04:09.123\n       NODE: node2\n",
        );
    assert_eq!(print(Format::Dict, true, false, false), with_node);
    // Verdicts by outcome, and hosts cyan with their ports yellow, as
    // Hubble's dict colours them (the hosts were plain).
    let host = |name: &str, port: u32| format!("\x1b[36m{name}:\x1b[33m{port}\x1b[0m\x1b[0m");
    let colored = DICT
        .replace("VERDICT: FORWARDED", "VERDICT: \x1b[32mFORWARDED\x1b[0m")
        .replace("VERDICT: DROPPED", "VERDICT: \x1b[31mDROPPED\x1b[0m")
        .replace("default/frontend:40000", &host("default/frontend", 40000))
        .replace("other/client:50000", &host("other/client", 50000))
        .replace("default/api:8080", &host("default/api", 8080));
    assert_eq!(print(Format::Dict, false, true, true), colored);
}

#[test]
fn table_columns() {
    let table = "\
TIMESTAMP             SOURCE                   DESTINATION        TYPE            VERDICT     SUMMARY
Nov 26 15:04:06.123   default/frontend:40000   default/api:8080   to-endpoint     FORWARDED   TCP Flags: SYN
Nov 26 15:04:08.123   other/client:50000       default/api:8080   Policy denied   DROPPED     TCP Flags: SYN
Nov 26 15:04:09.123   PERF_EVENT_RING_BUFFER                      EVENTS LOST                 7
";
    assert_eq!(print(Format::Table, false, false, false), table);
    let with_node = "\
TIMESTAMP             NODE    SOURCE                   DESTINATION        TYPE            VERDICT     SUMMARY
Nov 26 15:04:06.123   node1   default/frontend:40000   default/api:8080   to-endpoint     FORWARDED   TCP Flags: SYN
Nov 26 15:04:08.123   node2   other/client:50000       default/api:8080   Policy denied   DROPPED     TCP Flags: SYN
Nov 26 15:04:09.123   node2   PERF_EVENT_RING_BUFFER                      EVENTS LOST                 7
";
    assert_eq!(print(Format::Table, true, false, false), with_node);
    // No colour codes between the columns, as Hubble's table has none.
    assert_eq!(print(Format::Table, false, true, false), table);
}

#[test]
fn followed_table_starts_fixed_and_widens_for_a_longer_cell() {
    let mut p = Printer::new(Options {
        format: Format::Table,
        print_node: false,
        color: false,
        follow: true,
        debug: false,
        time: Default::default(),
        ip_translation: true,
        print_policies: false,
    });
    let first = p.push(&sample()[0]).unwrap().out;
    assert_eq!(
        first,
        "TIMESTAMP             SOURCE                           DESTINATION                      TYPE             VERDICT      SUMMARY\n\
         Nov 26 15:04:06.123   default/frontend:40000           default/api:8080                 to-endpoint      FORWARDED    TCP Flags: SYN\n"
    );
    let second = p.push(&sample()[1]).unwrap().out;
    assert_eq!(
        second,
        "Nov 26 15:04:08.123   other/client:50000               default/api:8080                 Policy denied    DROPPED      TCP Flags: SYN\n"
    );
    // A source longer than its column widens it for the rows after it.
    let mut long = sample()[0].clone();
    if let Some(ResponseTypes::Flow(f)) = &mut long.response_types {
        f.source.as_mut().unwrap().pod_name = "frontend-with-a-long-pod-name-x7".into();
    }
    assert_eq!(
        p.push(&long).unwrap().out,
        "Nov 26 15:04:06.123   default/frontend-with-a-long-pod-name-x7:40000   default/api:8080                 to-endpoint      FORWARDED    TCP Flags: SYN\n"
    );
    assert_eq!(
        p.push(&sample()[1]).unwrap().out,
        "Nov 26 15:04:08.123   other/client:50000                               default/api:8080                 Policy denied    DROPPED      TCP Flags: SYN\n"
    );
    // Up to twice the first width (30): a longer cell only pushes its line.
    let mut huge = sample()[0].clone();
    if let Some(ResponseTypes::Flow(f)) = &mut huge.response_types {
        f.source.as_mut().unwrap().pod_name = "p".repeat(70);
    }
    p.push(&huge).unwrap();
    assert_eq!(
        p.push(&sample()[1]).unwrap().out,
        format!(
            "Nov 26 15:04:08.123   other/client:50000{}   default/api:8080                 Policy denied    DROPPED      TCP Flags: SYN\n",
            " ".repeat(60 - "other/client:50000".len())
        )
    );
    assert_eq!(p.finish(), "");
}

#[test]
fn json_and_jsonpb_print_the_response() {
    for format in [Format::Json, Format::Jsonpb] {
        for node in [false, true] {
            let out = print(format, node, true, false);
            let lines: Vec<serde_json::Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines.len(), 3, "{out}");
            assert_eq!(lines[0]["flow"]["uuid"], "f1");
            assert_eq!(lines[0]["node_name"], "node1");
            assert_eq!(lines[0]["flow"]["node_name"], "node1");
            assert_eq!(lines[1]["flow"]["verdict"], "DROPPED");
            assert_eq!(lines[2]["lost_events"]["num_events_lost"], "7");
            assert!(!out.contains('\x1b'));
            let want = observer_proto::json::response_to_json(&sample()[0]).unwrap();
            assert_eq!(out.lines().next(), Some(want.as_str()));
        }
    }
}

#[test]
fn node_status_goes_to_stderr_in_every_format_as_hubble_prints_it() {
    let status = |state: NodeState| GetFlowsResponse {
        node_name: String::new(),
        time: sample()[0].time,
        response_types: Some(ResponseTypes::NodeStatus(NodeStatusEvent {
            state_change: state as i32,
            node_names: vec!["node2".into()],
            message: "connecting: connection refused".into(),
        })),
    };
    let line =
        "Nov 26 15:04:06.123: 1 nodes are unavailable: node2 (connecting: connection refused)\n";
    let block = "  TIMESTAMP: Nov 26 15:04:06.123\n      STATE: NODE_UNAVAILABLE\n      \
                 NODES: node2\n    MESSAGE: \"connecting: connection refused\"\n";
    let down = status(NodeState::NodeUnavailable);
    let json = observer_proto::json::response_to_json(&down).unwrap() + "\n";
    for format in [
        Format::Dict,
        Format::Table,
        Format::Compact,
        Format::Json,
        Format::Jsonpb,
    ] {
        let printer = |debug| {
            Printer::new(Options {
                format,
                print_node: false,
                color: false,
                follow: false,
                debug,
                time: Default::default(),
                ip_translation: true,
                print_policies: false,
            })
        };
        let mut p = printer(false);
        let emit = p.push(&down).unwrap();
        let want = match format {
            Format::Json | Format::Jsonpb => json.as_str(),
            Format::Dict => block,
            Format::Compact | Format::Table => line,
        };
        assert_eq!(
            (emit.out.as_str(), emit.err.as_str()),
            ("", want),
            "{format:?}"
        );
        // A node connecting is news only with --debug.
        let up = status(NodeState::NodeConnected);
        assert_eq!(p.push(&up).unwrap(), Emit::default(), "{format:?}");
        let told = printer(true).push(&up).unwrap();
        assert_eq!(
            (told.out.as_str(), told.err.is_empty()),
            ("", false),
            "{format:?}"
        );
        assert_eq!(p.finish(), "");
    }
}

#[test]
fn node_status_names_the_state_and_the_reason() {
    let line = |state: NodeState, message: &str, teller: &str| {
        let resp = GetFlowsResponse {
            node_name: teller.into(),
            time: sample()[0].time,
            response_types: Some(ResponseTypes::NodeStatus(NodeStatusEvent {
                state_change: state as i32,
                node_names: vec!["node1".into(), "node2".into()],
                message: message.into(),
            })),
        };
        debug_printer(Format::Compact).push(&resp).unwrap().err
    };
    assert_eq!(
        line(NodeState::NodeConnected, "", ""),
        "Nov 26 15:04:06.123: Receiving flows from 2 nodes: node1, node2\n"
    );
    assert_eq!(
        line(
            NodeState::NodeUnavailable,
            "connecting: connection refused",
            "relay"
        ),
        "Nov 26 15:04:06.123 [relay]: 2 nodes are unavailable: node1, node2 \
         (connecting: connection refused)\n"
    );
    assert_eq!(
        line(NodeState::NodeGone, "", "relay"),
        "Nov 26 15:04:06.123 [relay]: 2 nodes removed from cluster: node1, node2\n"
    );
    // An error's message is quoted, so a line end in it stays on the line.
    assert_eq!(
        line(NodeState::NodeError, "bad\ncert", "relay"),
        "Nov 26 15:04:06.123 [relay]: Error \"bad\\ncert\" on 2 nodes: node1, node2\n"
    );
    assert_eq!(
        line(NodeState::UnknownNodeState, "", ""),
        "Nov 26 15:04:06.123: unknown node status event: state 0, nodes node1, node2\n"
    );
}

#[test]
fn a_namespace_and_a_pod_that_cannot_meet_are_refused() {
    let refused = |words: &[&str]| select(words).unwrap_err();
    assert_eq!(
        refused(&["--namespace", "other", "--to-pod", "default/api"]),
        "--namespace \"other\": cannot be combined with --to-pod: --namespace names either \
         end of a flow, --to-pod one; use --from-namespace or --to-namespace"
    );
    assert_eq!(
        refused(&[
            "--from-namespace",
            "other",
            "--from-pod",
            "default/frontend"
        ]),
        "--from-namespace \"other\": the namespace does not hold the pod \"default/frontend\""
    );
    assert_eq!(
        refused(&["-A", "--to-pod", "default/api"]),
        "--all-namespaces: cannot be combined with --to-pod: --all-namespaces selects every \
         namespace of its end, --to-pod names one; give one of them (as in Hubble)"
    );
    assert_eq!(
        refused(&["--from-all-namespaces", "--from-namespace", "other"]),
        "--from-all-namespaces: cannot be combined with --from-namespace: --from-all-namespaces \
         selects every namespace of its end, --from-namespace names one; give one of them (as \
         in Hubble)"
    );
    // A switch beside another (both in one of Hubble's groups) shows no value.
    assert_eq!(
        refused(&["-A", "--from-all-namespaces"]),
        "--from-all-namespaces: cannot be combined with --all-namespaces: --all-namespaces \
         already selects every namespace at both ends"
    );
    assert_eq!(
        refused(&["--port", "80", "--to-port", "8080"]),
        "--port \"80\": cannot be combined with --to-port: --port names either end of a \
         flow, --to-port one; use --from-port or --to-port"
    );
}

// `hubble observe -f -o compact` prints lines: any given -o does, compact too.
#[test]
fn only_a_follow_on_a_terminal_without_o_opens_the_tui() {
    use super::opens_tui;
    assert!(opens_tui(None, true, true));
    for f in [
        Format::Compact,
        Format::Dict,
        Format::Json,
        Format::Jsonpb,
        Format::Table,
    ] {
        assert!(!opens_tui(Some(f), true, true), "-o {f:?}");
    }
    // Piped, or not following: lines.
    assert!(!opens_tui(None, true, false));
    assert!(!opens_tui(None, false, true));
}

#[test]
fn raw_filters_print_as_hubble_prints_them() {
    let q = QueryArgs::try_parse_words([
        "--from-pod",
        "default/web",
        "--protocol",
        "tcp",
        "--not",
        "--to-port",
        "53",
    ])
    .unwrap();
    assert_eq!(
        super::raw_filters(&q).unwrap(),
        "allowlist:\n    - '{\"source_pod\":[\"default/web\"],\"protocol\":[\"tcp\"]}'\n\
         denylist:\n    - '{\"destination_port\":[\"53\"]}'\n"
    );
    let none = QueryArgs::try_parse_words(Vec::<String>::new()).unwrap();
    assert_eq!(super::raw_filters(&none).unwrap(), "{}\n");
}

/// Compact lines, no colour, and every other switch at its default.
fn plain_compact() -> Options {
    Options {
        format: Format::Compact,
        print_node: false,
        color: false,
        follow: false,
        debug: false,
        time: Default::default(),
        ip_translation: true,
        print_policies: false,
    }
}

#[test]
fn time_format_sets_every_human_formats_times() {
    let mut p = Printer::new(Options {
        time: super::output::TimeFormat::RFC3339Nano,
        ..plain_compact()
    });
    let lines: Vec<String> = sample().iter().map(|r| p.push(r).unwrap().out).collect();
    assert!(
        lines[0].starts_with("2026-11-26T15:04:06.123Z: default/frontend:40000"),
        "{}",
        lines[0]
    );
    assert!(lines[2].starts_with("2026-11-26T15:04:09.123Z: EVENTS LOST"));
    let mut dict = Printer::new(Options {
        format: Format::Dict,
        time: super::output::TimeFormat::RFC1123Z,
        ..p.options()
    });
    let block = dict.push(&sample()[0]).unwrap().out;
    assert!(block.contains("Thu, 26 Nov 2026 15:04:06 +0000"), "{block}");
}

#[test]
fn without_ip_translation_hosts_are_addresses() {
    let mut p = Printer::new(Options {
        ip_translation: false,
        ..plain_compact()
    });
    let line = p.push(&sample()[0]).unwrap().out;
    let ip = match &sample()[0].response_types {
        Some(ResponseTypes::Flow(f)) => f.ip.clone().unwrap(),
        _ => unreachable!(),
    };
    assert!(
        line.starts_with(&format!(
            "Nov 26 15:04:06.123: {}:40000 (ID:308) -> {}:8080 (ID:303) to-endpoint",
            ip.source, ip.destination
        )),
        "{line}"
    );
    // JSON keeps every field, names included, as hubble's does.
    for format in [Format::Json, Format::Jsonpb] {
        let mut p = Printer::new(Options {
            format,
            ip_translation: false,
            ..plain_compact()
        });
        let line = p.push(&sample()[0]).unwrap().out;
        let want = observer_proto::json::response_to_json(&sample()[0]).unwrap() + "\n";
        assert_eq!(line, want);
        assert!(line.contains("\"pod_name\":\"frontend\""), "{line}");
    }
}

/// A file as `observe flows -o json` writes it: a node's status first, then
/// f1..f7, with a line that is no response after f2 and a blank one.
fn saved_flows() -> String {
    let line = |resp: &GetFlowsResponse| observer_proto::json::response_to_json(resp).unwrap();
    let status = GetFlowsResponse {
        node_name: String::new(),
        time: flows()[0].time,
        response_types: Some(ResponseTypes::NodeStatus(NodeStatusEvent {
            state_change: NodeState::NodeUnavailable as i32,
            node_names: vec!["node2".into()],
            message: "connecting: connection refused".into(),
        })),
    };
    let mut lines = vec![line(&status)];
    for (i, f) in flows().into_iter().enumerate() {
        lines.push(line(&GetFlowsResponse {
            node_name: f.node_name.clone(),
            time: f.time,
            response_types: Some(ResponseTypes::Flow(f)),
        }));
        if i == 1 {
            lines.push("{\"flow\": {\"uuid\": 7}}".into());
            lines.push("   ".into());
        }
    }
    lines.join("\n") + "\n"
}

/// What `--input-file` selects from `text` with the flag `words`: each
/// response as its flow's uuid (`status` for a node status), and the lines
/// skipped.
fn from_file(words: &[&str], text: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let q = QueryArgs::try_parse_words(words).map_err(|e| e.to_string())?;
    let request = super::input_file::request(&q).map_err(|e| e.to_string())?;
    let selection = super::input_file::Selection::new(&request).map_err(|e| e.to_string())?;
    let (mut shown, mut skipped) = (Vec::new(), Vec::new());
    super::input_file::select(
        text.as_bytes(),
        "flows.json",
        &selection,
        |resp| {
            shown.push(match &resp.response_types {
                Some(ResponseTypes::Flow(f)) => f.uuid.clone(),
                _ => "status".into(),
            });
            Ok(true)
        },
        |message| skipped.push(message),
    )
    .map_err(|e| e.to_string())?;
    Ok((shown, skipped))
}

/// A file's times are its writer's clock: a `--since` ahead of ours
/// selects from it, where a server's answer would be refused.
#[test]
fn a_files_flows_ahead_of_our_clock_are_selected_by_since() {
    let text: String = [("early", 32_503_680_000), ("late", 32_503_766_400)]
        .iter()
        .map(|(uuid, secs)| {
            let f = Flow {
                uuid: uuid.to_string(),
                time: Some(prost_types::Timestamp {
                    seconds: *secs,
                    nanos: 0,
                }),
                ..Default::default()
            };
            observer_proto::json::response_to_json(&GetFlowsResponse {
                node_name: "node1".into(),
                time: f.time,
                response_types: Some(ResponseTypes::Flow(f)),
            })
            .unwrap()
                + "\n"
        })
        .collect();
    // 3000-01-01 (early) and 3000-01-02 (late).
    let (shown, _) = from_file(&["--since", "3000-01-01T12:00:00Z"], &text).unwrap();
    assert_eq!(shown, ["late"]);
}

#[test]
fn an_input_file_is_selected_as_a_server_selects() {
    let text = saved_flows();
    let bad_line = "flows.json line 4: not a flow response in JSON (invalid type: integer `7`, \
                    expected a string at column 19); skipped";
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["status", "f1", "f2", "f3", "f4", "f5", "f6", "f7"]),
        // An allowlist leaves out what is no flow; a denylist alone keeps it.
        (&["--verdict", "DROPPED"], &["f3"]),
        (
            &["--not", "--verdict", "DROPPED"],
            &["status", "f1", "f2", "f4", "f5", "f6", "f7"],
        ),
        (&["--first", "4"], &["status", "f1", "f2", "f3"]),
        (&["--last", "2"], &["f6", "f7"]),
        (
            &["--all", "--not", "--protocol", "tcp"],
            &["status", "f5", "f7"],
        ),
        (&["--since", "2026-11-26T15:04:10Z"], &["f5", "f6", "f7"]),
        (
            &[
                "--since",
                "2026-11-26T15:04:07Z",
                "--until",
                "2026-11-26T15:04:09Z",
            ],
            &["f2", "f3"],
        ),
        // Nothing to follow in a file: as without --follow.
        (&["--follow", "--last", "1"], &["f7"]),
    ];
    for (words, want) in cases {
        let (shown, skipped) = from_file(words, &text).unwrap();
        assert_eq!(shown, *want, "{words:?}");
        assert_eq!(skipped, [bad_line], "{words:?}");
    }
    // Without a count, every line of a file, not the last 20 of a server.
    let many: String = (0..25)
        .map(|i| {
            let f = Flow {
                uuid: format!("m{i}"),
                ..Default::default()
            };
            observer_proto::json::response_to_json(&GetFlowsResponse {
                node_name: "node1".into(),
                time: None,
                response_types: Some(ResponseTypes::Flow(f)),
            })
            .unwrap()
                + "\n"
        })
        .collect();
    let (shown, _) = from_file(&[], &many).unwrap();
    assert_eq!(shown.len(), 25);
    assert_eq!((shown[0].as_str(), shown[24].as_str()), ("m0", "m24"));
    assert_eq!(from_file(&["--last", "20"], &many).unwrap().0.len(), 20);
    // --first stops reading at its count: the bad line after it is never read.
    let (shown, skipped) = from_file(&["--first", "2"], &text).unwrap();
    assert_eq!(shown, ["status", "f1"]);
    assert_eq!(skipped, Vec::<String>::new());
}

#[test]
fn an_input_files_flows_are_filtered_then_cut_to_the_field_mask() {
    let text = saved_flows();
    let masked = |fields: &[&str], words: &[&str]| {
        let mut q = QueryArgs::try_parse_words(words).unwrap();
        q.field_mask = fields.iter().map(|f| f.to_string()).collect();
        let selection = super::input_file::Selection::new(&q.request().unwrap()).unwrap();
        let mut flows = Vec::new();
        super::input_file::select(
            text.as_bytes(),
            "flows.json",
            &selection,
            |resp| {
                if let Some(ResponseTypes::Flow(f)) = &resp.response_types {
                    flows.push(f.clone());
                }
                Ok(true)
            },
            |_| {},
        )
        .unwrap();
        flows
    };
    // The filter sees the whole flow; the mask then keeps the uuid alone.
    let dropped = masked(&["uuid"], &["--verdict", "DROPPED"]);
    assert_eq!(
        dropped,
        [Flow {
            uuid: "f3".into(),
            ..Default::default()
        }]
    );
    let verdicts = masked(&["verdict"], &["--last", "2"]);
    assert_eq!(
        verdicts,
        [Verdict::Audit, Verdict::Forwarded].map(|v| Flow {
            verdict: v as i32,
            ..Default::default()
        })
    );
    let mut q = QueryArgs::try_parse_words(["--last", "1"]).unwrap();
    q.field_mask = vec!["source.nonsense".into()];
    assert!(
        q.request()
            .unwrap_err()
            .to_string()
            .starts_with("--experimental-field-mask: field_mask: invalid path \"source.nonsense\""),
    );
    q.field_mask = vec!["time".into(), "verdict".into()];
    assert_eq!(
        q.request().unwrap().field_mask.unwrap().paths,
        ["time", "verdict"]
    );
}

/// A Cilium flow exporter's file holds agent and debug events between its
/// flows: no flow, one note, and nothing printed for them (before, `-o
/// json` printed `{"node_name":…,"time":…}` and the note blamed L7 data).
#[test]
fn an_exporters_agent_events_are_no_flows_and_print_nothing() {
    let agent = r#"{"agent_event":{"type":"ENDPOINT_CREATED"},"node_name":"kind-worker","time":"2026-11-26T15:04:05Z"}"#;
    let debug = r#"{"debug_event":{"type":"DBG_GENERIC"},"node_name":"kind-worker","time":"2026-11-26T15:04:05Z"}"#;
    let flow = r#"{"flow":{"uuid":"e1","time":"2026-11-26T15:04:06Z"},"node_name":"kind-worker","time":"2026-11-26T15:04:06Z"}"#;
    let text = format!("{agent}\n{flow}\n{debug}\n");
    let (shown, notes) = from_file(&[], &text).unwrap();
    // Counted as responses, as Hubble counts them (`--first 1` is the first).
    assert_eq!(shown, ["status", "e1", "status"]);
    assert_eq!(
        notes,
        ["flows.json line 1: an exporter's agent event (and any later one) is no flow: not shown"]
    );
    for format in [Format::Json, Format::Jsonpb, Format::Compact, Format::Dict] {
        let mut p = debug_printer(format);
        let (responses, _) = observer_proto::json::from_json_stream_lenient::<GetFlowsResponse>(
            "observer.GetFlowsResponse",
            agent,
        )
        .unwrap();
        let emit = p.push(&responses[0]).unwrap();
        assert_eq!(
            (emit.out.as_str(), emit.err.as_str()),
            ("", ""),
            "{format:?}"
        );
    }
}

#[test]
fn an_input_file_without_line_ends_is_refused_at_its_limit() {
    let endless = "x".repeat(super::input_file::MAX_LINE + 1);
    assert_eq!(
        from_file(&[], &endless).unwrap_err(),
        "flows.json line 1: longer than 1 MiB, not a flow: is it a file of \
         `observe flows -o json` lines?"
    );
    assert_eq!(
        from_file(&["--last", "1000001"], "").unwrap_err(),
        "--last 1000001 with --input-file: at most 1000000 flows are kept to print the last ones"
    );
}

#[test]
fn print_policy_names_names_the_deciders_in_every_human_format() {
    let mut verdict = flows()[2].clone();
    verdict.event_type = Some(CiliumEventType {
        r#type: 5,
        sub_type: 0,
    });
    verdict.traffic_direction = TrafficDirection::Ingress as i32;
    verdict.ingress_denied_by = vec![Policy {
        name: "api-deny-client".into(),
        namespace: "default".into(),
        kind: "CiliumNetworkPolicy".into(),
        ..Default::default()
    }];
    let r = resp(verdict);
    let by = "DENIED BY api-deny-client (CiliumNetworkPolicy)";
    for format in [Format::Compact, Format::Dict, Format::Table] {
        let text = |print_policies| {
            let mut p = Printer::new(Options {
                format,
                print_policies,
                ..plain_compact()
            });
            p.push(&r).unwrap().out + &p.finish()
        };
        assert!(text(true).contains(by), "{format:?}: {}", text(true));
        assert!(!text(false).contains("BY"), "{format:?}: {}", text(false));
        assert!(
            text(false).contains("DENIED"),
            "{format:?}: {}",
            text(false)
        );
    }
}

#[test]
fn control_characters_in_flow_text_are_shown_not_obeyed() {
    let syn = tcp(40000, 8080, flags("SYN"));
    let mut f = flow(1, FRONTEND, API, syn, Verdict::Forwarded, "node1");
    f.source.as_mut().unwrap().pod_name = "p\x1b]0;title\x07".into();
    // A colour code in the data is shown too: only our own colours paint.
    f.summary = "\x1b[2Jclear\rover\x1b[32m".into();
    let r = resp(f);
    let compact = Printer::new(Options {
        color: true,
        ..plain_compact()
    })
    .push(&r)
    .unwrap()
    .out;
    assert_eq!(
        compact,
        "Nov 26 15:04:06.123: \x1b[36mdefault/p^[]0;title^G:\x1b[33m40000\x1b[0m\x1b[0m \
         \x1b[35m(ID:308)\x1b[0m -> \x1b[36mdefault/api:\x1b[33m8080\x1b[0m\x1b[0m \x1b[35m(ID:303)\x1b[0m \
         to-endpoint \x1b[32mFORWARDED\x1b[0m (^[[2Jclear\\rover^[[32m)\n"
    );
    for format in [Format::Dict, Format::Table] {
        let mut p = Printer::new(Options {
            format,
            ..plain_compact()
        });
        let text = p.push(&r).unwrap().out + &p.finish();
        assert!(
            !text.contains(['\x1b', '\r', '\x07']),
            "{format:?}: {text:?}"
        );
        assert!(
            text.contains("default/p^[]0;title^G:40000"),
            "{format:?}: {text}"
        );
        assert!(
            text.contains("^[[2Jclear\\rover^[[32m"),
            "{format:?}: {text}"
        );
    }
}

#[test]
fn hubble_identities_ethernet_hosts_and_a_lost_cpu() {
    let line = |r: &GetFlowsResponse| Printer::new(plain_compact()).push(r).unwrap().out;
    // Identities past the reserved names (0-10) are numbers, as CoreDNS's 102.
    let mut f = flow(
        1,
        FRONTEND,
        API,
        udp(40000, 53),
        Verdict::Forwarded,
        "node1",
    );
    f.source.as_mut().unwrap().identity = 102;
    f.destination.as_mut().unwrap().identity = 10;
    assert_eq!(
        line(&resp(f)),
        "Nov 26 15:04:06.123: default/frontend:40000 (ID:102) -> default/api:53 (world-ipv6) \
         to-endpoint FORWARDED (TCP Flags: SYN)\n"
    );
    // A flow without IP (ARP) by its Ethernet addresses; no time reads N/A.
    let arp = Flow {
        verdict: Verdict::Forwarded as i32,
        ethernet: Some(observer_proto::flow::Ethernet {
            source: "aa:bb:cc:dd:ee:ff".into(),
            destination: "ff:ff:ff:ff:ff:ff".into(),
        }),
        summary: "ARP Request who-has 198.18.1.3".into(),
        ..Default::default()
    };
    assert_eq!(
        line(&resp(arp)),
        "N/A: aa:bb:cc:dd:ee:ff (unknown) <> ff:ff:ff:ff:ff:ff (unknown) UNKNOWN FORWARDED \
         (ARP Request who-has 198.18.1.3)\n"
    );
    // Lost events name the CPU when the server does, as Hubble prints it.
    let lost = GetFlowsResponse {
        node_name: "node1".into(),
        time: sample()[0].time,
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: LostEventSource::PerfEventRingBuffer as i32,
            num_events_lost: 42,
            cpu: Some(3),
            ..Default::default()
        })),
    };
    assert_eq!(
        line(&lost),
        "Nov 26 15:04:06.123: EVENTS LOST: PERF_EVENT_RING_BUFFER CPU(3) 42\n"
    );
    let mut table = Printer::new(Options {
        format: Format::Table,
        ..plain_compact()
    });
    table.push(&lost).unwrap();
    assert_eq!(
        table.finish(),
        "TIMESTAMP             SOURCE                   DESTINATION   TYPE          VERDICT   SUMMARY\n\
         Nov 26 15:04:06.123   PERF_EVENT_RING_BUFFER                 EVENTS LOST             CPU(3) - 42\n"
    );
}

#[test]
fn a_field_mask_goes_with_json_output_only() {
    let mask = vec!["time".to_string(), "verdict".into()];
    for ok in [Format::Json, Format::Jsonpb] {
        assert!(super::check_field_mask(&mask, Some(ok)).is_ok());
    }
    assert!(super::check_field_mask(&[], None).is_ok());
    for (format, name) in [
        (None, "compact"),
        (Some(Format::Compact), "compact"),
        (Some(Format::Dict), "dict"),
        (Some(Format::Table), "table"),
    ] {
        assert_eq!(
            super::check_field_mask(&mask, format)
                .unwrap_err()
                .to_string(),
            format!(
                "--experimental-field-mask: the {name} output shows whole flows and is not \
                 compatible with a field mask; use -o json or -o jsonpb"
            )
        );
    }
}

#[test]
fn an_input_file_keeps_flows_with_fields_we_do_not_hold_and_warns_once() {
    let l7 = r#"{"flow":{"uuid":"h1","verdict":"FORWARDED","Type":"L7","l7":{"type":"REQUEST","http":{"method":"GET","url":"http://api/v1"}}},"node_name":"kind-worker"}
{"flow":{"uuid":"h2","verdict":"DROPPED","file":{"name":"bpf_lxc.c","line":1234}},"node_name":"kind-worker"}
{"flow":{"uuid":"h3","verdict":"FORWARDED"},"node_name":"kind-worker"}
"#;
    let (shown, skipped) = from_file(&[], l7).unwrap();
    assert_eq!(shown, ["h1", "h2", "h3"]);
    assert_eq!(
        skipped,
        [
            "flows.json line 1: field 'l7' (and any other this build does not know, here and in \
          later lines) ignored: observe reads the L3/L4 part of flows, without L7 or auth data"
        ]
    );
    let (shown, _) = from_file(&["--verdict", "DROPPED"], l7).unwrap();
    assert_eq!(shown, ["h2"]);
}
