//! [`GraphBuilder`]: folds flows, one at a time, into a [`ServiceGraph`].
//! TCP lifecycle reports and IPv6 neighbour discovery (the link's
//! housekeeping, like ARP) are no edges.
//!
//! Edges come from request-direction flows: `is_reply` false, or unknown (drops
//! often carry no direction; Hubble UI draws those too). A reply only adds to
//! its connection's volume. Every connection is seen at several observation
//! points and reported several times, each report carrying the connection's
//! volume so far, so an edge's bytes add each connection once, at the largest
//! volume seen for it (`fwd_bytes + rev_bytes`).
//!
//! The same 5-tuple can carry several connections: a client port used again,
//! or ICMP, whose flows have no ports (each ping is its own flow in the
//! probe). A connection's first packet (trace reason `NEW`) more than
//! [`NEW_CONNECTION_GAP`] after the one that began the tracked connection
//! begins another: counted again, its volume added to the first's. The `NEW`
//! of the same packet at another observation point comes within the gap.
//!
//! With a window, edges not seen for that long are dropped, and so are the
//! connections behind them; a connection silent for longer than the window
//! counts as a new one when it shows up again.
//!
//! The connection table can also be capped ([`GraphBuilder::with_max_connections`]):
//! past the cap the least recently seen connections are forgotten (their
//! counts stay on the edges). A forgotten connection that shows up again
//! counts as a new one, as after the window; [`GraphBuilder::forgotten`] says
//! how many were forgotten, so a view can tell its counts may be high.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use observer_proto::flow::SocketTranslationPoint as XlatePoint;
use observer_proto::flow::{DropReason, Flow, TraceReason, Verdict, layer4::Protocol};
use petgraph::stable_graph::EdgeIndex;

use crate::group::{destination_group, group_of};
use crate::hops::HopKey;
use crate::model::{Edge, ServiceGraph};

/// Cilium's monitor type of socket-translation traces.
const TYPE_TRACE_SOCK: i32 = 7;

/// A connection, client side first, whichever way the packet went.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConnKey {
    protocol: &'static str,
    client: (IpAddr, u32),
    server: (IpAddr, u32),
}

/// How long after a packet's arrival (its verdict or `to-endpoint`) a kernel
/// drop of the connection is taken for that packet's, dropped in the
/// receiver's stack after its verdict.
const KERNEL_DROP_AFTER_ARRIVAL: Duration = Duration::from_secs(1);

/// How long after a connection's first packet another first packet of the
/// same 5-tuple is still the same packet seen elsewhere, not a new connection.
pub const NEW_CONNECTION_GAP: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Conn {
    edge: Option<EdgeIndex>,
    /// When the first packet of the connection tracked now was seen.
    began_ns: Option<i128>,
    /// Largest volume seen: (bytes, packets) of both directions.
    max: (u64, u64),
    /// The part of `max` already added to the edge.
    counted: (u64, u64),
    last_seen_ns: i128,
    /// Request packets seen leaving their pod whose arrival (or drop) was
    /// not seen yet, and the other way round: the two sightings of one
    /// packet pair up, so its verdict counts once ([`count_verdict`]).
    unpaired_sources: u64,
    unpaired_destinations: u64,
    /// Request packets last counted forwarded where they arrived, and when
    /// the last of them was: a kernel drop soon after is one of them
    /// dropped in the receiver's stack (a packet filter in its pod).
    arrived_unconfirmed: u64,
    arrived_ns: i128,
}

/// Builds a [`ServiceGraph`] from flows, optionally over a sliding window.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: ServiceGraph,
    conns: HashMap<ConnKey, Conn>,
    window_ns: Option<i128>,
    max_connections: Option<usize>,
    forgotten: u64,
    latest_ns: i128,
    next_prune_ns: i128,
    /// Per node, a policy denial's PolicyVerdict flow, held until the
    /// node's next flow says whether its Drop follows: then the Drop counts
    /// the packet; alone (a filter kept only verdicts), the verdict does.
    pending_denials: HashMap<String, Flow>,
    /// Per node, the last denial Drop counted: a verdict that comes after
    /// its Drop (equal times sorted the other way) counts nothing.
    last_denial_drop: HashMap<String, Flow>,
    /// Count a socket translation's pre-translation flow (to the VIP): for
    /// a stream filtered by service, which holds no post-translation twin.
    count_pre_translations: bool,
}

/// How far apart a denial's PolicyVerdict and Drop may be: flow-probe gives
/// both the packet's time; Cilium sends two events microseconds apart.
const DENIAL_PAIR_WITHIN_NS: i128 = 1_000_000;

/// Unix time in nanoseconds.
pub fn unix_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

fn flow_ns(f: &Flow) -> Option<i128> {
    f.time
        .as_ref()
        .map(|t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
}

/// `(protocol, source port, destination port)`; ICMP has no ports.
pub fn l4(f: &Flow) -> (&'static str, u32, u32) {
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => ("TCP", t.source_port, t.destination_port),
        Some(Protocol::Udp(u)) => ("UDP", u.source_port, u.destination_port),
        Some(Protocol::Sctp(s)) => ("SCTP", s.source_port, s.destination_port),
        Some(Protocol::IcmPv4(_)) => ("ICMPv4", 0, 0),
        Some(Protocol::IcmPv6(_)) => ("ICMPv6", 0, 0),
        None => ("IP", 0, 0),
    }
}

/// `TCP/8080`, or the protocol alone when it has no ports.
fn port_label(f: &Flow) -> String {
    match l4(f) {
        (p @ ("TCP" | "UDP" | "SCTP"), _, dport) => format!("{p}/{dport}"),
        (p, _, _) => p.to_string(),
    }
}

fn conn_key(f: &Flow, reply: bool) -> Option<ConnKey> {
    let ip = f.ip.as_ref()?;
    let (protocol, sport, dport) = l4(f);
    let src = (ip.source.parse().ok()?, sport);
    let dst = (ip.destination.parse().ok()?, dport);
    let (client, server) = if reply { (dst, src) } else { (src, dst) };
    Some(ConnKey {
        protocol,
        client,
        server,
    })
}

impl GraphBuilder {
    /// A builder that keeps everything it is given.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder that drops edges not seen within `window` of the newest flow
    /// (or of the time given to [`GraphBuilder::prune`]).
    pub fn with_window(window: Duration) -> Self {
        GraphBuilder {
            window_ns: Some(window.as_nanos() as i128),
            ..Self::default()
        }
    }

    /// Caps the connection table at `max` (at least 1): past it, the least
    /// recently seen connections are forgotten.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max.max(1));
        self
    }

    /// Counts pre-translation flows (a connect to a VIP, drawn to the
    /// service): for a stream selected by service (`--to-service`), where
    /// only they name it and their post-translation twins never come.
    pub fn counting_pre_translations(mut self) -> Self {
        self.count_pre_translations = true;
        self
    }

    /// A graph of `flows`, without a window.
    pub fn build<'a>(flows: impl IntoIterator<Item = &'a Flow>) -> ServiceGraph {
        let mut b = Self::new();
        flows.into_iter().for_each(|f| b.add(f));
        b.into_graph()
    }

    pub fn graph(&self) -> &ServiceGraph {
        &self.graph
    }

    /// The graph once no flow follows (a denial's verdict still held counts).
    pub fn into_graph(mut self) -> ServiceGraph {
        self.finish();
        self.graph
    }

    /// Counts the denials' verdicts still held: no more flows come.
    pub fn finish(&mut self) {
        let mut held: Vec<Flow> = self.pending_denials.drain().map(|(_, f)| f).collect();
        held.sort_by_key(flow_ns);
        for verdict in &held {
            self.fold(verdict);
        }
    }

    /// Folds one flow into the graph.
    pub fn add(&mut self, flow: &Flow) {
        if !self.pending_denials.is_empty()
            && let Some(verdict) = self.pending_denials.remove(flow.node_name.as_str())
        {
            if is_denial_pair(flow, &verdict) {
                // The Drop counts the packet.
                return self.fold(flow);
            }
            self.fold(&verdict);
        }
        if is_denial_verdict(flow) {
            let drop_before = self
                .last_denial_drop
                .get(flow.node_name.as_str())
                .is_some_and(|d| is_denial_pair(d, flow));
            if drop_before {
                self.last_denial_drop.remove(flow.node_name.as_str());
            } else {
                self.pending_denials
                    .insert(flow.node_name.clone(), flow.clone());
            }
            return;
        }
        if is_denial_drop(flow) {
            self.last_denial_drop
                .insert(flow.node_name.clone(), flow.clone());
        }
        self.fold(flow);
    }

    fn fold(&mut self, flow: &Flow) {
        let t = flow_ns(flow).unwrap_or(self.latest_ns);
        self.latest_ns = self.latest_ns.max(t);
        // A TCP lifecycle report (established, closed) comes from each socket,
        // local to remote, so the server's would draw a reverse edge; the
        // connection's packets are on the graph already.
        if flow.tcp_lifecycle.is_some() {
            return;
        }
        // Neighbour discovery and multicast listener messages are the link's
        // housekeeping, as ARP is (which no flow shows): no dependency of
        // one workload on another, and mostly from link-local addresses no
        // endpoint file names (world -> world).
        if observer_proto::icmpv6::flow_is_link_housekeeping(flow) {
            return;
        }
        // One packet, one count: a socket translation's pre-translation flow
        // (to the VIP) has its post-translation twin (to the backend); a
        // policy denial's verdict its Drop, which carries the reason, is
        // left out in `add`.
        if is_pre_translation(flow) && !self.count_pre_translations {
            return;
        }
        let dropped_reply = self.is_dropped_reply(flow);
        let reply = flow.is_reply == Some(true) || is_reverse_translation(flow) || dropped_reply;
        // A report of a connection's counters adds its volume only: it is no
        // packet seen, so no flow, hop or verdict.
        let report = flow.volume.as_ref().is_some_and(|v| v.report);
        let edge = (!reply).then(|| {
            if report {
                self.edge_of(flow, t)
            } else {
                self.count_request(flow, t)
            }
        });
        // A socket translation names the service port, not the connection's
        // 5-tuple: it counts on the edge, not as a connection of its own.
        let sock = flow
            .event_type
            .as_ref()
            .is_some_and(|e| e.r#type == TYPE_TRACE_SOCK);
        let mut conn: Option<&mut Conn> = None;
        if let Some(key) = conn_key(flow, reply).filter(|_| !sock) {
            if let Some(max) = self.max_connections
                && self.conns.len() >= max
                && !self.conns.contains_key(&key)
            {
                self.forget_oldest(max - max / 8 - 1);
            }
            let fresh = !self.conns.contains_key(&key);
            // Kept for the verdict below, which pairs the packet's sightings.
            let conn: &mut Conn = conn.insert(self.conns.entry(key).or_default());
            // A connection's first packet: a trace says NEW; a policy
            // verdict (no trace reason) carries its volume's first packet.
            let first = flow.trace_reason == TraceReason::New as i32
                || (!reply
                    && flow
                        .volume
                        .as_ref()
                        .is_some_and(|v| v.first_packet && !v.report));
            if first {
                let gap = NEW_CONNECTION_GAP.as_nanos() as i128;
                match conn.began_ns {
                    Some(began) if t - began > gap => {
                        // Another connection on the same 5-tuple: counted
                        // again, its volume on top of the last one's.
                        *conn = Conn {
                            began_ns: Some(t),
                            ..Conn::default()
                        };
                    }
                    Some(_) => {}
                    None => conn.began_ns = Some(t),
                }
            }
            if let Some(e) = edge
                && conn.edge.is_none()
            {
                conn.edge = Some(e);
                if let Some(w) = self.graph.edge_mut(e) {
                    w.connections += 1;
                }
            }
            if let Some(v) = &flow.volume {
                conn.max.0 = conn.max.0.max(v.fwd_bytes + v.rev_bytes);
                conn.max.1 = conn.max.1.max(v.fwd_packets + v.rev_packets);
                // First seen in a report of its counters: it began before
                // the window (or the stream), and its volume until now is
                // not this graph's, only what it carries from here on.
                if fresh && v.report {
                    conn.counted = conn.max;
                }
            }
            conn.last_seen_ns = conn.last_seen_ns.max(t);
            if let Some(w) = conn.edge.and_then(|e| self.graph.edge_mut(e)) {
                w.bytes += conn.max.0 - conn.counted.0;
                w.packets += conn.max.1 - conn.counted.1;
                w.last_seen_ns = w.last_seen_ns.max(t);
                conn.counted = conn.max;
            }
        }
        // A dropped reply counts as a drop on its connection's edge.
        let conn_edge = conn.as_ref().and_then(|c| c.edge);
        if dropped_reply && let Some(w) = conn_edge.and_then(|e| self.graph.edge_mut(e)) {
            w.verdicts.dropped += 1;
            *w.drops.entry(drop_reason(flow)).or_default() += 1;
        }
        // A socket translation is no packet either: no verdict, unless it
        // is a connect() dropped for want of a backend.
        let translated = sock && flow.verdict != Verdict::Dropped as i32;
        if let (Some(w), false) = (
            edge.and_then(|e| self.graph.edge_mut(e)),
            report || translated,
        ) {
            count_verdict(w, conn, flow);
        }
        if let Some(w) = self.window_ns
            && self.latest_ns >= self.next_prune_ns
        {
            self.prune_ns(self.latest_ns);
            self.next_prune_ns = self.latest_ns + (w / 16).max(1);
        }
    }

    /// Whether `flow` is a drop of a reply: drops carry no reply bit (as
    /// Cilium's), but a packet of a connection tracked the other way round,
    /// and not this way, answers it (a reply the kernel dropped as old data
    /// or invalid). Drawn as a request it would make a reverse edge.
    fn is_dropped_reply(&self, flow: &Flow) -> bool {
        let drop = flow.event_type.as_ref().is_some_and(|e| e.r#type == 1);
        let tracked = |reply| conn_key(flow, reply).is_some_and(|k| self.conns.contains_key(&k));
        drop && flow.is_reply.is_none() && tracked(true) && !tracked(false)
    }

    /// Counts a request-direction flow on its edge; returns the edge.
    fn count_request(&mut self, flow: &Flow, t: i128) -> EdgeIndex {
        let e = self.edge_of(flow, t);
        if let Some(w) = self.graph.edge_mut(e) {
            count_flow(w, flow, t);
        }
        e
    }

    /// The edge of a request-direction flow (made when new), seen at `t`,
    /// with the flow's port.
    fn edge_of(&mut self, flow: &Flow, t: i128) -> EdgeIndex {
        let a = self.graph.node(group_of(flow.source.as_ref()));
        let b = self.graph.node(destination_group(flow));
        let e = self.graph.edge(a, b);
        if let Some(w) = self.graph.edge_mut(e) {
            w.last_seen_ns = w.last_seen_ns.max(t);
            w.ports.insert(port_label(flow));
        }
        e
    }

    /// Drops what was last seen more than the window before `now`.
    pub fn prune(&mut self, now: SystemTime) {
        self.prune_ns(unix_ns(now));
    }

    fn prune_ns(&mut self, now_ns: i128) {
        let Some(w) = self.window_ns else { return };
        let cutoff = now_ns - w;
        let removed = self.graph.expire(cutoff);
        self.conns.retain(|_, c| {
            c.last_seen_ns >= cutoff && c.edge.is_none_or(|e| !removed.contains(&e))
        });
    }

    /// Forgets the least recently seen connections until `keep` are left.
    /// Evicting an eighth of the cap at a time keeps the sort rare.
    fn forget_oldest(&mut self, keep: usize) {
        let excess = self.conns.len().saturating_sub(keep);
        if excess == 0 {
            return;
        }
        let mut seen: Vec<i128> = self.conns.values().map(|c| c.last_seen_ns).collect();
        let (_, &mut cutoff, _) = seen.select_nth_unstable(excess - 1);
        // Ties at the cutoff: forget the older side first, then as many equal
        // ones as needed, so exactly `keep` remain.
        let mut at_cutoff = excess - seen[..excess].iter().filter(|&&t| t < cutoff).count();
        self.conns.retain(|_, c| {
            if c.last_seen_ns < cutoff {
                false
            } else if c.last_seen_ns == cutoff && at_cutoff > 0 {
                at_cutoff -= 1;
                false
            } else {
                true
            }
        });
        self.forgotten += excess as u64;
    }

    /// Connections being tracked (for tests and the TUI's header).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The cap on the connection table, if any.
    pub fn max_connections(&self) -> Option<usize> {
        self.max_connections
    }

    /// Connections forgotten because of the cap (not the window).
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }
}

/// Adds one request-direction flow to an edge's counters (its verdict
/// apart: [`count_verdict`]).
fn count_flow(w: &mut Edge, flow: &Flow, t: i128) {
    w.flows += 1;
    if let Some(k) = HopKey::of(flow) {
        w.hops.record(k, t);
    }
}

/// Where a request flow saw its packet: leaving its pod, or where it was
/// delivered or judged (arriving at its pod, a drop, a policy verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sighting {
    Source,
    Destination,
    Other,
}

fn sighting(flow: &Flow) -> Sighting {
    use observer_proto::flow::TraceObservationPoint as P;
    let point = P::try_from(flow.trace_observation_point);
    match flow.event_type.as_ref().map(|e| e.r#type) {
        // An egress policy's verdict is where the packet leaves its pod.
        Some(4 | 5) if point == Ok(P::FromEndpoint) => Sighting::Source,
        Some(4) if point == Ok(P::ToEndpoint) => Sighting::Destination,
        Some(1 | 5) => Sighting::Destination,
        _ => Sighting::Other,
    }
}

/// A drop's reason as the edge names it: a kernel drop the kernel's (Hubble's
/// enum has none for it), else Hubble's.
fn drop_reason(flow: &Flow) -> String {
    match &flow.kernel_drop {
        Some(k) => k.name.clone(),
        None => DropReason::try_from(flow.drop_reason_desc)
            .map(|r| r.as_str_name().to_string())
            .unwrap_or_else(|_| format!("DROP_REASON_{}", flow.drop_reason_desc)),
    }
}

/// Counts a request flow's verdict once per packet, at the packet's last
/// sighting: a packet seen leaving its pod and then arriving (or dropped)
/// counts there, not also as forwarded where it left, so a path policy
/// denies reads all dropped, not half forwarded. The two sightings pair up
/// within the connection (`conn`), in whichever order they come (they may
/// come from two nodes); a packet seen only leaving (to the world, or to a
/// node not observed) counts where it left.
fn count_verdict(w: &mut Edge, conn: Option<&mut Conn>, flow: &Flow) {
    let forwarded = flow.verdict == Verdict::Forwarded as i32;
    let t = flow_ns(flow).unwrap_or_default();
    match (sighting(flow), conn) {
        // A packet filter's kernel drop soon after a packet was counted
        // forwarded where it arrived: that packet, dropped after its
        // verdict. It ends there. (Other kernel drops, a full socket
        // buffer or old data, are of packets no event told.)
        (Sighting::Destination, Some(c))
            if flow.kernel_drop.is_some()
                && flow.drop_reason_desc == DropReason::PolicyDenied as i32
                && c.arrived_unconfirmed > 0
                && (0..=KERNEL_DROP_AFTER_ARRIVAL.as_nanos() as i128)
                    .contains(&(t - c.arrived_ns)) =>
        {
            c.arrived_unconfirmed -= 1;
            w.verdicts.forwarded = w.verdicts.forwarded.saturating_sub(1);
        }
        (Sighting::Source, Some(c)) if forwarded => {
            if c.unpaired_destinations > 0 {
                // Its arrival, or its drop, was counted already.
                c.unpaired_destinations -= 1;
                return;
            }
            c.unpaired_sources += 1;
        }
        (Sighting::Destination, Some(c)) => {
            if c.unpaired_sources > 0 {
                // It left its pod, counted forwarded there: it ends here.
                c.unpaired_sources -= 1;
                w.verdicts.forwarded = w.verdicts.forwarded.saturating_sub(1);
            } else {
                c.unpaired_destinations += 1;
            }
            if forwarded {
                c.arrived_unconfirmed =
                    if t - c.arrived_ns <= KERNEL_DROP_AFTER_ARRIVAL.as_nanos() as i128 {
                        c.arrived_unconfirmed + 1
                    } else {
                        1
                    };
                c.arrived_ns = t;
            }
        }
        _ => {}
    }
    match Verdict::try_from(flow.verdict) {
        Ok(Verdict::Forwarded) => w.verdicts.forwarded += 1,
        Ok(Verdict::Dropped) => {
            w.verdicts.dropped += 1;
            *w.drops.entry(drop_reason(flow)).or_default() += 1;
        }
        Ok(Verdict::Audit) => w.verdicts.audit += 1,
        _ => w.verdicts.other += 1,
    }
}

/// Whether `flow` is a SOCK flow at one of `points`.
fn sock_flow_at(flow: &Flow, points: &[XlatePoint]) -> bool {
    flow.event_type
        .as_ref()
        .is_some_and(|e| e.r#type == TYPE_TRACE_SOCK)
        && XlatePoint::try_from(flow.sock_xlate_point).is_ok_and(|p| points.contains(&p))
}

/// A SOCK flow before the translation that was translated (a service
/// without backends is only a pre-translation flow, and counts).
fn is_pre_translation(flow: &Flow) -> bool {
    sock_flow_at(
        flow,
        &[
            XlatePoint::SockXlatePointPreDirectionFwd,
            XlatePoint::SockXlatePointPreDirectionRev,
        ],
    ) && flow.verdict != observer_proto::flow::Verdict::Dropped as i32
}

/// A SOCK flow of a reply's translation (recvmsg of a UDP answer: the
/// backend shown as the service, to the client). SOCK flows carry no reply
/// bit; drawn as requests, each answer made a service -> client edge.
fn is_reverse_translation(flow: &Flow) -> bool {
    sock_flow_at(
        flow,
        &[
            XlatePoint::SockXlatePointPostDirectionRev,
            XlatePoint::SockXlatePointPreDirectionRev,
        ],
    )
}

/// The PolicyVerdict flow of a policy denial (its Drop flow follows).
fn is_denial_verdict(flow: &Flow) -> bool {
    flow.event_type.as_ref().is_some_and(|e| e.r#type == 5)
        && flow.verdict == observer_proto::flow::Verdict::Dropped as i32
}

/// A Drop flow a policy denied (its PolicyVerdict may come with it).
fn is_denial_drop(flow: &Flow) -> bool {
    flow.event_type.as_ref().is_some_and(|e| e.r#type == 1)
        && flow.verdict == observer_proto::flow::Verdict::Dropped as i32
        && matches!(
            DropReason::try_from(flow.drop_reason_desc),
            Ok(DropReason::PolicyDenied | DropReason::PolicyDeny)
        )
}

/// Whether `drop` is the Drop of the denial `verdict` reported: the same
/// node and packet, at (about) the same time.
fn is_denial_pair(drop: &Flow, verdict: &Flow) -> bool {
    is_denial_drop(drop)
        && drop.node_name == verdict.node_name
        && drop.ip == verdict.ip
        && drop.l4 == verdict.l4
        && match (flow_ns(drop), flow_ns(verdict)) {
            (Some(d), Some(v)) => (d - v).abs() <= DENIAL_PAIR_WITHIN_NS,
            (None, None) => true,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::graph_flows as fixtures;

    /// A denial is two flows of one packet: its PolicyVerdict, then its
    /// Drop with the reason. The Drop counts it; a verdict whose Drop a
    /// filter left out counts it itself.
    #[test]
    fn a_denial_counts_once_with_its_drop_or_without() {
        let packet = fixtures::flows()[0].clone();
        // As flow-probe makes them: the verdict is the Drop's copy, its
        // reason too.
        let verdict = Flow {
            verdict: Verdict::Dropped as i32,
            event_type: Some(observer_proto::flow::CiliumEventType {
                r#type: 5,
                sub_type: 0,
            }),
            drop_reason_desc: DropReason::PolicyDenied as i32,
            ..packet.clone()
        };
        let drop = Flow {
            event_type: Some(observer_proto::flow::CiliumEventType {
                r#type: 1,
                sub_type: 133,
            }),
            ..verdict.clone()
        };
        let later = |f: &Flow| Flow {
            time: f.time.map(|t| prost_types::Timestamp {
                seconds: t.seconds + 1,
                ..t
            }),
            ..f.clone()
        };
        let counted = |flows: &[Flow]| {
            let g = GraphBuilder::build(flows);
            let e = g.find("default/frontend", "default/api").unwrap();
            (e.flows, e.verdicts.dropped, e.drops.clone())
        };
        let denied = |n| std::collections::BTreeMap::from([("POLICY_DENIED".to_string(), n)]);
        assert_eq!(counted(&[verdict.clone(), drop.clone()]), (1, 1, denied(1)));
        // Verdicts alone (`--type policy-verdict`): each counts, the last
        // one too.
        let next = later(&verdict);
        assert_eq!(counted(&[verdict.clone(), next.clone()]), (2, 2, denied(2)));
        // A Drop of another packet is no twin.
        assert_eq!(counted(&[verdict.clone(), later(&drop)]), (2, 2, denied(2)));
        // Cilium sends the two events microseconds apart; a sort of equal
        // times may put the Drop first; another node's flow may come
        // between them.
        let apart = Flow {
            time: drop.time.map(|t| prost_types::Timestamp {
                nanos: t.nanos + 30_000,
                ..t
            }),
            ..drop.clone()
        };
        assert_eq!(counted(&[verdict.clone(), apart]), (1, 1, denied(1)));
        assert_eq!(counted(&[drop.clone(), verdict.clone()]), (1, 1, denied(1)));
        let elsewhere = Flow {
            node_name: "node2".into(),
            ..later(&packet)
        };
        let g = GraphBuilder::build(&[verdict.clone(), elsewhere, drop.clone()]);
        let e = g.find("default/frontend", "default/api").unwrap();
        assert_eq!((e.flows, e.verdicts.dropped), (2, 1));
    }

    #[test]
    fn nodes_and_edges_of_the_scripted_traffic() {
        let g = GraphBuilder::build(&fixtures::flows());
        let nodes: Vec<&str> = g.nodes().iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            nodes,
            [
                "default/api",
                "default/frontend",
                "host",
                "kube-system/coredns-1",
                "world"
            ]
        );
        let edges: Vec<String> = g.edges().iter().map(|e| e.id()).collect();
        assert_eq!(
            edges,
            [
                "default/frontend->default/api",
                "default/frontend->kube-system/coredns-1",
                "default/frontend->world",
                "host->default/api"
            ]
        );
    }

    #[test]
    fn tcp_edge_counts_each_connection_once() {
        let g = GraphBuilder::build(&fixtures::flows());
        let e = g.find("default/frontend", "default/api").unwrap();
        // Connection 1 (8080): 3 requests at 2 points; connection 2 (9999,
        // refused): a SYN at 2 points. Replies add no flows.
        assert_eq!((e.flows, e.connections), (8, 2));
        // 2080 B / 8 packets at the largest report of connection 1, 100 B / 2
        // packets for the SYN + RST of connection 2.
        assert_eq!((e.bytes, e.packets), (2180, 10));
        // Each of the 4 request packets seen leaving frontend and arriving
        // at api: forwarded once.
        assert_eq!(
            e.verdicts,
            crate::Verdicts {
                forwarded: 4,
                ..Default::default()
            }
        );
        assert_eq!(e.ports.iter().collect::<Vec<_>>(), ["TCP/8080", "TCP/9999"]);
        assert_eq!(e.hops.path(), "from-endpoint (4) -> to-endpoint (4)");
        assert!(e.drops.is_empty());
    }

    /// A reply the kernel dropped (old data): a Drop flow, no reply bit, the
    /// server to the client. It counts as a drop on the connection's edge,
    /// and draws no reverse edge, port or connection.
    #[test]
    fn a_dropped_reply_counts_on_its_connections_edge() {
        let all = fixtures::flows();
        let reply = all
            .iter()
            .find(|f| f.is_reply == Some(true) && l4(f) == ("TCP", 8080, 40000))
            .expect("a reply of connection 1")
            .clone();
        let dropped = Flow {
            time: all.last().unwrap().time,
            is_reply: None,
            trace_observation_point: 0,
            ..denied(&reply)
        };
        let mut flows = all.clone();
        flows.push(dropped.clone());
        let g = GraphBuilder::build(&flows);
        let edges: Vec<String> = g.edges().iter().map(|e| e.id()).collect();
        assert!(
            !edges.contains(&"default/api->default/frontend".to_string()),
            "{edges:?}"
        );
        let e = g.find("default/frontend", "default/api").unwrap();
        assert_eq!((e.flows, e.connections, e.verdicts.dropped), (8, 2, 1));
        assert_eq!(e.drops.get("POLICY_DENIED"), Some(&1));
        // Alone (its connection unseen), it is drawn as it went.
        let g = GraphBuilder::build(&[dropped]);
        assert!(g.find("default/api", "default/frontend").is_some());
    }

    /// The client's egress policy allows its packet (a PolicyVerdict where
    /// it leaves its pod), then it arrives: forwarded once.
    #[test]
    fn an_egress_verdict_and_the_arrival_count_one_packet() {
        let all = fixtures::flows();
        let (left, arrived) = (all[8].clone(), all[9].clone());
        let allowed = Flow {
            event_type: Some(observer_proto::flow::CiliumEventType {
                r#type: 5,
                sub_type: 0,
            }),
            ..left
        };
        let g = GraphBuilder::build(&[allowed, arrived]);
        let e = g.find("default/frontend", "default/api").unwrap();
        assert_eq!(
            e.verdicts,
            crate::Verdicts {
                forwarded: 1,
                ..Default::default()
            }
        );
    }

    /// `arrived`'s packet dropped there instead, for want of a policy (a
    /// Drop flow: no observation point, no direction).
    fn denied(arrived: &Flow) -> Flow {
        Flow {
            verdict: Verdict::Dropped as i32,
            drop_reason_desc: DropReason::PolicyDenied as i32,
            event_type: Some(observer_proto::flow::CiliumEventType {
                r#type: 1,
                sub_type: 133,
            }),
            trace_observation_point: 0,
            is_reply: None,
            ..arrived.clone()
        }
    }

    /// A path policy denies: each SYN (and its retransmissions) is seen
    /// leaving frontend on node1 and dropped at api on node2. The edge reads
    /// all dropped, not half forwarded, whichever node's flow comes first;
    /// a packet seen only leaving stays forwarded.
    #[test]
    fn a_packet_dropped_at_its_destination_counts_once_as_dropped() {
        let all = fixtures::flows();
        let (left, arrived) = (all[8].clone(), all[9].clone());
        let dropped = denied(&arrived);
        let later = |f: &Flow, ms: i32| {
            let mut f = f.clone();
            f.time.as_mut().unwrap().nanos += ms * 1_000_000;
            f
        };
        let syns = |first: &Flow, second: &Flow| -> Vec<Flow> {
            (0..3)
                .flat_map(|i| [later(first, 200 * i), later(second, 200 * i)])
                .collect()
        };
        for flows in [syns(&left, &dropped), syns(&dropped, &left)] {
            let g = GraphBuilder::build(&flows);
            let e = g.find("default/frontend", "default/api").unwrap();
            assert_eq!(e.flows, 6);
            assert_eq!(
                e.verdicts,
                crate::Verdicts {
                    dropped: 3,
                    ..Default::default()
                }
            );
            assert_eq!(e.drops.get("POLICY_DENIED"), Some(&3));
        }
        // Two leave, one of them arrives: one forwarded where it arrived,
        // the other where it left.
        let g = GraphBuilder::build(&[left.clone(), later(&left, 200), later(&arrived, 300)]);
        let e = g.find("default/frontend", "default/api").unwrap();
        assert_eq!((e.flows, e.verdicts.forwarded), (3, 2));
    }

    /// Policy allows a SYN, then a packet filter in the receiving pod drops
    /// it (a kernel drop), and its retransmission too: two packets, both
    /// dropped, the drop last on the path. Before, the first read forwarded
    /// at its verdict and dropped, and the path read `drop -> policy-verdict`.
    #[test]
    fn a_kernel_drop_after_the_verdict_ends_that_packet() {
        let all = fixtures::flows();
        let left = all[8].clone();
        let at = |f: &Flow, ms: i32| {
            let mut f = f.clone();
            f.time.as_mut().unwrap().nanos += ms * 1_000_000;
            f
        };
        let allowed = Flow {
            event_type: Some(observer_proto::flow::CiliumEventType {
                r#type: 5,
                sub_type: 0,
            }),
            trace_observation_point: 0,
            ..all[9].clone()
        };
        let kernel_drop = Flow {
            kernel_drop: Some(observer_proto::observe::v1::KernelDrop {
                reason: 6,
                name: "NETFILTER_DROP".into(),
            }),
            ..denied(&all[9])
        };
        let g = GraphBuilder::build(&[
            at(&left, 1),
            at(&allowed, 2),
            at(&kernel_drop, 3),
            at(&left, 600),
            at(&kernel_drop, 601),
        ]);
        let e = g.find("default/frontend", "default/api").unwrap();
        assert_eq!(
            e.verdicts,
            crate::Verdicts {
                dropped: 2,
                ..Default::default()
            }
        );
        assert_eq!(e.drops.get("NETFILTER_DROP"), Some(&2));
        // Another kernel drop (old data, a full socket buffer) is of a
        // packet no event told: the one that arrived stays forwarded.
        let old_data = Flow {
            drop_reason_desc: DropReason::Unknown as i32,
            kernel_drop: Some(observer_proto::observe::v1::KernelDrop {
                reason: 108,
                name: "TCP_OLD_DATA".into(),
            }),
            ..kernel_drop.clone()
        };
        let g = GraphBuilder::build(&[at(&left, 1), at(&allowed, 2), at(&old_data, 3)]);
        let v = g.find("default/frontend", "default/api").unwrap().verdicts;
        assert_eq!((v.forwarded, v.dropped), (1, 1));
        assert_eq!(
            e.hops.path(),
            "from-endpoint (2) -> policy-verdict (1) -> drop (2)"
        );
    }

    /// A report of a connection's counters (flow-probe's, when it forgot an
    /// idle UDP stream) adds volume only: no flow, hop or verdict, so an
    /// audited or denied path does not read as forwarded.
    #[test]
    fn a_report_adds_volume_only() {
        let all = fixtures::flows();
        // The DNS query leaving frontend, then its stream's report from the
        // same side: 40 datagrams each way.
        let query = all[11].clone();
        let mut report = query.clone();
        report.trace_reason = TraceReason::Established as i32;
        report.time.as_mut().unwrap().seconds += 60;
        report.volume = Some(observer_proto::observe::v1::FlowVolume {
            fwd_bytes: 1600,
            fwd_packets: 40,
            rev_bytes: 4800,
            rev_packets: 40,
            first_packet: false,
            report: true,
            echo_id: 0,
        });
        let g = GraphBuilder::build(&[query.clone(), report.clone()]);
        let e = g.find("default/frontend", "kube-system/coredns-1").unwrap();
        assert_eq!(
            (e.flows, e.connections, e.bytes, e.packets),
            (1, 1, 6400, 80)
        );
        assert_eq!(
            e.verdicts,
            crate::Verdicts {
                forwarded: 1,
                ..Default::default()
            }
        );
        assert_eq!(e.hops.path(), "from-endpoint (1)");
        // A window holding its reports alone (the stream began before it):
        // what it carried from the first report on, and nothing seen.
        let mut next = report.clone();
        next.time.as_mut().unwrap().seconds += 10;
        next.volume.as_mut().unwrap().fwd_bytes += 1000;
        next.volume.as_mut().unwrap().rev_bytes += 2000;
        let g = GraphBuilder::build(&[report.clone()]);
        let e = g.find("default/frontend", "kube-system/coredns-1").unwrap();
        assert_eq!((e.flows, e.connections, e.bytes), (0, 1, 0));
        let g = GraphBuilder::build(&[report, next]);
        let e = g.find("default/frontend", "kube-system/coredns-1").unwrap();
        assert_eq!((e.flows, e.connections, e.bytes), (0, 1, 3000));
        assert_eq!(e.verdicts, crate::Verdicts::default());
        assert!(e.hops.is_empty());
    }

    /// The host probe's first packet from `port`, `micros` after T0, with
    /// the volume so far.
    fn first_packet(port: u32, micros: i64, bytes: u64) -> Flow {
        let mut f = probe_from_port(port, 0);
        f.time = Some(prost_types::Timestamp {
            seconds: fixtures::T0 + micros / 1_000_000,
            nanos: (micros % 1_000_000) as i32 * 1000,
        });
        f.trace_reason = TraceReason::New as i32;
        f.volume.as_mut().unwrap().fwd_bytes = bytes;
        f
    }

    #[test]
    fn the_same_five_tuple_again_later_is_another_connection() {
        let mut b = GraphBuilder::new();
        // One connection's first packet at two points, 1 ms apart, then an
        // established report with more volume.
        b.add(&first_packet(45_000, 0, 60));
        b.add(&first_packet(45_000, 1_000, 60));
        let mut later = probe_from_port(45_000, 1);
        later.volume.as_mut().unwrap().fwd_bytes = 500;
        b.add(&later);
        // The port used again 18 s later: another connection, volume added.
        b.add(&first_packet(45_000, 18_000_000, 60));
        b.add(&first_packet(45_000, 18_000_400, 60));
        let e = b.graph().find("host", "default/api").unwrap();
        assert_eq!((e.flows, e.connections, e.bytes), (5, 2, 560));
        // Without NEW (a report of the first connection), nothing begins.
        let mut again = probe_from_port(45_000, 30);
        again.volume.as_mut().unwrap().fwd_bytes = 60;
        again.volume.as_mut().unwrap().first_packet = false;
        b.add(&again);
        let e = b.graph().find("host", "default/api").unwrap();
        assert_eq!((e.flows, e.connections, e.bytes), (6, 2, 560));
        // A policy verdict has no trace reason: its volume's first packet
        // says a connection begins.
        let mut verdict = first_packet(45_000, 60_000_000, 60);
        verdict.trace_reason = TraceReason::Unknown as i32;
        verdict.event_type = Some(observer_proto::flow::CiliumEventType {
            r#type: 5,
            sub_type: 0,
        });
        verdict.volume.as_mut().unwrap().first_packet = true;
        b.add(&verdict);
        let e = b.graph().find("host", "default/api").unwrap();
        assert_eq!((e.flows, e.connections, e.bytes), (7, 3, 620));
    }

    #[test]
    fn udp_world_and_host_edges() {
        let g = GraphBuilder::build(&fixtures::flows());
        let dns = g.find("default/frontend", "kube-system/coredns-1").unwrap();
        assert_eq!(
            (dns.flows, dns.connections, dns.bytes, dns.packets),
            (2, 1, 160, 2)
        );
        assert_eq!(dns.ports.iter().collect::<Vec<_>>(), ["UDP/53"]);
        let world = g.find("default/frontend", "world").unwrap();
        assert_eq!((world.flows, world.connections, world.bytes), (2, 2, 120));
        assert_eq!((world.verdicts.forwarded, world.verdicts.dropped), (1, 1));
        assert_eq!(
            world.drops.iter().collect::<Vec<_>>(),
            [(&"POLICY_DENIED".to_string(), &1)]
        );
        assert_eq!(world.hops.path(), "from-endpoint (1) -> drop (1)");
        let host = g.find("host", "default/api").unwrap();
        assert_eq!((host.flows, host.bytes), (1, 60));
        assert_eq!(g.node_totals("default/frontend"), (12, 2460));
        assert_eq!(g.node_totals("default/api"), (9, 2240));
    }

    #[test]
    fn reply_seen_before_its_request_still_counts_once() {
        let mut flows = fixtures::flows();
        // Move the first SYN-ACK reply ahead of everything.
        let reply = flows.remove(2);
        flows.insert(0, reply);
        let g = GraphBuilder::build(&flows);
        assert_eq!(
            g.find("default/frontend", "default/api").unwrap().bytes,
            2180
        );
    }

    #[test]
    fn window_drops_edges_not_seen_recently() {
        let mut b = GraphBuilder::with_window(Duration::from_secs(10));
        for f in fixtures::flows() {
            b.add(&f);
        }
        assert_eq!(b.graph().edges().len(), 4);
        let mut late = fixtures::host_probe();
        late.time = Some(prost_types::Timestamp {
            seconds: fixtures::T0 + 15,
            nanos: 0,
        });
        b.add(&late);
        let edges: Vec<String> = b.graph().edges().iter().map(|e| e.id()).collect();
        assert_eq!(edges, ["host->default/api"]);
        let nodes: Vec<&str> = b.graph().nodes().iter().map(|n| n.id.as_str()).collect();
        assert_eq!(nodes, ["default/api", "host"]);
        assert_eq!(b.graph().find("host", "default/api").unwrap().flows, 2);
        // Only the host probe's connection is left to track.
        assert_eq!(b.connections(), 1);
        b.prune(UNIX_EPOCH + Duration::from_secs(fixtures::T0 as u64 + 30));
        assert!(b.graph().is_empty());
        assert_eq!(b.connections(), 0);
    }

    /// The host probe from source port `port`, `secs` after T0.
    fn probe_from_port(port: u32, secs: i64) -> Flow {
        let mut f = fixtures::host_probe();
        f.time = Some(prost_types::Timestamp {
            seconds: fixtures::T0 + secs,
            nanos: 0,
        });
        match f.l4.as_mut().and_then(|l| l.protocol.as_mut()) {
            Some(Protocol::Tcp(t)) => t.source_port = port,
            other => panic!("the host probe is TCP, got {other:?}"),
        }
        f
    }

    #[test]
    fn connection_cap_forgets_the_least_recently_seen() {
        let mut b = GraphBuilder::with_window(Duration::from_secs(300)).with_max_connections(8);
        for i in 0..20 {
            b.add(&probe_from_port(30_000 + i, i64::from(i)));
        }
        // At the cap (8) a new connection first evicts down to 8 - 8/8 - 1 = 6.
        assert!(b.connections() <= 8, "{} tracked", b.connections());
        assert_eq!(b.connections() as u64 + b.forgotten(), 20);
        let e = b.graph().find("host", "default/api").unwrap();
        assert_eq!((e.connections, e.flows, e.bytes), (20, 20, 20 * 60));
        // The newest connection is still tracked: seeing it again adds nothing.
        b.add(&probe_from_port(30_019, 20));
        let e = b.graph().find("host", "default/api").unwrap();
        assert_eq!((e.connections, e.flows, e.bytes), (20, 21, 20 * 60));
        // The oldest was forgotten: it counts as a new connection again.
        b.add(&probe_from_port(30_000, 21));
        let e = b.graph().find("host", "default/api").unwrap();
        assert_eq!((e.connections, e.flows, e.bytes), (21, 22, 21 * 60));
    }

    #[test]
    fn forgetting_keeps_exactly_the_newest_even_with_equal_times() {
        let mut b = GraphBuilder::new().with_max_connections(4);
        for i in 0..4 {
            b.add(&probe_from_port(30_000 + i, 0));
        }
        assert_eq!((b.connections(), b.forgotten()), (4, 0));
        // A fifth: evict to 4 - 0 - 1 = 3 (one of the four equal-time ones), then add.
        b.add(&probe_from_port(30_004, 1));
        assert_eq!((b.connections(), b.forgotten()), (4, 1));
        // The newest survives the next eviction.
        b.add(&probe_from_port(30_005, 2));
        assert_eq!((b.connections(), b.forgotten()), (4, 2));
        b.add(&probe_from_port(30_005, 3));
        let e = b.graph().find("host", "default/api").unwrap();
        assert_eq!(e.connections, 6);
    }

    #[test]
    fn lifecycle_reports_and_socket_translations_add_no_connections() {
        let flows = fixtures::flows();
        let before = GraphBuilder::build(&flows);
        let e = before.find("default/frontend", "default/api").unwrap();
        let (conns, nflows, verdicts) = (e.connections, e.flows, e.verdicts);
        let mut more = flows.clone();
        // The server's "TCP established": local (api) to remote (frontend).
        let mut life = flows[0].clone();
        life.source = flows[0].destination.clone();
        life.destination = flows[0].source.clone();
        life.is_reply = None;
        life.tcp_lifecycle = Some(Default::default());
        more.push(life);
        // connect() to the VIP, translated: the backend's address, service port.
        let mut sock = fixtures::sock_translation(
            observer_proto::flow::SocketTranslationPoint::SockXlatePointUnknown,
            Verdict::Translated,
        );
        if let Some(Protocol::Tcp(t)) = sock.l4.as_mut().and_then(|l| l.protocol.as_mut()) {
            t.destination_port = 80;
        }
        // Its pre-translation twin (the same connect, to the VIP) counts
        // nothing.
        let pre = Flow {
            sock_xlate_point:
                observer_proto::flow::SocketTranslationPoint::SockXlatePointPreDirectionFwd as i32,
            verdict: observer_proto::flow::Verdict::Traced as i32,
            ..sock.clone()
        };
        more.push(sock.clone());
        more.push(pre);
        // A reply's reverse translation (recvmsg of a UDP answer: backend
        // shown as the service, to the client): an answer, no request edge.
        let reverse = Flow {
            source: flows[0].destination.clone(),
            destination: flows[0].source.clone(),
            sock_xlate_point:
                observer_proto::flow::SocketTranslationPoint::SockXlatePointPostDirectionRev as i32,
            ..sock.clone()
        };
        more.push(reverse);
        let g = GraphBuilder::build(&more);
        assert!(g.find("default/api", "default/frontend").is_none());
        let e = g.find("default/frontend", "default/api").unwrap();
        assert_eq!((e.connections, e.flows), (conns, nflows + 1));
        assert!(e.ports.contains("TCP/80"));
        assert!(e.hops.path().starts_with("trace-sock (1) -> from-endpoint"));
        // A translation is no packet: no verdict (it read as `other`).
        assert_eq!(e.verdicts, verdicts);
        // A connect() dropped for want of a backend keeps its verdict.
        let no_backend = Flow {
            verdict: observer_proto::flow::Verdict::Dropped as i32,
            drop_reason_desc: DropReason::ServiceBackendNotFound as i32,
            sock_xlate_point:
                observer_proto::flow::SocketTranslationPoint::SockXlatePointPreDirectionFwd as i32,
            ..sock.clone()
        };
        let g = GraphBuilder::build(&[no_backend]);
        let e = g.find("default/frontend", "default/api").unwrap();
        assert_eq!((e.verdicts.dropped, e.verdicts.other), (1, 0));
        assert_eq!(e.drops.get("SERVICE_BACKEND_NOT_FOUND"), Some(&1));
    }

    /// Selected by service (`--to-service default/api`), a stream holds the
    /// connects to the VIP only: counted when asked, they draw the client's
    /// edge to the service; by default they count nothing.
    #[test]
    fn pre_translations_count_when_the_stream_was_selected_by_service() {
        let mut pre = fixtures::sock_translation(
            observer_proto::flow::SocketTranslationPoint::SockXlatePointPreDirectionFwd,
            Verdict::Traced,
        );
        pre.destination = None;
        pre.destination_service = Some(observer_proto::flow::Service {
            name: "api".into(),
            namespace: "default".into(),
        });
        assert!(GraphBuilder::build(&[pre.clone()]).edges().is_empty());
        let mut b = GraphBuilder::new().counting_pre_translations();
        b.add(&pre);
        b.add(&pre);
        let g = b.into_graph();
        assert_eq!(g.edges().len(), 1);
        let e = g.find("default/frontend", "default/api").unwrap();
        assert_eq!((e.flows, e.connections), (2, 0));
        assert!(
            e.hops.path().starts_with("trace-sock (2)"),
            "{}",
            e.hops.path()
        );
        assert_eq!(e.verdicts.other + e.verdicts.forwarded, 0, "no packet");
    }

    /// Neighbour discovery between two addresses no endpoint file names
    /// drew world -> world edges in every IPv6 lab; an echo request still
    /// draws its edge.
    #[test]
    fn neighbour_discovery_draws_no_edge() {
        use observer_proto::flow::{IcmPv6, Layer4};
        let icmp6 = |r#type: u32| {
            let mut f = fixtures::flows()[0].clone();
            f.l4 = Some(Layer4 {
                protocol: Some(Protocol::IcmPv6(IcmPv6 { r#type, code: 0 })),
            });
            f
        };
        let ndp: Vec<Flow> = [133, 134, 135, 136, 143].map(icmp6).to_vec();
        let g = GraphBuilder::build(&ndp);
        assert!(g.edges().is_empty(), "{:?}", g.edges().len());
        let g = GraphBuilder::build(&[icmp6(128)]);
        let e = g.find("default/frontend", "default/api").unwrap();
        assert_eq!(
            (e.flows, e.ports.iter().next().map(String::as_str)),
            (1, Some("ICMPv6"))
        );
    }
}
