//! Turns a decoded kernel event into Hubble flows. Time, UUID, node, IP,
//! ports and the endpoints behind the addresses come from
//! [`crate::flow_builder`]; here: reply, trace reason and direction from who
//! opened the flow, the observation point from the hook and interface,
//! volume, the verdict with its drop reason and policy, Ethernet addresses,
//! and kernel drops (their reason as Cilium's by [`kernel_reasons`]). Layer 4
//! and its summary: `enrich::layer4`.
//!
//! A policy denial is one kernel event; Cilium reports it as a PolicyVerdict
//! (naming the policy) and a Drop, and so does [`Enricher::flows`]. Drops
//! carry no observation point and no `is_reply`, as Cilium's do.
//!
//! Any other tc event is one flow, built new ([`Enricher::flow`]) or written
//! into the memory of an older one ([`Enricher::fill_flow`], what the
//! pipeline does with the store's evicted entries); both give the same flow.

pub mod kernel_reasons;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use cluster_spec::endpoints::EndpointsFile;
use observer_proto::flow::{
    CiliumEventType, Endpoint, Ethernet, Flow, FlowType, NetworkInterface, Policy,
    TraceObservationPoint, TraceReason, TrafficDirection,
};
use observer_proto::observe::v1::{FlowVolume, KernelDrop, PolicyStamp};

use crate::datapath::PolicyNames;
// The public path of the flow ids stays here, where flows are made.
pub use crate::flow_builder::FlowIds;
use crate::flow_builder::reuse::set_str;
use crate::flow_builder::{NodeFlows, addr};
use crate::kernel::events::{
    FlowEvent, drop_reason, hook, kind, policy_direction, reason, verdict,
};
use crate::sources::EndpointWatch;

mod layer4;
use layer4::layer4;
pub use layer4::{tcp_flag_names, tcp_flags};

/// Cilium's monitor message type for trace events, and its trace sub-types.
pub mod monitor {
    pub const MESSAGE_TYPE_TRACE: i32 = 4;
    pub const TRACE_TO_LXC: i32 = 0;
    pub const TRACE_FROM_LXC: i32 = 5;
    pub const TRACE_FROM_NETWORK: i32 = 10;
    pub const TRACE_TO_NETWORK: i32 = 11;
}

/// An interface the probe is attached to, and the endpoint behind it if any.
#[derive(Debug, Clone)]
struct Interface {
    name: String,
    endpoint: Option<Endpoint>,
}

/// Everything needed to enrich flows on one node.
pub struct Enricher {
    node: NodeFlows,
    interfaces: HashMap<u32, Interface>,
    /// Network namespace cookie → the addresses of the endpoint whose
    /// namespace it is: the client of a socket that is not bound yet.
    netns_addrs: HashMap<u64, Vec<IpAddr>>,
    /// The endpoint sets to follow, when the endpoints can change.
    updates: Option<EndpointWatch>,
    policy_names: Option<std::sync::Arc<PolicyNames>>,
    kernel_drop_reasons: std::collections::BTreeMap<u32, String>,
    services: Option<std::sync::Arc<crate::services::ServiceTable>>,
    /// The policy in force, stamped on every flow of the tc hooks.
    policy_stamp: Option<tokio::sync::watch::Receiver<Option<PolicyStamp>>>,
    /// Its last value, copied into each flow (the channel is read only when
    /// it has changed, not once per flow).
    policy_in_force: Option<PolicyStamp>,
}

impl Enricher {
    pub fn new(node_name: &str, file: &EndpointsFile) -> Self {
        Enricher {
            node: NodeFlows::new(node_name, file),
            interfaces: HashMap::new(),
            netns_addrs: HashMap::new(),
            updates: None,
            policy_names: None,
            kernel_drop_reasons: Default::default(),
            services: None,
            policy_stamp: None,
            policy_in_force: None,
        }
    }

    /// Follows the endpoint sets of `endpoints` (their endpoints and the
    /// interfaces the programs are on) from the current one on.
    pub fn following(node_name: &str, endpoints: EndpointWatch) -> Self {
        let mut e = Enricher::new(node_name, &EndpointsFile::default());
        e.updates = Some(endpoints);
        e.refresh(true);
        e
    }

    /// Takes a new endpoint set if one was published (a cheap check per flow).
    fn refresh(&mut self, force: bool) {
        let Some(updates) = self.updates.as_mut() else {
            return;
        };
        if !force && !updates.has_changed().unwrap_or(false) {
            return;
        }
        let set = updates.borrow_and_update().clone();
        self.node.set_endpoints(&set.file);
        let by_id: HashMap<u32, &cluster_spec::endpoints::Endpoint> =
            set.file.endpoints.iter().map(|e| (e.id, e)).collect();
        let v4 = |e: &cluster_spec::endpoints::Endpoint| e.ipv4.map(IpAddr::V4);
        let v6 = |e: &cluster_spec::endpoints::Endpoint| e.ipv6.map(IpAddr::V6);
        // An endpoint's link-local addresses (neighbour discovery) are its.
        self.node
            .alias_endpoints(set.link_local.iter().filter_map(|(extra, id)| {
                let ep = by_id.get(id)?;
                Some((*extra, v6(ep).or(v4(ep))?))
            }));
        self.node.host_addresses(set.host_addresses.iter().copied());
        self.interfaces.clear();
        for a in &set.interfaces {
            let ep = a.endpoint.and_then(|id| by_id.get(&id));
            let ip = ep.and_then(|e| v4(e).or(v6(e)));
            self.add_interface(a.ifindex, &a.ifname, ip);
        }
        self.netns_addrs = set
            .netns_cookies
            .iter()
            .filter_map(|(cookie, id)| {
                let ep = by_id.get(id)?;
                Some((*cookie, v4(ep).into_iter().chain(v6(ep)).collect()))
            })
            .collect();
    }

    /// Registers an attached interface; `endpoint_ip` names the endpoint behind a
    /// host-side veth.
    pub fn add_interface(&mut self, ifindex: u32, name: &str, endpoint_ip: Option<IpAddr>) {
        let endpoint = endpoint_ip.and_then(|ip| self.node.endpoints().get(ip).cloned());
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

    /// Builds the SOCK flows of a socket translation event (see [`crate::services::flows`]).
    pub fn sock_flows(
        &mut self,
        ev: &crate::kernel::events::SockXlateEvent,
        unix_offset_ns: i128,
    ) -> Vec<Flow> {
        self.refresh(false);
        // Numbered in the order they are kept (pre, then post), and no
        // number for a post that is not made: the relay counts the flows a
        // probe's buffer dropped by the gaps in these numbers.
        let pre_uuid = self.node.next_uuid();
        let post_uuid = if ev.no_backend == 0 {
            self.node.next_uuid()
        } else {
            String::new()
        };
        // An unbound socket has no source address yet: its namespace's
        // endpoint is the client.
        let unbound_client = self.netns_addrs.get(&ev.netns_cookie).and_then(|addrs| {
            let v4 = ev.family == 4;
            addrs.iter().find(|a| a.is_ipv4() == v4).copied()
        });
        let cx = self.node.context(pre_uuid, unix_offset_ns);
        crate::services::flows::sock_flows(
            ev,
            self.services.as_deref(),
            cx,
            post_uuid,
            unbound_client,
        )
    }

    /// Builds the flow of a TCP lifecycle event (see [`crate::lifecycle`]).
    pub fn tcp_lifecycle_flow(
        &mut self,
        ev: &crate::kernel::events::TcpLifecycleEvent,
        unix_offset_ns: i128,
    ) -> Flow {
        self.refresh(false);
        crate::lifecycle::lifecycle_flow(ev, self.node.next(unix_offset_ns))
    }

    /// Names the cluster of this node and its endpoints, and the node's labels.
    pub fn with_cluster(mut self, cluster_name: &str, node_labels: Vec<String>) -> Self {
        self.node.set_cluster(cluster_name, node_labels);
        self
    }

    /// Draws flow UUIDs from `ids` (a fixed prefix makes them reproducible).
    pub fn with_flow_ids(mut self, ids: FlowIds) -> Self {
        self.node.set_ids(ids);
        self
    }

    /// Stamps flows with the policy in force, as `policy_log` publishes it.
    pub fn with_policy_stamp(
        mut self,
        mut stamp: tokio::sync::watch::Receiver<Option<PolicyStamp>>,
    ) -> Self {
        self.policy_in_force = stamp.borrow_and_update().clone();
        self.policy_stamp = Some(stamp);
        self
    }

    /// Names the policies of verdict events from this table.
    pub fn with_policy_names(mut self, names: std::sync::Arc<PolicyNames>) -> Self {
        self.policy_names = Some(names);
        self
    }

    pub fn node_name(&self) -> &str {
        self.node.node_name()
    }

    /// Whether `ev` is two flows (a policy denial: PolicyVerdict, then Drop)
    /// rather than the one [`Self::fill_flow`] writes.
    pub fn is_pair(ev: &FlowEvent) -> bool {
        ev.kind == kind::DROP
            && ev.key.hook != hook::KFREE_SKB
            && matches!(
                ev.drop_reason,
                drop_reason::POLICY_DENIED | drop_reason::POLICY_DENY
            )
    }

    /// The flows of one event: a policy denial is a PolicyVerdict flow, then
    /// the Drop ([`Self::flow`]); any other event is its one flow.
    pub fn flows(&mut self, ev: &FlowEvent, unix_offset_ns: i128) -> Vec<Flow> {
        let mut flow = self.flow(ev, unix_offset_ns);
        if !Self::is_pair(ev) {
            return vec![flow];
        }
        // The verdict comes first, so it takes the first number (see
        // `sock_flows`).
        let uuid = std::mem::replace(&mut flow.uuid, self.node.next_uuid());
        let mut verdict = Flow {
            uuid,
            event_type: Some(CiliumEventType {
                r#type: i32::from(kind::POLICY_VERDICT),
                sub_type: 0,
            }),
            volume: None,
            policy_match_type: u32::from(ev.policy_match),
            ..flow.clone()
        };
        self.add_policy_names(&mut verdict, ev);
        vec![verdict, flow]
    }

    /// Builds the event's own flow (for a policy denial, the Drop);
    /// `unix_offset_ns` converts kernel monotonic time to Unix time.
    pub fn flow(&mut self, ev: &FlowEvent, unix_offset_ns: i128) -> Flow {
        let mut flow = Flow::default();
        self.fill_flow(&mut flow, ev, unix_offset_ns);
        flow
    }

    /// [`Self::flow`] for a flow that is never kept (a restart's baseline):
    /// its number is given back, so the kept flows' numbers have no gap the
    /// relay would count as flows lost.
    pub fn unkept_flow(&mut self, ev: &FlowEvent, unix_offset_ns: i128) -> Flow {
        let flow = self.flow(ev, unix_offset_ns);
        self.node.give_back_uuid();
        flow
    }

    /// Writes the flow of `ev` into `f`, in its memory: every field, so `f`
    /// ends as [`Self::flow`] would build it, whatever it held before.
    pub fn fill_flow(&mut self, f: &mut Flow, ev: &FlowEvent, unix_offset_ns: i128) {
        self.refresh(false);
        if let Some(rx) = &mut self.policy_stamp
            && rx.has_changed().unwrap_or(false)
        {
            self.policy_in_force = rx.borrow_and_update().clone();
        }
        let k = &ev.key;
        let (src, dst) = (addr(k.family, &k.saddr), addr(k.family, &k.daddr));
        // Time, UUID, IP, endpoints, type and node.
        self.node
            .fill(f, unix_offset_ns, FlowType::L3L4, ev.ktime_ns, (src, dst));
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
        let reply = is_reply(ev);
        // Cilium cannot tell whether a dropped packet was a reply, and its
        // drops come from no trace point.
        let dropped = ev.kind == kind::DROP;
        // Direction of the connection, seen from the endpoint where we observe it:
        // a packet leaving the endpoint is egress unless it answers a peer.
        let leaving = matches!(
            point,
            TraceObservationPoint::FromEndpoint | TraceObservationPoint::ToNetwork
        );
        let direction = match (leaving, reply) {
            (true, false) | (false, true) => TrafficDirection::Egress,
            (false, false) | (true, true) => TrafficDirection::Ingress,
        };
        let (fwd, rev) = if reply {
            ((ev.rev_bytes, ev.rev_packets), (ev.bytes, ev.packets))
        } else {
            ((ev.bytes, ev.packets), (ev.rev_bytes, ev.rev_packets))
        };
        // Every field: those `NodeFlows::fill` wrote are `_`; a field added
        // to the message does not compile until it is handled here.
        let Flow {
            time: _,
            uuid: _,
            verdict,
            drop_reason,
            ethernet,
            ip: _,
            l4,
            source: _,
            destination: _,
            r#type: _,
            node_name: _,
            node_labels: _,
            source_names,
            destination_names,
            reply: deprecated_reply,
            event_type,
            source_service,
            destination_service,
            traffic_direction,
            policy_match_type,
            trace_observation_point,
            trace_reason,
            drop_reason_desc,
            is_reply,
            interface,
            sock_xlate_point,
            socket_cookie,
            cgroup_id,
            summary,
            egress_allowed_by,
            ingress_allowed_by,
            egress_denied_by,
            ingress_denied_by,
            volume,
            kernel_drop,
            tcp_lifecycle,
            policy_in_force,
        } = f;
        *verdict = i32::from(ev.verdict);
        *drop_reason = 0;
        *drop_reason_desc = 0;
        *policy_match_type = 0;
        set_ethernet(ethernet, ev);
        summary.clear();
        *l4 = layer4(ev, summary);
        let report = ev.reason == reason::REPORT;
        if report {
            // A report leaves SYN, FIN and RST out; with nothing left, the
            // summary names no flags rather than an empty list.
            if summary == "TCP Flags: " {
                summary.truncate("TCP".len());
            }
            // No packet: say so where people read (`observe flows`).
            let _ = write!(
                summary,
                "; report of the connection so far: {} packets / {} B sent, {} / {} B back",
                fwd.1, fwd.0, rev.1, rev.0
            );
        }
        source_names.clear();
        destination_names.clear();
        *deprecated_reply = reply && !dropped;
        *event_type = Some(CiliumEventType {
            r#type: i32::from(ev.kind),
            sub_type: match ev.kind {
                kind::DROP => i32::from(ev.drop_reason),
                kind::POLICY_VERDICT => 0,
                _ => sub_type,
            },
        });
        *source_service = None;
        *destination_service = None;
        *traffic_direction = direction as i32;
        *trace_observation_point = if dropped {
            TraceObservationPoint::UnknownPoint
        } else {
            point
        } as i32;
        *trace_reason = if ev.kind == kind::TRACE {
            trace_reason_of(ev)
        } else {
            TraceReason::Unknown
        } as i32;
        *is_reply = (!dropped).then_some(reply);
        match (iface, interface.as_mut()) {
            (Some(i), Some(slot)) => {
                let NetworkInterface { index, name } = slot;
                *index = k.ifindex;
                set_str(name, &i.name);
            }
            (Some(i), None) => {
                *interface = Some(NetworkInterface {
                    index: k.ifindex,
                    name: i.name.clone(),
                });
            }
            (None, _) => *interface = None,
        }
        *sock_xlate_point = 0;
        *socket_cookie = 0;
        *cgroup_id = 0;
        egress_allowed_by.clear();
        ingress_allowed_by.clear();
        egress_denied_by.clear();
        ingress_denied_by.clear();
        // A dropped packet went nowhere: no volume, or the metrics would
        // count a denied connection's bytes as traffic where it was denied.
        *volume = (!dropped).then_some(FlowVolume {
            fwd_bytes: fwd.0,
            fwd_packets: fwd.1,
            rev_bytes: rev.0,
            rev_packets: rev.1,
            first_packet: ev.reason == reason::NEW_FLOW,
            report,
            // The kernel keys an echo by its identifier, in both ports;
            // other ICMP messages have none.
            echo_id: if matches!(k.proto, 1 | 58) {
                u32::from(k.sport)
            } else {
                0
            },
        });
        *kernel_drop = None;
        *tcp_lifecycle = None;
        policy_in_force.clone_from(&self.policy_in_force);
        if k.hook == hook::KFREE_SKB {
            self.make_kernel_drop(f, ev);
        } else if ev.kind != kind::TRACE {
            self.add_policy_verdict(f, ev);
        }
        if let Some(services) = &self.services {
            crate::services::flows::annotate_tc_flow(services, &ev.key, f);
        }
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
        let cilium = kernel_reasons::cilium_reason(&name) as i32;
        flow.drop_reason = cilium as u32;
        flow.drop_reason_desc = cilium;
        flow.event_type = Some(CiliumEventType {
            r#type: i32::from(kind::DROP),
            sub_type: cilium,
        });
        let _ = write!(flow.summary, " (kernel drop: {name})");
        flow.kernel_drop = Some(KernelDrop {
            reason: u32::from(ev.drop_reason),
            name,
        });
    }

    /// Names of the kernel's drop reasons, from the tracepoint's format.
    pub fn set_kernel_drop_reasons(&mut self, names: std::collections::BTreeMap<u32, String>) {
        self.kernel_drop_reasons = names;
    }

    /// Drop reason of a judged flow; its match type and the policy that
    /// allowed it. A Drop has neither, as Hubble's drop notifications: its
    /// PolicyVerdict carries them (see [`Self::flows`]).
    fn add_policy_verdict(&self, flow: &mut Flow, ev: &FlowEvent) {
        if ev.verdict == verdict::DROPPED {
            flow.drop_reason = u32::from(ev.drop_reason);
            flow.drop_reason_desc = i32::from(ev.drop_reason);
        }
        if ev.kind != kind::DROP {
            flow.policy_match_type = u32::from(ev.policy_match);
            self.add_policy_names(flow, ev);
        }
    }

    /// The policy that allowed or denied the flow, in its direction's list.
    fn add_policy_names(&self, flow: &mut Flow, ev: &FlowEvent) {
        let Some(p) = self.policy_names.as_ref().and_then(|n| n.get(ev.policy_id)) else {
            return;
        };
        let policy = Policy {
            name: p.name,
            namespace: p.namespace,
            labels: p.labels,
            kind: cluster_spec::policy::KIND.to_string(),
            ..Default::default()
        };
        let denied = ev.drop_reason == drop_reason::POLICY_DENY;
        let slot = match (ev.policy_dir == policy_direction::INGRESS, denied) {
            (true, false) => &mut flow.ingress_allowed_by,
            (true, true) => &mut flow.ingress_denied_by,
            (false, false) => &mut flow.egress_allowed_by,
            (false, true) => &mut flow.egress_denied_by,
        };
        slot.push(policy);
    }
}

/// The packet's Ethernet addresses as Cilium reports them on L2 devices
/// (`aa:bb:cc:dd:ee:ff`), written into `dst`'s strings; none when the event
/// has none (periodic reports).
fn set_ethernet(dst: &mut Option<Ethernet>, ev: &FlowEvent) {
    if ev.smac == [0; 6] && ev.dmac == [0; 6] {
        *dst = None;
        return;
    }
    let Ethernet {
        source,
        destination,
    } = dst.get_or_insert_with(Ethernet::default);
    write_mac(source, &ev.smac);
    write_mac(destination, &ev.dmac);
}

fn write_mac(out: &mut String, mac: &[u8; 6]) {
    out.clear();
    for (i, b) in mac.iter().enumerate() {
        let sep = if i == 0 { "" } else { ":" };
        let _ = write!(out, "{sep}{b:02x}");
    }
}

/// Whether the event's packet answers its peer. The flow table tells by who
/// opened the entry, but IPv6 neighbour discovery and multicast listener
/// messages share one entry per address pair whatever their type (no ports,
/// no identifier): for them the type tells. An advertisement answers a
/// solicitation (or tells news unasked); a solicitation, query or report
/// answers nothing, whichever end sent first.
fn is_reply(ev: &FlowEvent) -> bool {
    use observer_proto::icmpv6::{self, NEIGHBOR_ADVERTISEMENT, ROUTER_ADVERTISEMENT};
    let icmp_type = u32::from(ev.icmp_type);
    if ev.key.proto == crate::flow_builder::ipproto::ICMPV6
        && icmpv6::is_link_housekeeping(icmp_type)
    {
        return matches!(icmp_type, ROUTER_ADVERTISEMENT | NEIGHBOR_ADVERTISEMENT);
    }
    ev.is_reply != 0
}

/// Cilium's trace reason of a traced packet: its connection's state.
fn trace_reason_of(ev: &FlowEvent) -> TraceReason {
    if is_reply(ev) {
        TraceReason::Reply
    } else if ev.reason == reason::NEW_FLOW {
        TraceReason::New
    } else {
        TraceReason::Established
    }
}

#[cfg(test)]
mod tests;
