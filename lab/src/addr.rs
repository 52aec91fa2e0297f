//! Lab address plan.
//!
//! The lab only uses 198.18.0.0/15 and fd42::/16. Node number `k` (1-based, in
//! order of first appearance in the scenario) owns 198.18.k.0/24 and
//! fd42:0:0:k::/64 (k written in hex); its endpoints get hosts 10, 11, ... in
//! scenario order, written with the same digits in both families:
//! 198.18.1.10 and fd42:0:0:1::10.

use std::net::{Ipv4Addr, Ipv6Addr};

/// IPv4 range every lab address lies in.
pub const LAB_V4_RANGE: &str = "198.18.0.0/15";
/// IPv6 range every lab address lies in.
pub const LAB_V6_RANGE: &str = "fd42::/16";
/// Prefix length of an endpoint's IPv4 address (one /24 per subnet).
pub const V4_PREFIX_LEN: u8 = 24;
/// Prefix length of an endpoint's IPv6 address (one /64 per subnet).
pub const V6_PREFIX_LEN: u8 = 64;
/// Most nodes (node numbers 1..=MAX_NODES give the third IPv4 octet).
pub const MAX_NODES: u8 = 250;
/// First host number handed out in a node's subnet; lower ones stay free.
pub const FIRST_HOST: u8 = 10;
/// Last host number handed out.
pub const LAST_HOST: u8 = 250;

/// Whether `a` lies in 198.18.0.0/15.
pub fn in_lab_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 198 && o[1] & 0xfe == 18
}

/// Whether `a` lies in fd42::/16.
pub fn in_lab_v6(a: Ipv6Addr) -> bool {
    a.segments()[0] == 0xfd42
}

/// Checks an explicit IPv4 endpoint address.
pub fn check_v4(a: Ipv4Addr) -> Result<(), String> {
    if !in_lab_v4(a) {
        return Err(format!("{a} is outside the lab range {LAB_V4_RANGE}"));
    }
    let last = a.octets()[3];
    if last == 0 || last == 255 {
        return Err(format!(
            "{a} is the network or broadcast address of its /{V4_PREFIX_LEN}"
        ));
    }
    Ok(())
}

/// Checks an explicit IPv6 endpoint address.
pub fn check_v6(a: Ipv6Addr) -> Result<(), String> {
    if !in_lab_v6(a) {
        return Err(format!("{a} is outside the lab range {LAB_V6_RANGE}"));
    }
    if u128::from(a) & u128::from(u64::MAX) == 0 {
        return Err(format!("{a} has an all-zero interface identifier"));
    }
    Ok(())
}

/// The /24 network holding `a`.
pub fn net_v4(a: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) & 0xffff_ff00)
}

/// The /64 network holding `a`.
pub fn net_v6(a: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(a) & !u128::from(u64::MAX))
}

/// IPv4 address of host `host` on node number `node`.
pub fn node_host_v4(node: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, node, host)
}

/// IPv6 address of host `host` on node number `node`: the decimal digits of the
/// host number are reused as hex digits, so host 10 is `::10` like `.10`.
pub fn node_host_v6(node: u8, host: u8) -> Ipv6Addr {
    let digits = u16::from_str_radix(&host.to_string(), 16).expect("decimal digits are hex digits");
    Ipv6Addr::new(0xfd42, 0, 0, u16::from(node), 0, 0, 0, digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_host_numbers() {
        assert!(in_lab_v4("198.19.255.1".parse().unwrap()));
        assert!(!in_lab_v4("198.20.0.1".parse().unwrap()));
        assert!(!in_lab_v4("192.0.2.1".parse().unwrap()));
        assert!(in_lab_v6("fd42:1::1".parse().unwrap()));
        assert!(!in_lab_v6("fd00::1".parse().unwrap()));
        assert_eq!(node_host_v4(1, 10).to_string(), "198.18.1.10");
        assert_eq!(node_host_v6(1, 10).to_string(), "fd42:0:0:1::10");
        assert_eq!(node_host_v6(12, 250).to_string(), "fd42:0:0:c::250");
        assert_eq!(
            net_v6("fd42:0:0:1::10".parse().unwrap()).to_string(),
            "fd42:0:0:1::"
        );
        assert_eq!(
            check_v4("198.18.1.255".parse().unwrap()).unwrap_err(),
            "198.18.1.255 is the network or broadcast address of its /24"
        );
    }
}
