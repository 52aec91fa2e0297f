//! Label values as Hubble's metrics handlers name them: event type and sub-type,
//! L4 protocol, policy match type, ICMP type, lost-event source; verdicts and
//! drop reasons by [`observer_proto::names`].

use std::borrow::Cow;

use observer_proto::flow::{Flow, LostEventSource, TrafficDirection, Verdict, layer4::Protocol};
use observer_proto::names;

/// Cilium's monitor message types (`Flow.event_type.type`).
pub mod message {
    pub const DROP: i32 = 1;
    pub const CAPTURE: i32 = 3;
    pub const TRACE: i32 = 4;
    pub const POLICY_VERDICT: i32 = 5;
    pub const ACCESS_LOG: i32 = 129;
}

/// `type` and `subtype` of `hubble_flows_processed_total`: "Trace" with the
/// observation point, "Drop", "PolicyVerdict", "Capture", "L7", else "Unknown"
/// with the message type number as sub-type.
pub fn event_type(flow: &Flow) -> (&'static str, Cow<'static, str>) {
    let (ty, sub) = flow
        .event_type
        .as_ref()
        .map_or((0, 0), |e| (e.r#type, e.sub_type));
    let none = Cow::Borrowed("");
    match ty {
        message::ACCESS_LOG => ("L7", none),
        message::DROP => ("Drop", none),
        message::CAPTURE => ("Capture", none),
        message::TRACE => (
            "Trace",
            Cow::Borrowed(observer_proto::names::trace_sub_type(sub).unwrap_or("")),
        ),
        message::POLICY_VERDICT => ("PolicyVerdict", none),
        other => ("Unknown", Cow::Owned(other.to_string())),
    }
}

/// A number that determines the labels of `hubble_flows_processed_total`
/// (event type, sub-type, verdict, protocol) as [`event_type`], [`verdict`]
/// and [`protocol`] derive them (from the event type and the L4 record's
/// kind): equal ids, equal label values.
pub fn flows_processed_id(flow: &Flow) -> u64 {
    let (ty, sub) = flow
        .event_type
        .as_ref()
        .map_or((0, 0), |e| (e.r#type, e.sub_type));
    // The sub-type counts only for traces, and only if it has a name.
    let sub = match ty {
        message::TRACE if observer_proto::names::trace_sub_type(sub).is_some() => sub as u8,
        _ => 0xFF,
    };
    let verdict = Verdict::try_from(flow.verdict).unwrap_or(Verdict::Unknown) as u8;
    let protocol: u8 = match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(_)) => 1,
        Some(Protocol::Udp(_)) => 2,
        Some(Protocol::IcmPv4(_)) => 3,
        Some(Protocol::IcmPv6(_)) => 4,
        Some(Protocol::Sctp(_)) => 5,
        None => 0,
    };
    u64::from(ty as u32)
        | u64::from(sub) << 32
        | u64::from(verdict) << 40
        | u64::from(protocol) << 48
}

/// Hubble's `FlowProtocol`: for a drop, trace, policy verdict or capture
/// the L4 protocol's name ("Unknown L4" without one); "Unknown L7" for an
/// access log (we carry no L7 record); "Unknown flow" for every other event
/// type, such as a socket translation (type 7) or a TCP lifecycle report.
pub fn protocol(flow: &Flow) -> &'static str {
    let ty = flow.event_type.as_ref().map_or(0, |e| e.r#type);
    match ty {
        message::DROP | message::TRACE | message::POLICY_VERDICT | message::CAPTURE => {
            l4_name(flow).unwrap_or("Unknown L4")
        }
        message::ACCESS_LOG => "Unknown L7",
        _ => "Unknown flow",
    }
}

/// The L4 record's protocol name, whatever the event type (as
/// `hubble_port_distribution_total` names it).
pub fn l4_name(flow: &Flow) -> Option<&'static str> {
    Some(match flow.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(_) => "TCP",
        Protocol::Udp(_) => "UDP",
        Protocol::IcmPv4(_) => "ICMPv4",
        Protocol::IcmPv6(_) => "ICMPv6",
        Protocol::Sctp(_) => "SCTP",
    })
}

/// The verdict's enum name, e.g. "FORWARDED" ([`names::verdict`]); a number
/// outside the enum is `VERDICT_UNKNOWN`, as [`key`] counts it.
pub fn verdict(flow: &Flow) -> &'static str {
    names::verdict(Verdict::try_from(flow.verdict).unwrap_or(Verdict::Unknown) as i32)
}

/// The verdict in lower case, as `action` of `hubble_policy_verdicts_total`.
pub fn verdict_lower(flow: &Flow) -> &'static str {
    names::verdict_lower(flow.verdict)
}

/// The drop reason's enum name; a number outside the enum is
/// `DROP_REASON_UNKNOWN`.
pub fn drop_reason(flow: &Flow) -> &'static str {
    names::drop_reason(flow.drop_reason_desc).unwrap_or("DROP_REASON_UNKNOWN")
}

/// The traffic direction's enum name in lower case, e.g. "ingress".
pub fn direction(flow: &Flow) -> &'static str {
    match flow.traffic_direction() {
        TrafficDirection::Ingress => "ingress",
        TrafficDirection::Egress => "egress",
        TrafficDirection::Unknown => "traffic_direction_unknown",
    }
}

/// Which end of one direction of a flow's connection observed it, for the
/// volume metrics: `source` where the observing endpoint sent those bytes,
/// `destination` where it received them (`reversed`: the flow's
/// destination-to-source direction). A connection between two observed
/// endpoints is counted at both ends; a sum over one of them counts it
/// once, and traffic from or to an unobserved peer (world) is counted at
/// the one end there is.
pub fn observed_at(flow: &Flow, reversed: bool) -> &'static str {
    // The connection's direction says whether the observing endpoint opened
    // it (egress) or answered (ingress); a reply's source is the answerer.
    let from_opener = (flow.is_reply != Some(true)) != reversed;
    match (flow.traffic_direction(), from_opener) {
        (TrafficDirection::Egress, true) | (TrafficDirection::Ingress, false) => "source",
        (TrafficDirection::Egress, false) | (TrafficDirection::Ingress, true) => "destination",
        (TrafficDirection::Unknown, _) => "unknown",
    }
}

/// Cilium's policy match types, lower case as in `hubble_policy_verdicts_total`.
pub fn match_type(m: u32) -> &'static str {
    match m {
        0 => "none",
        1 => "l3-only",
        2 => "l3-l4",
        3 => "l4-only",
        4 => "all",
        5 => "l3-proto",
        6 => "proto-only",
        _ => "unknown",
    }
}

/// The `type` label of an ICMPv4 message, as Hubble's icmp handler writes it
/// (`EchoRequest`, `DestinationUnreachable(Port)`).
pub fn icmp4_type(t: u32, code: u32) -> Cow<'static, str> {
    Cow::Owned(observer_proto::hubble_text::icmp4_type_code(t, code))
}

/// The `type` label of an ICMPv6 message, as Hubble's icmp handler writes it
/// (`NeighborSolicitation`, `143(0)` for an MLDv2 report).
pub fn icmp6_type(t: u32, code: u32) -> Cow<'static, str> {
    Cow::Owned(observer_proto::hubble_text::icmp6_type_code(t, code))
}

/// `source` of `hubble_lost_events_total`: the enum name in lower case, e.g.
/// "perf_event_ring_buffer".
pub fn lost_source(source: LostEventSource) -> String {
    source.as_str_name().to_ascii_lowercase()
}
