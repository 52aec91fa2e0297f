//! Policies → the entries the datapath enforces. Selectors pick endpoints, the
//! selected peers become identities, so the kernel compares numbers, not labels.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::endpoints::{Endpoint, EndpointsFile, reserved};

use super::spec::{Cidr, Direction, Policy, Rule, Selector};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
}

/// Per endpoint and direction: no policy selects it (allow all), enforce (default
/// deny), or audit (report instead of drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Enforcement {
    None,
    Enforce,
    Audit,
}

/// One entry's key. `dport` and `proto` are both set or both 0 (any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    pub endpoint_id: u32,
    /// The peer's identity; 0 = any.
    pub remote_identity: u32,
    /// Destination port; 0 = any.
    pub dport: u16,
    /// 0 = any, 6 tcp, 17 udp, 132 sctp.
    pub proto: u8,
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyValue {
    pub action: Action,
    /// Index into [`CompiledPolicy::policies`].
    pub policy_id: u32,
}

/// What the datapath needs per endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPolicy {
    pub endpoint_id: u32,
    /// The endpoint's own security identity.
    pub identity: u32,
    pub ingress: Enforcement,
    pub egress: Enforcement,
}

/// A policy as verdicts name it (Hubble's `Policy` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRef {
    pub name: String,
    pub namespace: String,
    /// Cilium's `k8s:io.cilium.k8s.policy.*` labels, sorted.
    pub labels: Vec<String>,
    pub audit: bool,
}

/// The identity of the addresses of a CIDR named by some policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CidrIdentity {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub identity: u32,
}

/// Everything the datapath maps are programmed from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompiledPolicy {
    /// Every input policy, in input order ([`PolicyValue::policy_id`] indexes it).
    pub policies: Vec<PolicyRef>,
    /// Every endpoint of the endpoints file, sorted by id.
    pub endpoints: Vec<EndpointPolicy>,
    pub entries: BTreeMap<PolicyKey, PolicyValue>,
    /// Distinct CIDRs of all policies except /0, sorted, each with its
    /// identity (from [`FIRST_CIDR_IDENTITY`], stable: see `cidr_identities`).
    pub cidrs: Vec<CidrIdentity>,
}

impl CompiledPolicy {
    /// The endpoint with this id, if the endpoints file has it.
    pub fn endpoint(&self, endpoint_id: u32) -> Option<&EndpointPolicy> {
        self.endpoints
            .binary_search_by_key(&endpoint_id, |e| e.endpoint_id)
            .ok()
            .map(|i| &self.endpoints[i])
    }
}

/// First identity of CIDRs (Cilium's node-local identity range starts at 2^24).
pub const FIRST_CIDR_IDENTITY: u32 = (1 << 24) + 1;

/// How many CIDR identities there are (from [`FIRST_CIDR_IDENTITY`]): within
/// Cilium's node-local range, wide enough that hashes seldom meet.
pub const CIDR_IDENTITY_SPAN: u32 = 1 << 23;

/// Compiles `policies` against the endpoints they may select. Deterministic: the
/// same input gives the same output on every node.
pub fn compile(policies: &[Policy], endpoints: &EndpointsFile) -> CompiledPolicy {
    let identities = endpoints.identities();
    let identity_of = |ep: &Endpoint| {
        identities
            .get(&ep.identity_labels())
            .copied()
            .unwrap_or(reserved::UNKNOWN)
    };
    let cidrs = cidr_identities(policies);

    let subjects: Vec<Vec<&Endpoint>> = policies.iter().map(|p| subjects(p, endpoints)).collect();

    // Enforcement: any enforcing policy wins over audit ones.
    let mut modes: BTreeMap<(u32, Direction), Enforcement> = BTreeMap::new();
    for (policy, eps) in policies.iter().zip(&subjects) {
        for direction in Direction::BOTH {
            if !policy.enforces(direction) {
                continue;
            }
            for ep in eps {
                let mode = modes
                    .entry((ep.id, direction))
                    .or_insert(Enforcement::Audit);
                if !policy.audit {
                    *mode = Enforcement::Enforce;
                }
            }
        }
    }

    let mut entries = BTreeMap::new();
    for (index, (policy, eps)) in policies.iter().zip(&subjects).enumerate() {
        let policy_id = u32::try_from(index).unwrap_or(u32::MAX);
        for direction in Direction::BOTH {
            let (allow, deny) = match direction {
                Direction::Ingress => (&policy.ingress, &policy.ingress_deny),
                Direction::Egress => (&policy.egress, &policy.egress_deny),
            };
            // An audit policy never changes what an enforced endpoint forwards:
            // its denies would drop, its allows would let through.
            let targets: Vec<u32> = eps
                .iter()
                .map(|ep| ep.id)
                .filter(|id| {
                    !(policy.audit && modes.get(&(*id, direction)) == Some(&Enforcement::Enforce))
                })
                .collect();
            for (action, rules) in [(Action::Allow, allow), (Action::Deny, deny)] {
                for rule in rules.iter().flatten() {
                    let remotes =
                        remote_identities(rule, &policy.namespace, endpoints, &identity_of, &cidrs);
                    let ports = port_keys(rule);
                    for &endpoint_id in &targets {
                        for &remote_identity in &remotes {
                            for &(dport, proto) in &ports {
                                let key = PolicyKey {
                                    endpoint_id,
                                    remote_identity,
                                    dport,
                                    proto,
                                    direction,
                                };
                                merge(&mut entries, key, PolicyValue { action, policy_id });
                            }
                        }
                    }
                }
            }
        }
    }

    let mut out_endpoints: Vec<EndpointPolicy> = endpoints
        .endpoints
        .iter()
        .map(|ep| {
            let mode = |direction| {
                modes
                    .get(&(ep.id, direction))
                    .copied()
                    .unwrap_or(Enforcement::None)
            };
            EndpointPolicy {
                endpoint_id: ep.id,
                identity: identity_of(ep),
                ingress: mode(Direction::Ingress),
                egress: mode(Direction::Egress),
            }
        })
        .collect();
    out_endpoints.sort_by_key(|e| e.endpoint_id);

    CompiledPolicy {
        policies: policies
            .iter()
            .map(|p| PolicyRef {
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                labels: p.labels(),
                audit: p.audit,
            })
            .collect(),
        endpoints: out_endpoints,
        entries,
        cidrs: cidrs
            .iter()
            .map(|(cidr, identity)| CidrIdentity {
                addr: cidr.addr(),
                prefix_len: cidr.prefix_len(),
                identity: *identity,
            })
            .collect(),
    }
}

/// Whether `sel` selects `ep`; the selector's namespace label, or else
/// `namespace`, must be the endpoint's namespace.
/// The endpoints `policy` applies to: those of its namespace its endpoint
/// selector matches.
pub fn subjects<'a>(policy: &Policy, endpoints: &'a EndpointsFile) -> Vec<&'a Endpoint> {
    endpoints
        .endpoints
        .iter()
        .filter(|ep| {
            ep.namespace == policy.namespace
                && selects(&policy.endpoint_selector, &policy.namespace, ep)
        })
        .collect()
}

/// The peer selectors of `policy` (`fromEndpoints`, `toEndpoints`, in its
/// allow and deny rules) that select none of `endpoints`, each with the key
/// it was given under: such a rule allows or denies nothing yet.
pub fn unmatched_peers<'p>(
    policy: &'p Policy,
    endpoints: &EndpointsFile,
) -> Vec<(&'static str, &'p Selector)> {
    let rules = [
        ("fromEndpoints", &policy.ingress),
        ("fromEndpoints", &policy.ingress_deny),
        ("toEndpoints", &policy.egress),
        ("toEndpoints", &policy.egress_deny),
    ];
    let mut out = Vec::new();
    for (key, rules) in rules {
        for sel in rules.iter().flatten().flat_map(|r| &r.endpoints) {
            let matched = endpoints
                .endpoints
                .iter()
                .any(|ep| selects(sel, &policy.namespace, ep));
            if !matched && !out.iter().any(|(k, s)| *k == key && *s == sel) {
                out.push((key, sel));
            }
        }
    }
    out
}

fn selects(sel: &Selector, namespace: &str, ep: &Endpoint) -> bool {
    ep.namespace == sel.namespace.as_deref().unwrap_or(namespace)
        && sel
            .match_labels
            .iter()
            .all(|(k, v)| ep.labels.get(k) == Some(v))
}

/// Every distinct CIDR of every rule, except /0 (that is world), sorted, with its
/// identity: [`FIRST_CIDR_IDENTITY`] plus a hash of the CIDR (taken in sorted
/// order, the next free number on a collision), so a CIDR keeps its identity
/// when others come or go. Numbered by position, adding one CIDR moved every
/// later one's: between a reload's address and rule writes, traffic was
/// judged against another CIDR's rules.
fn cidr_identities(policies: &[Policy]) -> Vec<(Cidr, u32)> {
    let all: BTreeSet<Cidr> = policies
        .iter()
        .flat_map(|p| [&p.ingress, &p.ingress_deny, &p.egress, &p.egress_deny])
        .flatten()
        .flatten()
        .flat_map(|r| &r.cidrs)
        .filter(|c| c.prefix_len() > 0)
        .copied()
        .collect();
    let mut taken = BTreeSet::new();
    all.into_iter()
        .map(|cidr| {
            let mut n = crate::endpoints::fnv1a(cidr.to_string().as_bytes()) % CIDR_IDENTITY_SPAN;
            while !taken.insert(n) {
                n = (n + 1) % CIDR_IDENTITY_SPAN;
            }
            (cidr, FIRST_CIDR_IDENTITY + n)
        })
        .collect()
}

/// The peers of a rule as identities; `{0}` means any peer.
///
/// A CIDR selects the identities of every CIDR inside it (the datapath's
/// longest-prefix match gives an address the identity of its most specific CIDR),
/// and /0 also selects world.
fn remote_identities(
    rule: &Rule,
    namespace: &str,
    endpoints: &EndpointsFile,
    identity_of: &impl Fn(&Endpoint) -> u32,
    cidrs: &[(Cidr, u32)],
) -> BTreeSet<u32> {
    if !rule.has_peers() {
        // Ports alone: any peer. Nothing at all: the rule matches nothing.
        return if rule.ports.is_empty() {
            BTreeSet::new()
        } else {
            BTreeSet::from([0])
        };
    }
    let mut out = BTreeSet::new();
    for sel in &rule.endpoints {
        out.extend(
            endpoints
                .endpoints
                .iter()
                .filter(|ep| selects(sel, namespace, ep))
                .map(identity_of),
        );
    }
    for cidr in &rule.cidrs {
        if cidr.prefix_len() == 0 {
            out.insert(reserved::WORLD);
        }
        out.extend(
            cidrs
                .iter()
                .filter(|(inner, _)| cidr.contains(inner))
                .map(|(_, identity)| *identity),
        );
    }
    out
}

/// `(dport, proto)` pairs of a rule; `(0, 0)` when it names no port.
fn port_keys(rule: &Rule) -> BTreeSet<(u16, u8)> {
    if rule.ports.is_empty() {
        return BTreeSet::from([(0, 0)]);
    }
    rule.ports
        .iter()
        .flat_map(|p| {
            p.protocol
                .numbers()
                .iter()
                .map(move |&proto| (p.port, proto))
        })
        .collect()
}

/// Deny beats allow; between two of a kind the lower policy index stays.
fn merge(entries: &mut BTreeMap<PolicyKey, PolicyValue>, key: PolicyKey, value: PolicyValue) {
    let rank = |v: &PolicyValue| (v.action == Action::Allow, v.policy_id);
    match entries.entry(key) {
        Entry::Vacant(slot) => {
            slot.insert(value);
        }
        Entry::Occupied(mut slot) => {
            if rank(&value) < rank(slot.get()) {
                slot.insert(value);
            }
        }
    }
}
