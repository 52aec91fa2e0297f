//! The lookup structures of a compiled filter, so that a flow's cost does not
//! grow with the number of entries: addresses and prefixes by prefix length,
//! pod and service names by prefix.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

/// Address prefixes (a bare address is a full-length prefix), one hash set of
/// network addresses per prefix length: a lookup costs one probe per distinct
/// length (at most 33 for IPv4, 129 for IPv6), whatever the number of entries.
#[derive(Debug, Clone, Default)]
pub(super) struct IpSet {
    v4: Vec<(u8, HashSet<u32>)>,
    v6: Vec<(u8, HashSet<u128>)>,
}

impl IpSet {
    pub(super) fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut v4: HashMap<u8, HashSet<u32>> = HashMap::new();
        let mut v6: HashMap<u8, HashSet<u128>> = HashMap::new();
        for net in nets {
            // Host bits typed in the entry are ignored when matching.
            match net.trunc() {
                IpNet::V4(n) => {
                    v4.entry(n.prefix_len())
                        .or_default()
                        .insert(u32::from(n.network()));
                }
                IpNet::V6(n) => {
                    v6.entry(n.prefix_len())
                        .or_default()
                        .insert(u128::from(n.network()));
                }
            }
        }
        Self {
            v4: sorted(v4),
            v6: sorted(v6),
        }
    }

    /// Whether a prefix holds `ip`. Families never mix, as in Go.
    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .any(|(len, nets)| nets.contains(&(a & mask32(*len))))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .any(|(len, nets)| nets.contains(&(a & mask128(*len))))
            }
        }
    }
}

/// The sets, shortest prefix first.
fn sorted<T>(by_len: HashMap<u8, HashSet<T>>) -> Vec<(u8, HashSet<T>)> {
    let mut v: Vec<_> = by_len.into_iter().collect();
    v.sort_unstable_by_key(|(len, _)| *len);
    v
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// Pod or service entries: (namespace, name prefix), where an empty namespace
/// stands for any. A lookup tries each prefix of the flow's name, so it costs
/// the name's length, not the number of entries.
#[derive(Debug, Clone, Default)]
pub(super) struct NamePrefixes {
    any_namespace: HashSet<String>,
    by_namespace: HashMap<String, HashSet<String>>,
}

impl NamePrefixes {
    pub(super) fn insert(&mut self, namespace: &str, prefix: &str) {
        let set = if namespace.is_empty() {
            &mut self.any_namespace
        } else {
            self.by_namespace.entry(namespace.to_owned()).or_default()
        };
        set.insert(prefix.to_owned());
    }

    /// Whether `name` in `namespace` starts with an entry's prefix; a flow
    /// with neither (no endpoint, no service) never matches.
    pub(super) fn matches(&self, namespace: &str, name: &str) -> bool {
        if namespace.is_empty() && name.is_empty() {
            return false;
        }
        let in_namespace = self.by_namespace.get(namespace);
        let mut cuts = name.char_indices().map(|(i, _)| i).chain([name.len()]);
        cuts.any(|i| {
            let prefix = &name[..i];
            self.any_namespace.contains(prefix) || in_namespace.is_some_and(|s| s.contains(prefix))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> IpSet {
        IpSet::new(nets.iter().map(|n| n.parse::<IpNet>().expect("test net")))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn prefixes_of_every_length_and_family() {
        let s = set(&["10.1.2.3/8", "192.0.2.7/32", "0.0.0.0/0", "fd00::/16"]);
        assert!(
            s.contains(ip("10.200.0.1")),
            "host bits of an entry ignored"
        );
        assert!(s.contains(ip("192.0.2.7")) && s.contains(ip("203.0.113.1")));
        assert!(s.contains(ip("fd00:1::1")) && !s.contains(ip("fd01::1")));
        let v6_only = set(&["::/0"]);
        assert!(v6_only.contains(ip("::1")) && !v6_only.contains(ip("10.0.0.1")));
        let host6 = set(&["2001:db8::1/128"]);
        assert!(host6.contains(ip("2001:db8::1")) && !host6.contains(ip("2001:db8::2")));
        assert!(!set(&[]).contains(ip("10.0.0.1")));
    }

    #[test]
    fn a_hundred_thousand_addresses_are_one_probe() {
        let s = IpSet::new(
            (0..100_000u32)
                .map(|i| IpNet::from(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i * 2)))),
        );
        assert_eq!(s.v4.len(), 1, "one prefix length");
        assert!(s.contains(ip("10.0.0.2")) && !s.contains(ip("10.0.0.3")));
    }

    #[test]
    fn name_prefixes_by_namespace() {
        let mut p = NamePrefixes::default();
        p.insert("default", "web-");
        p.insert("", "db");
        p.insert("kube-system", "");
        assert!(p.matches("default", "web-1") && !p.matches("other", "web-1"));
        assert!(p.matches("other", "db-0") && p.matches("", "db"));
        assert!(p.matches("kube-system", "anything") && p.matches("kube-system", ""));
        assert!(!p.matches("default", "we") && !p.matches("", ""));
        assert!(
            p.matches("default", "web-ü"),
            "non-ASCII names cut on characters"
        );
    }
}
