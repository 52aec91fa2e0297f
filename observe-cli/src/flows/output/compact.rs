//! The `compact` format: one line per flow, as `hubble observe` prints it, with
//! the client on the left and the verdict coloured when asked.

use observer_proto::flow::{Endpoint, Flow};
use observer_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use observer_proto::relay::NodeState;

use super::Options;
use super::color::{paint_host, paint_identity, paint_port, paint_verdict};
use super::escape::escape_controls;
use super::fields::{flow_type, lost_count, lost_source, node_name, painted_hosts, verdict_by};
use super::time::{TimeFormat, timestamp_as};

/// One response as a compact line (without newline); `None` for an empty one.
pub fn compact(resp: &GetFlowsResponse, o: &Options) -> Option<String> {
    let timestamp = |t| timestamp_as(t, o.time);
    let node = if o.print_node {
        format!(" [{}]", node_name(resp))
    } else {
        String::new()
    };
    match resp.response_types.as_ref()? {
        ResponseTypes::Flow(f) => Some(format!(
            "{}{node}: {}",
            timestamp(f.time.as_ref()),
            line(f, o.color, o.print_policies)
        )),
        ResponseTypes::LostEvents(l) => Some(format!(
            "{}{node}: EVENTS LOST: {} {}",
            timestamp(resp.time.as_ref()),
            lost_source(l.source),
            lost_count(l, " ")
        )),
        ResponseTypes::NodeStatus(_) => Some(node_status(resp, o.time)),
    }
}

/// Node names in a status line: as many as fit in about 50 characters (one
/// at least), then `(and N more)`, as Hubble cuts them.
fn joined_names(names: &[String]) -> String {
    const CUT_OFF: usize = 50;
    let mut len = 0;
    let mut end = names.len();
    for (i, name) in names.iter().enumerate() {
        len += name.len() + 2;
        if len > CUT_OFF && i > 0 {
            end = i;
            break;
        }
    }
    let joined = escape_controls(&names[..end].join(", ")).into_owned();
    match names.len() - end {
        0 => joined,
        more => format!("{joined} (and {more} more)"),
    }
}

/// A node status as Hubble's compact and table formats tell it (on stderr):
/// `time [relay]: 1 nodes are unavailable: node2` (the node that tells it in
/// brackets, when named), `Receiving flows from 2
/// nodes: …`, `… nodes removed from cluster: …`, `Error "message" on 1
/// nodes: …`. The server's reason, when it gives one for an unavailable,
/// gone or connected node, follows in parentheses.
pub fn node_status(resp: &GetFlowsResponse, time: TimeFormat) -> String {
    let Some(ResponseTypes::NodeStatus(n)) = resp.response_types.as_ref() else {
        return String::new();
    };
    let mut prefix = timestamp_as(resp.time.as_ref(), time);
    if !resp.node_name.is_empty() {
        prefix += &format!(" [{}]", escape_controls(&resp.node_name));
    }
    let (count, names) = (n.node_names.len(), joined_names(&n.node_names));
    let reason = if n.message.is_empty() {
        String::new()
    } else {
        format!(" ({})", escape_controls(&n.message))
    };
    match NodeState::try_from(n.state_change) {
        Ok(NodeState::NodeConnected) => {
            format!("{prefix}: Receiving flows from {count} nodes: {names}{reason}")
        }
        Ok(NodeState::NodeUnavailable) => {
            format!("{prefix}: {count} nodes are unavailable: {names}{reason}")
        }
        Ok(NodeState::NodeGone) => {
            format!("{prefix}: {count} nodes removed from cluster: {names}{reason}")
        }
        Ok(NodeState::NodeError) => {
            format!("{prefix}: Error {:?} on {count} nodes: {names}", n.message)
        }
        Ok(NodeState::UnknownNodeState) | Err(_) => format!(
            "{prefix}: unknown node status event: state {}, nodes {names}{reason}",
            n.state_change
        ),
    }
}

/// A node status as Hubble's dict format tells it: `TIMESTAMP`, `STATE`,
/// `NODES` and the quoted `MESSAGE` (`N/A` without one).
pub fn node_status_block(resp: &GetFlowsResponse, time: TimeFormat) -> String {
    let Some(ResponseTypes::NodeStatus(n)) = resp.response_types.as_ref() else {
        return String::new();
    };
    let state = NodeState::try_from(n.state_change)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| n.state_change.to_string());
    let message = if n.message.is_empty() {
        "N/A".to_string()
    } else {
        format!("{:?}", n.message)
    };
    format!(
        "  TIMESTAMP: {}\n      STATE: {state}\n      NODES: {}\n    MESSAGE: {message}\n",
        timestamp_as(resp.time.as_ref(), time),
        joined_names(&n.node_names)
    )
}

/// `src (identity) -> dst (identity) TYPE VERDICT (summary)` as `hubble
/// observe -o compact` prints it: replies server-first with `<-` so the
/// client stays on the left, `<>` when the direction is unknown (drops,
/// socket and lifecycle events).
pub fn flow_line(f: &Flow) -> String {
    styled_flow_line(f, false)
}

/// [`flow_line`], with the verdict coloured when `color`.
pub fn styled_flow_line(f: &Flow, color: bool) -> String {
    line(f, color, false)
}

/// The line, with a policy verdict's deciders when `policies`.
fn line(f: &Flow, color: bool, policies: bool) -> String {
    let (src_host, dst_host) = painted_hosts(f, &|port| paint_port(port, color));
    let side = |host: &str, ep: Option<&Endpoint>| {
        format!(
            "{} {}",
            paint_host(host, color),
            paint_identity(&identity(ep), color)
        )
    };
    let src = side(&src_host, f.source.as_ref());
    let dst = side(&dst_host, f.destination.as_ref());
    let (left, arrow, right) = match f.is_reply {
        Some(true) => (dst, "<-", src),
        Some(false) => (src, "->", dst),
        None => (src, "<>", dst),
    };
    let verdict = paint_verdict(&verdict_by(f, policies), color);
    format!(
        "{left} {arrow} {right} {} {verdict} ({})",
        flow_type(f),
        escape_controls(&f.summary)
    )
}

/// Hubble's identity column: `(ID:n)`, or a reserved identity's name.
fn identity(ep: Option<&Endpoint>) -> String {
    let id = ep.map_or(0, |e| e.identity);
    if id >= 256 {
        return format!("(ID:{id})");
    }
    let name = match id {
        0 => "unknown",
        1 => "host",
        2 => "world",
        3 => "unmanaged",
        4 => "health",
        5 => "init",
        6 => "remote-node",
        7 => "kube-apiserver",
        8 => "ingress",
        9 => "world-ipv4",
        10 => "world-ipv6",
        n => return format!("(ID:{n})"),
    };
    format!("({name})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::flow::{
        CiliumEventType, Ip, Layer4, Policy, Tcp, TcpFlags, TraceObservationPoint,
        TrafficDirection, Verdict, layer4::Protocol,
    };
    use observer_proto::observe::v1::{TcpLifecycle, tcp_lifecycle};

    #[test]
    fn compact_line_reads_like_hubble() {
        let f = Flow {
            time: Some(prost_types::Timestamp {
                seconds: 1_795_705_445,
                nanos: 123_000_000,
            }),
            verdict: Verdict::Forwarded as i32,
            ip: Some(Ip {
                source: "198.18.1.2".into(),
                destination: "198.18.1.3".into(),
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(Protocol::Tcp(Tcp {
                    source_port: 40000,
                    destination_port: 8080,
                    flags: Some(TcpFlags {
                        syn: true,
                        ack: true,
                        ..Default::default()
                    }),
                })),
            }),
            source: Some(Endpoint {
                identity: 300,
                namespace: "default".into(),
                pod_name: "frontend".into(),
                ..Default::default()
            }),
            destination: Some(Endpoint {
                identity: 2,
                labels: vec!["reserved:world".into()],
                ..Default::default()
            }),
            is_reply: Some(true),
            trace_observation_point: TraceObservationPoint::FromEndpoint as i32,
            event_type: Some(CiliumEventType {
                r#type: 4,
                sub_type: 5,
            }),
            summary: "TCP Flags: SYN, ACK".into(),
            ..Default::default()
        };
        assert_eq!(
            flow_line(&f),
            "198.18.1.3:8080 (world) <- default/frontend:40000 (ID:300) from-endpoint FORWARDED (TCP Flags: SYN, ACK)"
        );
        assert_eq!(
            super::super::timestamp(f.time.as_ref()),
            "Nov 26 15:04:05.123"
        );

        // Each kind of event reads as hubble observe's line for it.
        let event = |t, sub| {
            Some(CiliumEventType {
                r#type: t,
                sub_type: sub,
            })
        };
        let drop = Flow {
            verdict: Verdict::Dropped as i32,
            event_type: event(1, 133),
            is_reply: None,
            summary: "TCP Flags: SYN".into(),
            ..f.clone()
        };
        assert_eq!(
            flow_line(&drop),
            "default/frontend:40000 (ID:300) <> 198.18.1.3:8080 (world) Policy denied DROPPED (TCP Flags: SYN)"
        );
        let denied = Flow {
            event_type: event(5, 0),
            traffic_direction: TrafficDirection::Egress as i32,
            ..drop.clone()
        };
        assert_eq!(
            flow_line(&denied),
            "default/frontend:40000 (ID:300) <> 198.18.1.3:8080 (world) policy-verdict:none EGRESS DENIED (TCP Flags: SYN)"
        );
        let lifecycle = Flow {
            verdict: Verdict::Unknown as i32,
            event_type: None,
            is_reply: None,
            summary: "TCP established".into(),
            tcp_lifecycle: Some(TcpLifecycle {
                kind: tcp_lifecycle::Kind::Established as i32,
                ..Default::default()
            }),
            ..f.clone()
        };
        assert_eq!(
            flow_line(&lifecycle),
            "default/frontend:40000 (ID:300) <> 198.18.1.3:8080 (world) tcp-lifecycle VERDICT_UNKNOWN (TCP established)"
        );

        // --print-policy-names: the deciders of the verdict's own direction
        // and outcome, the rest left out.
        let policy = |name: &str| Policy {
            name: name.into(),
            namespace: "default".into(),
            kind: "CiliumNetworkPolicy".into(),
            ..Default::default()
        };
        let named = Flow {
            egress_denied_by: vec![policy("deny-world"), policy("deny-all")],
            ingress_denied_by: vec![policy("not-this-direction")],
            egress_allowed_by: vec![policy("not-this-outcome")],
            ..denied.clone()
        };
        assert_eq!(
            line(&named, false, true),
            "default/frontend:40000 (ID:300) <> 198.18.1.3:8080 (world) policy-verdict:none EGRESS DENIED BY deny-world (CiliumNetworkPolicy), deny-all (CiliumNetworkPolicy) (TCP Flags: SYN)"
        );
        assert_eq!(line(&named, false, false), flow_line(&denied));
        let allowed = Flow {
            verdict: Verdict::Forwarded as i32,
            traffic_direction: TrafficDirection::Ingress as i32,
            ingress_allowed_by: vec![policy("allow-frontend")],
            ..named.clone()
        };
        assert_eq!(
            line(&allowed, true, true),
            "\x1b[36mdefault/frontend:\x1b[33m40000\x1b[0m\x1b[0m \x1b[35m(ID:300)\x1b[0m <> \
             \x1b[36m198.18.1.3:\x1b[33m8080\x1b[0m\x1b[0m \x1b[35m(world)\x1b[0m policy-verdict:none \
             INGRESS \x1b[32mALLOWED BY allow-frontend (CiliumNetworkPolicy)\x1b[0m (TCP Flags: SYN)"
        );
        // A policy without a kind (another server's): the name alone.
        let kindless = Flow {
            egress_denied_by: vec![Policy {
                kind: String::new(),
                ..policy("deny-world")
            }],
            ..named.clone()
        };
        assert!(
            line(&kindless, false, true).ends_with(" EGRESS DENIED BY deny-world (TCP Flags: SYN)"),
            "{}",
            line(&kindless, false, true)
        );
        // Not a policy verdict: a drop names no policy, as in Hubble.
        let dropped = Flow {
            egress_denied_by: vec![policy("deny-world")],
            ..drop.clone()
        };
        assert_eq!(line(&dropped, false, true), flow_line(&drop));
    }
}
