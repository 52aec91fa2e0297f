//! The `compact` format: one line per flow, as `hubble observe` prints it, with
//! the client on the left and the verdict coloured when asked.

use observer_proto::flow::{Endpoint, Flow, TraceObservationPoint};
use observer_proto::names;
use observer_proto::names::point_name;
use observer_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};

use super::color::paint_verdict;
use super::fields::{lost_source, node_name, ports};
use super::time::timestamp;

/// One response as a compact line (without newline); `None` for an empty one.
pub fn compact(resp: &GetFlowsResponse, print_node: bool, color: bool) -> Option<String> {
    let node = if print_node {
        format!(" [{}]", node_name(resp))
    } else {
        String::new()
    };
    match resp.response_types.as_ref()? {
        ResponseTypes::Flow(f) => Some(format!(
            "{}{node}: {}",
            timestamp(f.time.as_ref()),
            styled_flow_line(f, color)
        )),
        ResponseTypes::LostEvents(l) => Some(format!(
            "{}{node}: EVENTS LOST: {} {}",
            timestamp(resp.time.as_ref()),
            lost_source(l.source),
            l.num_events_lost
        )),
        ResponseTypes::NodeStatus(_) => Some(node_status(resp)),
    }
}

/// `time: NODE STATUS: nodes message`, for every human format.
pub fn node_status(resp: &GetFlowsResponse) -> String {
    let Some(ResponseTypes::NodeStatus(n)) = resp.response_types.as_ref() else {
        return String::new();
    };
    format!(
        "{}: NODE STATUS: {} {}",
        timestamp(resp.time.as_ref()),
        n.node_names.join(","),
        n.message
    )
}

/// `src -> dst point VERDICT (summary)`; replies are printed server-first with `<-`
/// so the client stays on the left, as Hubble does.
pub fn flow_line(f: &Flow) -> String {
    styled_flow_line(f, false)
}

/// [`flow_line`], with the verdict coloured when `color`.
pub fn styled_flow_line(f: &Flow, color: bool) -> String {
    let (sport, dport) = ports(f);
    let ip = f.ip.as_ref();
    let src = endpoint(
        f.source.as_ref(),
        ip.map(|i| i.source.as_str()).unwrap_or(""),
        sport,
    );
    let dst = endpoint(
        f.destination.as_ref(),
        ip.map(|i| i.destination.as_str()).unwrap_or(""),
        dport,
    );
    let (left, arrow, right) = match f.is_reply {
        Some(true) => (dst, "<-", src),
        Some(false) => (src, "->", dst),
        None => (src, "<>", dst),
    };
    let point = TraceObservationPoint::try_from(f.trace_observation_point)
        .map(point_name)
        .unwrap_or("");
    let verdict = paint_verdict(names::verdict(f.verdict), color);
    let point = if point.is_empty() {
        String::new()
    } else {
        format!(" {point}")
    };
    format!("{left} {arrow} {right}{point} {verdict} ({})", f.summary)
}

fn endpoint(ep: Option<&Endpoint>, ip: &str, port: Option<u32>) -> String {
    let host = match ep {
        Some(e) if !e.pod_name.is_empty() => format!("{}/{}", e.namespace, e.pod_name),
        _ if ip.contains(':') && port.is_some() => format!("[{ip}]"),
        _ => ip.to_string(),
    };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let id = match ep {
        Some(e) if e.identity >= 256 => format!(" (ID:{})", e.identity),
        Some(e) => {
            let reserved = e.labels.iter().find_map(|l| l.strip_prefix("reserved:"));
            reserved.map(|r| format!(" ({r})")).unwrap_or_default()
        }
        None => String::new(),
    };
    format!("{host}{port}{id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::flow::{Ip, Layer4, Tcp, TcpFlags, Verdict, layer4::Protocol};
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
            summary: "TCP Flags: SYN, ACK".into(),
            ..Default::default()
        };
        assert_eq!(
            flow_line(&f),
            "198.18.1.3:8080 (world) <- default/frontend:40000 (ID:300) from-endpoint FORWARDED (TCP Flags: SYN, ACK)"
        );
        assert_eq!(timestamp(f.time.as_ref()), "Nov 26 15:04:05.123");
    }
}
