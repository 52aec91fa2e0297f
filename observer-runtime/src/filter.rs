//! Hubble's flow filter semantics for `GetFlowsRequest` whitelists and
//! blacklists, compiled once per request so that bad input fails up front.
//!
//! A flow passes when the whitelist is empty or any whitelist filter matches,
//! and no blacklist filter matches. Inside one [`FlowFilter`] every set field
//! must match; inside one repeated field any entry may match. Per-field rules
//! follow Cilium's `pkg/hubble/filters`.
//!
//! A request over the size [`limits`] is refused before anything compiles;
//! addresses, names, ports and identities are matched through the sets of
//! [`sets`], so a flow's cost does not grow with their number.

mod labels;
pub mod limits;
mod pattern;
mod sets;

use std::collections::HashSet;
use std::net::IpAddr;

use observer_proto::flow::layer4::Protocol;
use observer_proto::flow::{
    Endpoint, EventTypeFilter, Flow, FlowFilter, NetworkInterface, TcpFlags, Verdict, Workload,
};
use observer_proto::observer::GetFlowsRequest;

use labels::Selector;
use pattern::{Cidr, Glob, NodePattern};
use sets::{IpSet, NamePrefixes};

/// Why a filter could not be compiled. `field` is the `FlowFilter` field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// An IP entry is neither an address nor an address prefix.
    #[error("{field}: invalid IP address or CIDR {value:?}")]
    InvalidCidr { field: &'static str, value: String },
    /// A port entry is not a decimal number in 0..=65535.
    #[error("{field}: invalid port {value:?}")]
    InvalidPort { field: &'static str, value: String },
    /// A protocol name Hubble does not know.
    #[error("protocol: unknown protocol {value:?}")]
    UnknownProtocol { value: String },
    /// A pod, service or cluster name entry is the empty string.
    #[error("{field}: name must not be empty")]
    EmptyName { field: &'static str },
    /// A label selector does not parse.
    #[error("{field}: invalid label selector {selector:?}: {reason}")]
    InvalidLabelSelector {
        field: &'static str,
        selector: String,
        reason: String,
    },
    /// A regular expression (http_path, http_url, dns_query) does not
    /// parse, as Hubble's `regexp.Compile` refuses it.
    #[error("{field}: invalid regular expression {value:?}: {reason}")]
    InvalidRegex {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// An FQDN or node-name pattern is malformed.
    #[error("{field}: invalid pattern {value:?}: {reason}")]
    InvalidPattern {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// An HTTP status code entry is neither a code (`404`) nor a prefix
    /// (`4+`, `40+`), as Hubble checks it.
    #[error(
        "http_status_code: invalid status code prefix {value:?} (a code such as 404, or a prefix such as 4+ or 40+)"
    )]
    InvalidHttpStatus { value: String },
    /// More entries across all filters than [`limits::MAX_TOTAL_ENTRIES`].
    #[error("too many entries: {count} across the whitelist and blacklist (limit {limit})")]
    TooManyEntries { count: usize, limit: usize },
    /// More entries in one field than [`limits::MAX_FIELD_ENTRIES`].
    #[error("{field}: too many entries: {count} (limit {limit} per field)")]
    TooManyFieldEntries {
        field: &'static str,
        count: usize,
        limit: usize,
    },
    /// A string entry longer than [`limits::MAX_ENTRY_BYTES`].
    #[error("{field}: an entry of {bytes} bytes is too long (limit {limit} bytes)")]
    EntryTooLong {
        field: &'static str,
        bytes: usize,
        limit: usize,
    },
    /// FQDN and node-name patterns and label selectors, together larger than
    /// [`limits::MAX_PATTERN_BYTES`].
    #[error("patterns and label selectors too large: {bytes} bytes in all (limit {limit} bytes)")]
    PatternsTooLarge { bytes: usize, limit: usize },
}

/// Compiled whitelist and blacklist. The default matches every flow.
#[derive(Debug, Clone, Default)]
pub struct FlowMatcher {
    whitelist: Vec<Compiled>,
    blacklist: Vec<Compiled>,
}

/// Compiles the two filter lists of a `GetFlowsRequest`, once they are
/// within the size [`limits`].
pub fn compile(
    whitelist: &[FlowFilter],
    blacklist: &[FlowFilter],
) -> Result<FlowMatcher, FilterError> {
    limits::check(whitelist, blacklist)?;
    Ok(FlowMatcher {
        whitelist: whitelist
            .iter()
            .map(Compiled::new)
            .collect::<Result<_, _>>()?,
        blacklist: blacklist
            .iter()
            .map(Compiled::new)
            .collect::<Result<_, _>>()?,
    })
}

impl FlowMatcher {
    /// Compiles the filters carried by `request`.
    pub fn from_request(request: &GetFlowsRequest) -> Result<Self, FilterError> {
        compile(&request.whitelist, &request.blacklist)
    }

    /// Whether `flow` passes the whitelist and escapes the blacklist.
    pub fn matches(&self, flow: &Flow) -> bool {
        (self.whitelist.is_empty() || self.whitelist.iter().any(|f| f.matches(flow)))
            && !self.blacklist.iter().any(|f| f.matches(flow))
    }

    /// True when no filter is set, so every flow passes.
    pub fn is_match_all(&self) -> bool {
        self.whitelist.is_empty() && self.blacklist.is_empty()
    }
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Source,
    Destination,
}

impl Side {
    fn endpoint(self, flow: &Flow) -> Option<&Endpoint> {
        match self {
            Side::Source => flow.source.as_ref(),
            Side::Destination => flow.destination.as_ref(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum IpField {
    Source,
    Destination,
    SourceXlated,
}

/// Which labels a selector looks at.
#[derive(Debug, Clone, Copy)]
enum LabelsOf {
    Endpoint(Side),
    Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    Sctp,
    /// ICMP of either IP version.
    Icmp,
    Icmpv4,
    Icmpv6,
    /// Valid in Hubble but never carried by our flows (VRRP, IGMP, L7).
    NeverPresent,
}

/// One set field of a `FlowFilter`.
#[derive(Debug, Clone)]
enum Check {
    Uuid(HashSet<String>),
    Ip(IpField, IpSet),
    Pod(Side, NamePrefixes),
    Service(Side, NamePrefixes),
    Fqdn(Side, Vec<Glob>),
    Labels(LabelsOf, Vec<Selector>),
    Workload(Side, Vec<Workload>),
    Cluster(Side, HashSet<String>),
    TrafficDirection(Vec<i32>),
    Verdict(Vec<i32>),
    DropReason(Vec<i32>),
    Interface(Vec<NetworkInterface>),
    EventType(Vec<EventTypeFilter>),
    Protocol(Vec<Proto>),
    Port(Side, HashSet<u16>),
    Reply(Vec<bool>),
    Identity(Side, HashSet<u32>),
    TcpFlags(Vec<TcpFlags>),
    NodeName(Vec<NodePattern>),
    IpVersion(Vec<i32>),
    Encrypted(Vec<bool>),
    /// A field of data our flows never carry (L7 records, trace context, IP
    /// trace ids) or a CEL expression, which we do not evaluate: like Hubble
    /// for a flow without L7 data, the filter matches no flow, so it selects
    /// nothing in a whitelist and removes nothing in a blacklist.
    Never,
}

/// One compiled `FlowFilter`: all checks must hold.
#[derive(Debug, Clone)]
struct Compiled(Vec<Check>);

impl Compiled {
    fn new(f: &FlowFilter) -> Result<Self, FilterError> {
        use Side::{Destination as Dst, Source as Src};
        let mut checks = Vec::new();
        let mut push = |check: Check| checks.push(check);
        if let Some(v) = f.http_status_code.iter().find(|v| !http_status(v)) {
            return Err(FilterError::InvalidHttpStatus { value: v.clone() });
        }
        for (field, values) in [
            ("http_path", &f.http_path),
            ("http_url", &f.http_url),
            ("dns_query", &f.dns_query),
        ] {
            regexes(field, values)?;
        }
        if absent_data(f) {
            push(Check::Never);
        }

        if !f.uuid.is_empty() {
            push(Check::Uuid(f.uuid.iter().cloned().collect()));
        }
        for (field, which, values) in [
            ("source_ip", IpField::Source, &f.source_ip),
            ("destination_ip", IpField::Destination, &f.destination_ip),
            (
                "source_ip_xlated",
                IpField::SourceXlated,
                &f.source_ip_xlated,
            ),
        ] {
            if !values.is_empty() {
                push(Check::Ip(which, ips(field, values)?));
            }
        }
        if !f.source_pod.is_empty() {
            push(Check::Pod(Src, ns_names("source_pod", &f.source_pod)?));
        }
        if !f.destination_pod.is_empty() {
            push(Check::Pod(
                Dst,
                ns_names("destination_pod", &f.destination_pod)?,
            ));
        }
        if !f.source_service.is_empty() {
            push(Check::Service(
                Src,
                ns_names("source_service", &f.source_service)?,
            ));
        }
        if !f.destination_service.is_empty() {
            let names = ns_names("destination_service", &f.destination_service)?;
            push(Check::Service(Dst, names));
        }
        if !f.source_fqdn.is_empty() {
            push(Check::Fqdn(Src, globs("source_fqdn", &f.source_fqdn)?));
        }
        if !f.destination_fqdn.is_empty() {
            push(Check::Fqdn(
                Dst,
                globs("destination_fqdn", &f.destination_fqdn)?,
            ));
        }
        for (field, of, values) in [
            ("source_label", LabelsOf::Endpoint(Src), &f.source_label),
            (
                "destination_label",
                LabelsOf::Endpoint(Dst),
                &f.destination_label,
            ),
            ("node_labels", LabelsOf::Node, &f.node_labels),
        ] {
            if !values.is_empty() {
                push(Check::Labels(of, selectors(field, values)?));
            }
        }
        if !f.source_workload.is_empty() {
            push(Check::Workload(Src, f.source_workload.clone()));
        }
        if !f.destination_workload.is_empty() {
            push(Check::Workload(Dst, f.destination_workload.clone()));
        }
        for (field, side, values) in [
            ("source_cluster_name", Src, &f.source_cluster_name),
            ("destination_cluster_name", Dst, &f.destination_cluster_name),
        ] {
            if values.iter().any(String::is_empty) {
                return Err(FilterError::EmptyName { field });
            }
            if !values.is_empty() {
                push(Check::Cluster(side, values.iter().cloned().collect()));
            }
        }
        if !f.traffic_direction.is_empty() {
            push(Check::TrafficDirection(f.traffic_direction.clone()));
        }
        if !f.verdict.is_empty() {
            push(Check::Verdict(f.verdict.clone()));
        }
        if !f.drop_reason_desc.is_empty() {
            push(Check::DropReason(f.drop_reason_desc.clone()));
        }
        if !f.interface.is_empty() {
            push(Check::Interface(f.interface.clone()));
        }
        if !f.event_type.is_empty() {
            push(Check::EventType(f.event_type.clone()));
        }
        if !f.protocol.is_empty() {
            push(Check::Protocol(protocols(&f.protocol)?));
        }
        if !f.source_port.is_empty() {
            push(Check::Port(Src, ports("source_port", &f.source_port)?));
        }
        if !f.destination_port.is_empty() {
            push(Check::Port(
                Dst,
                ports("destination_port", &f.destination_port)?,
            ));
        }
        if !f.reply.is_empty() {
            push(Check::Reply(f.reply.clone()));
        }
        if !f.source_identity.is_empty() {
            push(Check::Identity(
                Src,
                f.source_identity.iter().copied().collect(),
            ));
        }
        if !f.destination_identity.is_empty() {
            push(Check::Identity(
                Dst,
                f.destination_identity.iter().copied().collect(),
            ));
        }
        if !f.tcp_flags.is_empty() {
            push(Check::TcpFlags(f.tcp_flags.clone()));
        }
        if !f.node_name.is_empty() {
            push(Check::NodeName(node_patterns(&f.node_name)?));
        }
        if !f.ip_version.is_empty() {
            push(Check::IpVersion(f.ip_version.clone()));
        }
        if !f.encrypted.is_empty() {
            push(Check::Encrypted(f.encrypted.clone()));
        }
        Ok(Self(checks))
    }

    fn matches(&self, flow: &Flow) -> bool {
        self.0.iter().all(|check| check.matches(flow))
    }
}

/// Whether `f` sets a field that asks for data no flow of ours carries.
fn absent_data(f: &FlowFilter) -> bool {
    let cel = f
        .experimental
        .as_ref()
        .is_some_and(|e| !e.cel_expression.is_empty());
    cel || !f.http_status_code.is_empty()
        || !f.dns_query.is_empty()
        || !f.http_method.is_empty()
        || !f.http_path.is_empty()
        || !f.http_url.is_empty()
        || !f.http_header.is_empty()
        || !f.trace_id.is_empty()
        || !f.ip_trace_id.is_empty()
}

/// Fails on the first of `values` that is not a regular expression.
/// Only checked: no flow of ours carries the data they match.
fn regexes(field: &'static str, values: &[String]) -> Result<(), FilterError> {
    for v in values {
        if let Err(reason) = go_regex(v) {
            return Err(FilterError::InvalidRegex {
                field,
                value: v.clone(),
                reason,
            });
        }
    }
    Ok(())
}

/// Whether Go's `regexp.Compile` (Hubble's) takes `pattern`, as far as
/// regex-syntax can tell: octal escapes and 1000 levels of nesting as Go
/// has them, and a `{` that starts no valid repetition (`/users/{id}`,
/// `a{`, `x{,3}`) a literal, as Go reads it. Else what is wrong.
fn go_regex(pattern: &str) -> Result<(), String> {
    use regex_syntax::ast::ErrorKind;
    let mut pattern = pattern.to_string();
    // Each round escapes one more brace, before which the pattern parsed.
    for _ in 0..=pattern.matches('{').count() {
        let parsed = regex_syntax::ParserBuilder::new()
            .octal(true)
            .nest_limit(1000)
            .build()
            .parse(&pattern);
        let e = match parsed {
            Ok(_) => return Ok(()),
            Err(regex_syntax::Error::Parse(e)) => e,
            Err(regex_syntax::Error::Translate(e)) => return Err(e.kind().to_string()),
            Err(e) => return Err(e.to_string()),
        };
        // A count that is not one: Go takes its brace as a literal. The
        // error's span starts at the brace or inside the count after it.
        let literal = matches!(
            e.kind(),
            ErrorKind::RepetitionCountUnclosed | ErrorKind::RepetitionCountDecimalEmpty
        );
        let upto = (e.span().start.offset + 1).min(pattern.len());
        let brace = pattern.get(..upto).and_then(|before| before.rfind('{'));
        let Some(at) = brace.filter(|_| literal) else {
            return Err(e.kind().to_string());
        };
        pattern.insert(at, '\\');
    }
    Err("too many braces that start no repetition".to_string())
}

/// A status code as Hubble's filter takes it: three digits from 100 to 599,
/// or a prefix of one or two of them followed by `+`.
fn http_status(v: &str) -> bool {
    let digits = v.strip_suffix('+').unwrap_or(v);
    let want = if v.ends_with('+') { 1..=2 } else { 3..=3 };
    want.contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (b'1'..=b'5').contains(&digits.as_bytes()[0])
}

fn ips(field: &'static str, values: &[String]) -> Result<IpSet, FilterError> {
    let nets = values
        .iter()
        .map(|v| {
            Cidr::parse(v)
                .map(Cidr::net)
                .ok_or_else(|| FilterError::InvalidCidr {
                    field,
                    value: v.clone(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IpSet::new(nets))
}

/// Hubble's rule: "ns/prefix" or "ns/" select within a namespace, "/prefix"
/// any namespace, and a bare "prefix" the "default" namespace.
fn ns_names(field: &'static str, values: &[String]) -> Result<NamePrefixes, FilterError> {
    let mut names = NamePrefixes::default();
    for v in values {
        if v.is_empty() {
            return Err(FilterError::EmptyName { field });
        }
        let mut parts = v.split('/');
        let first = parts.next().unwrap_or_default();
        let (namespace, prefix) = match parts.next() {
            Some(name) => (first, name),
            None => ("default", first),
        };
        names.insert(namespace, prefix);
    }
    Ok(names)
}

fn globs(field: &'static str, values: &[String]) -> Result<Vec<Glob>, FilterError> {
    values
        .iter()
        .map(|v| {
            Glob::parse(v).map_err(|reason| FilterError::InvalidPattern {
                field,
                value: v.clone(),
                reason,
            })
        })
        .collect()
}

/// The cluster of an endpoint: a pod of a probe whose cluster has no name is
/// in Cilium's unnamed cluster, `default` (as node names treat it); an
/// endpoint outside every cluster (the world) is in none.
fn cluster_of(e: &Endpoint) -> &str {
    if e.cluster_name.is_empty() && !e.pod_name.is_empty() {
        "default"
    } else {
        &e.cluster_name
    }
}

fn node_patterns(values: &[String]) -> Result<Vec<NodePattern>, FilterError> {
    values
        .iter()
        .map(|v| {
            NodePattern::parse(v).map_err(|reason| FilterError::InvalidPattern {
                field: "node_name",
                value: v.clone(),
                reason,
            })
        })
        .collect()
}

fn selectors(field: &'static str, values: &[String]) -> Result<Vec<Selector>, FilterError> {
    values
        .iter()
        .map(|v| {
            Selector::parse(v).map_err(|reason| FilterError::InvalidLabelSelector {
                field,
                selector: v.clone(),
                reason,
            })
        })
        .collect()
}

fn ports(field: &'static str, values: &[String]) -> Result<HashSet<u16>, FilterError> {
    values
        .iter()
        .map(|v| {
            // `u16::from_str` would also take "+80"; Go's ParseUint does not.
            v.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse().ok())
                .flatten()
                .ok_or_else(|| FilterError::InvalidPort {
                    field,
                    value: v.clone(),
                })
        })
        .collect()
}

fn protocols(values: &[String]) -> Result<Vec<Proto>, FilterError> {
    values
        .iter()
        .map(|v| match v.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            "icmp" => Ok(Proto::Icmp),
            "icmpv4" => Ok(Proto::Icmpv4),
            "icmpv6" => Ok(Proto::Icmpv6),
            "vrrp" | "igmp" | "dns" | "http" | "kafka" => Ok(Proto::NeverPresent),
            _ => Err(FilterError::UnknownProtocol { value: v.clone() }),
        })
        .collect()
}

impl Check {
    fn matches(&self, flow: &Flow) -> bool {
        match self {
            Check::Uuid(ids) => ids.contains(&flow.uuid),
            Check::Ip(which, set) => {
                let ip = flow.ip.as_ref().map_or("", |ip| match which {
                    IpField::Source => &ip.source,
                    IpField::Destination => &ip.destination,
                    IpField::SourceXlated => &ip.source_xlated,
                });
                ip.parse::<IpAddr>().is_ok_and(|ip| set.contains(ip))
            }
            Check::Pod(side, names) => {
                let ep = side.endpoint(flow);
                let ns = ep.map_or("", |e| e.namespace.as_str());
                let pod = ep.map_or("", |e| e.pod_name.as_str());
                names.matches(ns, pod)
            }
            Check::Service(side, names) => {
                let svc = match side {
                    Side::Source => flow.source_service.as_ref(),
                    Side::Destination => flow.destination_service.as_ref(),
                };
                let (ns, name) = svc.map_or(("", ""), |s| (s.namespace.as_str(), s.name.as_str()));
                names.matches(ns, name)
            }
            Check::Fqdn(side, globs) => {
                let names = match side {
                    Side::Source => &flow.source_names,
                    Side::Destination => &flow.destination_names,
                };
                names.iter().any(|n| globs.iter().any(|g| g.matches(n)))
            }
            Check::Labels(of, selectors) => {
                let labels: &[String] = match of {
                    LabelsOf::Endpoint(side) => {
                        side.endpoint(flow).map_or(&[][..], |e| e.labels.as_slice())
                    }
                    LabelsOf::Node => &flow.node_labels,
                };
                selectors.iter().any(|s| s.matches(labels))
            }
            Check::Workload(side, wanted) => side.endpoint(flow).is_some_and(|e| {
                e.workloads.iter().any(|w| {
                    wanted.iter().any(|f| {
                        (f.name.is_empty() || f.name == w.name)
                            && (f.kind.is_empty() || f.kind == w.kind)
                    })
                })
            }),
            Check::Cluster(side, names) => {
                let name = side.endpoint(flow).map_or("", cluster_of);
                names.contains(name)
            }
            Check::TrafficDirection(dirs) => dirs.contains(&flow.traffic_direction),
            Check::Verdict(verdicts) => verdicts.contains(&flow.verdict),
            Check::DropReason(reasons) => {
                flow.verdict == Verdict::Dropped as i32 && reasons.contains(&flow.drop_reason_desc)
            }
            Check::Interface(wanted) => flow.interface.as_ref().is_some_and(|i| {
                wanted.iter().any(|f| {
                    (f.index == 0 || f.index == i.index) && (f.name.is_empty() || f.name == i.name)
                })
            }),
            Check::EventType(wanted) => flow.event_type.as_ref().is_some_and(|ev| {
                wanted.iter().any(|f| {
                    (f.r#type == 0 || f.r#type == ev.r#type)
                        && (!f.match_sub_type || f.sub_type == ev.sub_type)
                })
            }),
            Check::Protocol(protos) => protos.iter().any(|p| proto_matches(*p, flow)),
            Check::Port(side, ports) => port(flow, *side).is_some_and(|p| ports.contains(&p)),
            Check::Reply(wanted) => {
                // Unknown direction only counts (as "not a reply") for drops.
                if flow.is_reply.is_none() && flow.verdict != Verdict::Dropped as i32 {
                    return false;
                }
                wanted.contains(&flow.is_reply.unwrap_or(false))
            }
            Check::Identity(side, ids) => side
                .endpoint(flow)
                .is_some_and(|e| ids.contains(&e.identity)),
            Check::TcpFlags(wanted) => {
                tcp_flags(flow).is_some_and(|have| wanted.iter().any(|w| flags_subset(w, have)))
            }
            Check::NodeName(patterns) => patterns.iter().any(|p| p.matches(&flow.node_name)),
            Check::IpVersion(versions) => {
                versions.contains(&flow.ip.as_ref().map_or(0, |ip| ip.ip_version))
            }
            Check::Encrypted(wanted) => {
                wanted.contains(&flow.ip.as_ref().is_some_and(|ip| ip.encrypted))
            }
            Check::Never => false,
        }
    }
}

fn proto_matches(proto: Proto, flow: &Flow) -> bool {
    let l4 = flow.l4.as_ref().and_then(|l4| l4.protocol.as_ref());
    matches!(
        (proto, l4),
        (Proto::Tcp, Some(Protocol::Tcp(_)))
            | (Proto::Udp, Some(Protocol::Udp(_)))
            | (Proto::Sctp, Some(Protocol::Sctp(_)))
            | (Proto::Icmp | Proto::Icmpv4, Some(Protocol::IcmPv4(_)))
            | (Proto::Icmp | Proto::Icmpv6, Some(Protocol::IcmPv6(_)))
    )
}

/// Port of a TCP, UDP or SCTP flow; ICMP and unknown L4 have none.
fn port(flow: &Flow, side: Side) -> Option<u16> {
    let (src, dst) = match flow.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(p) => (p.source_port, p.destination_port),
        Protocol::Udp(p) => (p.source_port, p.destination_port),
        Protocol::Sctp(p) => (p.source_port, p.destination_port),
        Protocol::IcmPv4(_) | Protocol::IcmPv6(_) => return None,
    };
    let port = match side {
        Side::Source => src,
        Side::Destination => dst,
    };
    // Hubble truncates to 16 bits; a wider value cannot be a real port.
    u16::try_from(port).ok()
}

fn tcp_flags(flow: &Flow) -> Option<&TcpFlags> {
    match flow.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(tcp) => tcp.flags.as_ref(),
        _ => None,
    }
}

/// Every flag set in `want` is also set in `have`.
fn flags_subset(want: &TcpFlags, have: &TcpFlags) -> bool {
    let bits = |f: &TcpFlags| {
        [f.fin, f.syn, f.rst, f.psh, f.ack, f.urg, f.ece, f.cwr, f.ns]
            .iter()
            .enumerate()
            .fold(0u16, |acc, (i, &set)| acc | (u16::from(set) << i))
    };
    bits(want) & !bits(have) == 0
}

#[cfg(test)]
mod tests;
