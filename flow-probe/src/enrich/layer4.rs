//! A tc flow's layer 4 (TCP with its flags, UDP, ICMPv4, ICMPv6) and the
//! summary Hubble prints for it ("TCP Flags: SYN, ACK", "ICMPv6 EchoReply",
//! ICMP names from `observer_proto::hubble_text`), written into the flow's own
//! string.

use std::fmt::Write as _;

use observer_proto::flow::{IcmPv4, IcmPv6, Layer4, TcpFlags, layer4};
use observer_proto::hubble_text::{icmp4_type_code, icmp6_type_code};

use crate::flow_builder::{ipproto, ports};
use crate::kernel::events::FlowEvent;

/// The packet's TCP flags, as Hubble's TCPFlags message.
pub fn tcp_flags(bits: u8) -> TcpFlags {
    TcpFlags {
        fin: bits & 0x01 != 0,
        syn: bits & 0x02 != 0,
        rst: bits & 0x04 != 0,
        psh: bits & 0x08 != 0,
        ack: bits & 0x10 != 0,
        urg: bits & 0x20 != 0,
        ece: bits & 0x40 != 0,
        cwr: bits & 0x80 != 0,
        ns: false,
    }
}

/// Flag names in Hubble's order, e.g. "SYN, ACK".
pub fn tcp_flag_names(bits: u8) -> String {
    let mut out = String::new();
    write_tcp_flag_names(bits, &mut out);
    out
}

/// [`tcp_flag_names`], appended to `out`.
fn write_tcp_flag_names(bits: u8, out: &mut String) {
    const NAMES: [(u8, &str); 8] = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x04, "RST"),
        (0x01, "FIN"),
        (0x08, "PSH"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    let mut names = NAMES.iter().filter(|(b, _)| bits & b != 0);
    if let Some((_, first)) = names.next() {
        out.push_str(first);
    }
    for (_, n) in names {
        out.push_str(", ");
        out.push_str(n);
    }
}

/// The flow's layer 4; its summary is appended to `summary`.
pub(super) fn layer4(ev: &FlowEvent, summary: &mut String) -> Option<Layer4> {
    let k = &ev.key;
    let icmp = |p| Some(Layer4 { protocol: Some(p) });
    match k.proto {
        ipproto::TCP => {
            summary.push_str("TCP Flags: ");
            write_tcp_flag_names(ev.tcp_flags, summary);
            ports(k.proto, k.sport, k.dport, Some(tcp_flags(ev.tcp_flags)))
        }
        ipproto::UDP => {
            summary.push_str("UDP");
            ports(k.proto, k.sport, k.dport, None)
        }
        ipproto::ICMP => {
            summary.push_str("ICMPv4 ");
            summary.push_str(&icmp4_type_code(ev.icmp_type.into(), ev.icmp_code.into()));
            icmp(layer4::Protocol::IcmPv4(IcmPv4 {
                r#type: ev.icmp_type.into(),
                code: ev.icmp_code.into(),
            }))
        }
        ipproto::ICMPV6 => {
            summary.push_str("ICMPv6 ");
            summary.push_str(&icmp6_type_code(ev.icmp_type.into(), ev.icmp_code.into()));
            icmp(layer4::Protocol::IcmPv6(IcmPv6 {
                r#type: ev.icmp_type.into(),
                code: ev.icmp_code.into(),
            }))
        }
        other => {
            let _ = write!(summary, "IP protocol {other}");
            None
        }
    }
}
