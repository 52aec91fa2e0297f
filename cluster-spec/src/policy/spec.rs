//! The policy file format: serde types that mirror the YAML (unknown fields are
//! refused), and their validation into [`Policy`]. Every problem found here is
//! returned with the field path it concerns; nothing is half-accepted.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

/// Direction of a policy entry, as the datapath sees it: ingress
/// rules judge traffic into the selected endpoints, egress rules traffic out.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];
}

/// The only `apiVersion` accepted.
pub const API_VERSION: &str = "cilium.io/v2";
/// The only `kind` accepted.
pub const KIND: &str = "CiliumNetworkPolicy";
/// Annotation that puts a policy in audit mode (our extension): value `"true"`.
pub const AUDIT_ANNOTATION: &str = "observe.io/audit";
/// Selector label naming the namespace of the selected endpoints.
pub const NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// Namespace of a policy whose `metadata.namespace` is absent (as in Kubernetes).
pub const DEFAULT_NAMESPACE: &str = "default";

/// One validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub namespace: String,
    /// Audit mode: what the policy would drop is reported instead.
    pub audit: bool,
    /// Selects the endpoints of `namespace` the policy applies to.
    pub endpoint_selector: Selector,
    /// `None` when the key is absent (or null); a rule or more enforces
    /// ingress, none does not (as Cilium: an empty list is as absent).
    pub ingress: Option<Vec<Rule>>,
    pub ingress_deny: Option<Vec<Rule>>,
    /// As `ingress`, for egress.
    pub egress: Option<Vec<Rule>>,
    pub egress_deny: Option<Vec<Rule>>,
    /// Where it was read: the file, with the document number when the file holds
    /// several.
    pub origin: String,
}

impl Policy {
    /// Whether the policy makes its endpoints default-deny in `direction`:
    /// it has a rule in `ingress` or `ingressDeny` (egress: `egress`,
    /// `egressDeny`), even an empty rule (`ingress: [{}]`, which matches
    /// nothing: deny all). An empty or null list enforces nothing, as
    /// Cilium's `len(r.Ingress) > 0 || len(r.IngressDeny) > 0`.
    pub fn enforces(&self, direction: Direction) -> bool {
        let any = |rules: &Option<Vec<Rule>>| rules.as_ref().is_some_and(|r| !r.is_empty());
        match direction {
            Direction::Ingress => any(&self.ingress) || any(&self.ingress_deny),
            Direction::Egress => any(&self.egress) || any(&self.egress_deny),
        }
    }

    /// Cilium's labels of a policy derived from a CiliumNetworkPolicy, sorted.
    pub fn labels(&self) -> Vec<String> {
        policy_labels(&self.name, &self.namespace)
    }
}

/// Cilium's labels of the CiliumNetworkPolicy `namespace/name`, sorted.
pub fn policy_labels(name: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("k8s:io.cilium.k8s.policy.derived-from={KIND}"),
        format!("k8s:io.cilium.k8s.policy.name={name}"),
        format!("k8s:io.cilium.k8s.policy.namespace={namespace}"),
    ]
}

/// An endpoint selector: `matchLabels` with the namespace label taken apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// The namespace named by `io.kubernetes.pod.namespace`, if any; otherwise the
    /// policy's namespace applies.
    pub namespace: Option<String>,
    /// The other labels, keys without their `k8s:`/`any:` source prefix. Empty
    /// selects every endpoint of the namespace.
    pub match_labels: BTreeMap<String, String>,
}

/// One rule of `ingress`, `ingressDeny`, `egress` or `egressDeny`.
///
/// Peers are `endpoints` and `cidrs` together. No peers and no ports: the rule
/// matches nothing (it only makes the direction default-deny). No peers but
/// ports: any peer on those ports. No ports: every port of the peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// `fromEndpoints` (ingress) or `toEndpoints` (egress).
    pub endpoints: Vec<Selector>,
    /// `fromCIDR` (ingress) or `toCIDR` (egress).
    pub cidrs: Vec<Cidr>,
    /// Every `toPorts[].ports[]` entry.
    pub ports: Vec<PortProtocol>,
}

impl Rule {
    pub fn has_peers(&self) -> bool {
        !self.endpoints.is_empty() || !self.cidrs.is_empty()
    }
}

/// A destination port and its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortProtocol {
    /// 1-65535.
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    /// TCP, UDP and SCTP (also when `protocol` is absent).
    Any,
}

impl Protocol {
    /// IP protocol numbers this stands for.
    pub fn numbers(self) -> &'static [u8] {
        match self {
            Protocol::Tcp => &[6],
            Protocol::Udp => &[17],
            Protocol::Sctp => &[132],
            Protocol::Any => &[6, 17, 132],
        }
    }
}

/// An address prefix, kept in canonical form (bits past the prefix are zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(IpNet);

impl Cidr {
    /// `None` if `prefix_len` is longer than the address; host bits are cleared.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Cidr> {
        IpNet::new(addr, prefix_len).ok().map(|n| Cidr(n.trunc()))
    }

    /// `a.b.c.d/n`, `x::y/n`, or a bare address (a /32 or /128); host bits
    /// are cleared (`10.1.2.3/8` is `10.0.0.0/8`), as Cilium's fromCIDR does.
    /// The address is read by std, which refuses leading zeros (`010.0.0.0`)
    /// that ipnet alone would read as decimal.
    pub fn parse(text: &str) -> Option<Cidr> {
        let net: IpNet = match text.split_once('/') {
            None => IpNet::from(text.parse::<IpAddr>().ok()?),
            Some((addr, _)) => {
                addr.parse::<IpAddr>().ok()?;
                text.parse().ok()?
            }
        };
        Some(Cidr(net.trunc()))
    }

    pub fn addr(&self) -> IpAddr {
        self.0.network()
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// The IPv4 range an IPv4-mapped IPv6 range (`::ffff:10.0.0.0/104`)
    /// stands for: IPv4 traffic never matches it as written.
    pub fn ipv4_mapped(&self) -> Option<Cidr> {
        match self.0 {
            IpNet::V6(n) if n.prefix_len() >= 96 => {
                let v4 = n.network().to_ipv4_mapped()?;
                Cidr::new(IpAddr::V4(v4), n.prefix_len() - 96)
            }
            _ => None,
        }
    }

    /// Whether every address of `other` is in `self` (same family).
    pub fn contains(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

// ---- the YAML as written -------------------------------------------------------

/// The start of a document, read leniently first so that a file of another kind
/// is named as such before its unknown fields are.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a CiliumNetworkPolicy (a mapping)")]
pub(super) struct Header {
    #[serde(default, rename = "apiVersion")]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a CiliumNetworkPolicy (a mapping)", deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default, rename = "apiVersion")]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    metadata: RawMetadata,
    spec: RawSpec,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "metadata (a mapping)", deny_unknown_fields)]
struct RawMetadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    /// Accepted (Kubernetes objects carry them) and otherwise unused.
    #[serde(default, rename = "labels")]
    _labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "a spec (a mapping)",
    deny_unknown_fields,
    rename_all = "camelCase"
)]
struct RawSpec {
    #[serde(default)]
    endpoint_selector: Option<RawSelector>,
    /// Free text, ignored.
    #[serde(default, rename = "description")]
    _description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    ingress: Option<Vec<RawIngressRule>>,
    #[serde(default, deserialize_with = "present")]
    ingress_deny: Option<Vec<RawIngressRule>>,
    #[serde(default, deserialize_with = "present")]
    egress: Option<Vec<RawEgressRule>>,
    #[serde(default, deserialize_with = "present")]
    egress_deny: Option<Vec<RawEgressRule>>,
}

/// A key that is present counts even when its value is null (`ingress:`).
fn present<'de, D, T>(de: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::<Vec<T>>::deserialize(de)?.unwrap_or_default()))
}

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "an endpoint selector (a mapping)",
    deny_unknown_fields,
    rename_all = "camelCase"
)]
struct RawSelector {
    #[serde(default)]
    match_labels: Option<BTreeMap<String, String>>,
    /// Refused with a clear message rather than as an unknown field.
    #[serde(default)]
    match_expressions: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "an ingress rule (a mapping)",
    deny_unknown_fields,
    rename_all = "camelCase"
)]
struct RawIngressRule {
    #[serde(default)]
    from_endpoints: Option<Vec<RawSelector>>,
    #[serde(default, rename = "fromCIDR")]
    from_cidr: Option<Vec<String>>,
    /// Refused with a clear message rather than as an unknown field.
    #[serde(default)]
    from_entities: Option<IgnoredAny>,
    #[serde(default)]
    to_ports: Option<Vec<RawPortRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "an egress rule (a mapping)",
    deny_unknown_fields,
    rename_all = "camelCase"
)]
struct RawEgressRule {
    #[serde(default)]
    to_endpoints: Option<Vec<RawSelector>>,
    #[serde(default, rename = "toCIDR")]
    to_cidr: Option<Vec<String>>,
    /// Refused with a clear message rather than as an unknown field.
    #[serde(default)]
    to_entities: Option<IgnoredAny>,
    #[serde(default)]
    to_ports: Option<Vec<RawPortRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a toPorts entry (a mapping)", deny_unknown_fields)]
struct RawPortRule {
    #[serde(default)]
    ports: Option<Vec<RawPort>>,
    /// L7 rules: refused with a clear message.
    #[serde(default)]
    rules: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "a port (a mapping)",
    deny_unknown_fields,
    rename_all = "camelCase"
)]
struct RawPort {
    /// A string in Cilium (`"8080"`); a YAML number is read as its text.
    port: String,
    #[serde(default)]
    protocol: Option<String>,
    /// Port ranges: refused with a clear message.
    #[serde(default)]
    end_port: Option<IgnoredAny>,
}

// ---- validation ------------------------------------------------------------------

/// A problem: the field path and what is wrong with it.
pub(super) type Problem = (String, String);

/// The header check, shared by the lenient first pass and [`RawPolicy::validate`].
pub(super) fn check_header(api_version: Option<&str>, kind: Option<&str>) -> Result<(), Problem> {
    match kind {
        Some(KIND) => {}
        Some(other) => return Err(("kind".into(), format!("expected {KIND}, got {other:?}"))),
        None => return Err(("kind".into(), format!("missing (expected {KIND})"))),
    }
    match api_version {
        Some(API_VERSION) => Ok(()),
        Some(other) => Err((
            "apiVersion".into(),
            format!("expected {API_VERSION}, got {other:?}"),
        )),
        None => Err((
            "apiVersion".into(),
            format!("missing (expected {API_VERSION})"),
        )),
    }
}

impl RawPolicy {
    /// The policy, or the first problem found; `origin` becomes [`Policy::origin`].
    pub(super) fn validate(self, origin: &str) -> Result<Policy, Problem> {
        check_header(self.api_version.as_deref(), self.kind.as_deref())?;
        let meta = self.metadata;
        let name = match meta.name {
            None => return Err(("metadata.name".into(), "missing".into())),
            Some(name) => name,
        };
        check_name("metadata.name", &name, 253, true)?;
        let namespace = meta
            .namespace
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        check_name("metadata.namespace", &namespace, 63, false)?;
        let audit = match meta.annotations.get(AUDIT_ANNOTATION).map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err((
                    format!("metadata.annotations.{AUDIT_ANNOTATION}"),
                    format!("{other:?} is neither \"true\" nor \"false\""),
                ));
            }
        };

        let spec = self.spec;
        let endpoint_selector = match spec.endpoint_selector {
            None => return Err(("spec.endpointSelector".into(), "missing".into())),
            Some(s) => selector(s, "spec.endpointSelector")?,
        };
        let ingress_rules = |rules: Option<Vec<RawIngressRule>>, field: &str| {
            rules
                .map(|rules| {
                    rules
                        .into_iter()
                        .enumerate()
                        .map(|(i, r)| {
                            let at = format!("spec.{field}[{i}]");
                            no_entities(&at, "from", r.from_entities.is_some())?;
                            rule(&at, r.from_endpoints, ("fromCIDR", r.from_cidr), r.to_ports)
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
        };
        let egress_rules = |rules: Option<Vec<RawEgressRule>>, field: &str| {
            rules
                .map(|rules| {
                    rules
                        .into_iter()
                        .enumerate()
                        .map(|(i, r)| {
                            let at = format!("spec.{field}[{i}]");
                            no_entities(&at, "to", r.to_entities.is_some())?;
                            rule(&at, r.to_endpoints, ("toCIDR", r.to_cidr), r.to_ports)
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
        };
        Ok(Policy {
            name,
            namespace,
            audit,
            endpoint_selector,
            ingress: ingress_rules(spec.ingress, "ingress")?,
            ingress_deny: ingress_rules(spec.ingress_deny, "ingressDeny")?,
            egress: egress_rules(spec.egress, "egress")?,
            egress_deny: egress_rules(spec.egress_deny, "egressDeny")?,
            origin: origin.to_string(),
        })
    }
}

/// A Kubernetes object name: lowercase letters, digits, `-` (and `.` in names),
/// starting and ending with a letter or digit.
fn check_name(field: &str, name: &str, max: usize, dots: bool) -> Result<(), Problem> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| alnum(c) || c == '-' || (dots && c == '.'))
        && name.starts_with(alnum)
        && name.ends_with(alnum);
    if ok {
        return Ok(());
    }
    let allowed = if dots { ", '-' and '.'" } else { " and '-'" };
    Err((
        field.into(),
        format!(
            "{name:?} is not a valid name (at most {max} lowercase letters, digits{allowed}, \
             starting and ending with a letter or digit)"
        ),
    ))
}

/// Cilium's entities (`world`, `cluster`, `host`...) have no meaning here:
/// a rule names its peers by label or by address.
fn no_entities(at: &str, side: &str, given: bool) -> Result<(), Problem> {
    if !given {
        return Ok(());
    }
    Err((
        format!("{at}.{side}Entities"),
        format!(
            "not supported: name the peers with {side}Endpoints (endpoints of the cluster) or \
             {side}CIDR (addresses; `world` is 0.0.0.0/0 and ::/0)"
        ),
    ))
}

fn selector(raw: RawSelector, at: &str) -> Result<Selector, Problem> {
    if raw.match_expressions.is_some() {
        return Err((
            format!("{at}.matchExpressions"),
            "not supported (use matchLabels)".into(),
        ));
    }
    let mut out = Selector::default();
    for (key, value) in raw.match_labels.unwrap_or_default() {
        let field = format!("{at}.matchLabels.{key}");
        let plain = match key.split_once(':') {
            None => key.as_str(),
            Some(("k8s" | "any", rest)) => rest,
            Some((source, _)) => {
                return Err((
                    field,
                    format!("label source {source:?} is not supported (only k8s: and any:)"),
                ));
            }
        };
        if plain.is_empty() || plain.contains(':') {
            return Err((field, format!("{key:?} is not a label key")));
        }
        let twice = if plain == NAMESPACE_LABEL {
            out.namespace.replace(value).is_some()
        } else {
            out.match_labels.insert(plain.to_string(), value).is_some()
        };
        if twice {
            return Err((
                field,
                format!("label {plain:?} is given twice (with and without a source prefix)"),
            ));
        }
    }
    Ok(out)
}

fn rule(
    at: &str,
    endpoints: Option<Vec<RawSelector>>,
    (cidr_field, cidrs): (&str, Option<Vec<String>>),
    to_ports: Option<Vec<RawPortRule>>,
) -> Result<Rule, Problem> {
    let endpoint_field = if cidr_field == "fromCIDR" {
        "fromEndpoints"
    } else {
        "toEndpoints"
    };
    let mut out = Rule::default();
    for (i, s) in endpoints.into_iter().flatten().enumerate() {
        out.endpoints
            .push(selector(s, &format!("{at}.{endpoint_field}[{i}]"))?);
    }
    for (i, text) in cidrs.into_iter().flatten().enumerate() {
        let cidr = Cidr::parse(&text).ok_or_else(|| {
            (
                format!("{at}.{cidr_field}[{i}]"),
                format!("{text:?} is not a CIDR"),
            )
        })?;
        if let Some(v4) = cidr.ipv4_mapped() {
            return Err((
                format!("{at}.{cidr_field}[{i}]"),
                format!(
                    "{text:?} is an IPv4-mapped range, which IPv4 traffic never matches; give {v4}"
                ),
            ));
        }
        out.cidrs.push(cidr);
    }
    for (i, entry) in to_ports.into_iter().flatten().enumerate() {
        let at = format!("{at}.toPorts[{i}]");
        if entry.rules.is_some() {
            return Err((format!("{at}.rules"), "L7 rules are not supported".into()));
        }
        let ports = entry.ports.unwrap_or_default();
        if ports.is_empty() {
            return Err((format!("{at}.ports"), "must list at least one port".into()));
        }
        for (j, p) in ports.into_iter().enumerate() {
            let at = format!("{at}.ports[{j}]");
            if p.end_port.is_some() {
                return Err((
                    format!("{at}.endPort"),
                    "port ranges are not supported".into(),
                ));
            }
            let port = port(&p.port).map_err(|problem| (format!("{at}.port"), problem))?;
            let protocol = match p.protocol.as_deref() {
                None | Some("ANY") => Protocol::Any,
                Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                Some(other) => {
                    return Err((
                        format!("{at}.protocol"),
                        format!("{other:?} is not a protocol (TCP, UDP, SCTP or ANY)"),
                    ));
                }
            };
            out.ports.push(PortProtocol { port, protocol });
        }
    }
    Ok(out)
}

fn port(text: &str) -> Result<u16, String> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(text) {
        return match text.parse::<u32>() {
            Ok(0) => Err(format!(
                "{text:?}: port 0 (every port) is not supported; leave out toPorts to match every port"
            )),
            Ok(n) => u16::try_from(n).map_err(|_| format!("{text:?} is out of range (1-65535)")),
            Err(_) => Err(format!("{text:?} is out of range (1-65535)")),
        };
    }
    if text
        .split_once('-')
        .is_some_and(|(a, b)| digits(a) && digits(b))
    {
        return Err(format!("{text:?}: port ranges are not supported"));
    }
    let named = text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if named {
        return Err(format!("{text:?}: named ports are not supported"));
    }
    Err(format!("{text:?} is not a port number"))
}
