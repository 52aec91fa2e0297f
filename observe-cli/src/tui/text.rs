//! How flow fields read on screen: clock times, endpoints, TCP flags, the
//! event kind and the verdict with its colour. Shared by the table and the
//! detail pane.

use observer_proto::flow::{Endpoint, Flow, Service, TcpFlags, Verdict};
use ratatui::style::Color;

use crate::flows::output::{escape_controls, utc};
use service_graph::HopKey;

/// `15:04:05.123`, or with `micros` `15:04:05.123456`; `-` without a time.
pub fn clock(ts: Option<&prost_types::Timestamp>, micros: bool) -> String {
    let format = if micros {
        "%H:%M:%S%.6f"
    } else {
        "%H:%M:%S%.3f"
    };
    ts.and_then(utc)
        .map_or_else(|| "-".into(), |t| t.strftime(format).to_string())
}

pub use crate::flows::output::ports;

/// `default/api-0:8080`, `default/api:80` (a service's address, as compact
/// output names it), `203.0.113.7:443 (world)`, `[fd42::1]:53`; control
/// characters shown as text.
pub fn endpoint(
    ep: Option<&Endpoint>,
    service: Option<&Service>,
    ip: &str,
    port: Option<u32>,
) -> String {
    let host = match (ep, service) {
        (Some(e), _) if !e.pod_name.is_empty() => format!("{}/{}", e.namespace, e.pod_name),
        (_, Some(s)) if !s.name.is_empty() && s.namespace.is_empty() => s.name.clone(),
        (_, Some(s)) if !s.name.is_empty() => format!("{}/{}", s.namespace, s.name),
        _ if ip.contains(':') && port.is_some() => format!("[{ip}]"),
        _ => ip.to_string(),
    };
    let host = escape_controls(&host);
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let reserved = ep
        .filter(|e| e.pod_name.is_empty())
        .and_then(|e| e.labels.iter().find_map(|l| l.strip_prefix("reserved:")))
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    format!("{host}{port}{reserved}")
}

/// The packet's source and destination as shown in the table.
pub fn source_and_destination(f: &Flow) -> (String, String) {
    let (sport, dport) = ports(f);
    let ip = f.ip.as_ref();
    (
        endpoint(
            f.source.as_ref(),
            f.source_service.as_ref(),
            ip.map_or("", |i| i.source.as_str()),
            sport,
        ),
        endpoint(
            f.destination.as_ref(),
            f.destination_service.as_ref(),
            ip.map_or("", |i| i.destination.as_str()),
            dport,
        ),
    )
}

/// Where the flow was seen: `from-endpoint`, `to-stack`, ...; as hubble's
/// TYPE column names them, a drop by its reason (`Policy denied`), a policy
/// verdict by its match and direction (`policy-verdict:L3-L4 INGRESS`) and
/// a socket translation by its point (`post-xlate-fwd`); a TCP lifecycle
/// report as `tcp-lifecycle`, a report of a connection's volume by its
/// point and `report` (`from-endpoint report`: no packet).
pub fn kind(f: &Flow) -> String {
    match f.event_type.as_ref() {
        Some(e) if matches!(e.r#type, 1 | 5 | 7) => crate::flows::output::flow_type(f),
        _ if f.tcp_lifecycle.is_some() => crate::flows::output::TCP_LIFECYCLE.to_string(),
        _ => {
            let point = HopKey::of(f).map(HopKey::name).unwrap_or_default();
            if is_volume_report(f) {
                format!("{point} report")
            } else {
                point
            }
        }
    }
}

/// Whether `f` is flow-probe's report of a connection's volume, no packet.
pub fn is_volume_report(f: &Flow) -> bool {
    f.volume.as_ref().is_some_and(|v| v.report)
}

/// FORWARDED green, DROPPED red, AUDIT yellow, others the terminal's default.
pub fn verdict_colour(f: &Flow) -> Color {
    match Verdict::try_from(f.verdict) {
        Ok(Verdict::Forwarded) => Color::Green,
        Ok(Verdict::Dropped) => Color::Red,
        Ok(Verdict::Audit) => Color::Yellow,
        _ => Color::Reset,
    }
}

/// `SYN, ACK`: the set flags in Hubble's order.
pub fn tcp_flags(f: &TcpFlags) -> String {
    let names = [
        (f.syn, "SYN"),
        (f.ack, "ACK"),
        (f.psh, "PSH"),
        (f.fin, "FIN"),
        (f.rst, "RST"),
        (f.urg, "URG"),
        (f.ece, "ECE"),
        (f.cwr, "CWR"),
        (f.ns, "NS"),
    ];
    let set: Vec<&str> = names.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
    set.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_names_its_reason_and_a_lifecycle_report_its_kind() {
        use observer_proto::flow::{CiliumEventType, TraceObservationPoint};
        use observer_proto::observe::v1::TcpLifecycle;
        let drop = Flow {
            event_type: Some(CiliumEventType {
                r#type: 1,
                sub_type: 133,
            }),
            ..Default::default()
        };
        assert_eq!(kind(&drop), "Policy denied");
        let life = Flow {
            tcp_lifecycle: Some(TcpLifecycle::default()),
            ..Default::default()
        };
        assert_eq!(kind(&life), "tcp-lifecycle");
        let trace = Flow {
            event_type: Some(CiliumEventType {
                r#type: 4,
                sub_type: 0,
            }),
            trace_observation_point: TraceObservationPoint::ToEndpoint as i32,
            ..Default::default()
        };
        assert_eq!(kind(&trace), "to-endpoint");
    }

    #[test]
    fn endpoints_read_like_the_compact_output() {
        let world = Endpoint {
            identity: 2,
            labels: vec!["reserved:world".into()],
            ..Default::default()
        };
        assert_eq!(
            endpoint(Some(&world), None, "203.0.113.7", Some(443)),
            "203.0.113.7:443 (world)"
        );
        assert_eq!(endpoint(None, None, "fd42::1", Some(53)), "[fd42::1]:53");
        assert_eq!(endpoint(None, None, "198.18.0.1", None), "198.18.0.1");
        // A connect to a service's address names the service, as compact
        // output does.
        let api = Service {
            name: "api".into(),
            namespace: "default".into(),
        };
        assert_eq!(
            endpoint(None, Some(&api), "fd42:100::10", Some(80)),
            "default/api:80"
        );
        let pod = Endpoint {
            namespace: "default".into(),
            pod_name: "p\x1b[2J".into(),
            ..Default::default()
        };
        assert_eq!(
            endpoint(Some(&pod), None, "198.18.0.1", Some(1)),
            "default/p^[[2J:1"
        );
        let t = prost_types::Timestamp {
            seconds: 1_795_705_445,
            nanos: 1_100_000,
        };
        assert_eq!(clock(Some(&t), false), "15:04:05.001");
        assert_eq!(clock(Some(&t), true), "15:04:05.001100");
    }
}
