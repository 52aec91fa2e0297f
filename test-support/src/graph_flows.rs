//! Hand-built flows for the graph and TUI tests: a frontend → api TCP connection
//! seen at from-endpoint and to-endpoint with several events, a refused
//! connection, a UDP exchange, traffic to world (one forwarded, one dropped)
//! and a health probe from the host.

use observer_proto::flow::{
    CiliumEventType, DropReason, Endpoint, Flow, FlowType, Ip, IpVersion, Layer4, NetworkInterface,
    SocketTranslationPoint, Tcp, TraceObservationPoint, TrafficDirection, Udp, Verdict, Workload,
    layer4::Protocol,
};
use observer_proto::observe::v1::FlowVolume;

/// 2026-11-26T15:04:05Z.
pub const T0: i64 = 1_795_705_445;

pub fn frontend() -> Endpoint {
    Endpoint {
        id: 11,
        identity: 12001,
        namespace: "default".into(),
        labels: vec!["k8s:app=frontend".into()],
        pod_name: "frontend-7d9".into(),
        workloads: vec![Workload {
            name: "frontend".into(),
            kind: "Deployment".into(),
        }],
        ..Default::default()
    }
}

pub fn api() -> Endpoint {
    Endpoint {
        id: 12,
        identity: 12002,
        namespace: "default".into(),
        labels: vec!["k8s:app=api".into()],
        pod_name: "api-0".into(),
        ..Default::default()
    }
}

fn coredns() -> Endpoint {
    Endpoint {
        id: 13,
        identity: 12003,
        namespace: "kube-system".into(),
        labels: vec!["k8s:tier=dns".into()],
        pod_name: "coredns-1".into(),
        ..Default::default()
    }
}

fn world() -> Endpoint {
    Endpoint {
        identity: 2,
        labels: vec!["reserved:world".into()],
        ..Default::default()
    }
}

fn host() -> Endpoint {
    Endpoint {
        identity: 1,
        labels: vec!["reserved:host".into()],
        ..Default::default()
    }
}

const FRONTEND_IP: &str = "198.18.1.10";
const API_IP: &str = "198.18.1.20";
const DNS_IP: &str = "198.18.2.53";
const WORLD_IP: &str = "203.0.113.7";
const HOST_IP: &str = "198.18.0.1";

/// Which way the packet goes relative to the connection.
#[derive(Clone, Copy)]
enum Dir {
    Request,
    Reply,
    Unknown,
}

struct Ev {
    micros: i64,
    node: &'static str,
    point: TraceObservationPoint,
    dir: Dir,
    /// Packet source and destination: (endpoint, ip, port).
    src: (Endpoint, &'static str, u32),
    dst: (Endpoint, &'static str, u32),
    udp: bool,
    flags: &'static str,
    volume: Option<(u64, u64, u64, u64)>,
}

fn build(e: Ev) -> Flow {
    let (protocol, summary) = if e.udp {
        (
            Protocol::Udp(Udp {
                source_port: e.src.2,
                destination_port: e.dst.2,
            }),
            "UDP".to_string(),
        )
    } else {
        (
            Protocol::Tcp(Tcp {
                source_port: e.src.2,
                destination_port: e.dst.2,
                flags: Some(crate::flows::flags(e.flags)),
            }),
            format!("TCP Flags: {}", e.flags.replace(',', ", ")),
        )
    };
    let is_reply = e.dir;
    let sub_type = match e.point {
        TraceObservationPoint::FromEndpoint => 5,
        _ => 0,
    };
    let leaving = e.point == TraceObservationPoint::FromEndpoint;
    let direction = match (leaving, is_reply) {
        (true, Dir::Request) | (false, Dir::Reply) => TrafficDirection::Egress,
        _ => TrafficDirection::Ingress,
    };
    Flow {
        time: Some(prost_types::Timestamp {
            seconds: T0 + e.micros / 1_000_000,
            nanos: (e.micros % 1_000_000) as i32 * 1000,
        }),
        uuid: format!("uuid-{}", e.micros),
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: e.src.1.into(),
            destination: e.dst.1.into(),
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(protocol),
        }),
        source: Some(e.src.0),
        destination: Some(e.dst.0),
        r#type: FlowType::L3L4 as i32,
        node_name: e.node.into(),
        event_type: Some(CiliumEventType {
            r#type: 4,
            sub_type,
        }),
        traffic_direction: direction as i32,
        trace_observation_point: e.point as i32,
        is_reply: match is_reply {
            Dir::Request => Some(false),
            Dir::Reply => Some(true),
            Dir::Unknown => None,
        },
        interface: Some(NetworkInterface {
            index: 7,
            name: if e.node == "node1" { "lxc1" } else { "lxc2" }.into(),
        }),
        summary,
        volume: e.volume.map(|(fb, fp, rb, rp)| FlowVolume {
            fwd_bytes: fb,
            fwd_packets: fp,
            rev_bytes: rb,
            rev_packets: rp,
            first_packet: false,
            report: false,
            echo_id: 0,
        }),
        ..Default::default()
    }
}

/// One event of a TCP connection from frontend to `dst`.
#[expect(clippy::too_many_arguments, reason = "a table row of the test script")]
fn tcp(
    micros: i64,
    node: &'static str,
    point: TraceObservationPoint,
    dir: Dir,
    client: (Endpoint, &'static str, u32),
    server: (Endpoint, &'static str, u32),
    flags: &'static str,
    volume: (u64, u64, u64, u64),
) -> Flow {
    let (src, dst) = match dir {
        Dir::Reply => (server, client),
        _ => (client, server),
    };
    build(Ev {
        micros,
        node,
        point,
        dir,
        src,
        dst,
        udp: false,
        flags,
        volume: Some(volume),
    })
}

/// The health probe from the host to api (the last scripted flow).
pub fn host_probe() -> Flow {
    tcp(
        50_000,
        "node2",
        TraceObservationPoint::ToEndpoint,
        Dir::Request,
        (host(), HOST_IP, 45000),
        (api(), API_IP, 8080),
        "SYN",
        (60, 1, 0, 0),
    )
}

/// The script with the host's health probe audited (a policy in audit mode
/// would have denied it): an edge with an audit and no drop.
pub fn flows_with_an_audited_probe() -> Vec<Flow> {
    let mut v = flows();
    if let Some(probe) = v.last_mut() {
        probe.verdict = Verdict::Audit as i32;
    }
    v
}

/// The whole script, in time order (19 flows).
pub fn flows() -> Vec<Flow> {
    use Dir::{Reply, Request};
    use TraceObservationPoint::{FromEndpoint as From, ToEndpoint as To};
    let fe = |port| (frontend(), FRONTEND_IP, port);
    let srv = |port| (api(), API_IP, port);
    #[rustfmt::skip]
    let mut v = vec![
        // Connection 1: frontend:40000 → api:8080, seen leaving frontend on node1
        // and entering api on node2.
        tcp(0, "node1", From, Request, fe(40000), srv(8080), "SYN", (60, 1, 0, 0)),
        tcp(100, "node2", To, Request, fe(40000), srv(8080), "SYN", (60, 1, 0, 0)),
        tcp(1000, "node2", From, Reply, fe(40000), srv(8080), "SYN,ACK", (60, 1, 60, 1)),
        tcp(1100, "node1", To, Reply, fe(40000), srv(8080), "SYN,ACK", (60, 1, 60, 1)),
        tcp(2000, "node1", From, Request, fe(40000), srv(8080), "ACK,PSH", (460, 4, 1500, 2)),
        tcp(2100, "node2", To, Request, fe(40000), srv(8080), "ACK,PSH", (460, 4, 1060, 2)),
        tcp(3000, "node1", From, Request, fe(40000), srv(8080), "FIN,ACK", (520, 5, 1560, 3)),
        tcp(3100, "node2", To, Request, fe(40000), srv(8080), "FIN,ACK", (520, 5, 1560, 3)),
        // Connection 2: refused (RST).
        tcp(10_000, "node1", From, Request, fe(40001), srv(9999), "SYN", (60, 1, 0, 0)),
        tcp(10_100, "node2", To, Request, fe(40001), srv(9999), "SYN", (60, 1, 0, 0)),
        tcp(11_000, "node2", From, Reply, fe(40001), srv(9999), "RST,ACK", (60, 1, 40, 1)),
    ];
    // UDP: a DNS query and its answer.
    let dns = |micros, node, point, dir, volume| {
        let (c, s) = ((frontend(), FRONTEND_IP, 50000), (coredns(), DNS_IP, 53));
        let (src, dst) = match dir {
            Dir::Reply => (s, c),
            _ => (c, s),
        };
        build(Ev {
            micros,
            node,
            point,
            dir,
            src,
            dst,
            udp: true,
            flags: "",
            volume: Some(volume),
        })
    };
    v.push(dns(20_000, "node1", From, Request, (40, 1, 0, 0)));
    v.push(dns(20_100, "node2", To, Request, (40, 1, 0, 0)));
    v.push(dns(21_000, "node2", From, Reply, (40, 1, 120, 1)));
    v.push(dns(21_100, "node1", To, Reply, (40, 1, 120, 1)));
    // To world: one connection answered, one dropped by policy.
    let w = |port| (world(), WORLD_IP, port);
    #[rustfmt::skip]
    v.extend([
        tcp(30_000, "node1", From, Request, fe(41000), w(443), "SYN", (60, 1, 0, 0)),
        tcp(31_000, "node1", To, Reply, fe(41000), w(443), "SYN,ACK", (60, 1, 60, 1)),
    ]);
    let mut drop = build(Ev {
        micros: 40_000,
        node: "node1",
        point: TraceObservationPoint::UnknownPoint,
        dir: Dir::Unknown,
        src: fe(41001),
        dst: w(25),
        udp: false,
        flags: "SYN",
        volume: None,
    });
    drop.verdict = Verdict::Dropped as i32;
    drop.drop_reason_desc = DropReason::PolicyDenied as i32;
    drop.drop_reason = 133;
    drop.event_type = Some(CiliumEventType {
        r#type: 1,
        sub_type: 133,
    });
    drop.traffic_direction = TrafficDirection::Egress as i32;
    drop.interface = None;
    v.push(drop);
    v.push(host_probe());
    v
}

/// A socket translation of the frontend's connect (a SOCK trace, monitor
/// type 7) at `point`, with `verdict`: the first flow's addresses, no
/// observation point, no reply bit.
pub fn sock_translation(point: SocketTranslationPoint, verdict: Verdict) -> Flow {
    let mut sock = flows()[0].clone();
    sock.trace_observation_point = 0;
    sock.is_reply = None;
    sock.verdict = verdict as i32;
    sock.event_type = Some(CiliumEventType {
        r#type: 7,
        sub_type: 2,
    });
    sock.sock_xlate_point = point as i32;
    sock
}
