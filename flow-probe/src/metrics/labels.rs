//! Label values as Hubble's metrics handlers name them: event type and sub-type,
//! L4 protocol, policy match type, ICMP type, lost-event source.

use observer_proto::flow::{Flow, LostEventSource, Verdict, layer4::Protocol};

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
pub fn event_type(flow: &Flow) -> (&'static str, String) {
    let (ty, sub) = flow
        .event_type
        .as_ref()
        .map_or((0, 0), |e| (e.r#type, e.sub_type));
    match ty {
        message::ACCESS_LOG => ("L7", String::new()),
        message::DROP => ("Drop", String::new()),
        message::CAPTURE => ("Capture", String::new()),
        message::TRACE => (
            "Trace",
            observer_proto::names::trace_sub_type(sub).map_or_else(String::new, str::to_string),
        ),
        message::POLICY_VERDICT => ("PolicyVerdict", String::new()),
        other => ("Unknown", other.to_string()),
    }
}

/// Hubble's `FlowProtocol`: the L4 protocol name, "Unknown" without L4.
pub fn protocol(flow: &Flow) -> &'static str {
    match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(_)) => "TCP",
        Some(Protocol::Udp(_)) => "UDP",
        Some(Protocol::IcmPv4(_)) => "ICMPv4",
        Some(Protocol::IcmPv6(_)) => "ICMPv6",
        _ => "Unknown",
    }
}

/// The verdict's enum name, e.g. "FORWARDED".
pub fn verdict(flow: &Flow) -> &'static str {
    Verdict::try_from(flow.verdict)
        .unwrap_or(Verdict::Unknown)
        .as_str_name()
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

/// ICMPv4 type names (code 0), as Hubble's icmp handler prints them.
pub fn icmp4_type(t: u32) -> String {
    match t {
        0 => "EchoReply".into(),
        3 => "DestinationUnreachable".into(),
        4 => "SourceQuench".into(),
        5 => "Redirect".into(),
        8 => "EchoRequest".into(),
        11 => "TimeExceeded".into(),
        12 => "ParameterProblem".into(),
        13 => "Timestamp".into(),
        14 => "TimestampReply".into(),
        other => other.to_string(),
    }
}

/// ICMPv6 type names.
pub fn icmp6_type(t: u32) -> String {
    match t {
        1 => "DestinationUnreachable".into(),
        2 => "PacketTooBig".into(),
        3 => "TimeExceeded".into(),
        4 => "ParameterProblem".into(),
        128 => "EchoRequest".into(),
        129 => "EchoReply".into(),
        133 => "RouterSolicitation".into(),
        134 => "RouterAdvertisement".into(),
        135 => "NeighborSolicitation".into(),
        136 => "NeighborAdvertisement".into(),
        other => other.to_string(),
    }
}

/// `source` of `hubble_lost_events_total`: the enum name in lower case, e.g.
/// "perf_event_ring_buffer".
pub fn lost_source(source: LostEventSource) -> String {
    source.as_str_name().to_ascii_lowercase()
}
