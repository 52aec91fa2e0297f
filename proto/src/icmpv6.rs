//! ICMPv6 messages the product treats apart: neighbour discovery (router and
//! neighbour solicitations and advertisements, redirects) and multicast
//! listener messages keep IPv6 working on a link, as ARP does for IPv4. They
//! are no dependency of one workload on another (no graph edge), leave
//! nothing (no flow to the world), and answer by their type, not by who
//! spoke first (they share one flow entry per address pair).

use crate::flow::Flow;
use crate::flow::layer4::Protocol;

/// Router advertisement: answers a router solicitation.
pub const ROUTER_ADVERTISEMENT: u32 = 134;
/// Neighbour advertisement: answers a neighbour solicitation.
pub const NEIGHBOR_ADVERTISEMENT: u32 = 136;

/// Whether ICMPv6 type `icmp_type` is neighbour discovery or a multicast
/// listener message (130-137, 143).
pub fn is_link_housekeeping(icmp_type: u32) -> bool {
    matches!(icmp_type, 130..=137 | 143)
}

/// Whether `flow` carries such a message.
pub fn flow_is_link_housekeeping(flow: &Flow) -> bool {
    matches!(
        flow.l4.as_ref().and_then(|l| l.protocol.as_ref()),
        Some(Protocol::IcmPv6(i)) if is_link_housekeeping(i.r#type)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{IcmPv4, IcmPv6, Layer4};

    #[test]
    fn neighbour_discovery_and_mld_only() {
        let kinds: Vec<u32> = (0..=255).filter(|t| is_link_housekeeping(*t)).collect();
        assert_eq!(kinds, [130, 131, 132, 133, 134, 135, 136, 137, 143]);
        let with = |protocol| Flow {
            l4: Some(Layer4 {
                protocol: Some(protocol),
            }),
            ..Default::default()
        };
        assert!(flow_is_link_housekeeping(&with(Protocol::IcmPv6(IcmPv6 {
            r#type: 135,
            code: 0
        }))));
        assert!(!flow_is_link_housekeeping(&with(Protocol::IcmPv6(
            IcmPv6 {
                r#type: 128,
                code: 0
            }
        ))));
        assert!(!flow_is_link_housekeeping(&with(Protocol::IcmPv4(
            IcmPv4 {
                r#type: 135,
                code: 0
            }
        ))));
    }
}
