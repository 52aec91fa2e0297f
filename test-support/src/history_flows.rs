//! The known set of flows the history tests ingest, built field by field.

use observer_proto::flow::layer4::Protocol;
use observer_proto::flow::{
    CiliumEventType, DropReason, Endpoint, Flow, FlowType, IcmPv4, Ip, IpVersion, Layer4, Policy,
    TraceObservationPoint, TrafficDirection, Udp, Verdict, Workload,
};
use observer_proto::observe::v1::tcp_lifecycle::Kind;
use observer_proto::observe::v1::{FlowVolume, KernelDrop, TcpLifecycle};
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use prost_types::Timestamp;

/// 2024-05-01T10:00:00Z in seconds.
pub const T0: i64 = 1_714_557_600;

fn ep(ns: &str, pod: &str, identity: u32) -> Option<Endpoint> {
    Some(Endpoint {
        identity,
        namespace: ns.into(),
        pod_name: pod.into(),
        labels: vec![format!("k8s:app={}", pod.split('-').next().unwrap_or(pod))],
        workloads: vec![Workload {
            name: pod.split('-').next().unwrap_or(pod).into(),
            kind: "Deployment".into(),
        }],
        ..Default::default()
    })
}

fn tcp(sport: u32, dport: u32, syn: bool, ack: bool) -> Option<Layer4> {
    let names = match (syn, ack) {
        (true, true) => "SYN,ACK",
        (true, false) => "SYN",
        (false, true) => "ACK",
        (false, false) => "",
    };
    crate::flows::tcp(sport, dport, crate::flows::flags(names))
}

/// A policy as flow-probe names it: a CiliumNetworkPolicy with Cilium's
/// labels (history gives them back).
fn policy(ns: &str, name: &str) -> Vec<Policy> {
    vec![Policy {
        namespace: ns.into(),
        name: name.into(),
        labels: vec![
            "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy".into(),
            format!("k8s:io.cilium.k8s.policy.name={name}"),
            format!("k8s:io.cilium.k8s.policy.namespace={ns}"),
        ],
        kind: "CiliumNetworkPolicy".into(),
        ..Default::default()
    }]
}

fn volume(fwd: u64, rev: u64) -> Option<FlowVolume> {
    Some(FlowVolume {
        fwd_bytes: fwd,
        fwd_packets: fwd / 100,
        rev_bytes: rev,
        rev_packets: rev / 100,
        first_packet: false,
        report: false,
        echo_id: 0,
    })
}

struct F {
    at: i64,
    node: &'static str,
    src: (&'static str, &'static str, u32, &'static str),
    dst: (&'static str, &'static str, u32, &'static str),
    v6: bool,
}

fn base(f: F) -> Flow {
    Flow {
        time: Some(Timestamp {
            seconds: T0 + f.at,
            nanos: 0,
        }),
        uuid: format!("uuid-{:05}", f.at),
        verdict: Verdict::Forwarded as i32,
        node_name: f.node.into(),
        ip: Some(Ip {
            source: f.src.3.into(),
            destination: f.dst.3.into(),
            ip_version: if f.v6 {
                IpVersion::IPv6
            } else {
                IpVersion::IPv4
            } as i32,
            ..Default::default()
        }),
        source: ep(f.src.0, f.src.1, f.src.2),
        destination: ep(f.dst.0, f.dst.1, f.dst.2),
        r#type: FlowType::L3L4 as i32,
        event_type: Some(CiliumEventType {
            r#type: 4,
            sub_type: 0,
        }),
        traffic_direction: TrafficDirection::Egress as i32,
        trace_observation_point: TraceObservationPoint::ToEndpoint as i32,
        is_reply: Some(false),
        summary: format!("flow at +{}s", f.at),
        ..Default::default()
    }
}

const WEB: (&str, &str, u32, &str) = ("default", "web-1", 1001, "10.0.0.1");
const API: (&str, &str, u32, &str) = ("default", "api-1", 1002, "10.0.0.2");
const CLIENT: (&str, &str, u32, &str) = ("default", "client-1", 1003, "10.0.0.3");
const DB: (&str, &str, u32, &str) = ("default", "db-1", 1004, "10.0.0.4");
const DNS: (&str, &str, u32, &str) = ("kube-system", "dns-1", 1005, "10.0.0.9");
const API6: (&str, &str, u32, &str) = ("default", "api-1", 1002, "fd42::2");
const WEB6: (&str, &str, u32, &str) = ("default", "web-1", 1001, "fd42::1");

/// Nine flows over two hours' partitions (the last one is past 11:00).
pub fn golden() -> Vec<Flow> {
    let f = |at, node, src, dst| {
        base(F {
            at,
            node,
            src,
            dst,
            v6: false,
        })
    };
    let mut out = Vec::new();
    // web → api, allowed, twice in the first minute.
    for (at, fwd, rev) in [(0, 1000, 5000), (30, 2000, 1000)] {
        let mut x = f(at, "n1", WEB, API);
        x.l4 = tcp(40000 + at as u32, 8080, at == 0, at != 0);
        x.ingress_allowed_by = policy("default", "allow-web");
        x.volume = volume(fwd, rev);
        out.push(x);
    }
    // client → db, denied twice.
    for at in [10, 40] {
        let mut x = f(at, "n2", CLIENT, DB);
        x.verdict = Verdict::Dropped as i32;
        x.drop_reason_desc = DropReason::PolicyDenied as i32;
        x.l4 = tcp(50000, 5432, true, false);
        x.ingress_denied_by = policy("default", "deny-db");
        out.push(x);
    }
    // web → dns over UDP in the second minute.
    let mut x = f(70, "n1", WEB, DNS);
    x.l4 = Some(Layer4 {
        protocol: Some(Protocol::Udp(Udp {
            source_port: 5353,
            destination_port: 53,
        })),
    });
    x.egress_allowed_by = policy("kube-system", "allow-dns");
    x.volume = volume(100, 200);
    out.push(x);
    // A kernel drop of an ICMP echo.
    let mut x = f(80, "n2", CLIENT, API);
    x.verdict = Verdict::Dropped as i32;
    x.l4 = Some(Layer4 {
        protocol: Some(Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 })),
    });
    x.kernel_drop = Some(KernelDrop {
        reason: 6,
        name: "NETFILTER_DROP".into(),
    });
    out.push(x);
    // An IPv6 reply api → web.
    let mut x = base(F {
        at: 90,
        node: "n1",
        src: API6,
        dst: WEB6,
        v6: true,
    });
    x.l4 = tcp(8080, 40000, true, true);
    x.is_reply = Some(true);
    x.traffic_direction = TrafficDirection::Ingress as i32;
    x.volume = volume(300, 0);
    out.push(x);
    // A closed connection with retransmits.
    let mut x = f(100, "n1", WEB, API);
    x.r#type = FlowType::Sock as i32;
    x.l4 = tcp(40000, 8080, false, false);
    x.is_reply = None;
    x.tcp_lifecycle = Some(TcpLifecycle {
        kind: Kind::Closed as i32,
        duration_ns: 1_500_000_000,
        retransmits: 2,
    });
    out.push(x);
    // Past the hour: another file, another partition.
    let mut x = f(3605, "n2", WEB, API);
    x.l4 = tcp(40001, 8080, true, false);
    x.ingress_allowed_by = policy("default", "allow-web");
    x.volume = volume(4000, 4000);
    out.push(x);
    out
}

/// One TCP connection web → api (port 41000 → 8080) as the probes report
/// it: every row carries the connection's running totals (initiator →
/// responder, and back), replies name api as their source, and both nodes
/// report it with the same totals. Counted once it is 638 + 3272 bytes.
pub fn one_connection_many_rows() -> Vec<Flow> {
    let mut out = Vec::new();
    for node in ["n1", "n2"] {
        for (at, reply, fwd, rev) in [
            (200, false, 74, 0),
            (201, true, 74, 74),
            (202, false, 572, 3272),
            (203, false, 638, 3272),
        ] {
            let (src, dst) = if reply { (API, WEB) } else { (WEB, API) };
            let mut x = base(F {
                at,
                node,
                src,
                dst,
                v6: false,
            });
            x.uuid = format!("{node}-{at}");
            x.l4 = if reply {
                tcp(8080, 41000, at == 201, true)
            } else {
                tcp(41000, 8080, at == 200, at != 200)
            };
            x.is_reply = Some(reply);
            x.volume = volume(fwd, rev);
            out.push(x);
        }
    }
    out
}

/// A flow as the store holds it.
pub fn response(flow: Flow) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: flow.node_name.clone(),
        time: flow.time,
        response_types: Some(ResponseTypes::Flow(flow)),
    }
}
