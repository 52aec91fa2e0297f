//! Printing flows: `compact` (one line per flow, in the spirit of `hubble
//! observe`) and `json` (protojson with the proto field names, as Hubble prints).

use observer_proto::flow::{
    Endpoint, Flow, LostEventSource, TraceObservationPoint, Verdict, layer4::Protocol,
};
use observer_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};

/// Output formats of `observe flows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Compact,
    Json,
}

/// Formats one response as a line (without newline); `None` for kinds not shown.
pub fn render(
    resp: &GetFlowsResponse,
    format: Format,
    print_node: bool,
) -> anyhow::Result<Option<String>> {
    match format {
        Format::Json => Ok(Some(observer_proto::json::response_to_json(resp)?)),
        Format::Compact => Ok(compact(resp, print_node)),
    }
}

pub fn compact(resp: &GetFlowsResponse, print_node: bool) -> Option<String> {
    let node = if print_node {
        format!(" [{}]", resp.node_name)
    } else {
        String::new()
    };
    match resp.response_types.as_ref()? {
        ResponseTypes::Flow(f) => Some(format!(
            "{}{node}: {}",
            timestamp(f.time.as_ref()),
            flow_line(f)
        )),
        ResponseTypes::LostEvents(l) => {
            let source = LostEventSource::try_from(l.source)
                .map(|s| s.as_str_name())
                .unwrap_or("UNKNOWN");
            Some(format!(
                "{}{node}: EVENTS LOST: {source} {}",
                timestamp(resp.time.as_ref()),
                l.num_events_lost
            ))
        }
        ResponseTypes::NodeStatus(n) => Some(format!(
            "{}: NODE STATUS: {} {}",
            timestamp(resp.time.as_ref()),
            n.node_names.join(","),
            n.message
        )),
    }
}

/// `src -> dst point VERDICT (summary)`; replies are printed server-first with `<-`
/// so the client stays on the left, as Hubble does.
pub fn flow_line(f: &Flow) -> String {
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
    let verdict = Verdict::try_from(f.verdict)
        .map(|v| v.as_str_name())
        .unwrap_or("UNKNOWN");
    let point = if point.is_empty() {
        String::new()
    } else {
        format!(" {point}")
    };
    format!("{left} {arrow} {right}{point} {verdict} ({})", f.summary)
}

fn point_name(p: TraceObservationPoint) -> &'static str {
    match p {
        TraceObservationPoint::ToEndpoint => "to-endpoint",
        TraceObservationPoint::FromEndpoint => "from-endpoint",
        TraceObservationPoint::ToNetwork => "to-network",
        TraceObservationPoint::FromNetwork => "from-network",
        TraceObservationPoint::ToStack => "to-stack",
        TraceObservationPoint::FromStack => "from-stack",
        TraceObservationPoint::ToHost => "to-host",
        TraceObservationPoint::FromHost => "from-host",
        TraceObservationPoint::ToProxy => "to-proxy",
        TraceObservationPoint::FromProxy => "from-proxy",
        TraceObservationPoint::ToOverlay => "to-overlay",
        TraceObservationPoint::FromOverlay => "from-overlay",
        TraceObservationPoint::ToCrypto => "to-crypto",
        TraceObservationPoint::FromCrypto => "from-crypto",
        TraceObservationPoint::UnknownPoint => "",
    }
}

fn ports(f: &Flow) -> (Option<u32>, Option<u32>) {
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => (Some(t.source_port), Some(t.destination_port)),
        Some(Protocol::Udp(u)) => (Some(u.source_port), Some(u.destination_port)),
        Some(Protocol::Sctp(s)) => (Some(s.source_port), Some(s.destination_port)),
        _ => (None, None),
    }
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

/// `Nov 26 15:04:05.123` in UTC.
pub fn timestamp(ts: Option<&prost_types::Timestamp>) -> String {
    let Some(ts) = ts else { return "-".to_string() };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = ts.seconds.div_euclid(86_400);
    let secs = ts.seconds.rem_euclid(86_400);
    let (_, month, day) = civil_from_days(days);
    format!(
        "{} {:>2} {:02}:{:02}:{:02}.{:03}",
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ts.nanos / 1_000_000
    )
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::flow::{Ip, Layer4, Tcp, TcpFlags};

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
