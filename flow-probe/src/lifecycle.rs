//! TCP lifecycle events (established, closed, retransmit) as flows: the socket's
//! addresses and ports, the endpoints behind them, and the lifecycle in the
//! `tcp_lifecycle` extension (field 1002) with a readable summary.

use std::net::IpAddr;

use observer_proto::flow::{
    self, Endpoint, Flow, FlowType, Ip, IpVersion, Layer4, Verdict, layer4,
};
use observer_proto::observe::v1::{TcpLifecycle, tcp_lifecycle::Kind};

use crate::kernel::events::{TcpLifecycleEvent, lifecycle};

/// What a lifecycle flow needs from the enricher.
pub struct LifecycleContext<'a> {
    pub uuid: String,
    pub node_name: &'a str,
    pub unix_offset_ns: i128,
    pub endpoint_of: &'a dyn Fn(IpAddr) -> Endpoint,
}

fn addr(family: u8, a: &[u8; 16]) -> IpAddr {
    if family == 6 {
        IpAddr::from(*a)
    } else {
        IpAddr::from([a[0], a[1], a[2], a[3]])
    }
}

pub fn lifecycle_flow(ev: &TcpLifecycleEvent, cx: &LifecycleContext<'_>) -> Flow {
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
    let t = i128::from(ev.ktime_ns) + cx.unix_offset_ns;
    Flow {
        time: Some(prost_types::Timestamp {
            seconds: (t / 1_000_000_000) as i64,
            nanos: (t % 1_000_000_000) as i32,
        }),
        uuid: cx.uuid.clone(),
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: local.to_string(),
            destination: remote.to_string(),
            ip_version: if ev.family == 6 {
                IpVersion::IPv6
            } else {
                IpVersion::IPv4
            } as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(flow::Tcp {
                source_port: ev.sport.into(),
                destination_port: ev.dport.into(),
                flags: None,
            })),
        }),
        source: Some((cx.endpoint_of)(local)),
        destination: Some((cx.endpoint_of)(remote)),
        r#type: FlowType::L3L4 as i32,
        node_name: cx.node_name.to_string(),
        summary,
        tcp_lifecycle: Some(TcpLifecycle {
            kind: kind as i32,
            duration_ns: ev.duration_ns,
            retransmits: ev.retransmits,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let cx = LifecycleContext {
            uuid: "u".into(),
            node_name: "node1",
            unix_offset_ns: 0,
            endpoint_of: &world,
        };
        let f = lifecycle_flow(&ev, &cx);
        assert_eq!(f.summary, "TCP closed after 2.500 ms, 3 retransmits");
        assert_eq!(
            f.ip.as_ref()
                .map(|i| (i.source.as_str(), i.destination.as_str())),
            Some(("198.18.1.10", "198.18.1.11"))
        );
        let lc = f.tcp_lifecycle.unwrap();
        assert_eq!(
            (lc.kind, lc.duration_ns, lc.retransmits),
            (Kind::Closed as i32, 2_500_000, 3)
        );
    }
}
