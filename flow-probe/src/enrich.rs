//! Turns a decoded kernel event into a Hubble `Flow`: wall-clock time, endpoints
//! and identities from the endpoints file, reply and direction from who opened the
//! flow, and the observation point from the hook and interface.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cluster_spec::endpoints::{EndpointsFile, reserved};
use observer_proto::flow::{
    self, CiliumEventType, Endpoint, Flow, FlowType, IcmPv4, IcmPv6, Ip, IpVersion, Layer4,
    NetworkInterface, Policy, TcpFlags, TraceObservationPoint, TrafficDirection, layer4,
};
use observer_proto::observe::v1::{FlowVolume, KernelDrop};

use crate::datapath::PolicyNames;
use crate::kernel::events::{FlowEvent, hook, kind, verdict};

/// Cilium's drop reasons for policy (flow.proto DropReason numbers).
const DROP_POLICY_DENIED: u16 = 133;
const DROP_POLICY_DENY: u16 = 181;
/// `enum policy_direction` of the event.
const POLICY_INGRESS: u8 = 0;

fn drop_reason_name(reason: u16) -> String {
    observer_proto::flow::DropReason::try_from(i32::from(reason))
        .map(|r| r.as_str_name().to_string())
        .unwrap_or_else(|_| format!("drop reason {reason}"))
}

// Keep the numbers in one place with the kernel's.
const _: () = assert!(DROP_POLICY_DENIED == 133 && DROP_POLICY_DENY == 181);

/// Cilium's monitor message type for trace events, and its trace sub-types.
pub mod monitor {
    pub const MESSAGE_TYPE_TRACE: i32 = 4;
    pub const TRACE_TO_LXC: i32 = 0;
    pub const TRACE_FROM_LXC: i32 = 5;
    pub const TRACE_FROM_NETWORK: i32 = 10;
    pub const TRACE_TO_NETWORK: i32 = 11;
}

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

/// Flow UUIDs (RFC 9562 version 8, a custom layout): the first 8 bytes are
/// drawn at random once per probe run (60 random bits: the version takes 4),
/// the last 8 are a counter of the run's flows, big-endian (62 bits: the
/// variant takes 2). So they are unique across nodes and restarts (two runs
/// share a prefix with probability about runs² / 2⁶¹), sort by emission
/// within a run, and cost the relay's history a few bytes per flow instead of
/// 16 incompressible random ones. Text: `3f2a9c41-07d5-8e1b-8000-00000000002a`.
pub struct FlowIds {
    prefix: [u8; 8],
    counter: u64,
}

impl FlowIds {
    /// A new run: a random prefix, the counter at 0.
    pub fn new() -> Self {
        use std::hash::{BuildHasher, RandomState};
        // RandomState's keys come from the OS's random source; time and pid
        // only add to them.
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self::with_prefix(RandomState::new().hash_one(salt))
    }

    /// A run with this prefix (the version nibble replaces 4 of its bits).
    pub fn with_prefix(prefix: u64) -> Self {
        FlowIds {
            prefix: prefix.to_be_bytes(),
            counter: 0,
        }
    }

    /// The next flow's UUID, canonical text (lowercase, hyphenated).
    pub fn next_uuid(&mut self) -> String {
        self.counter = (self.counter + 1) & (u64::MAX >> 2);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.prefix);
        bytes[8..].copy_from_slice(&self.counter.to_be_bytes());
        uuid::Builder::from_custom_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

impl Default for FlowIds {
    fn default() -> Self {
        Self::new()
    }
}

/// An interface the probe is attached to, and the endpoint behind it if any.
#[derive(Debug, Clone)]
struct Interface {
    name: String,
    endpoint: Option<Endpoint>,
}

/// Everything needed to enrich flows on one node.
pub struct Enricher {
    node_name: String,
    by_ip: HashMap<IpAddr, Endpoint>,
    interfaces: HashMap<u32, Interface>,
    world: Endpoint,
    ids: FlowIds,
    policy_names: Option<std::sync::Arc<PolicyNames>>,
    kernel_drop_reasons: std::collections::BTreeMap<u32, String>,
    services: Option<std::sync::Arc<crate::services::ServiceTable>>,
}

impl Enricher {
    pub fn new(node_name: &str, file: &EndpointsFile) -> Self {
        let identities = file.identities();
        let mut by_ip = HashMap::new();
        for ep in &file.endpoints {
            let labels = ep.identity_labels();
            let proto_ep = Endpoint {
                id: ep.id,
                identity: identities
                    .get(&labels)
                    .copied()
                    .unwrap_or(reserved::UNKNOWN),
                namespace: ep.namespace.clone(),
                labels,
                pod_name: ep.name.clone(),
                workloads: ep
                    .workload
                    .iter()
                    .map(|w| flow::Workload {
                        name: w.name.clone(),
                        kind: w.kind.clone(),
                    })
                    .collect(),
                ..Default::default()
            };
            let v4 = ep.ipv4.map(IpAddr::V4);
            let v6 = ep.ipv6.map(IpAddr::V6);
            for addr in v4.into_iter().chain(v6) {
                by_ip.insert(addr, proto_ep.clone());
            }
        }
        let world = Endpoint {
            identity: reserved::WORLD,
            labels: vec!["reserved:world".to_string()],
            ..Default::default()
        };
        Enricher {
            node_name: node_name.to_string(),
            by_ip,
            interfaces: HashMap::new(),
            world,
            ids: FlowIds::new(),
            policy_names: None,
            kernel_drop_reasons: Default::default(),
            services: None,
        }
    }

    /// Registers an attached interface; `endpoint_ip` names the endpoint behind a
    /// host-side veth.
    pub fn add_interface(&mut self, ifindex: u32, name: &str, endpoint_ip: Option<IpAddr>) {
        let endpoint = endpoint_ip.and_then(|ip| self.by_ip.get(&ip).cloned());
        self.interfaces.insert(
            ifindex,
            Interface {
                name: name.to_string(),
                endpoint,
            },
        );
    }

    /// Names the services of flows to and from backends, and of SOCK flows.
    pub fn with_services(mut self, table: std::sync::Arc<crate::services::ServiceTable>) -> Self {
        self.services = Some(table);
        self
    }

    /// Builds the SOCK flow of a socket translation event (see [`crate::services::flows`]).
    pub fn sock_flow(
        &mut self,
        ev: &crate::kernel::events::SockXlateEvent,
        unix_offset_ns: i128,
    ) -> Flow {
        let cx = crate::services::flows::SockContext {
            uuid: self.next_uuid(),
            node_name: &self.node_name,
            unix_offset_ns,
            endpoint_of: &|ip| self.endpoint_of(ip),
        };
        crate::services::flows::sock_flow(ev, self.services.as_deref(), &cx)
    }

    /// Builds the flow of a TCP lifecycle event (see [`crate::lifecycle`]).
    pub fn tcp_lifecycle_flow(
        &mut self,
        ev: &crate::kernel::events::TcpLifecycleEvent,
        unix_offset_ns: i128,
    ) -> Flow {
        let cx = crate::lifecycle::LifecycleContext {
            uuid: self.next_uuid(),
            node_name: &self.node_name,
            unix_offset_ns,
            endpoint_of: &|ip| self.endpoint_of(ip),
        };
        crate::lifecycle::lifecycle_flow(ev, &cx)
    }

    /// Draws flow UUIDs from `ids` (a fixed prefix makes them reproducible).
    pub fn with_flow_ids(mut self, ids: FlowIds) -> Self {
        self.ids = ids;
        self
    }

    /// Names the policies of verdict events from this table.
    pub fn with_policy_names(mut self, names: std::sync::Arc<PolicyNames>) -> Self {
        self.policy_names = Some(names);
        self
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    fn endpoint_of(&self, ip: IpAddr) -> Endpoint {
        self.by_ip
            .get(&ip)
            .cloned()
            .unwrap_or_else(|| self.world.clone())
    }

    fn next_uuid(&mut self) -> String {
        self.ids.next_uuid()
    }

    /// Builds the flow; `unix_offset_ns` converts kernel monotonic time to Unix time.
    pub fn flow(&mut self, ev: &FlowEvent, unix_offset_ns: i128) -> Flow {
        let uuid = self.next_uuid();
        let k = &ev.key;
        let (src, dst) = addresses(k.family, &k.saddr, &k.daddr);
        let iface = self.interfaces.get(&k.ifindex);
        let at_endpoint = iface.is_some_and(|i| i.endpoint.is_some());
        let ingress_hook = k.hook == hook::TC_INGRESS;
        let (point, sub_type) = match (at_endpoint, ingress_hook) {
            // tc ingress of a host-side veth sees what the endpoint sends.
            (true, true) => (TraceObservationPoint::FromEndpoint, monitor::TRACE_FROM_LXC),
            (true, false) => (TraceObservationPoint::ToEndpoint, monitor::TRACE_TO_LXC),
            (false, true) => (
                TraceObservationPoint::FromNetwork,
                monitor::TRACE_FROM_NETWORK,
            ),
            (false, false) => (TraceObservationPoint::ToNetwork, monitor::TRACE_TO_NETWORK),
        };
        let is_reply = ev.is_reply != 0;
        // Direction of the connection, seen from the endpoint where we observe it:
        // a packet leaving the endpoint is egress unless it answers a peer.
        let leaving = matches!(
            point,
            TraceObservationPoint::FromEndpoint | TraceObservationPoint::ToNetwork
        );
        let direction = match (leaving, is_reply) {
            (true, false) | (false, true) => TrafficDirection::Egress,
            (false, false) | (true, true) => TrafficDirection::Ingress,
        };
        let (fwd, rev) = if is_reply {
            ((ev.rev_bytes, ev.rev_packets), (ev.bytes, ev.packets))
        } else {
            ((ev.bytes, ev.packets), (ev.rev_bytes, ev.rev_packets))
        };
        let (l4, summary) = layer4(ev);
        let time_ns = i128::from(ev.ktime_ns) + unix_offset_ns;
        let mut flow = Flow {
            time: Some(prost_types::Timestamp {
                seconds: (time_ns / 1_000_000_000) as i64,
                nanos: (time_ns % 1_000_000_000) as i32,
            }),
            uuid,
            verdict: i32::from(ev.verdict),
            ip: Some(Ip {
                source: src.to_string(),
                destination: dst.to_string(),
                ip_version: if k.family == 6 {
                    IpVersion::IPv6
                } else {
                    IpVersion::IPv4
                } as i32,
                ..Default::default()
            }),
            l4,
            source: Some(self.endpoint_of(src)),
            destination: Some(self.endpoint_of(dst)),
            r#type: FlowType::L3L4 as i32,
            node_name: self.node_name.clone(),
            event_type: Some(CiliumEventType {
                r#type: i32::from(ev.kind),
                sub_type: match ev.kind {
                    kind::DROP => i32::from(ev.drop_reason),
                    kind::POLICY_VERDICT => 0,
                    _ => sub_type,
                },
            }),
            traffic_direction: direction as i32,
            trace_observation_point: point as i32,
            is_reply: Some(is_reply),
            summary,
            interface: iface.map(|i| NetworkInterface {
                index: k.ifindex,
                name: i.name.clone(),
            }),
            volume: Some(FlowVolume {
                fwd_bytes: fwd.0,
                fwd_packets: fwd.1,
                rev_bytes: rev.0,
                rev_packets: rev.1,
            }),
            ..Default::default()
        };
        if k.hook == hook::KFREE_SKB {
            self.make_kernel_drop(&mut flow, ev);
        } else if ev.kind != kind::TRACE {
            self.add_policy_verdict(&mut flow, ev);
        }
        if let Some(services) = &self.services {
            crate::services::flows::annotate_tc_flow(services, &ev.key, &mut flow);
        }
        flow
    }

    /// A drop reported by the kernel (skb:kfree_skb): no hook of ours saw it, so
    /// no observation point, direction or reply bit; the kernel's reason instead.
    fn make_kernel_drop(&self, flow: &mut Flow, ev: &FlowEvent) {
        let name = self
            .kernel_drop_reasons
            .get(&u32::from(ev.drop_reason))
            .cloned()
            .unwrap_or_else(|| format!("reason {}", ev.drop_reason));
        flow.trace_observation_point = TraceObservationPoint::UnknownPoint as i32;
        flow.traffic_direction = TrafficDirection::Unknown as i32;
        flow.is_reply = None;
        flow.interface = None;
        flow.volume = None;
        flow.event_type = Some(CiliumEventType {
            r#type: i32::from(kind::DROP),
            sub_type: 0,
        });
        flow.summary = format!("{} (kernel drop: {name})", flow.summary);
        flow.kernel_drop = Some(KernelDrop {
            reason: u32::from(ev.drop_reason),
            name,
        });
    }

    /// Names of the kernel's drop reasons, from the tracepoint's format.
    pub fn set_kernel_drop_reasons(&mut self, names: std::collections::BTreeMap<u32, String>) {
        self.kernel_drop_reasons = names;
    }

    /// Drop reason, match type and the policy that allowed or denied the flow.
    fn add_policy_verdict(&self, flow: &mut Flow, ev: &FlowEvent) {
        if ev.verdict == verdict::DROPPED {
            flow.drop_reason = u32::from(ev.drop_reason);
            flow.drop_reason_desc = i32::from(ev.drop_reason);
            flow.summary = format!("{} ({})", flow.summary, drop_reason_name(ev.drop_reason));
        }
        flow.policy_match_type = u32::from(ev.policy_match);
        let Some(p) = self.policy_names.as_ref().and_then(|n| n.get(ev.policy_id)) else {
            return;
        };
        let policy = Policy {
            name: p.name,
            namespace: p.namespace,
            labels: p.labels,
            kind: "CiliumNetworkPolicy".to_string(),
            ..Default::default()
        };
        let denied = ev.drop_reason == DROP_POLICY_DENY;
        let slot = match (ev.policy_dir == POLICY_INGRESS, denied) {
            (true, false) => &mut flow.ingress_allowed_by,
            (true, true) => &mut flow.ingress_denied_by,
            (false, false) => &mut flow.egress_allowed_by,
            (false, true) => &mut flow.egress_denied_by,
        };
        slot.push(policy);
    }
}

fn addresses(family: u8, s: &[u8; 16], d: &[u8; 16]) -> (IpAddr, IpAddr) {
    if family == 6 {
        (
            IpAddr::V6(Ipv6Addr::from(*s)),
            IpAddr::V6(Ipv6Addr::from(*d)),
        )
    } else {
        let v4 = |a: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
        (v4(s), v4(d))
    }
}

/// The packet's TCP flags, as Hubble's TCPFlags message.
pub fn tcp_flags(bits: u8) -> TcpFlags {
    TcpFlags {
        fin: bits & 0x01 != 0,
        syn: bits & 0x02 != 0,
        rst: bits & 0x04 != 0,
        psh: bits & 0x08 != 0,
        ack: bits & 0x10 != 0,
        urg: bits & 0x20 != 0,
        ece: bits & 0x40 != 0,
        cwr: bits & 0x80 != 0,
        ns: false,
    }
}

/// Flag names in Hubble's order, e.g. "SYN, ACK".
pub fn tcp_flag_names(bits: u8) -> String {
    const NAMES: [(u8, &str); 8] = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x08, "PSH"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn layer4(ev: &FlowEvent) -> (Option<Layer4>, String) {
    let k = &ev.key;
    let (protocol, summary) = match k.proto {
        IPPROTO_TCP => (
            layer4::Protocol::Tcp(flow::Tcp {
                source_port: k.sport.into(),
                destination_port: k.dport.into(),
                flags: Some(tcp_flags(ev.tcp_flags)),
            }),
            format!("TCP Flags: {}", tcp_flag_names(ev.tcp_flags)),
        ),
        IPPROTO_UDP => (
            layer4::Protocol::Udp(flow::Udp {
                source_port: k.sport.into(),
                destination_port: k.dport.into(),
            }),
            "UDP".to_string(),
        ),
        IPPROTO_ICMP => (
            layer4::Protocol::IcmPv4(IcmPv4 {
                r#type: ev.icmp_type.into(),
                code: ev.icmp_code.into(),
            }),
            format!("ICMPv4 {}", icmp4_name(ev.icmp_type)),
        ),
        IPPROTO_ICMPV6 => (
            layer4::Protocol::IcmPv6(IcmPv6 {
                r#type: ev.icmp_type.into(),
                code: ev.icmp_code.into(),
            }),
            format!("ICMPv6 {}", icmp6_name(ev.icmp_type)),
        ),
        other => return (None, format!("IP protocol {other}")),
    };
    (
        Some(Layer4 {
            protocol: Some(protocol),
        }),
        summary,
    )
}

fn icmp4_name(t: u8) -> String {
    match t {
        0 => "EchoReply".into(),
        3 => "DestinationUnreachable".into(),
        8 => "EchoRequest".into(),
        11 => "TimeExceeded".into(),
        other => format!("type {other}"),
    }
}

fn icmp6_name(t: u8) -> String {
    match t {
        1 => "DestinationUnreachable".into(),
        128 => "EchoRequest".into(),
        129 => "EchoReply".into(),
        133 => "RouterSolicitation".into(),
        135 => "NeighborSolicitation".into(),
        136 => "NeighborAdvertisement".into(),
        other => format!("type {other}"),
    }
}

#[cfg(test)]
mod tests;
