//! The datapath hops of a flow's connection for the detail pane: every
//! buffered event of the same 5-tuple, either way, in time order, with where
//! it was seen, on which node, and its verdict and TCP flags. A report of
//! the connection's volume (no packet, no hop the graph counts) says
//! `report` where a packet says `request` or `reply`.

use observer_proto::flow::{Flow, layer4::Protocol};

use super::text::{clock, ports, tcp_flags};
use service_graph::HopKey;

/// A connection regardless of direction: protocol and the two (ip, port) ends, sorted.
fn conn(f: &Flow) -> Option<(i32, [(String, u32); 2])> {
    let ip = f.ip.as_ref()?;
    let (sp, dp) = ports(f);
    let proto = match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(_)) => 6,
        Some(Protocol::Udp(_)) => 17,
        Some(Protocol::Sctp(_)) => 132,
        Some(Protocol::IcmPv4(_)) => 1,
        Some(Protocol::IcmPv6(_)) => 58,
        None => 0,
    };
    let mut ends = [
        (ip.source.clone(), sp.unwrap_or(0)),
        (ip.destination.clone(), dp.unwrap_or(0)),
    ];
    ends.sort();
    Some((proto, ends))
}

/// Where an event was seen, as the graph names it; a TCP lifecycle report,
/// no hop, as the table's TYPE column does.
fn hop_name(f: &Flow) -> String {
    match HopKey::of(f) {
        Some(h) => h.name(),
        None if f.tcp_lifecycle.is_some() => crate::flows::output::TCP_LIFECYCLE.to_string(),
        None => String::new(),
    }
}

/// The buffered events of `f`'s connection in time order, one line each;
/// `f` itself is marked with `>`.
pub fn hop_lines<'a>(f: &Flow, buffered: impl Iterator<Item = &'a Flow>) -> Vec<String> {
    let Some(key) = conn(f) else {
        return Vec::new();
    };
    let mut same: Vec<&Flow> = buffered
        .filter(|g| conn(g).as_ref() == Some(&key))
        .collect();
    same.sort_by_key(|g| g.time.as_ref().map(|t| (t.seconds, t.nanos)));
    same.iter()
        .map(|g| {
            let mark = if std::ptr::eq(*g, f) { ">" } else { " " };
            let dir = match g.is_reply {
                _ if super::text::is_volume_report(g) => "report",
                Some(true) => "reply",
                Some(false) => "request",
                None => "",
            };
            let flags = match g.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
                Some(Protocol::Tcp(t)) => t.flags.as_ref().map(tcp_flags).unwrap_or_default(),
                _ => String::new(),
            };
            let line = format!(
                "{mark} {} {:<8} {:<14} {:<8} {:<10} {flags}",
                clock(g.time.as_ref(), true),
                g.node_name,
                hop_name(g),
                dir,
                observer_proto::names::verdict(g.verdict),
            );
            line.trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::observe::v1::TcpLifecycle;

    #[test]
    fn a_lifecycle_report_among_the_hops_is_named() {
        let flows = test_support::graph_flows::flows();
        let trace = flows[0].clone();
        let closed = Flow {
            event_type: None,
            trace_observation_point: 0,
            tcp_lifecycle: Some(TcpLifecycle {
                kind: 2,
                duration_ns: 1_000_000,
                retransmits: 0,
            }),
            ..trace.clone()
        };
        let lines = hop_lines(&trace, [&trace, &closed].into_iter());
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].contains(" tcp-lifecycle "), "{lines:?}");
    }

    #[test]
    fn a_volume_report_among_the_hops_says_report_not_request() {
        let trace = test_support::graph_flows::flows()[0].clone();
        assert_eq!(trace.is_reply, Some(false));
        let mut report = trace.clone();
        report.time = report.time.map(|t| prost_types::Timestamp {
            seconds: t.seconds + 10,
            ..t
        });
        report.volume = Some(observer_proto::observe::v1::FlowVolume {
            report: true,
            ..Default::default()
        });
        let lines = hop_lines(&trace, [&trace, &report].into_iter());
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains(" request "), "{lines:?}");
        assert!(lines[1].contains(" report "), "{lines:?}");
        assert!(!lines[1].contains(" request "), "{lines:?}");
        assert_eq!(
            super::super::text::kind(&report),
            format!("{} report", super::super::text::kind(&trace))
        );
    }
}
