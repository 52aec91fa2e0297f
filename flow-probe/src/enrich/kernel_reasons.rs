//! Which of Cilium's drop reasons a kernel drop reason (`enum skb_drop_reason`,
//! by its name, since the numbers differ between kernels) stands for, so
//! Hubble clients read `drop_reason_desc` as they would a Cilium drop.
//!
//! Where Cilium's datapath has a drop of the same cause, its reason is used
//! (a bad checksum or truncated header is an invalid packet, a failed route
//! lookup is Cilium's FIB lookup failure, ...). A packet filter of the node's
//! own (netfilter, a socket filter, an XFRM policy) that denied the packet is
//! reported as `POLICY_DENIED`: a rule denied it, as a Cilium policy would.
//! Every other reason has no counterpart and stays `DROP_REASON_UNKNOWN`;
//! the kernel's own name is always in the `kernel_drop` extension (1001).

use observer_proto::flow::DropReason;

/// Cilium's drop reason for the kernel's reason `name` (e.g. `NETFILTER_DROP`).
pub fn cilium_reason(name: &str) -> DropReason {
    match name {
        "NETFILTER_DROP" | "SOCKET_FILTER" | "XFRM_POLICY" | "IP_OUTNOROUTES_POLICY" => {
            DropReason::PolicyDenied
        }
        "PKT_TOO_SMALL"
        | "HDR_TRUNC"
        | "IP_CSUM"
        | "TCP_CSUM"
        | "UDP_CSUM"
        | "ICMP_CSUM"
        | "IP_INHDR"
        | "IPV6_BAD_EXTHDR_LEN"
        | "SKB_CSUM"
        | "INVALID_PROTO" => DropReason::InvalidPacketDropped,
        "IP_RPFILTER" | "IP_INVALID_SOURCE" => DropReason::InvalidSourceIp,
        "UNICAST_IN_L2_MULTICAST" | "OTHERHOST" | "MAC_INVALID_SOURCE" => {
            DropReason::InvalidDestinationMac
        }
        "IP_NOPROTO" => DropReason::UnknownL4Protocol,
        "UNHANDLED_PROTO" | "IPV6DISABLED" => DropReason::UnsupportedL3Protocol,
        "NEIGH_FAILED" | "NEIGH_QUEUEFULL" | "NEIGH_DEAD" => DropReason::StaleOrUnroutableIp,
        "IP_OUTNOROUTES" | "IP_INNOROUTES" | "IPV6_INNOROUTES" => DropReason::FibLookupFailed,
        "IPV6_BAD_EXTHDR" | "IPV6_BAD_EXTHDR_HOPOPTS" | "IPV6_BAD_EXTHDR_NOPORT" => {
            DropReason::InvalidIpv6ExtensionHeader
        }
        "IP_INADDRERRORS" | "IP_LOCAL_SOURCE" => DropReason::UnknownL3TargetAddress,
        "NO_SOCKET" => DropReason::SocketLookupFailed,
        "IP_TUNNEL_ECN" | "TUNNEL_TXINFO" => DropReason::ErrorRetrievingTunnelKey,
        "IPV6_NDISC_FRAG"
        | "IPV6_NDISC_HOP_LIMIT"
        | "IPV6_NDISC_BAD_CODE"
        | "IPV6_NDISC_BAD_OPTIONS"
        | "IPV6_NDISC_NS_OTHERHOST" => DropReason::ForbiddenIcmpv6Message,
        "FRAG_REASM_TIMEOUT" | "FRAG_TOO_FAR" => DropReason::FirstLogicalDatagramFragmentNotFound,
        _ => DropReason::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_reasons_map_to_cilium_where_one_fits() {
        assert_eq!(cilium_reason("NETFILTER_DROP"), DropReason::PolicyDenied);
        assert_eq!(cilium_reason("TCP_CSUM"), DropReason::InvalidPacketDropped);
        assert_eq!(cilium_reason("IP_RPFILTER"), DropReason::InvalidSourceIp);
        assert_eq!(cilium_reason("IP_INNOROUTES"), DropReason::FibLookupFailed);
        assert_eq!(
            cilium_reason("IPV6DISABLED"),
            DropReason::UnsupportedL3Protocol
        );
        assert_eq!(cilium_reason("SOMETHING_NEW"), DropReason::Unknown);
    }
}
