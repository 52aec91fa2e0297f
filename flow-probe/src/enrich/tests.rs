//! One kernel event per case through [`Enricher::flow`], compared with the
//! whole flow it must become: observation point and direction from hook,
//! interface and reply bit; volume swapped for replies; event kinds, verdicts,
//! drop reasons and the policy slot; kernel drops; the world; every layer 4.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use cluster_spec::endpoints::EndpointsFile;
use cluster_spec::policy::PolicyRef;
use observer_proto::flow::{
    CiliumEventType, DropReason, Endpoint, Ethernet, Flow, FlowType, IcmPv4, IcmPv6, Ip, IpVersion,
    NetworkInterface, Policy, Service, TcpFlags, TraceObservationPoint, TraceReason,
    TrafficDirection, Verdict, Workload, layer4,
};
use observer_proto::observe::v1::{FlowVolume, KernelDrop, PolicyStamp, TcpLifecycle};

use test_support::flows::{flags, ip, l4, tcp, udp, world};

use super::{Enricher, FlowIds, monitor};
use crate::datapath::{PolicyNames, policy_id};
use crate::kernel::events::{
    EVENT_FLOW, EVENT_VERSION, EventHeader, FlowEvent, FlowKey, SockXlateEvent, hook, kind, reason,
    verdict,
};

const ENDPOINTS: &str = "endpoints:\n\
- {id: 1, name: client, namespace: default, labels: {app: client}, ipv4: 198.18.1.10, ipv6: \"fd42::10\", node: node1, interface: lxc-client}\n\
- {id: 2, name: server, namespace: default, labels: {app: server}, workload: {name: server, kind: Deployment}, ipv4: 198.18.1.11, ipv6: \"fd42::11\", node: node1, interface: lxc-server}\n";

/// Host-side veths of the two endpoints, and an interface with no endpoint.
const CLIENT_VETH: u32 = 10;
const SERVER_VETH: u32 = 11;
const ETH0: u32 = 2;

/// Kernel time of every event, and the offset to Unix time.
const KTIME: u64 = 5_000_000_123;
const UNIX_OFFSET: i128 = 1_700_000_000_000_000_000;
/// The first flow of a run whose id prefix is 0.
const FIRST_UUID: &str = "00000000-0000-8000-8000-000000000001";

/// Bytes and packets of a connection's two directions.
const REQUESTS: (u64, u64) = (222, 3);
const REPLIES: (u64, u64) = (148, 2);

const ALLOW: (&str, &str) = ("default", "server-allow-client");
const DENY: (&str, &str) = ("default", "server-deny-client");

fn file() -> EndpointsFile {
    EndpointsFile::parse(ENDPOINTS, "endpoints.yaml").unwrap()
}

/// An enricher of node1 attached to both veths and eth0, knowing both policies.
fn enricher() -> Enricher {
    let names = Arc::new(PolicyNames::default());
    for (namespace, name) in [ALLOW, DENY] {
        names.insert(
            policy_id(namespace, name),
            PolicyRef {
                name: name.into(),
                namespace: namespace.into(),
                labels: vec![format!("k8s:io.cilium.k8s.policy.name={name}")],
                audit: false,
            },
        );
    }
    let mut e = Enricher::new("node1", &file())
        .with_flow_ids(FlowIds::with_prefix(0))
        .with_policy_names(names);
    e.add_interface(CLIENT_VETH, "lxc-client", Some([198, 18, 1, 10].into()));
    e.add_interface(SERVER_VETH, "lxc-server", Some([198, 18, 1, 11].into()));
    e.add_interface(ETH0, "eth0", None);
    e.set_kernel_drop_reasons(BTreeMap::from([
        (3, "NO_SOCKET".to_string()),
        (12, "NETFILTER_DROP".to_string()),
    ]));
    e
}

/// The one flow `ev` becomes.
fn enrich(ev: FlowEvent) -> Flow {
    enricher().flow(&ev, UNIX_OFFSET)
}

fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = [0; 16];
            out[..4].copy_from_slice(&v4.octets());
            out
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A forwarded trace of `src:sport → dst:dport` at `hook` of `ifindex`, the
/// first packet of a connection that has sent [`REQUESTS`] and got [`REPLIES`].
fn event(hook: u8, ifindex: u32, proto: u8, src: &str, dst: &str, ports: (u16, u16)) -> FlowEvent {
    let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    FlowEvent {
        hdr: EventHeader {
            r#type: EVENT_FLOW,
            version: EVENT_VERSION,
            len: 120,
            _pad0: 0,
        },
        ktime_ns: KTIME,
        key: FlowKey {
            saddr: addr16(src),
            daddr: addr16(dst),
            sport: ports.0,
            dport: ports.1,
            proto,
            family: if src.is_ipv6() { 6 } else { 4 },
            hook,
            ifindex,
            ..Default::default()
        },
        bytes: REQUESTS.0,
        packets: REQUESTS.1,
        rev_bytes: REPLIES.0,
        rev_packets: REPLIES.1,
        pkt_len: 74,
        reason: reason::NEW_FLOW,
        verdict: verdict::FORWARDED,
        kind: kind::TRACE,
        ..Default::default()
    }
}

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;

/// The client's SYN to the server's port 8080.
fn syn(hook: u8, ifindex: u32) -> FlowEvent {
    FlowEvent {
        tcp_flags: SYN,
        ..event(
            hook,
            ifindex,
            6,
            "198.18.1.10",
            "198.18.1.11",
            (40000, 8080),
        )
    }
}

/// The server's SYN-ACK: a reply, whose own direction has sent [`REPLIES`].
fn syn_ack(hook: u8, ifindex: u32) -> FlowEvent {
    let ev = event(
        hook,
        ifindex,
        6,
        "198.18.1.11",
        "198.18.1.10",
        (8080, 40000),
    );
    FlowEvent {
        tcp_flags: SYN_ACK,
        is_reply: 1,
        bytes: REPLIES.0,
        packets: REPLIES.1,
        rev_bytes: REQUESTS.0,
        rev_packets: REQUESTS.1,
        ..ev
    }
}

fn identity_of(labels: &[&str]) -> u32 {
    let labels: Vec<String> = labels.iter().map(ToString::to_string).collect();
    file().identities()[&labels]
}

fn client() -> Endpoint {
    let labels = ["k8s:app=client", "k8s:io.kubernetes.pod.namespace=default"];
    Endpoint {
        id: 1,
        identity: identity_of(&labels),
        namespace: "default".into(),
        labels: labels.map(String::from).to_vec(),
        pod_name: "client".into(),
        ..Default::default()
    }
}

fn server() -> Endpoint {
    let labels = ["k8s:app=server", "k8s:io.kubernetes.pod.namespace=default"];
    Endpoint {
        id: 2,
        identity: identity_of(&labels),
        namespace: "default".into(),
        labels: labels.map(String::from).to_vec(),
        pod_name: "server".into(),
        workloads: vec![Workload {
            name: "server".into(),
            kind: "Deployment".into(),
        }],
        ..Default::default()
    }
}

fn interface(index: u32, name: &str) -> Option<NetworkInterface> {
    Some(NetworkInterface {
        index,
        name: name.into(),
    })
}

fn event_type(r#type: i32, sub_type: i32) -> Option<CiliumEventType> {
    Some(CiliumEventType { r#type, sub_type })
}

/// Volume with the connection's opener first, of an event whose packet
/// was the first its direction counted (as [`event`]'s).
fn volume() -> Option<FlowVolume> {
    Some(FlowVolume {
        fwd_bytes: REQUESTS.0,
        fwd_packets: REQUESTS.1,
        rev_bytes: REPLIES.0,
        rev_packets: REPLIES.1,
        first_packet: true,
        report: false,
        echo_id: 0,
    })
}

fn policy((namespace, name): (&str, &str)) -> Vec<Policy> {
    vec![Policy {
        name: name.into(),
        namespace: namespace.into(),
        labels: vec![format!("k8s:io.cilium.k8s.policy.name={name}")],
        kind: "CiliumNetworkPolicy".into(),
        ..Default::default()
    }]
}

/// What every case's flow holds unless the case says otherwise.
fn common() -> Flow {
    Flow {
        time: Some(prost_types::Timestamp {
            seconds: 1_700_000_005,
            nanos: 123,
        }),
        uuid: FIRST_UUID.into(),
        verdict: Verdict::Forwarded as i32,
        r#type: FlowType::L3L4 as i32,
        node_name: "node1".into(),
        volume: volume(),
        ..Default::default()
    }
}

/// The flow of [`syn`], before the hook and the verdict say their part.
fn syn_flow() -> Flow {
    Flow {
        ip: ip("198.18.1.10", "198.18.1.11"),
        l4: tcp(40000, 8080, flags("SYN")),
        source: Some(client()),
        destination: Some(server()),
        is_reply: Some(false),
        summary: "TCP Flags: SYN".into(),
        ..common()
    }
}

/// The flow of [`syn_ack`], before the hook says its part.
fn syn_ack_flow() -> Flow {
    Flow {
        ip: ip("198.18.1.11", "198.18.1.10"),
        l4: tcp(8080, 40000, flags("SYN,ACK")),
        source: Some(server()),
        destination: Some(client()),
        is_reply: Some(true),
        reply: true,
        summary: "TCP Flags: SYN, ACK".into(),
        ..common()
    }
}

// Observation point, direction and volume.

/// `flow` as the trace of `point` (sub-type `sub_type`) on interface
/// `iface`, in `direction`.
fn seen(
    flow: Flow,
    (point, sub_type): (TraceObservationPoint, i32),
    direction: TrafficDirection,
    iface: Option<(u32, &str)>,
) -> Flow {
    let reason = if flow.reply {
        TraceReason::Reply
    } else {
        TraceReason::New
    };
    Flow {
        event_type: event_type(4, sub_type),
        trace_observation_point: point as i32,
        traffic_direction: direction as i32,
        trace_reason: reason as i32,
        interface: iface.and_then(|(index, name)| interface(index, name)),
        ..flow
    }
}

#[test]
fn hook_interface_and_reply_bit_give_point_direction_and_volume() {
    use TraceObservationPoint::{FromEndpoint, FromNetwork, ToEndpoint, ToNetwork};
    use TrafficDirection::{Egress, Ingress};
    use hook::{TC_EGRESS, TC_INGRESS};
    let client_veth = Some((CLIENT_VETH, "lxc-client"));
    let server_veth = Some((SERVER_VETH, "lxc-server"));
    let eth0 = Some((ETH0, "eth0"));
    let from_lxc = (FromEndpoint, monitor::TRACE_FROM_LXC);
    let to_lxc = (ToEndpoint, monitor::TRACE_TO_LXC);
    let from_net = (FromNetwork, monitor::TRACE_FROM_NETWORK);
    let to_net = (ToNetwork, monitor::TRACE_TO_NETWORK);
    // Replies keep the direction of their connection and count the opener's
    // bytes forward (see `syn_ack_flow`).
    let cases = [
        (
            "request leaving an endpoint",
            syn(TC_INGRESS, CLIENT_VETH),
            seen(syn_flow(), from_lxc, Egress, client_veth),
        ),
        (
            "request reaching an endpoint",
            syn(TC_EGRESS, SERVER_VETH),
            seen(syn_flow(), to_lxc, Ingress, server_veth),
        ),
        (
            "reply reaching an endpoint",
            syn_ack(TC_EGRESS, CLIENT_VETH),
            seen(syn_ack_flow(), to_lxc, Egress, client_veth),
        ),
        (
            "reply leaving an endpoint",
            syn_ack(TC_INGRESS, SERVER_VETH),
            seen(syn_ack_flow(), from_lxc, Ingress, server_veth),
        ),
        (
            "request from the network",
            syn(TC_INGRESS, ETH0),
            seen(syn_flow(), from_net, Ingress, eth0),
        ),
        (
            "reply to the network",
            syn_ack(TC_EGRESS, ETH0),
            seen(syn_ack_flow(), to_net, Ingress, eth0),
        ),
        (
            "request to the network",
            syn(TC_EGRESS, ETH0),
            seen(syn_flow(), to_net, Egress, eth0),
        ),
        (
            "interface never registered",
            syn(TC_EGRESS, 99),
            seen(syn_flow(), to_net, Egress, None),
        ),
    ];
    for (case, ev, want) in cases {
        assert_eq!(enrich(ev), want, "{case}");
    }
}

// Event kinds, verdicts, drop reasons and policies.

/// The SYN judged at the server's veth (its ingress policy).
fn judged(kind: u8, verdict: u8, drop_reason: u16, policy: Option<(&str, &str)>) -> FlowEvent {
    FlowEvent {
        kind,
        verdict,
        drop_reason,
        policy_match: 2,
        policy_dir: 0,
        policy_id: policy.map_or(0, |(ns, name)| policy_id(ns, name)),
        remote_identity: client().identity,
        ..syn(hook::TC_EGRESS, SERVER_VETH)
    }
}

/// [`syn_flow`] as the server's veth sees it, for the verdict cases.
fn at_server() -> Flow {
    Flow {
        trace_observation_point: TraceObservationPoint::ToEndpoint as i32,
        traffic_direction: TrafficDirection::Ingress as i32,
        interface: interface(SERVER_VETH, "lxc-server"),
        ..syn_flow()
    }
}

#[test]
fn an_allowed_ingress_verdict_names_its_policy_in_ingress_allowed_by() {
    assert_eq!(
        enrich(judged(
            kind::POLICY_VERDICT,
            verdict::FORWARDED,
            0,
            Some(ALLOW)
        )),
        Flow {
            event_type: event_type(5, 0),
            policy_match_type: 2,
            ingress_allowed_by: policy(ALLOW),
            ..at_server()
        }
    );
}

#[test]
fn an_allowed_egress_verdict_names_its_policy_in_egress_allowed_by() {
    let ev = FlowEvent {
        policy_dir: 1,
        ..judged(kind::POLICY_VERDICT, verdict::FORWARDED, 0, Some(ALLOW))
    };
    assert_eq!(
        enrich(FlowEvent {
            key: syn(hook::TC_INGRESS, CLIENT_VETH).key,
            ..ev
        }),
        Flow {
            event_type: event_type(5, 0),
            policy_match_type: 2,
            egress_allowed_by: policy(ALLOW),
            trace_observation_point: TraceObservationPoint::FromEndpoint as i32,
            traffic_direction: TrafficDirection::Egress as i32,
            interface: interface(CLIENT_VETH, "lxc-client"),
            ..syn_flow()
        }
    );
}

#[test]
fn an_audit_verdict_is_reported_with_the_policy_that_would_decide() {
    assert_eq!(
        enrich(judged(kind::POLICY_VERDICT, verdict::AUDIT, 0, Some(ALLOW))),
        Flow {
            verdict: Verdict::Audit as i32,
            event_type: event_type(5, 0),
            policy_match_type: 2,
            ingress_allowed_by: policy(ALLOW),
            ..at_server()
        }
    );
}

#[test]
fn a_verdict_of_a_policy_not_yet_named_has_no_policy() {
    let ev = FlowEvent {
        policy_id: 12345,
        ..judged(kind::POLICY_VERDICT, verdict::FORWARDED, 0, None)
    };
    assert_eq!(
        enrich(ev),
        Flow {
            event_type: event_type(5, 0),
            policy_match_type: 2,
            ..at_server()
        }
    );
}

/// `flow` as Cilium's drop of it: no observation point, reply bit or policy;
/// and no volume (the packet went nowhere).
fn dropped(flow: Flow, reason: i32) -> Flow {
    Flow {
        verdict: Verdict::Dropped as i32,
        event_type: event_type(1, reason),
        drop_reason: reason as u32,
        drop_reason_desc: reason,
        trace_observation_point: TraceObservationPoint::UnknownPoint as i32,
        is_reply: None,
        volume: None,
        ..flow
    }
}

/// The flows of a denial, numbered in their order: the PolicyVerdict naming
/// the policy and its match type (no volume), then the Drop, which has
/// neither, with the next UUID.
fn denial(drop: Flow, match_type: u32, names: impl FnOnce(&mut Flow)) -> Vec<Flow> {
    let mut verdict = Flow {
        event_type: event_type(5, 0),
        volume: None,
        policy_match_type: match_type,
        ..drop.clone()
    };
    names(&mut verdict);
    let drop = Flow {
        uuid: "00000000-0000-8000-8000-000000000002".into(),
        ..drop
    };
    vec![verdict, drop]
}

fn enrich_all(ev: FlowEvent) -> Vec<Flow> {
    enricher().flows(&ev, UNIX_OFFSET)
}

#[test]
fn a_default_deny_is_a_verdict_and_a_drop_with_policy_denied_and_no_policy() {
    let ev = FlowEvent {
        policy_match: 0,
        ..judged(kind::DROP, verdict::DROPPED, 133, None)
    };
    assert_eq!(enrich_all(ev), denial(dropped(at_server(), 133), 0, |_| ()));
}

#[test]
fn an_explicit_ingress_deny_is_policy_deny_in_the_verdicts_ingress_denied_by() {
    assert_eq!(
        enrich_all(judged(kind::DROP, verdict::DROPPED, 181, Some(DENY))),
        denial(dropped(at_server(), 181), 2, |v| v.ingress_denied_by =
            policy(DENY))
    );
}

#[test]
fn an_explicit_egress_deny_is_policy_deny_in_the_verdicts_egress_denied_by() {
    let ev = FlowEvent {
        key: syn(hook::TC_INGRESS, CLIENT_VETH).key,
        policy_dir: 1,
        ..judged(kind::DROP, verdict::DROPPED, 181, Some(DENY))
    };
    let drop = Flow {
        traffic_direction: TrafficDirection::Egress as i32,
        interface: interface(CLIENT_VETH, "lxc-client"),
        ..dropped(syn_flow(), 181)
    };
    assert_eq!(
        enrich_all(ev),
        denial(drop, 2, |v| v.egress_denied_by = policy(DENY))
    );
}

// Kernel drops.

/// A UDP datagram to a port nobody listens on, freed by the kernel.
fn kernel_drop(drop_reason: u16) -> FlowEvent {
    FlowEvent {
        kind: kind::DROP,
        verdict: verdict::DROPPED,
        drop_reason,
        ..event(
            hook::KFREE_SKB,
            0,
            17,
            "198.18.1.10",
            "198.18.1.11",
            (40000, 9999),
        )
    }
}

/// [`kernel_drop`]'s flow: no hook of ours saw it, so no point, direction,
/// reply bit, interface or volume.
fn kernel_drop_flow(reason: u32, name: &str, cilium: DropReason) -> Flow {
    Flow {
        verdict: Verdict::Dropped as i32,
        drop_reason: cilium as u32,
        drop_reason_desc: cilium as i32,
        ip: ip("198.18.1.10", "198.18.1.11"),
        l4: udp(40000, 9999),
        source: Some(client()),
        destination: Some(server()),
        event_type: event_type(1, cilium as i32),
        summary: format!("UDP (kernel drop: {name})"),
        kernel_drop: Some(KernelDrop {
            reason,
            name: name.into(),
        }),
        volume: None,
        ..common()
    }
}

#[test]
fn a_kernel_drop_carries_the_kernels_reason_and_no_hook_facts() {
    assert_eq!(
        enrich(kernel_drop(3)),
        kernel_drop_flow(3, "NO_SOCKET", DropReason::SocketLookupFailed)
    );
    assert_eq!(
        enrich_all(kernel_drop(12)),
        [kernel_drop_flow(
            12,
            "NETFILTER_DROP",
            DropReason::PolicyDenied
        )],
        "a kernel drop is one flow"
    );
}

#[test]
fn a_kernel_drop_reason_without_a_name_is_named_by_number() {
    assert_eq!(
        enrich(kernel_drop(77)),
        kernel_drop_flow(77, "reason 77", DropReason::Unknown)
    );
}

// Addresses and layer 4.

#[test]
fn an_address_of_no_endpoint_is_reserved_world() {
    let ev = event(
        hook::TC_EGRESS,
        ETH0,
        17,
        "198.18.1.10",
        "198.19.0.99",
        (40000, 53),
    );
    assert_eq!(
        enrich(ev),
        Flow {
            ip: ip("198.18.1.10", "198.19.0.99"),
            l4: udp(40000, 53),
            source: Some(client()),
            destination: Some(world()),
            event_type: event_type(4, monitor::TRACE_TO_NETWORK),
            trace_observation_point: TraceObservationPoint::ToNetwork as i32,
            traffic_direction: TrafficDirection::Egress as i32,
            interface: interface(ETH0, "eth0"),
            is_reply: Some(false),
            trace_reason: TraceReason::New as i32,
            summary: "UDP".into(),
            ..common()
        }
    );
}

#[test]
fn each_protocol_has_its_layer4_and_summary() {
    let v4 = ("198.18.1.10", "198.18.1.11");
    let v6 = ("fd42::10", "fd42::11");
    let udp = layer4::Protocol::Udp(observer_proto::flow::Udp {
        source_port: 40000,
        destination_port: 53,
    });
    let syn = TcpFlags {
        syn: true,
        ..Default::default()
    };
    // (IP protocol, addresses, ports, ICMP type, layer 4, summary)
    let cases = [
        (17, v4, (40000, 53), 0, l4(udp), "UDP"),
        (
            1,
            v4,
            (0, 0),
            8,
            l4(layer4::Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 })),
            "ICMPv4 EchoRequest",
        ),
        (
            58,
            v6,
            (0, 0),
            128,
            l4(layer4::Protocol::IcmPv6(IcmPv6 {
                r#type: 128,
                code: 0,
            })),
            "ICMPv6 EchoRequest",
        ),
        (
            6,
            v6,
            (40000, 8080),
            0,
            tcp(40000, 8080, syn),
            "TCP Flags: SYN",
        ),
        (47, v4, (0, 0), 0, None, "IP protocol 47"),
    ];
    for (proto, (src, dst), ports, icmp_type, l4, summary) in cases {
        let ev = FlowEvent {
            icmp_type,
            tcp_flags: if proto == 6 { SYN } else { 0 },
            ..event(hook::TC_INGRESS, CLIENT_VETH, proto, src, dst, ports)
        };
        let want = Flow {
            ip: ip(src, dst),
            l4,
            source: Some(client()),
            destination: Some(server()),
            event_type: event_type(4, monitor::TRACE_FROM_LXC),
            trace_observation_point: TraceObservationPoint::FromEndpoint as i32,
            traffic_direction: TrafficDirection::Egress as i32,
            interface: interface(CLIENT_VETH, "lxc-client"),
            is_reply: Some(false),
            trace_reason: TraceReason::New as i32,
            summary: summary.into(),
            ..common()
        };
        assert_eq!(enrich(ev), want, "IP protocol {proto}");
    }
}

#[test]
fn later_events_of_the_opener_are_established_and_every_flow_carries_the_policy_in_force() {
    let (tx, rx) = tokio::sync::watch::channel(None);
    let mut e = enricher().with_policy_stamp(rx);
    let report = FlowEvent {
        reason: reason::REPORT,
        ..syn(hook::TC_EGRESS, SERVER_VETH)
    };
    let flow = e.flow(&report, UNIX_OFFSET);
    assert_eq!(
        (flow.trace_reason(), flow.policy_in_force),
        (TraceReason::Established, None)
    );
    // A report's counts did not begin with its packet; a first packet's did.
    // It is marked as no packet, in its volume and where people read.
    assert_eq!(
        flow.volume.map(|v| (v.first_packet, v.report)),
        Some((false, true))
    );
    let v = flow.volume.unwrap();
    assert!(
        flow.summary.ends_with(&format!(
            "; report of the connection so far: {} packets / {} B sent, {} / {} B back",
            v.fwd_packets, v.fwd_bytes, v.rev_packets, v.rev_bytes
        )),
        "{}",
        flow.summary
    );
    // Of a connection that only ever sent SYNs: no flags left to name.
    let syns_only = e.flow(
        &FlowEvent {
            tcp_flags: 0,
            ..report
        },
        UNIX_OFFSET,
    );
    assert!(
        syns_only
            .summary
            .starts_with("TCP; report of the connection so far: "),
        "{}",
        syns_only.summary
    );
    let first = e.flow(&syn(hook::TC_EGRESS, SERVER_VETH), UNIX_OFFSET);
    assert_eq!(
        first.volume.map(|v| (v.first_packet, v.report)),
        Some((true, false))
    );
    assert!(!first.summary.contains("report"), "{}", first.summary);
    let stamp = PolicyStamp {
        generation: 3,
        version: "0123456789abcdef".into(),
    };
    tx.send_replace(Some(stamp.clone()));
    let flow = e.flow(&syn(hook::TC_EGRESS, SERVER_VETH), UNIX_OFFSET);
    assert_eq!(
        (flow.trace_reason(), flow.policy_in_force),
        (TraceReason::New, Some(stamp))
    );
}

// Writing into the memory of an older flow.

/// A flow with every field set (none from a tc event of this node), as a
/// SOCK or lifecycle flow or another node's may leave a store entry.
fn every_field_set() -> Flow {
    Flow {
        time: Some(prost_types::Timestamp {
            seconds: 1,
            nanos: 2,
        }),
        uuid: "not-this-one".into(),
        verdict: Verdict::Audit as i32,
        drop_reason: 133,
        ethernet: Some(Ethernet {
            source: "02:00:00:00:00:01".into(),
            destination: "02:00:00:00:00:02".into(),
        }),
        ip: Some(Ip {
            source: "fd42::99".into(),
            source_xlated: "fd42::98".into(),
            destination: "fd42::97".into(),
            ip_version: IpVersion::IPv6 as i32,
            encrypted: true,
        }),
        l4: tcp(1, 2, flags("FIN, RST, URG")),
        source: Some(Endpoint {
            cluster_name: "elsewhere".into(),
            workloads: vec![
                Workload {
                    name: "a".into(),
                    kind: "Deployment".into(),
                },
                Workload {
                    name: "b".into(),
                    kind: "StatefulSet".into(),
                },
            ],
            ..server()
        }),
        destination: None,
        r#type: FlowType::Sock as i32,
        node_name: "another-node".into(),
        node_labels: vec!["kubernetes.io/hostname=another".into()],
        source_names: vec!["a.example".into()],
        destination_names: vec!["b.example".into()],
        reply: true,
        event_type: event_type(1, 133),
        source_service: Some(Service {
            name: "api".into(),
            namespace: "default".into(),
        }),
        destination_service: Some(Service {
            name: "db".into(),
            namespace: "default".into(),
        }),
        traffic_direction: TrafficDirection::Egress as i32,
        policy_match_type: 4,
        trace_observation_point: TraceObservationPoint::ToStack as i32,
        trace_reason: 2,
        drop_reason_desc: 133,
        is_reply: Some(true),
        interface: interface(99, "a-much-longer-interface-name"),
        sock_xlate_point: 2,
        socket_cookie: 7,
        cgroup_id: 8,
        summary: "an old summary, longer than any new one".into(),
        egress_allowed_by: policy(ALLOW),
        ingress_allowed_by: policy(ALLOW),
        egress_denied_by: policy(DENY),
        ingress_denied_by: policy(DENY),
        volume: None,
        kernel_drop: Some(KernelDrop {
            reason: 3,
            name: "NO_SOCKET".into(),
        }),
        tcp_lifecycle: Some(TcpLifecycle::default()),
        policy_in_force: Some(PolicyStamp {
            generation: 9,
            version: "an older policy".into(),
        }),
    }
}

#[test]
fn a_flow_written_over_any_other_is_the_one_built_new() {
    let events = [
        syn(hook::TC_INGRESS, CLIENT_VETH),
        syn_ack(hook::TC_EGRESS, CLIENT_VETH),
        FlowEvent {
            smac: [0x02, 0, 0, 0, 0, 0x0a],
            dmac: [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff],
            ..syn(hook::TC_INGRESS, CLIENT_VETH)
        },
        FlowEvent {
            tcp_flags: 0xff,
            ..syn(hook::TC_EGRESS, SERVER_VETH)
        },
        judged(kind::POLICY_VERDICT, verdict::FORWARDED, 0, Some(ALLOW)),
        judged(kind::DROP, verdict::DROPPED, 181, Some(DENY)),
        kernel_drop(3),
        event(
            hook::TC_EGRESS,
            ETH0,
            17,
            "198.18.1.10",
            "198.19.0.99",
            (40000, 53),
        ),
        FlowEvent {
            icmp_type: 200,
            ..event(
                hook::TC_INGRESS,
                CLIENT_VETH,
                58,
                "fd42::10",
                "fd42::11",
                (0, 0),
            )
        },
        event(
            hook::TC_INGRESS,
            77,
            47,
            "198.18.1.10",
            "198.18.1.11",
            (0, 0),
        ),
    ];
    let mut olds = vec![every_field_set(), Flow::default()];
    olds.extend(events.iter().map(|ev| enrich(*ev)));
    for ev in &events {
        let new = enrich(*ev);
        for old in &olds {
            let mut f = old.clone();
            enricher().fill_flow(&mut f, ev, UNIX_OFFSET);
            assert_eq!(f, new, "{ev:?} written over {old:?}");
        }
    }
}

/// The relay counts what a probe's buffer dropped by the gaps in these
/// numbers: the flows of one event come numbered in the order they are kept,
/// and no number goes unused.
#[test]
fn the_flows_of_every_event_are_numbered_in_the_order_they_are_kept() {
    let mut e = enricher();
    let xlate = |no_backend| SockXlateEvent {
        family: 4,
        proto: 6,
        vip_port: 80,
        backend_port: 8080,
        no_backend,
        ..Default::default()
    };
    let denied = judged(kind::DROP, verdict::DROPPED, 133, None);
    let mut kept = Vec::new();
    kept.extend(e.flows(&denied, UNIX_OFFSET));
    kept.extend(e.sock_flows(&xlate(0), UNIX_OFFSET));
    kept.extend(e.sock_flows(&xlate(1), UNIX_OFFSET));
    kept.extend(e.flows(&syn(hook::TC_INGRESS, CLIENT_VETH), UNIX_OFFSET));
    let kinds: Vec<(i32, i32)> = kept
        .iter()
        .map(|f| (f.event_type.as_ref().unwrap().r#type, f.verdict))
        .collect();
    let (sock, verdict) = (7, 5); // TraceSock, PolicyVerdict
    assert_eq!(
        kinds,
        [
            (verdict, Verdict::Dropped as i32),
            (1, Verdict::Dropped as i32),
            (sock, Verdict::Traced as i32),
            (sock, Verdict::Translated as i32),
            (sock, Verdict::Dropped as i32),
            (4, Verdict::Forwarded as i32),
        ]
    );
    let numbers: Vec<&str> = kept.iter().map(|f| &f.uuid[f.uuid.len() - 2..]).collect();
    assert_eq!(numbers, ["01", "02", "03", "04", "05", "06"]);
}

/// A socket not bound yet has no source address at connect: the endpoint
/// whose network namespace made the call is the client, in the family of the
/// call; a namespace no endpoint owns leaves the source unknown.
#[test]
fn an_unbound_sockets_client_is_the_endpoint_of_its_namespace() {
    let mut set = crate::sources::EndpointSet {
        version: 1,
        file: file(),
        ..Default::default()
    };
    set.netns_cookies.insert(4097, 1);
    let (_tx, watch) = tokio::sync::watch::channel(Arc::new(set));
    let mut e = Enricher::following("node1", watch);
    let unbound = |family, netns_cookie| SockXlateEvent {
        family,
        proto: 6,
        vip_port: 80,
        no_backend: 1,
        netns_cookie,
        ..Default::default()
    };
    let source = |flows: Vec<Flow>| {
        let f = &flows[0];
        (
            f.ip.as_ref().unwrap().source.clone(),
            f.source.as_ref().map(|s| s.pod_name.clone()),
        )
    };
    let client = Some("client".to_string());
    assert_eq!(
        source(e.sock_flows(&unbound(4, 4097), UNIX_OFFSET)),
        ("198.18.1.10".into(), client.clone())
    );
    assert_eq!(
        source(e.sock_flows(&unbound(6, 4097), UNIX_OFFSET)),
        ("fd42::10".into(), client)
    );
    assert_eq!(
        source(e.sock_flows(&unbound(4, 4098), UNIX_OFFSET)),
        ("0.0.0.0".into(), None)
    );
}

/// Neighbour discovery shares one flow-table entry per address pair, so the
/// table's opener says nothing of a message: its type does. A solicitation
/// is never a reply, whichever end sent first; an advertisement is.
#[test]
fn neighbour_solicitations_are_requests_and_advertisements_replies() {
    let mut e = enricher();
    let ndp = |icmp_type, table_says_reply| FlowEvent {
        icmp_type,
        is_reply: u8::from(table_says_reply),
        reason: reason::PACKET,
        ..event(
            hook::TC_INGRESS,
            CLIENT_VETH,
            58,
            "fe80::1",
            "fe80::2",
            (0, 0),
        )
    };
    let shape = |f: Flow| (f.is_reply, f.trace_reason);
    let (reply, request) = (
        (Some(true), TraceReason::Reply as i32),
        (Some(false), TraceReason::Established as i32),
    );
    assert_eq!(shape(e.flow(&ndp(135, true), UNIX_OFFSET)), request);
    assert_eq!(shape(e.flow(&ndp(133, true), UNIX_OFFSET)), request);
    assert_eq!(shape(e.flow(&ndp(136, false), UNIX_OFFSET)), reply);
    assert_eq!(shape(e.flow(&ndp(134, false), UNIX_OFFSET)), reply);
    // Echo keeps the table's word: its identifier makes an entry its own.
    assert_eq!(shape(e.flow(&ndp(129, true), UNIX_OFFSET)), reply);
    assert_eq!(shape(e.flow(&ndp(128, false), UNIX_OFFSET)), request);
}

/// An endpoint's IPv6 link-local addresses (its neighbour discovery) name
/// it; one no endpoint has stays world.
#[test]
fn an_endpoints_link_local_address_names_it() {
    let mut set = crate::sources::EndpointSet {
        version: 1,
        file: file(),
        ..Default::default()
    };
    set.link_local.insert("fe80::10".parse().unwrap(), 1);
    let (_tx, watch) = tokio::sync::watch::channel(Arc::new(set));
    let mut e = Enricher::following("node1", watch);
    let ns = FlowEvent {
        icmp_type: 135,
        ..event(
            hook::TC_INGRESS,
            CLIENT_VETH,
            58,
            "fe80::10",
            "fe80::99",
            (0, 0),
        )
    };
    let f = e.flow(&ns, UNIX_OFFSET);
    let name = |ep: &Option<observer_proto::flow::Endpoint>| {
        ep.as_ref().map(|e| (e.pod_name.clone(), e.labels.clone()))
    };
    assert_eq!(
        name(&f.source),
        Some((
            "client".to_string(),
            vec![
                "k8s:app=client".to_string(),
                "k8s:io.kubernetes.pod.namespace=default".to_string()
            ]
        ))
    );
    assert_eq!(
        name(&f.destination),
        Some((String::new(), vec!["reserved:world".to_string()]))
    );
    assert_eq!(f.ip.unwrap().source, "fe80::10");
}

/// The node's own addresses are `reserved:host` (identity 1), as Cilium
/// names them; an endpoint's address stays the endpoint's even when the node
/// has it too.
#[test]
fn the_nodes_own_addresses_are_the_host() {
    let set = crate::sources::EndpointSet {
        version: 1,
        file: file(),
        host_addresses: vec![
            "198.18.1.1".parse().unwrap(),
            "198.18.1.10".parse().unwrap(),
        ],
        ..Default::default()
    };
    let (_tx, watch) = tokio::sync::watch::channel(Arc::new(set));
    let mut e = Enricher::following("node1", watch);
    let f = e.flow(
        &event(
            hook::TC_INGRESS,
            CLIENT_VETH,
            6,
            "198.18.1.10",
            "198.18.1.1",
            (40000, 22),
        ),
        UNIX_OFFSET,
    );
    let who = |ep: &Option<observer_proto::flow::Endpoint>| {
        ep.as_ref()
            .map(|e| (e.identity, e.pod_name.clone(), e.labels.clone()))
    };
    assert_eq!(
        who(&f.destination),
        Some((1, String::new(), vec!["reserved:host".to_string()]))
    );
    assert_eq!(
        who(&f.source).map(|(_, pod, _)| pod),
        Some("client".to_string())
    );
}
