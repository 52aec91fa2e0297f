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
        lifecycle::CLOSED => (Kind::Closed, closed_summary(ev)),
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

/// The kernel's TCP states a socket leaves for CLOSE without ever having been
/// established: its SYN (or SYN-ACK) went unanswered or was refused.
const TCP_SYN_SENT: u8 = 2;
const TCP_SYN_RECV: u8 = 3;

/// A closed connection's summary. Its duration runs from the time the probe
/// saw it established; a socket that never was (or was before the probe
/// watched it) has none to give, and "after 0.000 ms" would be wrong.
fn closed_summary(ev: &TcpLifecycleEvent) -> String {
    let retransmits = match ev.retransmits {
        1 => "1 retransmit".to_string(),
        n => format!("{n} retransmits"),
    };
    if matches!(ev.old_state, TCP_SYN_SENT | TCP_SYN_RECV) {
        format!("TCP closed before it was established, {retransmits}")
    } else if ev.duration_ns == 0 {
        format!("TCP closed (established before it was watched), {retransmits}")
    } else {
        format!(
            "TCP closed after {:.3} ms, {retransmits}",
            ev.duration_ns as f64 / 1e6
        )
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

    fn closed(old_state: u8, duration_ns: u64, retransmits: u32) -> TcpLifecycleEvent {
        TcpLifecycleEvent {
            family: 4,
            kind: lifecycle::CLOSED,
            old_state,
            new_state: 7,
            duration_ns,
            retransmits,
            ..Default::default()
        }
    }

    #[test]
    fn a_socket_closed_before_it_was_established_has_no_duration() {
        // A SYN that went unanswered (SYN_SENT) and a handshake a server
        // gave up on (SYN_RECV).
        assert_eq!(
            closed_summary(&closed(TCP_SYN_SENT, 0, 1)),
            "TCP closed before it was established, 1 retransmit"
        );
        assert_eq!(
            closed_summary(&closed(TCP_SYN_RECV, 0, 5)),
            "TCP closed before it was established, 5 retransmits"
        );
        // Established before the probe watched it (LAST_ACK = 9): no start.
        assert_eq!(
            closed_summary(&closed(9, 0, 0)),
            "TCP closed (established before it was watched), 0 retransmits"
        );
        // From ESTABLISHED (1) by a reset: its duration.
        assert_eq!(
            closed_summary(&closed(1, 1_250_000, 1)),
            "TCP closed after 1.250 ms, 1 retransmit"
        );
    }
}
