//! The datapath's decision on the first packet of a connection, in Rust, from
//! the same compiled rules the kernel's maps are programmed with: what
//! `judge()` (`ebpf-probes/src/lib/track.h`) and `policy_decide()`
//! (`lib/policy.h`) do with `ENDPOINTS`, `IPCACHE` and `POLICY`. `observe
//! policy whatif` and the relay's what-if tables replay history with it; the
//! end-to-end tests hold it to the kernel's verdicts on the lab's traffic.
//!
//! Step by step, as the kernel: the local endpoint's enforcement in the
//! packet's direction (none: not judged, forwarded); IPv6 neighbour discovery
//! and multicast listener messages are never judged; the peer's identity by
//! longest-prefix match ([`Ipcache`]); the destination port only for TCP and
//! UDP (0 otherwise); then the four lookups (peer and port, peer, port,
//! neither): any deny wins, else the first allow, else the default deny.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::endpoints::EndpointsFile;

use super::compile::{Action, CompiledPolicy, EndpointPolicy, Enforcement, PolicyKey};
use super::ipcache::{self, Ipcache};
use super::spec::Direction;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;

/// What happens to the packet (Hubble's verdict numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Forwarded = 1,
    Dropped = 2,
    /// An audit-mode endpoint's would-be drop: reported, forwarded.
    Audit = 4,
}

impl Verdict {
    /// Whether the packet goes on (forwarded or audited).
    pub fn allows(self) -> bool {
        self != Verdict::Dropped
    }

    /// Hubble's name of the verdict.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Forwarded => "FORWARDED",
            Verdict::Dropped => "DROPPED",
            Verdict::Audit => "AUDIT",
        }
    }
}

/// Which of the four lookups matched (Cilium's policy match types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Match {
    None = 0,
    L3Only = 1,
    L3L4 = 2,
    L4Only = 3,
    All = 4,
}

/// Why a judged packet is denied (Hubble's drop reason numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    /// No rule allowed it: the default deny.
    PolicyDenied = 133,
    /// An explicit deny rule.
    PolicyDeny = 181,
}

impl Denial {
    pub fn name(self) -> &'static str {
        match self {
            Denial::PolicyDenied => "POLICY_DENIED",
            Denial::PolicyDeny => "POLICY_DENY",
        }
    }
}

/// The decision on one first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Whether a policy judged it (a policy-verdict or drop event); false:
    /// the endpoint does not enforce that direction, or the packet is exempt.
    pub judged: bool,
    pub matched: Match,
    /// The policy that allowed or denied it (an index into
    /// [`CompiledPolicy::policies`]); `None` for the default deny.
    pub policy: Option<u32>,
    /// Set when a rule or the default denies it, also in audit mode.
    pub denial: Option<Denial>,
    /// The peer's identity.
    pub remote_identity: u32,
}

impl Decision {
    /// Not judged: the packet passes as a plain trace.
    fn trace(remote_identity: u32) -> Self {
        Decision {
            verdict: Verdict::Forwarded,
            judged: false,
            matched: Match::None,
            policy: None,
            denial: None,
            remote_identity,
        }
    }
}

/// The first packet of a connection, as seen on its local endpoint's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstPacket {
    /// The endpoint whose interface it crossed.
    pub local: IpAddr,
    /// The other end.
    pub peer: IpAddr,
    /// Egress: the endpoint sent it; ingress: it receives it.
    pub direction: Direction,
    /// IP protocol number.
    pub proto: u8,
    /// Destination port (TCP, UDP, SCTP); 0 otherwise.
    pub dport: u16,
    /// ICMP type (ICMP and ICMPv6); 0 otherwise.
    pub icmp_type: u8,
}

impl CompiledPolicy {
    /// `policy_decide()`: the decision for a connection of `endpoint` in
    /// `direction` with a peer of `remote_identity`, to `dport`/`proto` (0 and
    /// 0 but for TCP and UDP).
    pub fn decide(
        &self,
        endpoint: &EndpointPolicy,
        direction: Direction,
        remote_identity: u32,
        dport: u16,
        proto: u8,
    ) -> Decision {
        let mode = match direction {
            Direction::Ingress => endpoint.ingress,
            Direction::Egress => endpoint.egress,
        };
        if mode == Enforcement::None {
            return Decision::trace(remote_identity);
        }
        let denied = if mode == Enforcement::Audit {
            Verdict::Audit
        } else {
            Verdict::Dropped
        };
        let lookups = [
            (remote_identity, dport, proto, Match::L3L4),
            (remote_identity, 0, 0, Match::L3Only),
            (0, dport, proto, Match::L4Only),
            (0, 0, 0, Match::All),
        ];
        let mut allow = None;
        for (remote, dport, proto, matched) in lookups {
            let key = PolicyKey {
                endpoint_id: endpoint.endpoint_id,
                remote_identity: remote,
                dport,
                proto,
                direction,
            };
            let Some(value) = self.entries.get(&key) else {
                continue;
            };
            if value.action == Action::Deny {
                return Decision {
                    verdict: denied,
                    judged: true,
                    matched,
                    policy: Some(value.policy_id),
                    denial: Some(Denial::PolicyDeny),
                    remote_identity,
                };
            }
            allow = allow.or(Some((value.policy_id, matched)));
        }
        let (policy, matched, verdict, denial) = match allow {
            Some((id, matched)) => (Some(id), matched, Verdict::Forwarded, None),
            None => (None, Match::None, denied, Some(Denial::PolicyDenied)),
        };
        Decision {
            verdict,
            judged: true,
            matched,
            policy,
            denial,
            remote_identity,
        }
    }
}

/// A compiled policy with the datapath's view of addresses: which endpoint
/// an address belongs to, and the identity of any address.
#[derive(Debug, Clone)]
pub struct Judge {
    compiled: CompiledPolicy,
    ipcache: Ipcache,
    /// Endpoint address → index into `compiled.endpoints`.
    local: HashMap<IpAddr, usize>,
}

impl Judge {
    /// `compiled` must have been compiled from `endpoints`.
    pub fn new(compiled: CompiledPolicy, endpoints: &EndpointsFile) -> Self {
        let ipcache = Ipcache::new(&ipcache::entries(&compiled, endpoints));
        let mut local = HashMap::new();
        for ep in &endpoints.endpoints {
            let Ok(index) = compiled
                .endpoints
                .binary_search_by_key(&ep.id, |e| e.endpoint_id)
            else {
                continue;
            };
            let v4 = ep.ipv4.map(IpAddr::V4);
            let v6 = ep.ipv6.map(IpAddr::V6);
            for addr in v4.into_iter().chain(v6) {
                local.insert(addr, index);
            }
        }
        Judge {
            compiled,
            ipcache,
            local,
        }
    }

    pub fn compiled(&self) -> &CompiledPolicy {
        &self.compiled
    }

    /// The identity the datapath gives `addr`.
    pub fn identity_of(&self, addr: IpAddr) -> u32 {
        self.ipcache.identity_of(addr)
    }

    /// The kernel's decision on `packet`, seen on an endpoint's interface;
    /// `None` when its local address is no endpoint's, so the endpoint is
    /// not known (neighbour discovery, never judged, needs none).
    pub fn judge(&self, packet: &FirstPacket) -> Option<Decision> {
        let remote = self.ipcache.identity_of(packet.peer);
        // Neighbour discovery and multicast listener messages keep IPv6
        // working: never judged (like ARP for IPv4), whatever their
        // addresses (link-local, multicast).
        if packet.proto == ICMPV6 && matches!(packet.icmp_type, 130..=137 | 143) {
            return Some(Decision::trace(remote));
        }
        let endpoint = &self.compiled.endpoints[*self.local.get(&packet.local)?];
        let mode = match packet.direction {
            Direction::Ingress => endpoint.ingress,
            Direction::Egress => endpoint.egress,
        };
        if mode == Enforcement::None {
            return Some(Decision::trace(remote));
        }
        let dport = if matches!(packet.proto, TCP | UDP) {
            packet.dport
        } else {
            0
        };
        Some(
            self.compiled
                .decide(endpoint, packet.direction, remote, dport, packet.proto),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::reserved;
    use crate::policy::{compile, parse};

    /// The lab's default scenario, addresses shortened: frontend, api and
    /// db enforce ingress (frontend in audit mode), client nothing.
    const ENDPOINTS: &str = "endpoints:
- {id: 1, name: frontend, namespace: default, labels: {app: frontend}, ipv4: 198.18.1.10, ipv6: 'fd42:0:0:1::10', node: n1}
- {id: 2, name: api, namespace: default, labels: {app: api}, ipv4: 198.18.1.11, node: n1}
- {id: 3, name: db, namespace: default, labels: {app: db}, ipv4: 198.18.1.12, node: n1}
- {id: 4, name: client, namespace: other, labels: {app: client}, ipv4: 198.18.2.10, node: n2}
";

    const POLICIES: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-allow-frontend}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: frontend}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}]}]
  - fromCIDR: [192.0.2.0/24]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db-deny-client}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: api}}]
    toPorts: [{ports: [{port: '5432', protocol: TCP}]}]
  - toPorts: [{ports: [{port: '9000', protocol: SCTP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client, io.kubernetes.pod.namespace: other}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: frontend-audit
  annotations: {observe.io/audit: 'true'}
spec:
  endpointSelector: {matchLabels: {app: frontend}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: api}}]
";

    fn judge() -> Judge {
        let endpoints = EndpointsFile::parse(ENDPOINTS, "e").unwrap();
        let policies = parse(POLICIES, "p").unwrap();
        Judge::new(compile(&policies, &endpoints), &endpoints)
    }

    fn packet(from: &str, to: &str, proto: u8, dport: u16) -> FirstPacket {
        FirstPacket {
            local: to.parse().unwrap(),
            peer: from.parse().unwrap(),
            direction: Direction::Ingress,
            proto,
            dport,
            icmp_type: 0,
        }
    }

    /// (verdict, judged, match, policy name, denial) of `p`.
    fn verdict(j: &Judge, p: FirstPacket) -> (Verdict, bool, Match, Option<&str>, Option<Denial>) {
        let d = j.judge(&p).expect("an endpoint");
        let name = d
            .policy
            .map(|i| j.compiled().policies[i as usize].name.as_str());
        (d.verdict, d.judged, d.matched, name, d.denial)
    }

    const FRONTEND: &str = "198.18.1.10";
    const API: &str = "198.18.1.11";
    const DB: &str = "198.18.1.12";
    const CLIENT: &str = "198.18.2.10";

    #[test]
    fn the_scenario_verdicts() {
        let j = judge();
        use Verdict::*;
        assert_eq!(
            verdict(&j, packet(FRONTEND, API, TCP, 8080)),
            (
                Forwarded,
                true,
                Match::L3L4,
                Some("api-allow-frontend"),
                None
            )
        );
        assert_eq!(
            verdict(&j, packet(CLIENT, API, TCP, 8080)),
            (Dropped, true, Match::None, None, Some(Denial::PolicyDenied))
        );
        assert_eq!(
            verdict(&j, packet(FRONTEND, API, UDP, 8080)),
            (Dropped, true, Match::None, None, Some(Denial::PolicyDenied))
        );
        assert_eq!(
            verdict(&j, packet(CLIENT, DB, UDP, 5353)),
            (
                Dropped,
                true,
                Match::L3Only,
                Some("db-deny-client"),
                Some(Denial::PolicyDeny)
            )
        );
        // The deny wins over an allow of the same peer and port.
        assert_eq!(
            verdict(&j, packet(API, DB, TCP, 5432)),
            (Forwarded, true, Match::L3L4, Some("db-deny-client"), None)
        );
        assert_eq!(
            verdict(&j, packet(CLIENT, FRONTEND, 1, 0)),
            (Audit, true, Match::None, None, Some(Denial::PolicyDenied))
        );
        assert_eq!(
            verdict(&j, packet(API, FRONTEND, TCP, 80)),
            (Forwarded, true, Match::L3Only, Some("frontend-audit"), None)
        );
        // Client enforces nothing: a trace.
        let mut out = packet(CLIENT, API, TCP, 8080);
        out.direction = Direction::Egress;
        (out.local, out.peer) = (out.peer, out.local);
        assert_eq!(
            verdict(&j, out),
            (Forwarded, false, Match::None, None, None)
        );
        // A non-endpoint address is not judged at all.
        assert_eq!(j.judge(&packet(API, "198.18.9.9", TCP, 80)), None);
    }

    #[test]
    fn peers_resolve_by_longest_prefix_and_ports_count_for_tcp_and_udp_only() {
        let j = judge();
        assert_eq!(
            verdict(&j, packet("192.0.2.7", API, TCP, 22)).3,
            Some("api-allow-frontend")
        );
        let d = j.judge(&packet("203.0.113.1", API, TCP, 22)).unwrap();
        assert_eq!(
            (d.verdict, d.remote_identity),
            (Verdict::Dropped, reserved::WORLD)
        );
        // The datapath looks SCTP up without its port: the port rule never
        // matches it.
        assert_eq!(verdict(&j, packet(API, DB, 132, 9000)).0, Verdict::Dropped);
        let d = j.judge(&packet(API, DB, UDP, 9000)).unwrap();
        assert_eq!(d.verdict, Verdict::Dropped);
    }

    #[test]
    fn neighbour_discovery_is_never_judged() {
        let j = judge();
        let mut p = packet("fd42:0:0:1::99", "fd42:0:0:1::10", ICMPV6, 0);
        for (icmp_type, judged) in [
            (128, true),
            (130, false),
            (135, false),
            (136, false),
            (143, false),
            (138, true),
        ] {
            p.icmp_type = icmp_type;
            assert_eq!(j.judge(&p).unwrap().judged, judged, "type {icmp_type}");
        }
        // To a multicast address: exempt all the same; anything else needs
        // its endpoint.
        p.local = "ff02::1:ff00:10".parse().unwrap();
        p.icmp_type = 135;
        assert!(!j.judge(&p).unwrap().judged);
        p.icmp_type = 128;
        assert_eq!(j.judge(&p), None);
    }
}
