//! The address → identity table the datapath's longest-prefix-match
//! `IPCACHE` holds: every endpoint address (a /32 or /128) with its
//! endpoint's identity, and every CIDR of a compiled policy with its CIDR
//! identity; anything else is world. flow-probe programs the kernel map from
//! [`entries`]; [`Ipcache`] answers the same lookups in Rust.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::endpoints::{EndpointsFile, reserved};

use super::CompiledPolicy;

/// One prefix and the identity of the addresses it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpcacheEntry {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub identity: u32,
}

/// What the datapath's ipcache holds for `compiled`, compiled from `endpoints`:
/// endpoint addresses first, then the policies' CIDRs.
pub fn entries(compiled: &CompiledPolicy, endpoints: &EndpointsFile) -> Vec<IpcacheEntry> {
    let identities = endpoints.identities();
    let mut out = Vec::new();
    for ep in &endpoints.endpoints {
        let identity = identities
            .get(&ep.identity_labels())
            .copied()
            .unwrap_or(reserved::UNKNOWN);
        let v4 = ep.ipv4.map(|a| (IpAddr::V4(a), 32));
        let v6 = ep.ipv6.map(|a| (IpAddr::V6(a), 128));
        for (addr, prefix_len) in v4.into_iter().chain(v6) {
            out.push(IpcacheEntry {
                addr,
                prefix_len,
                identity,
            });
        }
    }
    // A CIDR that is exactly an endpoint's address does not take it over:
    // the endpoint keeps its identity (as in Cilium, CIDR rules do not
    // select endpoints), and no other policy's verdict on it changes.
    let endpoint_prefixes: std::collections::HashSet<(IpAddr, u8)> =
        out.iter().map(|e| (e.addr, e.prefix_len)).collect();
    out.extend(
        compiled
            .cidrs
            .iter()
            .filter(|c| !endpoint_prefixes.contains(&(c.addr, c.prefix_len)))
            .map(|c| IpcacheEntry {
                addr: c.addr,
                prefix_len: c.prefix_len,
                identity: c.identity,
            }),
    );
    out
}

/// Longest-prefix match over [`entries`]: one hash table per prefix length,
/// longest first, so a lookup costs at most one probe per distinct length.
#[derive(Debug, Clone, Default)]
pub struct Ipcache {
    /// `(prefix length, is IPv6)` longest first, each with its prefixes.
    by_len: Vec<((u8, bool), HashMap<IpAddr, u32>)>,
}

/// `addr` with the bits past `prefix_len` cleared.
fn masked(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

impl Ipcache {
    pub fn new(entries: &[IpcacheEntry]) -> Self {
        let mut by_len: Vec<((u8, bool), HashMap<IpAddr, u32>)> = Vec::new();
        for e in entries {
            let key = (e.prefix_len, e.addr.is_ipv6());
            let slot = match by_len.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    by_len.push((key, HashMap::new()));
                    by_len.len() - 1
                }
            };
            // As a map update: the last entry for a prefix stays.
            by_len[slot]
                .1
                .insert(masked(e.addr, e.prefix_len), e.identity);
        }
        by_len.sort_by_key(|(key, _)| std::cmp::Reverse(key.0));
        Ipcache { by_len }
    }

    /// The identity of `addr`: its longest prefix's, else world.
    pub fn identity_of(&self, addr: IpAddr) -> u32 {
        let v6 = addr.is_ipv6();
        self.by_len
            .iter()
            .filter(|((_, family), _)| *family == v6)
            .find_map(|((len, _), prefixes)| prefixes.get(&masked(addr, *len)).copied())
            .unwrap_or(reserved::WORLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{compile, parse};

    /// One endpoint, api, at 10.1.2.3 and fd42::3.
    fn api_endpoint() -> EndpointsFile {
        EndpointsFile::parse(
            "endpoints:\n- {id: 1, name: api, namespace: default, labels: {app: api}, \
             ipv4: 10.1.2.3, ipv6: 'fd42::3', node: n1}\n",
            "e",
        )
        .unwrap()
    }

    #[test]
    fn an_address_gets_its_most_specific_prefix_and_else_world() {
        let endpoints = api_endpoint();
        let policies = parse(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n\
             spec:\n  endpointSelector: {}\n  egress:\n  - toCIDR: [10.0.0.0/8, 10.1.0.0/16, \
             0.0.0.0/0, 'fd42::/16']\n",
            "p",
        )
        .unwrap();
        let compiled = compile(&policies, &endpoints);
        let entries = entries(&compiled, &endpoints);
        let api = entries[0].identity;
        assert!(api >= reserved::FIRST_CLUSTER_LOCAL);
        let cidr = |c: &str| {
            let (a, l) = c.split_once('/').unwrap();
            let (addr, len) = (a.parse::<IpAddr>().unwrap(), l.parse::<u8>().unwrap());
            compiled
                .cidrs
                .iter()
                .find(|x| x.addr == addr && x.prefix_len == len)
                .unwrap()
                .identity
        };
        let cache = Ipcache::new(&entries);
        let at = |a: &str| cache.identity_of(a.parse().unwrap());
        assert_eq!(at("10.1.2.3"), api);
        assert_eq!(at("fd42::3"), api);
        assert_eq!(at("10.1.2.4"), cidr("10.1.0.0/16"));
        assert_eq!(at("10.200.0.1"), cidr("10.0.0.0/8"));
        assert_eq!(at("fd42::4"), cidr("fd42::/16"));
        // /0 has no identity of its own: world.
        assert_eq!(at("192.0.2.1"), reserved::WORLD);
        assert_eq!(at("2001:db8::1"), reserved::WORLD);
    }

    #[test]
    fn a_cidr_that_is_an_endpoints_address_leaves_it_the_endpoints() {
        let endpoints = api_endpoint();
        let policies = parse(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n\
             spec:\n  endpointSelector: {}\n  ingress:\n  - fromCIDR: [10.1.2.3/32, \
             'fd42::3/128', 10.1.2.4/32]\n",
            "p",
        )
        .unwrap();
        let compiled = compile(&policies, &endpoints);
        let entries = entries(&compiled, &endpoints);
        let api = entries[0].identity;
        let cache = Ipcache::new(&entries);
        let at = |a: &str| cache.identity_of(a.parse().unwrap());
        assert_eq!(at("10.1.2.3"), api);
        assert_eq!(at("fd42::3"), api);
        // Only the CIDR that is no endpoint's is in the table.
        assert_eq!(entries.len(), 3);
        assert!(at("10.1.2.4") >= crate::policy::compile::FIRST_CIDR_IDENTITY);
    }
}
