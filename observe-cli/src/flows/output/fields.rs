//! The fields of the `dict` and `table` formats, as Hubble's printer fills them:
//! hosts without identities (`namespace/pod:port`, else service, DNS names or
//! IP) in capture order, and a flow TYPE from the event type; and the pieces
//! every format reads (node, ports, lost-events source).

use observer_proto::flow::{
    Endpoint, Flow, LostEvent, LostEventSource, Policy, Service, SocketTranslationPoint,
    TrafficDirection, Verdict, layer4::Protocol,
};
use observer_proto::names;
use observer_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};

use super::escape::escape_controls;
use super::time::{TimeFormat, timestamp_as};

/// One flow (or lost-events notice) as the columns of `dict` and `table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub time: String,
    pub node: String,
    pub source: String,
    pub destination: String,
    pub kind: String,
    pub verdict: String,
    pub summary: String,
}

/// The row of a flow or lost-events response; `None` for node status and
/// empty responses.
pub fn row(resp: &GetFlowsResponse, time: TimeFormat, policies: bool) -> Option<Row> {
    let timestamp = |t| timestamp_as(t, time);
    match resp.response_types.as_ref()? {
        ResponseTypes::Flow(f) => {
            let (source, destination) = hosts(f);
            Some(Row {
                time: timestamp(f.time.as_ref()),
                node: node_name(resp),
                source,
                destination,
                kind: flow_type(f),
                verdict: verdict_by(f, policies),
                summary: escape_controls(&f.summary).into_owned(),
            })
        }
        // Hubble's layout: the source where the events were lost.
        ResponseTypes::LostEvents(l) => Some(Row {
            time: timestamp(resp.time.as_ref()),
            node: node_name(resp),
            source: lost_source(l.source).to_string(),
            destination: String::new(),
            kind: "EVENTS LOST".to_string(),
            verdict: String::new(),
            summary: lost_count(l, " - "),
        }),
        ResponseTypes::NodeStatus(_) => None,
    }
}

/// The node that saw a flow: the flow's own, else the response's (its
/// control characters shown as text).
pub fn node_name(resp: &GetFlowsResponse) -> String {
    let name = match resp.response_types.as_ref() {
        Some(ResponseTypes::Flow(f)) if !f.node_name.is_empty() => &f.node_name,
        _ => &resp.node_name,
    };
    escape_controls(name).into_owned()
}

/// The name of a lost-events source, `UNKNOWN` when out of range.
pub fn lost_source(source: i32) -> &'static str {
    LostEventSource::try_from(source)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
}

/// What a lost-events notice says after its source: `CPU(3) 42` in compact
/// (`sep` " "), `CPU(3) - 42` in dict and table (`sep` " - "), as Hubble
/// prints it; the count alone when the server names no CPU (a ring shared
/// by every CPU, as ours).
pub fn lost_count(l: &LostEvent, sep: &str) -> String {
    match l.cpu {
        Some(cpu) => format!("CPU({cpu}){sep}{}", l.num_events_lost),
        None => l.num_events_lost.to_string(),
    }
}

/// (source port, destination port) of a TCP, UDP or SCTP flow.
pub fn ports(f: &Flow) -> (Option<u32>, Option<u32>) {
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => (Some(t.source_port), Some(t.destination_port)),
        Some(Protocol::Udp(u)) => (Some(u.source_port), Some(u.destination_port)),
        Some(Protocol::Sctp(s)) => (Some(s.source_port), Some(s.destination_port)),
        _ => (None, None),
    }
}

/// (source, destination) as Hubble's table and dict print them; a flow
/// without IP (ARP, say) by its Ethernet addresses.
pub fn hosts(f: &Flow) -> (String, String) {
    painted_hosts(f, &|port| port.to_string())
}

/// [`hosts`], each port as `port` writes it (coloured, in compact).
pub fn painted_hosts(f: &Flow, port: &dyn Fn(u32) -> String) -> (String, String) {
    // Port 0 is none, as Hubble leaves it out.
    let (sport, dport) = ports(f);
    let (sport, dport) = (sport.filter(|p| *p != 0), dport.filter(|p| *p != 0));
    let ip = f.ip.as_ref();
    if let (None, Some(eth)) = (ip, f.ethernet.as_ref()) {
        let mac = |m: &str| escape_controls(m).into_owned();
        return (mac(&eth.source), mac(&eth.destination));
    }
    (
        host(
            f.source.as_ref(),
            f.source_service.as_ref(),
            &f.source_names,
            ip.map(|i| i.source.as_str()).unwrap_or(""),
            sport.map(port),
        ),
        host(
            f.destination.as_ref(),
            f.destination_service.as_ref(),
            &f.destination_names,
            ip.map(|i| i.destination.as_str()).unwrap_or(""),
            dport.map(port),
        ),
    )
}

fn host(
    ep: Option<&Endpoint>,
    svc: Option<&Service>,
    names: &[String],
    ip: &str,
    port: Option<String>,
) -> String {
    let join = |ns: &str, name: &str| {
        if ns.is_empty() {
            name.to_string()
        } else {
            format!("{ns}/{name}")
        }
    };
    let host = match (ep, svc) {
        (Some(e), _) if !e.pod_name.is_empty() => join(&e.namespace, &e.pod_name),
        (_, Some(s)) if !s.name.is_empty() => join(&s.namespace, &s.name),
        _ if !names.is_empty() => names.join(","),
        _ => ip.to_string(),
    };
    let host = escape_controls(&host);
    match port {
        Some(p) if host.contains(':') => format!("[{host}]:{p}"),
        Some(p) => format!("{host}:{p}"),
        None => host.into_owned(),
    }
}

/// The TYPE of our TCP lifecycle reports, which have no event type.
pub const TCP_LIFECYCLE: &str = "tcp-lifecycle";

/// Hubble's flow TYPE column: the trace point of a trace (its sub-type), the
/// drop reason of a drop (Cilium's text), `policy-verdict:MATCH DIRECTION`
/// of a policy verdict, the translation point of a socket event,
/// `tcp-lifecycle` for our TCP lifecycle reports (no event type: Hubble
/// prints `UNKNOWN` there), else `UNKNOWN`.
pub fn flow_type(f: &Flow) -> String {
    let (ty, sub) = f
        .event_type
        .as_ref()
        .map(|e| (e.r#type, e.sub_type))
        .unwrap_or((0, 0));
    match ty {
        4 => names::trace_sub_type(sub)
            .map(str::to_string)
            .unwrap_or_else(|| sub.to_string()),
        1 => observer_proto::hubble_text::drop_reason_text(sub),
        5 => format!(
            "policy-verdict:{} {}",
            policy_match(f.policy_match_type),
            f.traffic_direction().as_str_name()
        ),
        7 => match SocketTranslationPoint::try_from(f.sock_xlate_point) {
            Ok(SocketTranslationPoint::SockXlatePointPreDirectionFwd) => "pre-xlate-fwd".into(),
            Ok(SocketTranslationPoint::SockXlatePointPostDirectionFwd) => "post-xlate-fwd".into(),
            Ok(SocketTranslationPoint::SockXlatePointPreDirectionRev) => "pre-xlate-rev".into(),
            Ok(SocketTranslationPoint::SockXlatePointPostDirectionRev) => "post-xlate-rev".into(),
            _ => "SOCK_XLATE_POINT_UNKNOWN".into(),
        },
        _ if f.tcp_lifecycle.is_some() => TCP_LIFECYCLE.to_string(),
        _ => "UNKNOWN".to_string(),
    }
}

/// Hubble's VERDICT column: the verdict's name, or for a policy verdict
/// `ALLOWED`, `DENIED` or `AUDITED`.
pub fn verdict(f: &Flow) -> &'static str {
    let policy = f.event_type.as_ref().is_some_and(|e| e.r#type == 5);
    match Verdict::try_from(f.verdict) {
        Ok(Verdict::Forwarded | Verdict::Redirected) if policy => "ALLOWED",
        Ok(Verdict::Dropped | Verdict::Error) if policy => "DENIED",
        Ok(Verdict::Audit) if policy => "AUDITED",
        _ => names::verdict(f.verdict),
    }
}

/// [`verdict`], and with `policies` (`--print-policy-names`) a policy
/// verdict's deciders after it, as Hubble prints them: `DENIED BY name
/// (kind), …`, from its direction's allowed or denied list (an audit from
/// either). A default deny has no policy to name.
pub fn verdict_by(f: &Flow, policies: bool) -> String {
    let name = verdict(f);
    let policy = f.event_type.as_ref().is_some_and(|e| e.r#type == 5);
    if !policies || !policy {
        return name.to_string();
    }
    let ingress = f.traffic_direction == TrafficDirection::Ingress as i32;
    let (allowed, denied) = if ingress {
        (&f.ingress_allowed_by, &f.ingress_denied_by)
    } else {
        (&f.egress_allowed_by, &f.egress_denied_by)
    };
    let deciders: Vec<&Policy> = match name {
        "ALLOWED" => allowed.iter().collect(),
        "DENIED" => denied.iter().collect(),
        "AUDITED" => denied.iter().chain(allowed).collect(),
        _ => Vec::new(),
    };
    // A policy without a kind (from another server, or history written
    // before kinds were restored): the name alone then.
    let named: Vec<String> = deciders
        .into_iter()
        .filter(|p| !p.name.is_empty())
        .map(|p| match p.kind.as_str() {
            "" => escape_controls(&p.name).into_owned(),
            kind => format!("{} ({})", escape_controls(&p.name), escape_controls(kind)),
        })
        .collect();
    if named.is_empty() {
        name.to_string()
    } else {
        format!("{name} BY {}", named.join(", "))
    }
}

/// Cilium's policy match types, as `hubble observe` names them.
fn policy_match(m: u32) -> &'static str {
    match m {
        0 => "none",
        1 => "L3-Only",
        2 => "L3-L4",
        3 => "L4-Only",
        4 => "all",
        5 => "L3-Proto",
        6 => "Proto-Only",
        _ => "unknown",
    }
}
