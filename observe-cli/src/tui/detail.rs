//! The detail pane's text: every non-empty field of one flow and of its
//! endpoints. (The hops of its connection are in `path`.)

use observer_proto::flow::{
    Endpoint, Flow, FlowType, IpVersion, Policy, TraceObservationPoint, TraceReason,
    TrafficDirection, layer4::Protocol,
};
use observer_proto::names;
use observer_proto::observe::v1::tcp_lifecycle::Kind;

use super::text::{ports, tcp_flags};
use crate::flows::output::timestamp;
use service_graph::hops::point_name;
use service_graph::human_bytes;

/// `(label, value)` rows, empty values left out.
#[derive(Default)]
struct Rows(Vec<(String, String)>);

impl Rows {
    fn add(&mut self, label: &str, value: impl Into<String>) {
        let v = value.into();
        if !v.is_empty() {
            self.0.push((label.to_string(), v));
        }
    }

    fn lines(self, indent: &str, out: &mut Vec<String>) {
        for (l, v) in self.0 {
            out.push(format!("{indent}{l:<14}{v}"));
        }
    }
}

fn l4(f: &Flow) -> String {
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => {
            let fl = t.flags.as_ref().map(tcp_flags).unwrap_or_default();
            let fl = if fl.is_empty() {
                fl
            } else {
                format!(" [{fl}]")
            };
            format!("TCP {} -> {}{fl}", t.source_port, t.destination_port)
        }
        Some(Protocol::Udp(u)) => format!("UDP {} -> {}", u.source_port, u.destination_port),
        Some(Protocol::Sctp(s)) => format!("SCTP {} -> {}", s.source_port, s.destination_port),
        Some(Protocol::IcmPv4(i)) => format!("ICMPv4 type {} code {}", i.r#type, i.code),
        Some(Protocol::IcmPv6(i)) => format!("ICMPv6 type {} code {}", i.r#type, i.code),
        None => String::new(),
    }
}

/// `1 pkt`, `4 pkts`.
fn packets(n: u64) -> String {
    if n == 1 {
        "1 pkt".to_string()
    } else {
        format!("{n} pkts")
    }
}

fn enum_name<E: TryFrom<i32>>(v: i32, name: fn(&E) -> &'static str, zero: bool) -> String {
    if v == 0 && !zero {
        return String::new();
    }
    E::try_from(v).map_or_else(|_| v.to_string(), |e| name(&e).to_string())
}

fn policies(ps: &[Policy]) -> String {
    let names: Vec<String> = ps
        .iter()
        .map(|p| {
            if p.namespace.is_empty() {
                p.name.clone()
            } else {
                format!("{}/{}", p.namespace, p.name)
            }
        })
        .collect();
    names.join(", ")
}

fn endpoint_rows(ep: &Endpoint, ip: &str, port: Option<u32>) -> Rows {
    let mut r = Rows::default();
    if !ep.pod_name.is_empty() {
        r.add("pod", format!("{}/{}", ep.namespace, ep.pod_name));
    } else {
        r.add("namespace", ep.namespace.clone());
    }
    r.add("ip", ip);
    r.add("port", port.map(|p| p.to_string()).unwrap_or_default());
    if ep.identity != 0 {
        r.add("identity", ep.identity.to_string());
    }
    if ep.id != 0 {
        r.add("endpoint id", ep.id.to_string());
    }
    r.add("cluster", ep.cluster_name.clone());
    r.add("labels", ep.labels.join(", "));
    let workloads: Vec<String> = ep
        .workloads
        .iter()
        .map(|w| format!("{} ({})", w.name, w.kind))
        .collect();
    r.add("workload", workloads.join(", "));
    r
}

/// Every non-empty field of `f` but its endpoints, as lines of text.
pub fn field_lines(f: &Flow) -> Vec<String> {
    let mut out = Vec::new();
    let mut r = Rows::default();
    r.add(
        "time",
        f.time
            .as_ref()
            .map(|t| timestamp(Some(t)))
            .unwrap_or_default(),
    );
    r.add("uuid", f.uuid.clone());
    r.add("node", f.node_name.clone());
    r.add("node labels", f.node_labels.join(", "));
    r.add("verdict", names::verdict(f.verdict));
    r.add(
        "drop reason",
        match f.drop_reason_desc {
            0 => String::new(),
            n => names::drop_reason(n).map_or_else(|| n.to_string(), str::to_string),
        },
    );
    r.add(
        "kernel drop",
        f.kernel_drop
            .as_ref()
            .map(|k| format!("{} ({})", k.name, k.reason))
            .unwrap_or_default(),
    );
    r.add("type", enum_name(f.r#type, FlowType::as_str_name, false));
    if let Some(e) = &f.event_type {
        // The table's TYPE: a policy verdict's match and direction, a socket
        // translation's point, a drop's reason.
        r.add(
            "event",
            format!("{} ({}/{})", super::text::kind(f), e.r#type, e.sub_type),
        );
    }
    r.add(
        "observed at",
        TraceObservationPoint::try_from(f.trace_observation_point)
            .map(point_name)
            .unwrap_or_default(),
    );
    r.add(
        "trace reason",
        enum_name(f.trace_reason, TraceReason::as_str_name, false),
    );
    r.add(
        "direction",
        enum_name(f.traffic_direction, TrafficDirection::as_str_name, false),
    );
    r.add(
        "is_reply",
        f.is_reply.map(|b| b.to_string()).unwrap_or_default(),
    );
    if let Some(i) = &f.interface {
        r.add("interface", format!("{} (index {})", i.name, i.index));
    }
    if let Some(ip) = &f.ip {
        r.add(
            "ip",
            format!(
                "{} -> {} ({})",
                ip.source,
                ip.destination,
                enum_name(ip.ip_version, IpVersion::as_str_name, true)
            ),
        );
        r.add("source xlated", ip.source_xlated.clone());
        if ip.encrypted {
            r.add("encrypted", "true");
        }
    }
    if let Some(e) = &f.ethernet {
        r.add("ethernet", format!("{} -> {}", e.source, e.destination));
    }
    r.add("l4", l4(f));
    r.add("summary", f.summary.clone());
    if let Some(v) = &f.volume {
        let mark = match (v.report, v.first_packet) {
            (true, _) => " (a report, no packet)",
            (false, true) => " (its direction's first packet)",
            (false, false) => "",
        };
        r.add(
            "volume",
            format!(
                "fwd {} / {}, rev {} / {}{mark}",
                human_bytes(v.fwd_bytes),
                packets(v.fwd_packets),
                human_bytes(v.rev_bytes),
                packets(v.rev_packets)
            ),
        );
    }
    if let Some(t) = &f.tcp_lifecycle {
        let kind = enum_name(t.kind, Kind::as_str_name, true);
        let duration = match t.duration_ns {
            0 => String::new(),
            ns => format!(" after {:.3} ms", ns as f64 / 1e6),
        };
        r.add(
            "tcp lifecycle",
            format!("{kind}{duration}, {} retransmits", t.retransmits),
        );
    }
    if let Some(p) = &f.policy_in_force {
        r.add(
            "policy",
            match p.version.as_str() {
                "" => format!("generation {} in force", p.generation),
                v => format!("generation {} in force ({v})", p.generation),
            },
        );
    }
    if f.socket_cookie != 0 {
        r.add("socket cookie", f.socket_cookie.to_string());
    }
    if f.cgroup_id != 0 {
        r.add("cgroup id", f.cgroup_id.to_string());
    }
    r.add("egress allow", policies(&f.egress_allowed_by));
    r.add("ingress allow", policies(&f.ingress_allowed_by));
    r.add("egress deny", policies(&f.egress_denied_by));
    r.add("ingress deny", policies(&f.ingress_denied_by));
    r.lines("  ", &mut out);
    out
}

/// Both endpoints of `f`: a title line each, then their non-empty fields.
pub fn endpoint_lines(f: &Flow) -> Vec<String> {
    let mut out = Vec::new();
    let (sport, dport) = ports(f);
    let ip = f.ip.as_ref();
    let sides = [
        (
            "Source",
            &f.source,
            ip.map_or("", |i| i.source.as_str()),
            sport,
            &f.source_names,
            &f.source_service,
        ),
        (
            "Destination",
            &f.destination,
            ip.map_or("", |i| i.destination.as_str()),
            dport,
            &f.destination_names,
            &f.destination_service,
        ),
    ];
    for (title, ep, ip, port, names, service) in sides {
        out.push(title.to_string());
        let mut r = endpoint_rows(ep.as_ref().unwrap_or(&Endpoint::default()), ip, port);
        r.add("names", names.join(", "));
        if let Some(s) = service {
            r.add("service", format!("{}/{}", s.namespace, s.name));
        }
        r.lines("  ", &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::flow::CiliumEventType;
    use observer_proto::observe::v1::{FlowVolume, PolicyStamp, TcpLifecycle};

    #[test]
    fn a_verdict_a_report_and_a_lifecycle_say_what_they_are() {
        let verdict = Flow {
            event_type: Some(CiliumEventType {
                r#type: 5,
                sub_type: 0,
            }),
            policy_match_type: 2,
            traffic_direction: TrafficDirection::Ingress as i32,
            volume: Some(FlowVolume {
                fwd_bytes: 74,
                fwd_packets: 1,
                first_packet: true,
                ..Default::default()
            }),
            policy_in_force: Some(PolicyStamp {
                generation: 3,
                version: "sha256:0a1b".into(),
            }),
            ..Default::default()
        };
        let lines = field_lines(&verdict);
        for want in [
            "  event         policy-verdict:L3-L4 INGRESS (5/0)",
            "  volume        fwd 74 B / 1 pkt, rev 0 B / 0 pkts (its direction's first packet)",
            "  policy        generation 3 in force (sha256:0a1b)",
        ] {
            assert!(lines.iter().any(|l| l == want), "{want:?} in {lines:#?}");
        }
        let report = Flow {
            volume: Some(FlowVolume {
                fwd_bytes: 552,
                fwd_packets: 12,
                report: true,
                ..Default::default()
            }),
            l4: Some(observer_proto::flow::Layer4 {
                protocol: Some(Protocol::Tcp(observer_proto::flow::Tcp {
                    source_port: 55873,
                    destination_port: 5432,
                    flags: Some(observer_proto::flow::TcpFlags::default()),
                })),
            }),
            tcp_lifecycle: Some(TcpLifecycle {
                kind: Kind::Closed as i32,
                duration_ns: 2_775_000,
                retransmits: 1,
            }),
            ..Default::default()
        };
        let lines = field_lines(&report);
        for want in [
            "  volume        fwd 552 B / 12 pkts, rev 0 B / 0 pkts (a report, no packet)",
            "  tcp lifecycle CLOSED after 2.775 ms, 1 retransmits",
            // No flags, no empty brackets.
            "  l4            TCP 55873 -> 5432",
        ] {
            assert!(lines.iter().any(|l| l == want), "{want:?} in {lines:#?}");
        }
    }
}
