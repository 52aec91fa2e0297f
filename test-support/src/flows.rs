//! Building flows field by field, and reading fields back, the same way in
//! every crate's tests.

use std::net::IpAddr;

use observer_proto::flow::layer4::Protocol;
use observer_proto::flow::{Endpoint, Flow, Ip, IpVersion, Layer4, Tcp, TcpFlags, Udp, Workload};

/// An endpoint: namespace, pod, identity and labels (`k8s:app=x`, ...).
pub fn endpoint(namespace: &str, pod: &str, identity: u32, labels: &[&str]) -> Endpoint {
    Endpoint {
        namespace: namespace.into(),
        pod_name: pod.into(),
        identity,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        ..Default::default()
    }
}

/// `ep` owned by the Deployment `name`.
pub fn with_deployment(mut ep: Endpoint, name: &str) -> Endpoint {
    ep.workloads = vec![Workload {
        name: name.into(),
        kind: "Deployment".into(),
    }];
    ep
}

/// `reserved:world` (identity 2), as flow-probe names unknown addresses.
pub fn world() -> Endpoint {
    endpoint("", "", 2, &["reserved:world"])
}

/// The IP header; the version follows the source address.
pub fn ip(source: &str, destination: &str) -> Option<Ip> {
    let version = if source.contains(':') {
        IpVersion::IPv6
    } else {
        IpVersion::IPv4
    };
    Some(Ip {
        source: source.into(),
        destination: destination.into(),
        ip_version: version as i32,
        ..Default::default()
    })
}

/// TCP ports and flags.
pub fn tcp(sport: u32, dport: u32, flags: TcpFlags) -> Option<Layer4> {
    l4(Protocol::Tcp(Tcp {
        source_port: sport,
        destination_port: dport,
        flags: Some(flags),
    }))
}

/// UDP ports.
pub fn udp(sport: u32, dport: u32) -> Option<Layer4> {
    l4(Protocol::Udp(Udp {
        source_port: sport,
        destination_port: dport,
    }))
}

/// Any layer-4 protocol as a flow's `l4`.
pub fn l4(protocol: Protocol) -> Option<Layer4> {
    Some(Layer4 {
        protocol: Some(protocol),
    })
}

/// TCP flags from Hubble's names, comma separated: `flags("SYN,ACK")`.
///
/// # Panics
/// On a name that is not a TCP flag: a fixture with a typo must not pass.
pub fn flags(names: &str) -> TcpFlags {
    let mut f = TcpFlags::default();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let bit = match name {
            "SYN" => &mut f.syn,
            "ACK" => &mut f.ack,
            "PSH" => &mut f.psh,
            "FIN" => &mut f.fin,
            "RST" => &mut f.rst,
            "URG" => &mut f.urg,
            "ECE" => &mut f.ece,
            "CWR" => &mut f.cwr,
            "NS" => &mut f.ns,
            other => panic!("{other:?} is not a TCP flag"),
        };
        *bit = true;
    }
    f
}

/// (source port, destination port) of a TCP or UDP flow.
pub fn ports(f: &Flow) -> Option<(u32, u32)> {
    match f.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(t) => Some((t.source_port, t.destination_port)),
        Protocol::Udp(u) => Some((u.source_port, u.destination_port)),
        _ => None,
    }
}

/// (source port, destination port) of a UDP flow only.
pub fn udp_ports(f: &Flow) -> Option<(u32, u32)> {
    match f.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Udp(u) => Some((u.source_port, u.destination_port)),
        _ => None,
    }
}

/// (source, destination) addresses.
///
/// # Panics
/// If the flow has no IP header or an address does not parse.
pub fn ips(f: &Flow) -> (IpAddr, IpAddr) {
    let ip = f.ip.as_ref().expect("the flow has an IP header");
    (
        ip.source.parse().expect("source IP"),
        ip.destination.parse().expect("destination IP"),
    )
}

/// The TCP flags of a TCP flow.
pub fn tcp_flags(f: &Flow) -> Option<&TcpFlags> {
    match f.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(t) => t.flags.as_ref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_every_name_and_refuse_typos() {
        let f = flags("SYN, ACK,FIN");
        assert_eq!((f.syn, f.ack, f.fin, f.psh), (true, true, true, false));
        assert_eq!(flags(""), TcpFlags::default());
        let typo = std::panic::catch_unwind(|| flags("SYNN"));
        assert!(typo.is_err());
    }

    #[test]
    fn readers_give_back_what_builders_put() {
        let flow = Flow {
            ip: ip("fd42::1", "fd42::2"),
            l4: tcp(40000, 8080, flags("SYN")),
            ..Default::default()
        };
        assert_eq!(flow.ip.as_ref().unwrap().ip_version, IpVersion::IPv6 as i32);
        assert_eq!(ports(&flow), Some((40000, 8080)));
        assert_eq!(
            ips(&flow),
            ("fd42::1".parse().unwrap(), "fd42::2".parse().unwrap())
        );
        assert!(tcp_flags(&flow).unwrap().syn);
        let udp_flow = Flow {
            l4: udp(5353, 53),
            ..Default::default()
        };
        assert_eq!(ports(&udp_flow), Some((5353, 53)));
        assert_eq!(udp_ports(&udp_flow), Some((5353, 53)));
        assert_eq!(udp_ports(&flow), None);
        assert_eq!(tcp_flags(&udp_flow), None);
    }
}
