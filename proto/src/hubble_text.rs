//! Texts Hubble derives from numbers: an ICMP type and code as `hubble
//! observe` summaries and the `hubble_icmp_total` `type` label write them
//! (gopacket's `ICMPv4TypeCode` / `ICMPv6TypeCode` strings), and a drop
//! reason as the TYPE column of `hubble observe` names it (Cilium's monitor
//! `DropReason` texts).

/// A type's name and its named codes; `codes` empty: the type uses no code.
struct IcmpType {
    name: &'static str,
    codes: &'static [(u8, &'static str)],
}

const fn t(name: &'static str, codes: &'static [(u8, &'static str)]) -> IcmpType {
    IcmpType { name, codes }
}

fn icmp4(ty: u8) -> Option<IcmpType> {
    Some(match ty {
        0 => t("EchoReply", &[]),
        3 => t(
            "DestinationUnreachable",
            &[
                (0, "Net"),
                (1, "Host"),
                (2, "Protocol"),
                (3, "Port"),
                (4, "FragmentationNeeded"),
                (5, "SourceRoutingFailed"),
                (6, "NetUnknown"),
                (7, "HostUnknown"),
                (8, "SourceIsolated"),
                (9, "NetAdminProhibited"),
                (10, "HostAdminProhibited"),
                (11, "NetTOS"),
                (12, "HostTOS"),
                (13, "CommAdminProhibited"),
                (14, "HostPrecedence"),
                (15, "PrecedenceCutoff"),
            ],
        ),
        4 => t("SourceQuench", &[]),
        5 => t(
            "Redirect",
            &[(0, "Net"), (1, "Host"), (2, "TOS+Net"), (3, "TOS+Host")],
        ),
        8 => t("EchoRequest", &[]),
        9 => t("RouterAdvertisement", &[]),
        10 => t("RouterSolicitation", &[]),
        11 => t(
            "TimeExceeded",
            &[(0, "TTLExceeded"), (1, "FragmentReassemblyTimeExceeded")],
        ),
        12 => t(
            "ParameterProblem",
            &[
                (0, "PointerIndicatesError"),
                (1, "MissingOption"),
                (2, "BadLength"),
            ],
        ),
        13 => t("TimestampRequest", &[]),
        14 => t("TimestampReply", &[]),
        15 => t("InfoRequest", &[]),
        16 => t("InfoReply", &[]),
        17 => t("AddressMaskRequest", &[]),
        18 => t("AddressMaskReply", &[]),
        _ => return None,
    })
}

fn icmp6(ty: u8) -> Option<IcmpType> {
    Some(match ty {
        1 => t(
            "DestinationUnreachable",
            &[
                (0, "NoRouteToDst"),
                (1, "AdminProhibited"),
                (2, "BeyondScopeOfSrc"),
                (3, "AddressUnreachable"),
                (4, "PortUnreachable"),
                (5, "SrcAddressFailedPolicy"),
                (6, "RejectRouteToDst"),
            ],
        ),
        2 => t("PacketTooBig", &[]),
        3 => t(
            "TimeExceeded",
            &[
                (0, "HopLimitExceeded"),
                (1, "FragmentReassemblyTimeExceeded"),
            ],
        ),
        4 => t(
            "ParameterProblem",
            &[
                (0, "ErroneousHeaderField"),
                (1, "UnrecognizedNextHeader"),
                (2, "UnrecognizedIPv6Option"),
            ],
        ),
        128 => t("EchoRequest", &[]),
        129 => t("EchoReply", &[]),
        133 => t("RouterSolicitation", &[]),
        134 => t("RouterAdvertisement", &[]),
        135 => t("NeighborSolicitation", &[]),
        136 => t("NeighborAdvertisement", &[]),
        137 => t("Redirect", &[]),
        _ => return None,
    })
}

fn type_code(info: Option<IcmpType>, ty: u8, code: u8) -> String {
    let Some(info) = info else {
        return format!("{ty}({code})");
    };
    if info.codes.is_empty() && code == 0 {
        return info.name.to_string();
    }
    match info.codes.iter().find(|(c, _)| *c == code) {
        Some((_, c)) => format!("{}({c})", info.name),
        None => format!("{}(Code: {code})", info.name),
    }
}

/// An ICMPv4 type and code as Hubble writes them: `EchoRequest`,
/// `DestinationUnreachable(Port)`, `EchoReply(Code: 3)`, `42(0)`.
pub fn icmp4_type_code(ty: u32, code: u32) -> String {
    let (ty, code) = (ty as u8, code as u8);
    type_code(icmp4(ty), ty, code)
}

/// An ICMPv6 type and code as Hubble writes them: `NeighborSolicitation`,
/// `DestinationUnreachable(PortUnreachable)`, `143(0)` (MLDv2 reports have no name).
pub fn icmp6_type_code(ty: u32, code: u32) -> String {
    let (ty, code) = (ty as u8, code as u8);
    type_code(icmp6(ty), ty, code)
}

/// A drop reason code as `hubble observe` prints it in the TYPE column of a
/// drop (`Policy denied`), Cilium's table as of its drop reason 198; a code
/// without a text is printed as Hubble prints it, the code and its extended
/// error (`199, 0`).
pub fn drop_reason_text(code: i32) -> String {
    let text = match code {
        0 => "Success",
        2 => "Invalid packet",
        3 => "Interface",
        4 => "Interface Decrypted",
        5 => "LB, sock cgroup: No backend slot entry found",
        6 => "LB, sock cgroup: No backend entry found",
        7 => "LB, sock cgroup: Reverse entry update failed",
        8 => "LB, sock cgroup: Reverse entry stale",
        9 => "Fragmented packet",
        10 => "Fragmented packet entry update failed",
        11 => "Missed tail call to custom program",
        130 => "Invalid source mac",
        131 => "Invalid destination mac",
        132 => "Invalid source ip",
        133 => "Policy denied",
        134 => "Invalid packet",
        135 => "CT: Truncated or invalid header",
        136 => "Fragmentation needed",
        137 => "CT: Unknown L4 protocol",
        138 => "CT: Can't create entry from packet",
        139 => "Unsupported L3 protocol",
        140 => "Missed tail call",
        141 => "Error writing to packet",
        142 => "Unknown L4 protocol",
        143 => "Unknown ICMPv4 code",
        144 => "Unknown ICMPv4 type",
        145 => "Unknown ICMPv6 code",
        146 => "Unknown ICMPv6 type",
        147 => "Error retrieving tunnel key",
        148 => "Error retrieving tunnel options",
        149 => "Invalid Geneve option",
        150 => "Unknown L3 target address",
        151 => "Stale or unroutable IP",
        152 => "No matching local container found",
        153 => "Error while correcting L3 checksum",
        154 => "Error while correcting L4 checksum",
        155 => "CT: Map insertion failed",
        156 => "Invalid IPv6 extension header",
        157 => "IP fragmentation not supported",
        158 => "Service backend not found",
        160 => "No tunnel/encapsulation endpoint (datapath BUG!)",
        161 => "NAT 46/64 not enabled",
        162 => "Reached EDT rate-limiting drop horizon",
        163 => "Unknown connection tracking state",
        164 => "Local host is unreachable",
        165 => "No configuration available to perform policy decision",
        166 => "Unsupported L2 protocol",
        167 => "No mapping for NAT masquerade",
        168 => "Unsupported protocol for NAT masquerade",
        169 => "FIB lookup failed",
        170 => "Encapsulation traffic is prohibited",
        171 => "Invalid identity",
        172 => "Unknown sender",
        173 => "NAT not needed",
        174 => "Is a ClusterIP",
        175 => "First logical datagram fragment not found",
        176 => "Forbidden ICMPv6 message",
        177 => "Denied by LB src range check",
        178 => "Socket lookup failed",
        179 => "Socket assign failed",
        180 => "Proxy redirection not supported for protocol",
        181 => "Policy denied by denylist",
        182 => "VLAN traffic disallowed by VLAN filter",
        183 => "Incorrect VNI from VTEP",
        184 => "Failed to update or lookup TC buffer",
        185 => "No SID was found for the IP address",
        186 => "SRv6 state was removed during tail call",
        187 => "L3 translation from IPv4 to IPv6 failed (NAT46)",
        188 => "L3 translation from IPv6 to IPv4 failed (NAT64)",
        189 => "Authentication required",
        190 => "No conntrack map found",
        191 => "No nat map found",
        192 => "Invalid ClusterID",
        193 => "Unsupported packet protocol for DSR encapsulation",
        194 => "No egress gateway found",
        195 => "Traffic is unencrypted",
        196 => "TTL exceeded",
        197 => "No node ID found",
        198 => "Rate limited",
        other => return format!("{other}, 0"),
    };
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_types_and_codes_read_as_hubble_writes_them() {
        assert_eq!(icmp4_type_code(8, 0), "EchoRequest");
        assert_eq!(icmp4_type_code(3, 3), "DestinationUnreachable(Port)");
        assert_eq!(icmp4_type_code(0, 3), "EchoReply(Code: 3)");
        assert_eq!(icmp4_type_code(11, 9), "TimeExceeded(Code: 9)");
        assert_eq!(icmp4_type_code(42, 1), "42(1)");
        assert_eq!(icmp6_type_code(135, 0), "NeighborSolicitation");
        assert_eq!(
            icmp6_type_code(1, 4),
            "DestinationUnreachable(PortUnreachable)"
        );
        assert_eq!(icmp6_type_code(143, 0), "143(0)");
    }

    #[test]
    fn drop_reasons_read_as_the_type_column() {
        assert_eq!(drop_reason_text(133), "Policy denied");
        assert_eq!(drop_reason_text(181), "Policy denied by denylist");
        // Newer codes and texts (the table had stopped at 181, with older
        // texts for 136 and 161); unknown ones as Hubble prints them.
        assert_eq!(drop_reason_text(196), "TTL exceeded");
        assert_eq!(drop_reason_text(136), "Fragmentation needed");
        assert_eq!(drop_reason_text(161), "NAT 46/64 not enabled");
        assert_eq!(drop_reason_text(9), "Fragmented packet");
        assert_eq!(drop_reason_text(199), "199, 0");
    }
}
