use observer_proto::flow::{
    self, CiliumEventType, DropReason, Endpoint, Flow, Ip, IpVersion, Layer4, TcpFlags,
    TrafficDirection, Verdict, Workload, layer4,
};
use observer_proto::observe::v1::FlowVolume;

use super::*;
use test_support::flows::{flags, tcp};

fn endpoint(ns: &str, workload: &str) -> Endpoint {
    Endpoint {
        namespace: ns.into(),
        pod_name: format!("{workload}-0"),
        identity: 300,
        workloads: vec![Workload {
            name: workload.into(),
            kind: "Deployment".into(),
        }],
        labels: vec![format!("k8s:app={workload}")],
        ..Default::default()
    }
}

/// A forwarded TCP SYN frontend → api:8080 seen at to-endpoint.
fn forwarded(sport: u32, dport: u32) -> Flow {
    Flow {
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: "198.18.1.10".into(),
            destination: "198.18.1.11".into(),
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: tcp(sport, dport, flags("SYN")),
        source: Some(endpoint("default", "frontend")),
        destination: Some(endpoint("default", "api")),
        event_type: Some(CiliumEventType {
            r#type: 4,
            sub_type: 0,
        }),
        traffic_direction: TrafficDirection::Ingress as i32,
        is_reply: Some(false),
        ..Default::default()
    }
}

/// `f` as its reply: from api back to frontend, ports swapped.
fn as_reply(mut f: Flow) -> Flow {
    f.is_reply = Some(true);
    std::mem::swap(&mut f.source, &mut f.destination);
    if let Some(ip) = f.ip.as_mut() {
        std::mem::swap(&mut ip.source, &mut ip.destination);
    }
    if let Some(layer4::Protocol::Tcp(t)) = f.l4.as_mut().and_then(|l| l.protocol.as_mut()) {
        std::mem::swap(&mut t.source_port, &mut t.destination_port);
    }
    f
}

fn denied(sport: u32) -> Flow {
    Flow {
        verdict: Verdict::Dropped as i32,
        drop_reason: 133,
        drop_reason_desc: DropReason::PolicyDenied as i32,
        event_type: Some(CiliumEventType {
            r#type: 1,
            sub_type: 133,
        }),
        policy_match_type: 0,
        ..forwarded(sport, 8080)
    }
}

/// A denial as the probe reports it: Cilium's PolicyVerdict flow, then the Drop.
fn denial(sport: u32) -> [Flow; 2] {
    let drop = denied(sport);
    let verdict = Flow {
        event_type: Some(CiliumEventType {
            r#type: 5,
            sub_type: 0,
        }),
        ..drop.clone()
    };
    [verdict, drop]
}

/// The lines of the exposition that start with `name{` or `name `, as the
/// second of two scrapes shows them (the first shows the expiring families'
/// new series at 0: `new_series_show_0_first_then_count`).
/// Two scrapes: a new series of an expiring family is shown at 0, then with
/// what it counted; until then no sweep removes it.
fn shown(m: &Metrics) {
    m.render();
    m.render();
}

fn series(m: &Metrics, name: &str) -> Vec<String> {
    m.render();
    m.render()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .map(str::to_string)
        .collect()
}

#[test]
fn three_forwarded_tcp_flows_to_endpoint() {
    let m = Metrics::new(&MetricsConfig::default());
    for p in [40000, 40001, 40002] {
        m.ring_record();
        m.flows(&[forwarded(p, 8080)]);
    }
    assert_eq!(
        series(&m, "hubble_flows_processed_total"),
        [
            r#"hubble_flows_processed_total{protocol="TCP",subtype="to-endpoint",type="Trace",verdict="FORWARDED"} 3"#
        ]
    );
    assert_eq!(
        series(&m, "hubble_port_distribution_total"),
        [r#"hubble_port_distribution_total{port="8080",protocol="TCP"} 3"#]
    );
    assert_eq!(
        series(&m, "hubble_tcp_flags_total"),
        [r#"hubble_tcp_flags_total{family="IPv4",flag="SYN"} 3"#]
    );
    assert!(series(&m, "hubble_drop_total").is_empty());
    assert!(series(&m, "hubble_policy_verdicts_total").is_empty());
    assert_eq!(
        series(&m, "observe_probe_ringbuf_events_total"),
        ["observe_probe_ringbuf_events_total 3"]
    );
}

#[test]
fn drops_policy_verdicts_icmp_and_replies() {
    let m = Metrics::new(&MetricsConfig::default());
    m.flows(&denial(40000));
    m.flows(&denial(40001));
    // A Drop alone (a drop Cilium reports with no verdict) is no verdict.
    m.flow(&denied(40003));
    let mut allowed = forwarded(40002, 8080);
    allowed.event_type = Some(CiliumEventType {
        r#type: 5,
        sub_type: 0,
    });
    allowed.policy_match_type = 2;
    m.flow(&allowed);
    // The host's verdicts are not counted, as Hubble's policy handler skips them.
    let mut from_host = allowed.clone();
    from_host.source = Some(Endpoint {
        identity: 1,
        labels: vec!["reserved:host".into()],
        ..Default::default()
    });
    m.flow(&from_host);
    // A reply: no port, SYN-ACK flag.
    let mut reply = forwarded(8080, 40002);
    reply.is_reply = Some(true);
    reply.l4 = tcp(
        8080,
        40002,
        TcpFlags {
            syn: true,
            ack: true,
            ..Default::default()
        },
    );
    m.flow(&reply);
    let mut ping = forwarded(0, 0);
    ping.l4 = Some(Layer4 {
        protocol: Some(layer4::Protocol::IcmPv6(flow::IcmPv6 {
            r#type: 128,
            code: 0,
        })),
    });
    ping.ip.as_mut().unwrap().ip_version = IpVersion::IPv6 as i32;
    m.flow(&ping);

    assert_eq!(
        series(&m, "hubble_drop_total"),
        // Two denials (PolicyVerdict and Drop each) and a lone Drop.
        [r#"hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 5"#]
    );
    assert_eq!(
        series(&m, "hubble_policy_verdicts_total"),
        [
            r#"hubble_policy_verdicts_total{action="dropped",direction="ingress",match="none"} 2"#,
            r#"hubble_policy_verdicts_total{action="forwarded",direction="ingress",match="l3-l4"} 1"#,
        ]
    );
    assert_eq!(
        series(&m, "hubble_flows_processed_total"),
        [
            r#"hubble_flows_processed_total{protocol="ICMPv6",subtype="to-endpoint",type="Trace",verdict="FORWARDED"} 1"#,
            r#"hubble_flows_processed_total{protocol="TCP",subtype="",type="Drop",verdict="DROPPED"} 3"#,
            r#"hubble_flows_processed_total{protocol="TCP",subtype="",type="PolicyVerdict",verdict="DROPPED"} 2"#,
            // The host's verdict is still a processed flow.
            r#"hubble_flows_processed_total{protocol="TCP",subtype="",type="PolicyVerdict",verdict="FORWARDED"} 2"#,
            r#"hubble_flows_processed_total{protocol="TCP",subtype="to-endpoint",type="Trace",verdict="FORWARDED"} 1"#,
        ]
    );
    assert_eq!(
        series(&m, "hubble_tcp_flags_total"),
        [
            r#"hubble_tcp_flags_total{family="IPv4",flag="SYN"} 2"#,
            r#"hubble_tcp_flags_total{family="IPv4",flag="SYN-ACK"} 1"#,
        ]
    );
    assert_eq!(
        series(&m, "hubble_port_distribution_total"),
        [
            r#"hubble_port_distribution_total{port="0",protocol="ICMPv6"} 1"#,
            r#"hubble_port_distribution_total{port="8080",protocol="TCP"} 2"#,
        ]
    );
    assert_eq!(
        series(&m, "hubble_icmp_total"),
        [r#"hubble_icmp_total{family="IPv6",type="EchoRequest"} 1"#]
    );
}

#[test]
fn flows_to_world_and_lost_events() {
    let m = Metrics::new(&MetricsConfig::default());
    let mut out = forwarded(40000, 443);
    out.destination = Some(Endpoint {
        identity: 2,
        labels: vec!["reserved:world".into()],
        ..Default::default()
    });
    m.flow(&out);
    let mut back = out.clone();
    back.is_reply = Some(true);
    m.flow(&back);
    // A default-deny denial to the world counts twice (its PolicyVerdict and
    // its Drop flow); an explicit deny and a non-policy drop not at all.
    for mut f in denial(40001) {
        f.destination = out.destination.clone();
        m.flow(&f);
    }
    let mut explicit = denied(40002);
    explicit.drop_reason_desc = DropReason::PolicyDeny as i32;
    explicit.destination = out.destination.clone();
    m.flow(&explicit);
    let mut unroutable = denied(40003);
    unroutable.drop_reason_desc = DropReason::UnsupportedL3Protocol as i32;
    unroutable.destination = out.destination.clone();
    m.flow(&unroutable);
    // A neighbour solicitation to a multicast address no endpoint has, and
    // an echo request to the world: only the echo leaves the cluster.
    for icmp_type in [135, 128] {
        let mut f = out.clone();
        f.l4 = Some(Layer4 {
            protocol: Some(layer4::Protocol::IcmPv6(flow::IcmPv6 {
                r#type: icmp_type,
                code: 0,
            })),
        });
        f.ip.as_mut().unwrap().ip_version = IpVersion::IPv6 as i32;
        m.flow(&f);
    }
    m.lost(
        flow::LostEventSource::PerfEventRingBuffer,
        stage::KERNEL_RING,
        7,
    );
    assert_eq!(
        series(&m, "hubble_flows_to_world_total"),
        [
            r#"hubble_flows_to_world_total{protocol="ICMPv6",verdict="FORWARDED"} 1"#,
            r#"hubble_flows_to_world_total{protocol="TCP",verdict="DROPPED"} 2"#,
            r#"hubble_flows_to_world_total{protocol="TCP",verdict="FORWARDED"} 1"#,
        ]
    );
    m.follower_lagged(3);
    assert_eq!(
        series(&m, "hubble_lost_events_total"),
        [
            r#"hubble_lost_events_total{source="hubble_ring_buffer"} 3"#,
            r#"hubble_lost_events_total{source="observer_events_queue"} 0"#,
            r#"hubble_lost_events_total{source="perf_event_ring_buffer"} 7"#,
        ]
    );
    assert_eq!(
        series(&m, "observe_probe_lost_events_total"),
        [
            r#"observe_probe_lost_events_total{stage="agent_queue"} 0"#,
            r#"observe_probe_lost_events_total{stage="kernel_ring"} 7"#,
        ]
    );
    // World's volume is named by its reserved identity.
    assert_eq!(
        series(&m, "observe_flow_packets_total"),
        Vec::<String>::new(),
        "no volume on these flows"
    );
}

/// The volume series between frontend and api: (to api, to frontend) in
/// bytes and in packets.
fn assert_frontend_api_volume(m: &Metrics, bytes: (u64, u64), packets: (u64, u64)) {
    for (metric, (to_api, to_frontend)) in [
        ("observe_flow_bytes_total", bytes),
        ("observe_flow_packets_total", packets),
    ] {
        assert_eq!(
            series(m, metric),
            [
                format!(
                    r#"{metric}{{destination_workload="default/api",direction="ingress",observed_at="destination",source_workload="default/frontend"}} {to_api}"#
                ),
                format!(
                    r#"{metric}{{destination_workload="default/frontend",direction="ingress",observed_at="source",source_workload="default/api"}} {to_frontend}"#
                ),
            ]
        );
    }
}

fn with_volume(mut f: Flow, fwd: (u64, u64), rev: (u64, u64)) -> Flow {
    f.volume = Some(FlowVolume {
        fwd_bytes: fwd.0,
        fwd_packets: fwd.1,
        rev_bytes: rev.0,
        rev_packets: rev.1,
        first_packet: false,
        report: false,
        echo_id: 0,
    });
    f
}

#[test]
fn volume_counts_increases_per_connection_and_point() {
    let m = Metrics::new(&MetricsConfig::default());
    // Request direction: 100 B / 2 packets, then 300 B / 5 packets in total.
    m.flow(&with_volume(forwarded(40000, 8080), (100, 2), (0, 0)));
    m.flow(&with_volume(forwarded(40000, 8080), (300, 5), (60, 1)));
    // The reply direction of the same connection counts its own (reverse) side.
    m.flow(&as_reply(with_volume(
        forwarded(40000, 8080),
        (300, 5),
        (1000, 3),
    )));
    // Another connection from the same workloads adds up.
    m.flow(&with_volume(forwarded(40001, 8080), (50, 1), (0, 0)));
    assert_frontend_api_volume(&m, (350, 1000), (6, 3));
}

/// A download with periodic reports, which come from the opener's side:
/// the replies' growth counts as the reports tell it, not only at the
/// server's next flag, and what the server sends after its last flag (here
/// an ACK of the client's FIN) counts too.
#[test]
fn reports_count_the_replies_growth_as_it_happens() {
    let m = Metrics::new(&MetricsConfig::default());
    let request = |fwd, rev| with_volume(forwarded(40000, 8080), fwd, rev);
    let reply = |fwd, rev| as_reply(with_volume(forwarded(40000, 8080), fwd, rev));
    let mut syn = request((74, 1), (0, 0));
    syn.volume.as_mut().unwrap().first_packet = true;
    m.flow(&syn);
    let mut syn_ack = reply((74, 1), (74, 1));
    syn_ack.volume.as_mut().unwrap().first_packet = true;
    m.flow(&syn_ack);
    assert_frontend_api_volume(&m, (74, 74), (1, 1));
    // Two reports mid-download.
    m.flow(&request((500, 5), (4_000_000, 100)));
    assert_frontend_api_volume(&m, (500, 4_000_000), (5, 100));
    m.flow(&request((800, 8), (12_000_000, 200)));
    assert_frontend_api_volume(&m, (800, 12_000_000), (8, 200));
    // The server's FIN, then a report after the client's FIN and the
    // server's last ACK.
    m.flow(&reply((800, 8), (12_000_066, 201)));
    m.flow(&request((866, 9), (12_000_132, 202)));
    assert_frontend_api_volume(&m, (866, 12_000_132), (9, 202));
}

/// A report read from the tables before an event's packet can reach the
/// metrics after that event: its smaller counts are older, not a new
/// connection on the same ports, and add nothing (before, its whole
/// volume counted once more).
#[test]
fn a_report_older_than_the_last_event_adds_nothing() {
    let m = Metrics::new(&MetricsConfig::default());
    let mut syn = with_volume(forwarded(40000, 8080), (74, 1), (0, 0));
    syn.volume.as_mut().unwrap().first_packet = true;
    m.flow(&syn);
    let report = |fwd, rev| {
        let mut f = with_volume(forwarded(40000, 8080), fwd, rev);
        f.volume.as_mut().unwrap().report = true;
        f
    };
    m.flow(&report((500, 5), (4_000_000, 100)));
    // The client's FIN, then a report read just before it.
    m.flow(&with_volume(
        forwarded(40000, 8080),
        (900, 9),
        (12_000_000, 200),
    ));
    m.flow(&report((866, 8), (11_000_000, 190)));
    assert_frontend_api_volume(&m, (900, 12_000_000), (9, 200));
    // A later report still adds what grew since the FIN.
    m.flow(&report((966, 10), (12_000_066, 201)));
    assert_frontend_api_volume(&m, (966, 12_000_066), (10, 201));
}

/// A report marked as such (`volume.report`) is no packet: it adds volume,
/// and counts in none of Hubble's flow metrics.
#[test]
fn a_marked_report_adds_volume_only() {
    let m = Metrics::new(&MetricsConfig::default());
    let mut first = with_volume(forwarded(40000, 8080), (74, 1), (0, 0));
    first.volume.as_mut().unwrap().first_packet = true;
    m.flow(&first);
    let processed = series(&m, "hubble_flows_processed_total");
    let ports = series(&m, "hubble_port_distribution_total");
    assert_eq!(
        (processed.len(), ports.len()),
        (1, 1),
        "{processed:?} {ports:?}"
    );
    let mut report = with_volume(forwarded(40000, 8080), (7400, 100), (5200, 80));
    report.volume.as_mut().unwrap().report = true;
    m.flow(&report);
    assert_frontend_api_volume(&m, (7400, 5200), (100, 80));
    assert_eq!(series(&m, "hubble_flows_processed_total"), processed);
    assert_eq!(series(&m, "hubble_port_distribution_total"), ports);
}

/// After a restart, the counters a previous probe left in the tables were
/// counted by that probe (its counters went with it, and Prometheus takes
/// the new ones as counting from 0): only the growth counts here.
#[test]
fn a_remembered_report_counts_only_what_grows_after_it() {
    let m = Metrics::new(&MetricsConfig::default());
    let report = |fwd, rev| {
        let mut f = with_volume(forwarded(40000, 8080), fwd, rev);
        f.volume.as_mut().unwrap().report = true;
        f
    };
    m.remember_volume(&report((7400, 100), (5200, 80)));
    m.flow(&report((7400, 100), (5200, 80)));
    m.flow(&report((7500, 101), (5300, 81)));
    assert_frontend_api_volume(&m, (100, 100), (1, 1));
}

#[test]
fn each_ping_counts_though_it_counts_the_same() {
    // Three pings from frontend to api: each echo identifier is its own
    // kernel entry, and each reports 98 B / 1 packet at its first packet
    // (and its first answer), all under one ICMP key of the flow.
    let m = Metrics::new(&MetricsConfig::default());
    let ping = |reply: bool, first_packet: bool| {
        let mut f = forwarded(0, 0);
        f.l4 = Some(Layer4 {
            protocol: Some(layer4::Protocol::IcmPv4(flow::IcmPv4 {
                r#type: if reply { 0 } else { 8 },
                code: 0,
            })),
        });
        f.volume = Some(FlowVolume {
            fwd_bytes: 98,
            fwd_packets: 1,
            rev_bytes: if reply { 98 } else { 0 },
            rev_packets: u64::from(reply),
            first_packet,
            report: false,
            echo_id: 0,
        });
        if reply { as_reply(f) } else { f }
    };
    for _ in 0..3 {
        m.flow(&ping(false, true));
        m.flow(&ping(true, true));
    }
    // A later report of the last ping, with nothing new: adds nothing.
    m.flow(&ping(false, false));
    assert_frontend_api_volume(&m, (294, 294), (3, 3));
}

/// A pod that calls the world and is called from it, observed at its own
/// veth only: the world's bytes to it are all `observed_at="destination"`,
/// its replies' and its requests' alike, whatever the connection's
/// direction. A panel taking `observed_at="source"` where there is such a
/// series, else `"destination"`, counts both connections once (taking
/// `direction="egress"`, else `"ingress"`, lost the calls in).
#[test]
fn calls_out_and_in_are_told_apart_by_the_end_that_observed_them() {
    let m = Metrics::new(&MetricsConfig::default());
    let world = Endpoint {
        identity: 2,
        labels: vec!["reserved:world".into()],
        ..Default::default()
    };
    // Two connections, each with its own addresses and ports.
    let at_api = |from_api: bool, direction: TrafficDirection, fwd, rev| {
        let mut f = with_volume(forwarded(40000, 443), fwd, rev);
        f.traffic_direction = direction as i32;
        if from_api {
            f.source = Some(endpoint("default", "api"));
            f.destination = Some(world.clone());
            f.ip.as_mut().unwrap().destination = "198.18.9.9".into();
        } else {
            f.l4 = tcp(50000, 8080, flags("SYN"));
            f.source = Some(world.clone());
            f.destination = Some(endpoint("default", "api"));
        }
        f
    };
    // api calls out (its veth: egress), the world calls in (ingress).
    m.flow(&at_api(
        true,
        TrafficDirection::Egress,
        (500, 5),
        (9000, 10),
    ));
    m.flow(&at_api(
        false,
        TrafficDirection::Ingress,
        (300, 3),
        (700, 4),
    ));
    assert_eq!(
        series(&m, "observe_flow_bytes_total"),
        [
            r#"observe_flow_bytes_total{destination_workload="default/api",direction="egress",observed_at="destination",source_workload="reserved:world"} 9000"#,
            r#"observe_flow_bytes_total{destination_workload="default/api",direction="ingress",observed_at="destination",source_workload="reserved:world"} 300"#,
            r#"observe_flow_bytes_total{destination_workload="reserved:world",direction="egress",observed_at="source",source_workload="default/api"} 500"#,
            r#"observe_flow_bytes_total{destination_workload="reserved:world",direction="ingress",observed_at="source",source_workload="default/api"} 700"#,
        ]
    );
}

/// One multicast neighbour solicitation arrives at every endpoint of the
/// link: each counted it as bytes to world (lab QA). It counts in Hubble's
/// flow metrics, as Hubble's do, and in no volume; an echo does.
#[test]
fn neighbour_discovery_adds_no_volume() {
    let m = Metrics::new(&MetricsConfig::default());
    for icmp_type in [135, 128] {
        let mut f = with_volume(forwarded(0, 0), (86, 1), (0, 0));
        f.l4 = Some(Layer4 {
            protocol: Some(layer4::Protocol::IcmPv6(flow::IcmPv6 {
                r#type: icmp_type,
                code: 0,
            })),
        });
        f.volume.as_mut().unwrap().first_packet = true;
        m.flow(&f);
    }
    assert_eq!(
        series(&m, "observe_flow_bytes_total"),
        [
            r#"observe_flow_bytes_total{destination_workload="default/api",direction="ingress",observed_at="destination",source_workload="default/frontend"} 86"#
        ]
    );
    assert_eq!(
        series(&m, "hubble_icmp_total"),
        [
            r#"hubble_icmp_total{family="IPv6",type="EchoRequest"} 1"#,
            r#"hubble_icmp_total{family="IPv6",type="NeighborSolicitation"} 1"#,
        ]
    );
}

#[test]
fn context_fallback_and_options() {
    let cfg = MetricsConfig {
        context: Context::parse("app|ip").unwrap(),
        ..Default::default()
    };
    let m = Metrics::new(&cfg);
    let mut f = with_volume(forwarded(40000, 8080), (10, 1), (0, 0));
    f.destination.as_mut().unwrap().labels.clear();
    m.flow(&f);
    assert_eq!(
        series(&m, "observe_flow_packets_total"),
        [
            r#"observe_flow_packets_total{destination_workload="198.18.1.11",direction="ingress",observed_at="destination",source_workload="frontend"} 1"#
        ]
    );
    assert!(Context::parse("workload|nonsense").is_err());
}

#[test]
fn cardinality_cap_collapses_into_overflow() {
    let cfg = MetricsConfig {
        max_label_sets: 1000,
        ..Default::default()
    };
    let m = Metrics::new(&cfg);
    // 1200 distinct ports, the last 50 twice: 1000 fit, 200 + 50 overflow.
    for port in 1..=1200 {
        m.flow(&forwarded(40000, port));
    }
    for port in 1151..=1200 {
        m.flow(&forwarded(40000, port));
    }
    let ports = series(&m, "hubble_port_distribution_total");
    assert_eq!(ports.len(), 1001, "1000 label sets and the overflow set");
    assert!(
        ports.contains(
            &r#"hubble_port_distribution_total{port="1000",protocol="TCP"} 1"#.to_string()
        )
    );
    assert!(!ports.iter().any(|l| l.contains(r#"port="1001""#)));
    assert!(
        ports.contains(
            &r#"hubble_port_distribution_total{port="__overflow__",protocol="__overflow__"} 250"#
                .to_string()
        )
    );
    assert_eq!(
        m.label_sets("hubble_port_distribution_total").unwrap(),
        1000
    );
    let overflow = series(&m, "observe_metrics_overflow_total");
    assert!(
        overflow.contains(
            &r#"observe_metrics_overflow_total{metric="hubble_port_distribution_total"} 250"#
                .to_string()
        )
    );
    assert!(overflow.contains(
        &r#"observe_metrics_overflow_total{metric="hubble_flows_processed_total"} 0"#.to_string()
    ));
    // Other metrics are not affected.
    assert_eq!(
        series(&m, "hubble_flows_processed_total"),
        [
            r#"hubble_flows_processed_total{protocol="TCP",subtype="to-endpoint",type="Trace",verdict="FORWARDED"} 1250"#
        ]
    );
}

#[test]
fn names_list_every_family() {
    let names = metric_names();
    for n in [
        "hubble_flows_processed_total",
        "hubble_drop_total",
        "hubble_tcp_flags_total",
        "hubble_port_distribution_total",
        "hubble_icmp_total",
        "hubble_policy_verdicts_total",
        "hubble_flows_to_world_total",
        "hubble_lost_events_total",
        "observe_flow_bytes_total",
        "observe_flow_packets_total",
        "observe_probe_ringbuf_events_total",
        "observe_probe_lost_events_total",
        "observe_probe_decode_errors_total",
        "observe_probe_attached_programs",
        "observe_probe_policy_generation",
        "observe_probe_services_generation",
        "observe_metrics_overflow_total",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert_eq!(names.len(), 17);
}

/// A clock the test moves by hand.
fn manual_clock() -> (Clock, std::sync::Arc<std::sync::Mutex<std::time::Instant>>) {
    let now = std::sync::Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
    let read = now.clone();
    (std::sync::Arc::new(move || *read.lock().unwrap()), now)
}

fn advance(now: &std::sync::Mutex<std::time::Instant>, secs: u64) {
    *now.lock().unwrap() += Duration::from_secs(secs);
}

#[test]
fn series_not_updated_for_the_grace_period_are_removed() {
    let (clock, now) = manual_clock();
    let cfg = MetricsConfig {
        grace: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    let m = Metrics::with_clock(&cfg, clock);
    m.flow(&with_volume(forwarded(40000, 8080), (100, 2), (0, 0)));
    let mut gone = with_volume(forwarded(40001, 9090), (40, 1), (0, 0));
    gone.destination = Some(endpoint("default", "old"));
    m.flow(&gone);
    advance(&now, 300);
    m.flow(&with_volume(forwarded(40000, 8080), (150, 3), (0, 0)));
    // 9090 / old was updated 599 s ago: still there.
    advance(&now, 299);
    assert_eq!(
        series(&m, "hubble_port_distribution_total"),
        [
            r#"hubble_port_distribution_total{port="8080",protocol="TCP"} 2"#,
            r#"hubble_port_distribution_total{port="9090",protocol="TCP"} 1"#,
        ]
    );
    assert_eq!(
        series(&m, "observe_flow_bytes_total"),
        [
            r#"observe_flow_bytes_total{destination_workload="default/api",direction="ingress",observed_at="destination",source_workload="default/frontend"} 150"#,
            r#"observe_flow_bytes_total{destination_workload="default/old",direction="ingress",observed_at="destination",source_workload="default/frontend"} 40"#,
        ]
    );
    // 600 s after its last update it is removed; 8080 (300 s) stays.
    advance(&now, 1);
    assert_eq!(
        series(&m, "hubble_port_distribution_total"),
        [r#"hubble_port_distribution_total{port="8080",protocol="TCP"} 2"#]
    );
    assert_eq!(
        series(&m, "observe_flow_bytes_total"),
        [
            r#"observe_flow_bytes_total{destination_workload="default/api",direction="ingress",observed_at="destination",source_workload="default/frontend"} 150"#
        ]
    );
    assert_eq!(
        series(&m, "observe_flow_packets_total"),
        [
            r#"observe_flow_packets_total{destination_workload="default/api",direction="ingress",observed_at="destination",source_workload="default/frontend"} 3"#
        ]
    );
    assert_eq!(
        series(&m, "hubble_tcp_flags_total"),
        [r#"hubble_tcp_flags_total{family="IPv4",flag="SYN"} 3"#]
    );
    // Families with fixed label sets never expire.
    advance(&now, 3600);
    assert_eq!(
        series(&m, "hubble_flows_processed_total"),
        [
            r#"hubble_flows_processed_total{protocol="TCP",subtype="to-endpoint",type="Trace",verdict="FORWARDED"} 3"#
        ]
    );
    assert_eq!(
        series(&m, "hubble_lost_events_total"),
        [
            r#"hubble_lost_events_total{source="observer_events_queue"} 0"#,
            r#"hubble_lost_events_total{source="perf_event_ring_buffer"} 0"#,
        ]
    );
    assert_eq!(
        series(&m, "hubble_tcp_flags_total"),
        [r#"hubble_tcp_flags_total{family="IPv4",flag="SYN"} 3"#]
    );
    assert!(series(&m, "hubble_port_distribution_total").is_empty());
    assert!(series(&m, "observe_flow_bytes_total").is_empty());
    assert_eq!(m.label_sets("hubble_port_distribution_total").unwrap(), 0);
}

#[test]
fn expired_series_free_room_under_the_cap() {
    let (clock, now) = manual_clock();
    let cfg = MetricsConfig {
        max_label_sets: 2,
        grace: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let m = Metrics::with_clock(&cfg, clock);
    for port in [1, 2, 3, 4] {
        m.flow(&forwarded(40000, port));
    }
    assert_eq!(
        series(&m, "hubble_port_distribution_total"),
        [
            r#"hubble_port_distribution_total{port="1",protocol="TCP"} 1"#,
            r#"hubble_port_distribution_total{port="2",protocol="TCP"} 1"#,
            r#"hubble_port_distribution_total{port="__overflow__",protocol="__overflow__"} 2"#,
        ]
    );
    advance(&now, 30);
    m.flow(&forwarded(40000, 1));
    advance(&now, 30);
    // Port 2 and the overflow set are 60 s old: removed; port 1 stays.
    assert_eq!(m.sweep(), 2);
    assert_eq!(m.label_sets("hubble_port_distribution_total").unwrap(), 1);
    m.flow(&forwarded(40000, 3));
    m.flow(&forwarded(40000, 5));
    assert_eq!(
        series(&m, "hubble_port_distribution_total"),
        [
            r#"hubble_port_distribution_total{port="1",protocol="TCP"} 2"#,
            r#"hubble_port_distribution_total{port="3",protocol="TCP"} 1"#,
            r#"hubble_port_distribution_total{port="__overflow__",protocol="__overflow__"} 1"#,
        ]
    );
    assert_eq!(
        series(&m, "observe_metrics_overflow_total")
            .into_iter()
            .filter(|l| l.contains("hubble_port_distribution_total"))
            .collect::<Vec<_>>(),
        [r#"observe_metrics_overflow_total{metric="hubble_port_distribution_total"} 3"#]
    );
}

#[test]
fn no_grace_keeps_series_forever() {
    let (clock, now) = manual_clock();
    let cfg = MetricsConfig {
        grace: None,
        ..Default::default()
    };
    let m = Metrics::with_clock(&cfg, clock);
    m.flow(&forwarded(40000, 8080));
    advance(&now, 100_000);
    assert_eq!(m.sweep(), 0);
    assert_eq!(
        series(&m, "hubble_port_distribution_total"),
        [r#"hubble_port_distribution_total{port="8080",protocol="TCP"} 1"#]
    );
}

#[test]
fn grace_flag() {
    assert_eq!(parse_grace("10m"), Ok(Some(Duration::from_secs(600))));
    assert_eq!(parse_grace("90"), Ok(Some(Duration::from_secs(90))));
    assert_eq!(parse_grace("2h"), Ok(Some(Duration::from_secs(7200))));
    assert_eq!(parse_grace("30s"), Ok(Some(Duration::from_secs(30))));
    assert_eq!(parse_grace("0"), Ok(None));
    assert_eq!(parse_grace("off"), Ok(None));
    assert_eq!(parse_grace("1h30m"), Ok(Some(Duration::from_secs(5400))));
    assert_eq!(parse_grace("1d"), Ok(Some(Duration::from_secs(86_400))));
    let err = parse_grace("10x").unwrap_err();
    assert!(err.starts_with("--metrics-grace \"10x\": "), "{err}");
    assert!(err.ends_with(" (or a number of seconds, or off)"), "{err}");
}

fn with_options(flags: &[&str]) -> MetricsConfig {
    MetricsConfig {
        options: MetricOptions::parse(flags).unwrap(),
        ..Default::default()
    }
}

/// Pod `name` in namespace `ns` (no workload, no labels).
fn pod(ns: &str, name: &str) -> Endpoint {
    Endpoint {
        namespace: ns.into(),
        pod_name: name.into(),
        identity: 300,
        ..Default::default()
    }
}

#[test]
fn source_and_destination_context_on_a_hubble_metric() {
    let m = Metrics::new(&with_options(&[
        "drop:sourceContext=pod;destinationContext=namespace",
    ]));
    let mut f = denied(40000);
    f.source = Some(pod("a", "x"));
    f.destination = Some(pod("b", "y"));
    m.flow(&f);
    assert_eq!(
        series(&m, "hubble_drop_total"),
        [
            r#"hubble_drop_total{destination="b",protocol="TCP",reason="POLICY_DENIED",source="a/x"} 1"#
        ]
    );
    // The other metrics keep their usual labels.
    assert_eq!(
        series(&m, "hubble_flows_processed_total"),
        [
            r#"hubble_flows_processed_total{protocol="TCP",subtype="",type="Drop",verdict="DROPPED"} 1"#
        ]
    );
    assert!(
        series(&m, "hubble_policy_verdicts_total").is_empty(),
        "a Drop is no policy verdict"
    );
}

#[test]
fn context_labels_on_every_flow_metric_with_fallback() {
    let m = Metrics::new(&with_options(&[
        "flow:sourceContext=workload tcp:destinationContext=pod-name",
        "port-distribution:sourceContext=app;destinationContext=app|ip",
        "policy:SOURCECONTEXT=namespace",
        "flows-to-world:destinationContext=namespace|reserved-identity",
        "icmp:sourceContext=identity;destinationContext=ip",
    ]));
    let mut allowed = forwarded(40000, 8080);
    allowed.event_type = Some(CiliumEventType {
        r#type: 5,
        sub_type: 0,
    });
    allowed.policy_match_type = 2;
    // No app label on the destination: its IP.
    allowed.destination.as_mut().unwrap().labels.clear();
    m.flow(&allowed);
    let mut out = forwarded(40001, 443);
    out.destination = Some(Endpoint {
        identity: 2,
        labels: vec!["reserved:world".into()],
        ..Default::default()
    });
    m.flow(&out);
    let mut ping = forwarded(0, 0);
    ping.is_reply = Some(true);
    ping.l4 = Some(Layer4 {
        protocol: Some(layer4::Protocol::IcmPv4(flow::IcmPv4 {
            r#type: 0,
            code: 0,
        })),
    });
    m.flow(&ping);
    assert_eq!(
        series(&m, "hubble_flows_processed_total"),
        [
            r#"hubble_flows_processed_total{protocol="ICMPv4",source="default/frontend",subtype="to-endpoint",type="Trace",verdict="FORWARDED"} 1"#,
            r#"hubble_flows_processed_total{protocol="TCP",source="default/frontend",subtype="",type="PolicyVerdict",verdict="FORWARDED"} 1"#,
            r#"hubble_flows_processed_total{protocol="TCP",source="default/frontend",subtype="to-endpoint",type="Trace",verdict="FORWARDED"} 1"#,
        ]
    );
    assert_eq!(
        series(&m, "hubble_tcp_flags_total"),
        [
            r#"hubble_tcp_flags_total{destination="",family="IPv4",flag="SYN"} 1"#,
            r#"hubble_tcp_flags_total{destination="api-0",family="IPv4",flag="SYN"} 1"#,
        ]
    );
    assert_eq!(
        series(&m, "hubble_port_distribution_total"),
        [
            r#"hubble_port_distribution_total{destination="198.18.1.11",port="443",protocol="TCP",source="frontend"} 1"#,
            r#"hubble_port_distribution_total{destination="198.18.1.11",port="8080",protocol="TCP",source="frontend"} 1"#,
        ]
    );
    assert_eq!(
        series(&m, "hubble_policy_verdicts_total"),
        [
            r#"hubble_policy_verdicts_total{action="forwarded",direction="ingress",match="l3-l4",source="default"} 1"#
        ]
    );
    assert_eq!(
        series(&m, "hubble_flows_to_world_total"),
        [
            r#"hubble_flows_to_world_total{destination="reserved:world",protocol="TCP",verdict="FORWARDED"} 1"#
        ]
    );
    assert_eq!(
        series(&m, "hubble_icmp_total"),
        [
            r#"hubble_icmp_total{destination="198.18.1.11",family="IPv4",source="k8s:app=frontend",type="EchoReply"} 1"#
        ]
    );
}

/// Each context as Hubble's handlers value it.
#[test]
fn contexts_value_endpoints_as_hubble() {
    let value = |context: &str, ep: Endpoint| {
        let f = Flow {
            source: Some(ep),
            ..forwarded(40000, 8080)
        };
        Context::parse(context).unwrap().value(&f, true)
    };
    let labelled = |labels: &[&str]| Endpoint {
        labels: labels.iter().map(|l| l.to_string()).collect(),
        ..pod("shop", "cart-7d9f8b6c4-x2k4q")
    };
    assert_eq!(
        value(
            "identity",
            labelled(&["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"])
        ),
        "k8s:app=web,k8s:io.kubernetes.pod.namespace=shop"
    );
    // The first label with an app key, in the labels' order; only `k8s:` ones.
    let app = |labels: &[&str]| value("app", labelled(labels));
    assert_eq!(
        app(&["k8s:app.kubernetes.io/name=shop", "k8s:app=web"]),
        "shop"
    );
    assert_eq!(app(&["k8s:app=web", "k8s:k8s-app=dns"]), "web");
    assert_eq!(app(&["app=web", "container:app=x"]), "");
    assert_eq!(app(&["k8s:app=", "k8s:k8s-app=dns"]), "dns");
    // Any identity's reserved labels; the API server's first.
    let reserved = |labels: &[&str], identity| {
        value(
            "reserved-identity",
            Endpoint {
                identity,
                ..labelled(labels)
            },
        )
    };
    assert_eq!(
        reserved(&["cidr:1.2.3.4/32", "reserved:world"], 16777217),
        "reserved:world"
    );
    assert_eq!(
        reserved(&["reserved:host", "reserved:kube-apiserver"], 1),
        "reserved:kube-apiserver"
    );
    assert_eq!(reserved(&["k8s:app=web"], 300), "");
    // pod-short drops the one or two parts a controller generates.
    assert_eq!(value("pod-short", labelled(&[])), "shop/cart");
    for (name, short) in [
        ("web-0", "web"),
        ("my-app-7d9f8b-x2k4q", "my-app"),
        ("api", "api"),
        ("db-Primary-1", "db-Primary"),
        ("-x", "-x"),
    ] {
        assert_eq!(value("POD-SHORT", pod("", name)), short, "{name}");
    }
    // `pod` is `namespace/` without a pod name, and stops the chain there.
    assert_eq!(value("pod|ip", pod("shop", "")), "shop/");
    // No DNS names are captured: `dns` falls through.
    assert_eq!(value("dns|namespace", labelled(&[])), "shop");
}

/// `labelsContext` labels come first, in Hubble's order; a direction's
/// context takes precedence for flows of that direction.
#[test]
fn labels_context_and_direction_contexts() {
    let m = Metrics::new(&with_options(&[
        "drop:labelsContext=traffic_direction,destination_app,source_namespace,source_ip;sourceEgressContext=pod;sourceContext=namespace",
    ]));
    let mut ingress = denied(40000);
    ingress.traffic_direction = TrafficDirection::Ingress as i32;
    m.flow(&ingress);
    let mut egress = denied(40001);
    egress.traffic_direction = TrafficDirection::Egress as i32;
    m.flow(&egress);
    let mut unknown = denied(40002);
    unknown.traffic_direction = TrafficDirection::Unknown as i32;
    unknown.destination = None;
    m.flow(&unknown);
    assert_eq!(
        series(&m, "hubble_drop_total"),
        [
            r#"hubble_drop_total{destination_app="",protocol="TCP",reason="POLICY_DENIED",source="default",source_ip="198.18.1.10",source_namespace="default",traffic_direction="unknown"} 1"#,
            r#"hubble_drop_total{destination_app="api",protocol="TCP",reason="POLICY_DENIED",source="default",source_ip="198.18.1.10",source_namespace="default",traffic_direction="ingress"} 1"#,
            r#"hubble_drop_total{destination_app="api",protocol="TCP",reason="POLICY_DENIED",source="default/frontend-0",source_ip="198.18.1.10",source_namespace="default",traffic_direction="egress"} 1"#,
        ]
    );
    // A direction's context alone: the label, empty for other flows.
    let m = Metrics::new(&with_options(&["drop:destinationIngressContext=pod"]));
    m.flow(&ingress);
    m.flow(&egress);
    assert_eq!(
        series(&m, "hubble_drop_total"),
        [
            r#"hubble_drop_total{destination="",protocol="TCP",reason="POLICY_DENIED"} 1"#,
            r#"hubble_drop_total{destination="default/api-0",protocol="TCP",reason="POLICY_DENIED"} 1"#,
        ]
    );
}

/// flows-to-world's own options: any-drop, port, syn-only.
#[test]
fn flows_to_world_options() {
    let world = Endpoint {
        identity: 2,
        labels: vec!["reserved:world".into()],
        ..Default::default()
    };
    let to_world = |mut f: Flow| {
        f.destination = Some(world.clone());
        f
    };
    let flows = {
        let mut unrouted = to_world(denied(40000));
        unrouted.drop_reason_desc = DropReason::UnknownL3TargetAddress as i32;
        let mut ack = to_world(forwarded(40001, 443));
        ack.l4 = tcp(40001, 443, flags("ACK"));
        let mut dns = to_world(forwarded(40002, 53));
        dns.l4 = Some(Layer4 {
            protocol: Some(layer4::Protocol::Udp(flow::Udp {
                source_port: 40002,
                destination_port: 53,
            })),
        });
        [
            unrouted,
            to_world(forwarded(40003, 443)),
            ack,
            dns,
            to_world(denied(40004)),
        ]
    };
    let count = |options: &str| {
        let m = Metrics::new(&with_options(&[options]));
        for f in &flows {
            m.flow(f);
        }
        series(&m, "hubble_flows_to_world_total")
    };
    assert_eq!(
        count("flows-to-world"),
        [
            r#"hubble_flows_to_world_total{protocol="TCP",verdict="DROPPED"} 1"#,
            r#"hubble_flows_to_world_total{protocol="TCP",verdict="FORWARDED"} 2"#,
            r#"hubble_flows_to_world_total{protocol="UDP",verdict="FORWARDED"} 1"#,
        ]
    );
    assert_eq!(
        count("flows-to-world:any-drop;port"),
        [
            r#"hubble_flows_to_world_total{port="443",protocol="TCP",verdict="FORWARDED"} 2"#,
            r#"hubble_flows_to_world_total{port="53",protocol="UDP",verdict="FORWARDED"} 1"#,
            r#"hubble_flows_to_world_total{port="8080",protocol="TCP",verdict="DROPPED"} 2"#,
        ]
    );
    // SYNs only: not the ACK, not UDP; the denied SYN still counts.
    assert_eq!(
        count("flows-to-world:syn-only"),
        [
            r#"hubble_flows_to_world_total{protocol="TCP",verdict="DROPPED"} 1"#,
            r#"hubble_flows_to_world_total{protocol="TCP",verdict="FORWARDED"} 1"#,
        ]
    );
    // Ports churn: their series expire as port-distribution's do; without
    // the option the family's few series stay.
    for (options, left) in [("flows-to-world:port", 0), ("flows-to-world", 1)] {
        let (clock, now) = manual_clock();
        let cfg = MetricsConfig {
            grace: Some(Duration::from_secs(600)),
            ..with_options(&[options])
        };
        let m = Metrics::with_clock(&cfg, clock);
        m.flow(&flows[1]);
        shown(&m);
        advance(&now, 601);
        assert_eq!(
            series(&m, "hubble_flows_to_world_total").len(),
            left,
            "{options}"
        );
    }
}

/// TCP flags of redirected flows count, as forwarded ones; a flow without
/// an IP record counts none, one whose record has no version counts under
/// its name (Hubble's handler).
#[test]
fn tcp_flags_of_redirected_flows_and_none_without_ip() {
    let m = Metrics::new(&MetricsConfig::default());
    let mut redirected = forwarded(40000, 8080);
    redirected.verdict = Verdict::Redirected as i32;
    m.flow(&redirected);
    let mut no_ip = forwarded(40001, 8080);
    no_ip.ip = None;
    m.flow(&no_ip);
    let mut no_version = forwarded(40002, 8080);
    no_version.ip.as_mut().unwrap().ip_version = IpVersion::IpNotUsed as i32;
    m.flow(&no_version);
    assert_eq!(
        series(&m, "hubble_tcp_flags_total"),
        [
            r#"hubble_tcp_flags_total{family="IP_NOT_USED",flag="SYN"} 1"#,
            r#"hubble_tcp_flags_total{family="IPv4",flag="SYN"} 1"#,
        ]
    );
}

#[test]
fn context_labels_stay_under_the_cap() {
    let cfg = MetricsConfig {
        max_label_sets: 2,
        ..with_options(&["drop:sourceContext=pod;destinationContext=namespace"])
    };
    let m = Metrics::new(&cfg);
    for (i, name) in ["x", "y", "z", "w", "x"].into_iter().enumerate() {
        let mut f = denied(40000 + i as u32);
        f.source = Some(pod("a", name));
        f.destination = Some(pod("b", "y"));
        m.flow(&f);
    }
    assert_eq!(
        series(&m, "hubble_drop_total"),
        [
            r#"hubble_drop_total{destination="__overflow__",protocol="__overflow__",reason="__overflow__",source="__overflow__"} 2"#,
            r#"hubble_drop_total{destination="b",protocol="TCP",reason="POLICY_DENIED",source="a/x"} 2"#,
            r#"hubble_drop_total{destination="b",protocol="TCP",reason="POLICY_DENIED",source="a/y"} 1"#,
        ]
    );
    assert_eq!(m.label_sets("hubble_drop_total"), Some(2));
    assert!(
        series(&m, "observe_metrics_overflow_total")
            .contains(&r#"observe_metrics_overflow_total{metric="hubble_drop_total"} 2"#.into())
    );
}

#[test]
fn context_labels_expire_after_the_grace_period() {
    let (clock, now) = manual_clock();
    let cfg = MetricsConfig {
        grace: Some(Duration::from_secs(60)),
        ..with_options(&["drop:sourceContext=pod"])
    };
    let m = Metrics::with_clock(&cfg, clock);
    let mut old = denied(40000);
    old.source = Some(pod("a", "old"));
    m.flow(&old);
    shown(&m);
    advance(&now, 30);
    let mut new = denied(40001);
    new.source = Some(pod("a", "new"));
    m.flow(&new);
    advance(&now, 30);
    // The pod "old" was last seen 60 s ago: its series goes; "new" stays.
    assert_eq!(
        series(&m, "hubble_drop_total"),
        [r#"hubble_drop_total{protocol="TCP",reason="POLICY_DENIED",source="a/new"} 1"#]
    );
    assert_eq!(m.label_sets("hubble_drop_total"), Some(1));
    // Without context labels the same family never expires.
    advance(&now, 3600);
    assert_eq!(
        series(&m, "hubble_flows_processed_total"),
        [
            r#"hubble_flows_processed_total{protocol="TCP",subtype="",type="Drop",verdict="DROPPED"} 2"#
        ]
    );
    assert!(series(&m, "hubble_drop_total").is_empty());
}

/// Hubble names the protocol by the event type first: only drops, traces,
/// policy verdicts and captures have an L4 name, "Unknown L4" without one;
/// a socket translation is "Unknown flow" even though it carries TCP ports.
#[test]
fn the_protocol_label_is_hubbles_by_event_type() {
    let m = Metrics::new(&MetricsConfig::default());
    let sock = Flow {
        event_type: Some(CiliumEventType {
            r#type: 7,
            sub_type: 2,
        }),
        ..forwarded(40000, 8080)
    };
    let no_backend = Flow {
        verdict: Verdict::Dropped as i32,
        drop_reason_desc: DropReason::ServiceBackendNotFound as i32,
        ..sock.clone()
    };
    // A kernel drop of a packet whose L4 header was not read.
    let kernel = Flow {
        l4: None,
        ..denied(0)
    };
    for f in [&sock, &no_backend, &kernel] {
        m.flow(f);
    }
    assert_eq!(
        series(&m, "hubble_flows_processed_total"),
        [
            r#"hubble_flows_processed_total{protocol="Unknown L4",subtype="",type="Drop",verdict="DROPPED"} 1"#,
            r#"hubble_flows_processed_total{protocol="Unknown flow",subtype="7",type="Unknown",verdict="DROPPED"} 1"#,
            r#"hubble_flows_processed_total{protocol="Unknown flow",subtype="7",type="Unknown",verdict="FORWARDED"} 1"#,
        ]
    );
    assert_eq!(
        series(&m, "hubble_drop_total"),
        [
            r#"hubble_drop_total{protocol="Unknown L4",reason="POLICY_DENIED"} 1"#,
            r#"hubble_drop_total{protocol="Unknown flow",reason="SERVICE_BACKEND_NOT_FOUND"} 1"#,
        ]
    );
    // The port distribution names L4 itself, whatever the event type.
    assert_eq!(
        series(&m, "hubble_port_distribution_total"),
        [r#"hubble_port_distribution_total{port="8080",protocol="TCP"} 1"#]
    );
}

#[test]
fn equal_flows_processed_ids_mean_equal_labels() {
    let mut seen: std::collections::HashMap<u64, (String, String, &str, &str)> =
        std::collections::HashMap::new();
    let protocols = [
        None,
        tcp(1, 2, flags("SYN")),
        Some(Layer4 {
            protocol: Some(layer4::Protocol::Udp(flow::Udp {
                source_port: 1,
                destination_port: 2,
            })),
        }),
        Some(Layer4 {
            protocol: Some(layer4::Protocol::IcmPv4(flow::IcmPv4 {
                r#type: 8,
                code: 0,
            })),
        }),
        Some(Layer4 {
            protocol: Some(layer4::Protocol::IcmPv6(flow::IcmPv6 {
                r#type: 128,
                code: 0,
            })),
        }),
        Some(Layer4 {
            protocol: Some(layer4::Protocol::Sctp(flow::Sctp {
                source_port: 1,
                destination_port: 2,
            })),
        }),
    ];
    for ty in [0, 1, 2, 3, 4, 5, 129, 200, -1] {
        for sub in [-1, 0, 1, 5, 13, 14, 133, 255, 256] {
            for verdict in [0, 1, 2, 5, 7, 8, 99] {
                for l4 in &protocols {
                    let f = Flow {
                        event_type: Some(CiliumEventType {
                            r#type: ty,
                            sub_type: sub,
                        }),
                        verdict,
                        l4: *l4,
                        ..Default::default()
                    };
                    let (t, s) = labels::event_type(&f);
                    let values = (
                        t.to_string(),
                        s.into_owned(),
                        labels::verdict(&f),
                        labels::protocol(&f),
                    );
                    let id = labels::flows_processed_id(&f);
                    let first = seen.entry(id).or_insert_with(|| values.clone());
                    assert_eq!(*first, values, "id {id:#x}");
                }
            }
        }
    }
}

#[test]
fn remembered_label_sets_still_respect_the_cap() {
    let cfg = MetricsConfig {
        max_label_sets: 1,
        ..Default::default()
    };
    let m = Metrics::new(&cfg);
    for _ in 0..3 {
        m.flow(&forwarded(40000, 8080));
        m.flow(&denied(40000));
    }
    assert_eq!(
        series(&m, "hubble_flows_processed_total"),
        [
            r#"hubble_flows_processed_total{protocol="TCP",subtype="to-endpoint",type="Trace",verdict="FORWARDED"} 3"#,
            r#"hubble_flows_processed_total{protocol="__overflow__",subtype="__overflow__",type="__overflow__",verdict="__overflow__"} 3"#,
        ]
    );
    assert!(series(&m, "observe_metrics_overflow_total").contains(
        &r#"observe_metrics_overflow_total{metric="hubble_flows_processed_total"} 3"#.into()
    ));
}

#[test]
fn an_update_is_seen_by_the_next_sweep_at_the_latest() {
    // The clock is read when a label set is created, not on every update: the
    // sweep that finds an update counts the grace period from its own time.
    let (clock, now) = manual_clock();
    let cfg = MetricsConfig {
        grace: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let m = Metrics::with_clock(&cfg, clock);
    m.flow(&forwarded(40000, 8080));
    // Scraped at 0, then with its count: from then on it may go.
    shown(&m);
    assert_eq!(m.sweep(), 0);
    advance(&now, 10);
    m.flow(&forwarded(40001, 8080));
    advance(&now, 40);
    assert_eq!(m.sweep(), 0, "t=50 takes in the update of t=10");
    advance(&now, 59);
    assert_eq!(m.sweep(), 0, "t=109: 59 s after the sweep that saw it");
    advance(&now, 1);
    // Port 8080 goes at t=110 (TCP flags are a fixed set: kept).
    assert_eq!(m.sweep(), 1);
    assert!(series(&m, "hubble_port_distribution_total").is_empty());
}

#[test]
fn lifecycle_reports_are_no_flows_and_icmp_types_read_as_hubble_writes_them() {
    let m = Metrics::new(&MetricsConfig::default());
    let lifecycle = Flow {
        tcp_lifecycle: Some(Default::default()),
        event_type: None,
        verdict: Verdict::Unknown as i32,
        ..forwarded(40000, 8080)
    };
    m.ring_record();
    m.flows(&[lifecycle]);
    assert!(series(&m, "hubble_flows_processed_total").is_empty());
    assert_eq!(
        series(&m, "observe_probe_ringbuf_events_total"),
        ["observe_probe_ringbuf_events_total 1"],
        "the record is still counted"
    );
    for (t, code) in [(143, 0), (1, 4), (135, 0)] {
        let mut f = forwarded(0, 0);
        f.l4 = Some(Layer4 {
            protocol: Some(layer4::Protocol::IcmPv6(flow::IcmPv6 { r#type: t, code })),
        });
        f.ip.as_mut().unwrap().ip_version = IpVersion::IPv6 as i32;
        m.flow(&f);
    }
    assert_eq!(
        series(&m, "hubble_icmp_total"),
        [
            r#"hubble_icmp_total{family="IPv6",type="143(0)"} 1"#,
            r#"hubble_icmp_total{family="IPv6",type="DestinationUnreachable(PortUnreachable)"} 1"#,
            r#"hubble_icmp_total{family="IPv6",type="NeighborSolicitation"} 1"#,
        ]
    );
}

/// A scrape's port-distribution series.
fn port_series(m: &Metrics) -> Vec<String> {
    m.render()
        .lines()
        .filter(|l| l.starts_with("hubble_port_distribution_total{"))
        .map(str::to_string)
        .collect()
}

/// [`port_series`] of TCP port 8080 alone at `n`.
fn port_8080(n: u32) -> [String; 1] {
    [format!(
        r#"hubble_port_distribution_total{{port="8080",protocol="TCP"}} {n}"#
    )]
}

/// A grace period shorter than the scrape interval removed a series before
/// a scrape showed what it counted: the first scrape shows it at 0 and
/// holds its first amounts back, and the next sweep found it stale. Now a
/// series is kept until a scrape has shown them, then goes.
#[test]
fn a_series_is_not_swept_before_a_scrape_shows_its_count() {
    let (clock, now) = manual_clock();
    let cfg = MetricsConfig {
        grace: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let m = Metrics::with_clock(&cfg, clock);
    m.flow(&forwarded(40000, 8080));
    m.flow(&forwarded(40001, 8080));
    // Scrapes 30 s apart, each past the grace period.
    advance(&now, 30);
    assert_eq!(port_series(&m), port_8080(0), "first scrape");
    advance(&now, 30);
    assert_eq!(
        port_series(&m),
        port_8080(2),
        "the next one shows what waited"
    );
    advance(&now, 30);
    assert!(port_series(&m).is_empty(), "then it goes");
}

/// A series of an expiring family that appears (or comes back after
/// expiring) already holding its first burst would lose that burst from
/// Prometheus' rate() and increase(): the first scrape shows it at 0, the
/// next one counts.
#[test]
fn new_series_show_0_first_then_count() {
    let (clock, now) = manual_clock();
    let cfg = MetricsConfig {
        grace: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let m = Metrics::with_clock(&cfg, clock);
    m.flow(&forwarded(40000, 8080));
    m.flow(&forwarded(40001, 8080));
    assert_eq!(port_series(&m), port_8080(0), "first scrape");
    m.flow(&forwarded(40002, 8080));
    assert_eq!(
        port_series(&m),
        port_8080(3),
        "what waited, and what came after"
    );
    // Expired, then back: at 0 again first.
    advance(&now, 120);
    assert!(port_series(&m).is_empty());
    m.flow(&forwarded(40003, 8080));
    assert_eq!(port_series(&m), port_8080(0));
    assert_eq!(port_series(&m), port_8080(1));
    // A fixed family counts at once.
    assert!(
        m.render()
            .contains(r#"hubble_tcp_flags_total{family="IPv4",flag="SYN"} 4"#)
    );
}
