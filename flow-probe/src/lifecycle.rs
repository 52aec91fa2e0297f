//! TCP lifecycle events (established, closed, retransmit) as flows of their
//! own kind: the socket's addresses and ports, the endpoints behind them, and
//! the lifecycle in the `tcp_lifecycle` extension (field 1002) with a readable
//! summary. They are no traffic, so nothing Hubble keys on says they are:
//! type UNKNOWN_TYPE, verdict VERDICT_UNKNOWN, no Cilium event type (so
//! Hubble UI's event-type filters and `hubble observe --type` leave them
//! out), no direction, reply bit or TCP flags.

use observer_proto::flow::{Flow, FlowType, Verdict};

use observer_proto::observe::v1::{TcpLifecycle, tcp_lifecycle::Kind};

use crate::flow_builder::{FlowContext, addr, ipproto, ports};
use crate::kernel::events::{TcpLifecycleEvent, lifecycle};

pub fn lifecycle_flow(ev: &TcpLifecycleEvent, cx: FlowContext<'_>) -> Flow {
    let (local, remote) = (addr(ev.family, &ev.saddr), addr(ev.family, &ev.daddr));
    let (kind, summary) = match ev.kind {
        lifecycle::ESTABLISHED => (Kind::Established, "TCP established".to_string()),
        lifecycle::CLOSED => (
            Kind::Closed,
            format!(
                "TCP closed after {:.3} ms, {} retransmits",
                ev.duration_ns as f64 / 1e6,
                ev.retransmits
            ),
        ),
        lifecycle::RETRANSMIT => (
            Kind::Retransmit,
            format!("TCP retransmit #{}", ev.retransmits),
        ),
        _ => (Kind::Unknown, "TCP".to_string()),
    };
    Flow {
        verdict: Verdict::Unknown as i32,
        l4: ports(ipproto::TCP, ev.sport, ev.dport, None),
        summary,
        tcp_lifecycle: Some(TcpLifecycle {
            kind: kind as i32,
            duration_ns: ev.duration_ns,
            retransmits: ev.retransmits,
        }),
        ..cx.flow_between_endpoints(FlowType::UnknownType, ev.ktime_ns, local, remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::flow::Endpoint;

    #[test]
    fn a_closed_connection_reads_with_its_duration_and_retransmits() {
        let mut ev = TcpLifecycleEvent {
            family: 4,
            kind: lifecycle::CLOSED,
            sport: 40000,
            dport: 8080,
            duration_ns: 2_500_000,
            retransmits: 3,
            ..Default::default()
        };
        ev.saddr[..4].copy_from_slice(&[198, 18, 1, 10]);
        ev.daddr[..4].copy_from_slice(&[198, 18, 1, 11]);
        let world = |_| Endpoint {
            identity: 2,
            ..Default::default()
        };
        let cx = FlowContext {
            uuid: "u".into(),
            node_name: "node1",
            node_labels: &[],
            unix_offset_ns: 0,
            endpoint_of: &world,
        };
        let f = lifecycle_flow(&ev, cx);
        assert_eq!(f.summary, "TCP closed after 2.500 ms, 3 retransmits");
        assert_eq!(
            f.ip.as_ref()
                .map(|i| (i.source.as_str(), i.destination.as_str())),
            Some(("198.18.1.10", "198.18.1.11"))
        );
        assert_eq!(
            (f.r#type, f.verdict, f.event_type, f.is_reply),
            (
                FlowType::UnknownType as i32,
                Verdict::Unknown as i32,
                None,
                None
            )
        );
        let lc = f.tcp_lifecycle.unwrap();
        assert_eq!(
            (lc.kind, lc.duration_ns, lc.retransmits),
            (Kind::Closed as i32, 2_500_000, 3)
        );
    }
}
