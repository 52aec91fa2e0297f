//! `observe flows` filter flags → Hubble `FlowFilter`s, with Hubble's semantics:
//! flags of different kinds are ANDed, repeated flags of one kind are ORed, and
//! the direction-neutral flags (`--ip`, `--pod`, `--label`, `--port`,
//! `--namespace`, `--service`, `--workload`, `--identity`, `--fqdn`,
//! `--cluster`) match either end:
//! the filter becomes a source variant and a destination variant, each with
//! all of them on its side. Namespace flags place the pods and services of
//! their side in the namespace (`-n other --pod client` is `other/client` at
//! either end). Refused as Hubble refuses them: a neutral flag with a
//! directional one for the same field, one end named both by address or DNS
//! name and by pod or namespace, and `--encrypted` with `--unencrypted`.

use observer_proto::flow::{
    DropReason, EventTypeFilter, FlowFilter, HttpHeader, IpVersion, NetworkInterface, TcpFlags,
    TrafficDirection, Verdict, Workload,
};
use observer_proto::names::{AGENT_SUB_TYPES, TRACE_SUB_TYPES};

/// The filter flags as given on the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Source IP or CIDR.
    #[arg(long = "from-ip")]
    pub from_ip: Vec<String>,
    /// Destination IP or CIDR.
    #[arg(long = "to-ip")]
    pub to_ip: Vec<String>,
    /// Source or destination IP or CIDR.
    #[arg(long = "ip")]
    pub ip: Vec<String>,
    /// Source pod, `[namespace/]name-prefix` (namespace `default` when not
    /// given, as in Hubble; `/prefix` for any namespace).
    #[arg(long = "from-pod")]
    pub from_pod: Vec<String>,
    /// Destination pod, `[namespace/]name-prefix` (namespace `default` when
    /// not given, as in Hubble; `/prefix` for any namespace).
    #[arg(long = "to-pod")]
    pub to_pod: Vec<String>,
    /// Source or destination pod.
    #[arg(long = "pod")]
    pub pod: Vec<String>,
    /// Source namespace.
    #[arg(long = "from-namespace")]
    pub from_namespace: Vec<String>,
    /// Destination namespace.
    #[arg(long = "to-namespace")]
    pub to_namespace: Vec<String>,
    /// Source or destination namespace.
    #[arg(long = "namespace", short = 'n')]
    pub namespace: Vec<String>,
    /// Flows with either end in any namespace (a pod or a service), as
    /// Hubble's flag: not those between the host, the world and the like.
    #[arg(long = "all-namespaces", short = 'A')]
    pub all_namespaces: bool,
    /// Flows from any namespace.
    #[arg(long = "from-all-namespaces")]
    pub from_all_namespaces: bool,
    /// Flows to any namespace.
    #[arg(long = "to-all-namespaces")]
    pub to_all_namespaces: bool,
    /// Source label selector, e.g. `app=frontend`.
    #[arg(long = "from-label")]
    pub from_label: Vec<String>,
    /// Destination label selector.
    #[arg(long = "to-label")]
    pub to_label: Vec<String>,
    /// Source or destination label selector.
    #[arg(long = "label", short = 'l')]
    pub label: Vec<String>,
    /// Source service, `[namespace/]name-prefix`.
    #[arg(long = "from-service")]
    pub from_service: Vec<String>,
    /// Destination service (a flow to its frontend, or a SOCK translation).
    #[arg(long = "to-service")]
    pub to_service: Vec<String>,
    /// Source or destination service.
    #[arg(long = "service")]
    pub service: Vec<String>,
    /// Source workload, `[kind/]name`, e.g. `Deployment/api`.
    #[arg(long = "from-workload")]
    pub from_workload: Vec<String>,
    /// Destination workload.
    #[arg(long = "to-workload")]
    pub to_workload: Vec<String>,
    /// Source or destination workload.
    #[arg(long = "workload")]
    pub workload: Vec<String>,
    /// Source security identity: a number or a reserved name (host, world, ...).
    #[arg(long = "from-identity")]
    pub from_identity: Vec<String>,
    /// Destination security identity.
    #[arg(long = "to-identity")]
    pub to_identity: Vec<String>,
    /// Source or destination security identity.
    #[arg(long = "identity")]
    pub identity: Vec<String>,
    /// Source port.
    #[arg(long = "from-port", allow_negative_numbers = true)]
    pub from_port: Vec<String>,
    /// Destination port.
    #[arg(long = "to-port", allow_negative_numbers = true)]
    pub to_port: Vec<String>,
    /// Source or destination port.
    #[arg(long = "port", allow_negative_numbers = true)]
    pub port: Vec<String>,
    /// L4 protocol: tcp, udp, icmp, icmpv4, icmpv6.
    #[arg(long = "protocol")]
    pub protocol: Vec<String>,
    /// Verdict: FORWARDED, DROPPED, AUDIT, ...
    #[arg(long = "verdict")]
    pub verdict: Vec<String>,
    /// TCP flags that must all be set, comma-separated: `SYN,ACK`.
    #[arg(long = "tcp-flags")]
    pub tcp_flags: Vec<String>,
    /// Event type: trace, drop, policy-verdict, trace-sock, or a number;
    /// `trace:to-endpoint` (an observation point) or `drop:133` (a reason's
    /// number) matches one sub-type.
    #[arg(long = "type", short = 't')]
    pub event_type: Vec<String>,
    /// Node name or `*` glob.
    #[arg(long = "node-name")]
    pub node_name: Vec<String>,
    /// Node label selector, e.g. `zone=a`: flows observed on nodes whose labels match.
    #[arg(long = "node-label")]
    pub node_label: Vec<String>,
    /// Source cluster name (exact).
    #[arg(long = "from-cluster")]
    pub from_cluster: Vec<String>,
    /// Destination cluster name (exact).
    #[arg(long = "to-cluster")]
    pub to_cluster: Vec<String>,
    /// Source or destination cluster name (exact), as Hubble's: a flow
    /// with either end in the cluster (a pod of a probe without a cluster
    /// name is in `default`).
    #[arg(long = "cluster")]
    pub cluster: Vec<String>,
    /// Source DNS name, a glob such as `*.example.com`, matched against a
    /// flow's `source_names`. No DNS is captured, so no flow has names yet.
    #[arg(long = "from-fqdn")]
    pub from_fqdn: Vec<String>,
    /// Destination DNS name glob (a flow's `destination_names`; none yet).
    #[arg(long = "to-fqdn")]
    pub to_fqdn: Vec<String>,
    /// Source or destination DNS name glob (none yet).
    #[arg(long = "fqdn")]
    pub fqdn: Vec<String>,
    /// HTTP status code prefix (`404`, `5+`). No L7 is captured: matches no
    /// flow, as Hubble's for flows without L7 data.
    #[arg(long = "http-status")]
    pub http_status: Vec<String>,
    /// HTTP method. No L7 is captured: matches no flow.
    #[arg(long = "http-method")]
    pub http_method: Vec<String>,
    /// HTTP path regular expression. No L7 is captured: matches no flow.
    #[arg(long = "http-path")]
    pub http_path: Vec<String>,
    /// HTTP URL regular expression. No L7 is captured: matches no flow.
    #[arg(long = "http-url")]
    pub http_url: Vec<String>,
    /// HTTP header `name:value`. No L7 is captured: matches no flow.
    #[arg(long = "http-header")]
    pub http_header: Vec<String>,
    /// Trace ID. No L7 is captured: matches no flow.
    #[arg(long = "trace-id")]
    pub trace_id: Vec<String>,
    /// IP trace ID (of the IP option Cilium's tracing writes), above 0. No
    /// datapath here writes one: matches no flow.
    #[arg(long = "ip-trace-id")]
    pub ip_trace_id: Vec<String>,
    /// Source IP after source NAT (CIDR allowed).
    #[arg(long = "snat-ip")]
    pub snat_ip: Vec<String>,
    /// Only flows whose packets were encrypted (IPsec, WireGuard).
    #[arg(long = "encrypted")]
    pub encrypted: bool,
    /// Only flows whose packets were not encrypted.
    #[arg(long = "unencrypted")]
    pub unencrypted: bool,
    /// Drop reason, as Hubble names it: POLICY_DENIED, POLICY_DENY, ...
    #[arg(long = "drop-reason-desc")]
    pub drop_reason_desc: Vec<String>,
    /// Interface the flow was observed on, e.g. `lxc1a2b3c`.
    #[arg(long = "interface")]
    pub interface: Vec<String>,
    /// Flow UUID.
    #[arg(long = "uuid")]
    pub uuid: Vec<String>,
    /// ingress or egress.
    #[arg(long = "traffic-direction")]
    pub traffic_direction: Vec<String>,
    /// Only IPv4 flows.
    #[arg(long = "ipv4", short = '4')]
    pub ipv4: bool,
    /// Only IPv6 flows.
    #[arg(long = "ipv6", short = '6')]
    pub ipv6: bool,
    /// IP version: 4 or 6 (also v4, ipv4, ip4, ...).
    #[arg(long = "ip-version")]
    pub ip_version: Vec<String>,
}

/// A flag value that cannot become a filter. A long value (a raw
/// `--allowlist` of thousands of entries) is shown by its start and length,
/// so the problem stays on screen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--{flag}{}: {problem}", value.as_deref().map(|v| format!(" {}", shown(v))).unwrap_or_default())]
pub struct FlagError {
    pub flag: &'static str,
    /// None for a switch (`-A`), which has no value to show.
    pub value: Option<String>,
    pub problem: String,
}

/// `value` quoted, its first 80 characters only when longer than 100.
fn shown(value: &str) -> String {
    const LONG: usize = 100;
    const START: usize = 80;
    let chars = value.chars().count();
    if chars <= LONG {
        return format!("{value:?}");
    }
    let start: String = value.chars().take(START).collect();
    format!("{start:?}… ({chars} characters)")
}

/// IPs and label selectors checked here, with the server's own parser, so
/// that an error names the flag given rather than a `FlowFilter` field.
fn check_ips_and_labels(args: &FilterArgs) -> Result<(), FlagError> {
    use observer_runtime::filter::{FilterError, compile};
    let ip = |v: &str| FlowFilter {
        source_ip: vec![v.to_string()],
        ..Default::default()
    };
    let label = |v: &str| FlowFilter {
        source_label: vec![v.to_string()],
        ..Default::default()
    };
    let node_label = |v: &str| FlowFilter {
        node_labels: vec![v.to_string()],
        ..Default::default()
    };
    type OneEntry<'a> = &'a dyn Fn(&str) -> FlowFilter;
    let flags: [(&'static str, &Vec<String>, OneEntry); 8] = [
        ("from-ip", &args.from_ip, &ip),
        ("to-ip", &args.to_ip, &ip),
        ("ip", &args.ip, &ip),
        ("snat-ip", &args.snat_ip, &ip),
        ("from-label", &args.from_label, &label),
        ("to-label", &args.to_label, &label),
        ("label", &args.label, &label),
        ("node-label", &args.node_label, &node_label),
    ];
    for (flag, values, filter) in flags {
        for v in values {
            match compile(&[filter(v)], &[]) {
                Err(FilterError::InvalidCidr { .. }) => {
                    return Err(bad(flag, v, "not an IP address or CIDR"));
                }
                Err(FilterError::InvalidLabelSelector { reason, .. }) => {
                    return Err(bad(flag, v, &format!("not a label selector: {reason}")));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn bad(flag: &'static str, value: &str, problem: &str) -> FlagError {
    FlagError {
        flag,
        value: Some(value.to_string()),
        problem: problem.to_string(),
    }
}

/// A switch (a flag without a value) that cannot be given as it was.
fn bad_switch(flag: &'static str, problem: &str) -> FlagError {
    FlagError {
        flag,
        value: None,
        problem: problem.to_string(),
    }
}

fn parse_verdict(v: &str) -> Result<i32, FlagError> {
    Verdict::from_str_name(&v.to_ascii_uppercase())
        .map(|v| v as i32)
        .ok_or_else(|| {
            bad(
                "verdict",
                v,
                "unknown verdict (FORWARDED, DROPPED, AUDIT, ERROR, ...)",
            )
        })
}

fn parse_direction(v: &str) -> Result<i32, FlagError> {
    match v.to_ascii_lowercase().as_str() {
        "ingress" => Ok(TrafficDirection::Ingress as i32),
        "egress" => Ok(TrafficDirection::Egress as i32),
        _ => Err(bad("traffic-direction", v, "expected ingress or egress")),
    }
}

fn parse_tcp_flags(v: &str) -> Result<TcpFlags, FlagError> {
    let mut f = TcpFlags::default();
    for name in v.split(',').map(str::trim) {
        let slot = match name.to_ascii_uppercase().as_str() {
            "SYN" => &mut f.syn,
            "ACK" => &mut f.ack,
            "FIN" => &mut f.fin,
            "RST" => &mut f.rst,
            "PSH" => &mut f.psh,
            "URG" => &mut f.urg,
            "ECE" => &mut f.ece,
            "CWR" => &mut f.cwr,
            "NS" => &mut f.ns,
            _ => return Err(bad("tcp-flags", v, &format!("unknown TCP flag {name:?}"))),
        };
        *slot = true;
    }
    Ok(f)
}

/// Cilium's reserved security identities by name.
const RESERVED_IDENTITIES: [(&str, u32); 10] = [
    ("host", 1),
    ("world", 2),
    ("unmanaged", 3),
    ("health", 4),
    ("init", 5),
    ("remote-node", 6),
    ("kube-apiserver", 7),
    ("ingress", 8),
    ("world-ipv4", 9),
    ("world-ipv6", 10),
];

fn parse_identity(flag: &'static str, v: &str) -> Result<u32, FlagError> {
    if let Some((_, id)) = RESERVED_IDENTITIES.iter().find(|(n, _)| *n == v) {
        return Ok(*id);
    }
    v.parse().map_err(|_| {
        let names: Vec<&str> = RESERVED_IDENTITIES.iter().map(|(n, _)| *n).collect();
        bad(
            flag,
            v,
            &format!(
                "not a security identity: a number or one of {}",
                names.join(", ")
            ),
        )
    })
}

/// `[kind/]name` or `kind/` (any of that kind), as Hubble takes it.
fn parse_workload(flag: &'static str, v: &str) -> Result<Workload, FlagError> {
    let (kind, name) = v.split_once('/').unwrap_or(("", v));
    if (name.is_empty() && kind.is_empty()) || name.contains('/') {
        return Err(bad(
            flag,
            v,
            "expected [kind/]name or kind/, e.g. Deployment/api or Deployment/",
        ));
    }
    Ok(Workload {
        name: name.to_string(),
        kind: kind.to_string(),
    })
}

fn parse_drop_reason(v: &str) -> Result<i32, FlagError> {
    DropReason::from_str_name(&v.to_ascii_uppercase())
        .map(|r| r as i32)
        .ok_or_else(|| {
            bad(
                "drop-reason-desc",
                v,
                "unknown drop reason (POLICY_DENIED, POLICY_DENY, ...)",
            )
        })
}

/// Parses every value of `flag` with `parse`.
/// A pod of a namespace and a service of another at the same end select no
/// flow (both must hold): refused, as Hubble refuses them (a service without
/// a namespace too, beside a pod with one).
fn check_pod_and_service_namespaces(a: &FilterArgs) -> Result<(), FlagError> {
    let ends = [
        (
            [("from-pod", &a.from_pod), ("pod", &a.pod)],
            [("from-service", &a.from_service), ("service", &a.service)],
        ),
        (
            [("to-pod", &a.to_pod), ("pod", &a.pod)],
            [("to-service", &a.to_service), ("service", &a.service)],
        ),
    ];
    fn namespace(name: &str) -> &str {
        name.split_once('/').map_or("", |(ns, _)| ns)
    }
    for (pods, services) in ends {
        for (pod_flag, pods) in pods {
            for pod in pods.iter().filter(|p| !namespace(p).is_empty()) {
                let other = services
                    .iter()
                    .flat_map(|(flag, svcs)| svcs.iter().map(move |s| (*flag, s)))
                    .find(|(_, svc)| namespace(svc) != namespace(pod));
                if let Some((svc_flag, svc)) = other {
                    return Err(bad(
                        pod_flag,
                        pod,
                        &format!(
                            "its namespace is not that of --{svc_flag} {svc:?}: a flow's end \
                             is in one namespace (as in Hubble)"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `name:value`, as Hubble's `--http-header` takes it.
fn parse_http_header(flag: &'static str, v: &str) -> Result<HttpHeader, FlagError> {
    match v.split_once(':') {
        Some((key, value)) if !key.is_empty() => Ok(HttpHeader {
            key: key.to_string(),
            value: value.to_string(),
        }),
        _ => Err(bad(flag, v, "expected name:value, e.g. x-request-id:42")),
    }
}

/// A number above 0, as Hubble's `--ip-trace-id` takes it.
fn parse_ip_trace_id(flag: &'static str, v: &str) -> Result<u64, FlagError> {
    match v.parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(bad(flag, v, "expected a number above 0")),
    }
}

fn each<T>(
    flag: &'static str,
    values: &[String],
    parse: impl Fn(&'static str, &str) -> Result<T, FlagError>,
) -> Result<Vec<T>, FlagError> {
    values.iter().map(|v| parse(flag, v)).collect()
}

/// Hubble's event type names and their monitor numbers.
fn parse_event_type(v: &str) -> Result<EventTypeFilter, FlagError> {
    // As in Hubble, one type a flag; a list is a common first try.
    if v.contains(',') {
        let each: Vec<String> = v
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| format!("--type {t}"))
            .collect();
        return Err(bad(
            "type",
            v,
            &format!(
                "one event type per --type: give the flag once for each ({})",
                each.join(" ")
            ),
        ));
    }
    let (name, sub) = match v.split_once(':') {
        Some((n, s)) => (n, Some(s)),
        None => (v, None),
    };
    let r#type = match name {
        "drop" => 1,
        "debug" => 2,
        "capture" => 3,
        "trace" => 4,
        "policy-verdict" => 5,
        "trace-sock" | "sock" => 7,
        "l7" => 129,
        "agent" => 130,
        // The TYPE column's name for them, which no event type has.
        crate::flows::output::TCP_LIFECYCLE => {
            return Err(bad(
                "type",
                v,
                "TCP lifecycle reports have no event type, so no --type selects them (as in \
                 Hubble, whose type filters leave them out); SQL lists them: observe query \
                 \"SELECT * FROM flows WHERE lifecycle_kind IS NOT NULL\"",
            ));
        }
        n => event_number(n).ok_or_else(|| {
            bad(
                "type",
                v,
                "unknown event type (trace, drop, policy-verdict, trace-sock, capture, debug, l7, agent, or a number)",
            )
        })?,
    };
    let sub_type = match sub {
        None => None,
        Some(s) => Some(match (r#type, s) {
            (4, name) => named_sub_type(v, name, &TRACE_SUB_TYPES, "observation point")?,
            (130, name) => named_sub_type(v, name, &AGENT_SUB_TYPES, "agent event sub-type")?,
            (_, n) => event_number(n).ok_or_else(|| {
                bad(
                    "type",
                    v,
                    "unknown event sub-type: only trace and agent have named ones; give a number (for drop, its reason's, e.g. drop:133)",
                )
            })?,
        }),
    };
    Ok(EventTypeFilter {
        r#type,
        match_sub_type: sub_type.is_some(),
        sub_type: sub_type.unwrap_or(0),
    })
}

/// A sub-type by its name in `names` (its number is its place there) or
/// as a number.
fn named_sub_type(v: &str, name: &str, names: &[&str], what: &str) -> Result<i32, FlagError> {
    match names.iter().position(|n| *n == name) {
        Some(i) => Ok(i as i32),
        None => event_number(name).ok_or_else(|| {
            bad(
                "type",
                v,
                &format!("unknown {what} ({}, or a number)", names.join(", ")),
            )
        }),
    }
}

/// An event type or sub-type given as a number: unsigned, as Hubble reads
/// it (`-5` would match nothing).
fn event_number(text: &str) -> Option<i32> {
    is_digits(text)
        .then(|| text.parse::<u32>().ok())
        .flatten()
        .and_then(|n| i32::try_from(n).ok())
}

/// Only ASCII digits, at least one (`+80` is no port, for the server).
fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Which end of a flow a flag names.
#[derive(Clone, Copy)]
enum Side {
    Source,
    Destination,
}

fn pods(f: &mut FlowFilter, side: Side) -> &mut Vec<String> {
    match side {
        Side::Source => &mut f.source_pod,
        Side::Destination => &mut f.destination_pod,
    }
}

fn services(f: &mut FlowFilter, side: Side) -> &mut Vec<String> {
    match side {
        Side::Source => &mut f.source_service,
        Side::Destination => &mut f.destination_service,
    }
}

/// Puts one side's pods and services of `f` in the namespaces `ns`, as
/// Hubble does: a name without a namespace is looked for in each of them,
/// neither pod nor service means any pod there, and a name in another
/// namespace is an error (its flag, `ns_flag`, says which).
fn in_namespaces(
    f: &mut FlowFilter,
    side: Side,
    ns: &[String],
    ns_flag: &'static str,
) -> Result<(), FlagError> {
    if ns.is_empty() {
        return Ok(());
    }
    let ns: Vec<&str> = ns.iter().map(|n| n.trim_end_matches('/')).collect();
    if pods(f, side).is_empty() && services(f, side).is_empty() {
        pods(f, side).push(String::new());
    }
    let place = |what: &str, names: &mut Vec<String>| {
        let mut out = Vec::new();
        for name in std::mem::take(names) {
            match name.split_once('/') {
                Some((name_ns, _)) => {
                    // Any namespace ("", from -A) holds every name.
                    if let Some(other) = ns.iter().find(|n| !n.is_empty() && **n != name_ns) {
                        return Err(bad(
                            ns_flag,
                            other,
                            &format!("the namespace does not hold the {what} {name:?}"),
                        ));
                    }
                    out.push(name);
                }
                None => out.extend(ns.iter().map(|n| format!("{n}/{name}"))),
            }
        }
        *names = out;
        Ok(())
    };
    place("pod", pods(f, side))?;
    place("service", services(f, side))
}

/// The first value of the flags of one field (`from-X`, `to-X`, `X`) that
/// `valid` refuses, named by its flag with `problem`.
fn check_values(
    flags: [(&'static str, &Vec<String>); 3],
    valid: impl Fn(&str) -> bool,
    problem: &str,
) -> Result<(), FlagError> {
    for (flag, values) in flags {
        if let Some(v) = values.iter().find(|v| !valid(v)) {
            return Err(bad(flag, v, problem));
        }
    }
    Ok(())
}

/// A flag's name and its values.
type FlagValues<'a> = (&'static str, &'a Vec<String>);

/// Flags that feed one field from both a direction-neutral and a directional
/// flag (they would OR where flags of different kinds AND), refused as Hubble
/// refuses them.
fn check_combinations(a: &FilterArgs) -> Result<(), FlagError> {
    let pairs: [(&'static str, &[String], &'static str, &[String]); 22] = [
        ("ip", &a.ip, "from-ip", &a.from_ip),
        ("ip", &a.ip, "to-ip", &a.to_ip),
        ("pod", &a.pod, "from-pod", &a.from_pod),
        ("pod", &a.pod, "to-pod", &a.to_pod),
        ("namespace", &a.namespace, "from-pod", &a.from_pod),
        ("namespace", &a.namespace, "to-pod", &a.to_pod),
        (
            "namespace",
            &a.namespace,
            "from-namespace",
            &a.from_namespace,
        ),
        ("namespace", &a.namespace, "to-namespace", &a.to_namespace),
        ("label", &a.label, "from-label", &a.from_label),
        ("label", &a.label, "to-label", &a.to_label),
        ("port", &a.port, "from-port", &a.from_port),
        ("port", &a.port, "to-port", &a.to_port),
        ("service", &a.service, "from-service", &a.from_service),
        ("service", &a.service, "to-service", &a.to_service),
        ("namespace", &a.namespace, "from-service", &a.from_service),
        ("namespace", &a.namespace, "to-service", &a.to_service),
        ("workload", &a.workload, "from-workload", &a.from_workload),
        ("workload", &a.workload, "to-workload", &a.to_workload),
        ("identity", &a.identity, "from-identity", &a.from_identity),
        ("identity", &a.identity, "to-identity", &a.to_identity),
        ("fqdn", &a.fqdn, "from-fqdn", &a.from_fqdn),
        ("fqdn", &a.fqdn, "to-fqdn", &a.to_fqdn),
    ];
    // Any namespace does not go with a namespace or a directional pod or
    // service, as in Hubble; `-A --pod coredns` is the pod in any namespace.
    let all = [
        ("namespace", &a.namespace),
        ("from-namespace", &a.from_namespace),
        ("to-namespace", &a.to_namespace),
        ("from-pod", &a.from_pod),
        ("to-pod", &a.to_pod),
        ("from-service", &a.from_service),
        ("to-service", &a.to_service),
    ];
    let any: [(&str, bool, &[FlagValues]); 3] = [
        ("all-namespaces", a.all_namespaces, &all),
        (
            "from-all-namespaces",
            a.from_all_namespaces,
            &[
                ("namespace", &a.namespace),
                ("from-namespace", &a.from_namespace),
            ],
        ),
        (
            "to-all-namespaces",
            a.to_all_namespaces,
            &[
                ("namespace", &a.namespace),
                ("to-namespace", &a.to_namespace),
            ],
        ),
    ];
    for (flag, on, others) in any {
        if let (true, Some((other, _))) = (on, others.iter().find(|(_, v)| !v.is_empty())) {
            return Err(bad_switch(
                flag,
                &format!(
                    "cannot be combined with --{other}: --{flag} selects every namespace of \
                     its end, --{other} names one; give one of them (as in Hubble)"
                ),
            ));
        }
    }
    for (neutral, values, directional, others) in pairs {
        if let (Some(v), false) = (values.first(), others.is_empty()) {
            return Err(bad(
                neutral,
                v,
                &format!(
                    "cannot be combined with --{directional}: --{neutral} names either end \
                     of a flow, --{directional} one; use --from-{neutral} or --to-{neutral}"
                ),
            ));
        }
    }
    Ok(())
}

/// Flags Hubble refuses together (in its groups, any two): both would name
/// one end of a flow, once by address or DNS name and once by pod or
/// namespace (`--ip X -n prod` would need X to be a pod of prod).
const SAME_END: [&[&str]; 4] = [
    &[
        "from-fqdn",
        "from-ip",
        "ip",
        "fqdn",
        "from-namespace",
        "namespace",
        "from-all-namespaces",
        "all-namespaces",
    ],
    &["from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"],
    &[
        "to-fqdn",
        "to-ip",
        "ip",
        "fqdn",
        "to-namespace",
        "namespace",
        "to-all-namespaces",
        "all-namespaces",
    ],
    &["to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"],
];

/// The first value of one of [`SAME_END`]'s flags or `--node-name`/`--cluster`
/// if given (`Some(None)` for a switch that is on).
fn first_value(a: &FilterArgs, flag: &str) -> Option<Option<String>> {
    let on = |set: bool| set.then_some(None);
    let values = match flag {
        "ip" => &a.ip,
        "from-ip" => &a.from_ip,
        "to-ip" => &a.to_ip,
        "fqdn" => &a.fqdn,
        "from-fqdn" => &a.from_fqdn,
        "to-fqdn" => &a.to_fqdn,
        "namespace" => &a.namespace,
        "from-namespace" => &a.from_namespace,
        "to-namespace" => &a.to_namespace,
        "pod" => &a.pod,
        "from-pod" => &a.from_pod,
        "to-pod" => &a.to_pod,
        "node-name" => &a.node_name,
        "cluster" => &a.cluster,
        "all-namespaces" => return on(a.all_namespaces),
        "from-all-namespaces" => return on(a.from_all_namespaces),
        "to-all-namespaces" => return on(a.to_all_namespaces),
        _ => unreachable!("no flag --{flag}"),
    };
    values.first().cloned().map(Some)
}

/// [`SAME_END`]'s pairs.
fn check_same_end(a: &FilterArgs) -> Result<(), FlagError> {
    let same_end = "an end of a flow is named by its address, its DNS name, or its pod and \
                    namespace, not two of these (as in Hubble); use --from-* for one end and \
                    --to-* for the other";
    for (group, why) in SAME_END.iter().map(|g| (*g, same_end)) {
        let mut given = group
            .iter()
            .filter_map(|f| first_value(a, f).map(|v| (*f, v)));
        if let (Some((flag, value)), Some((other, other_value))) = (given.next(), given.next()) {
            // Two switches: --from- or --to-all-namespaces beside -A.
            let why = match (&value, other_value) {
                (None, None) => "--all-namespaces already selects every namespace at both ends",
                _ => why,
            };
            return Err(FlagError {
                flag,
                value,
                problem: format!("cannot be combined with --{other}: {why}"),
            });
        }
    }
    Ok(())
}

impl FilterArgs {
    /// The whitelist these flags describe; empty when no flag was given.
    ///
    /// As in Hubble: flags of different kinds AND, values of one flag OR,
    /// and the direction-neutral flags (`--ip`, `--pod`, `--namespace`,
    /// `--label`, `--port`) make two filters, one with all of them on the
    /// source side and one with all of them on the destination side.
    pub fn whitelist(&self) -> Result<Vec<FlowFilter>, FlagError> {
        check_combinations(self)?;
        check_same_end(self)?;
        check_values(
            [
                ("from-port", &self.from_port),
                ("to-port", &self.to_port),
                ("port", &self.port),
            ],
            |v| is_digits(v) && v.parse::<u16>().is_ok(),
            "not a port number (0 to 65535)",
        )?;
        check_values(
            [
                ("from-pod", &self.from_pod),
                ("to-pod", &self.to_pod),
                ("pod", &self.pod),
            ],
            // `/name`: that pod in any namespace.
            |v| match v.split_once('/') {
                Some((ns, name)) => !name.contains('/') && (ns, name) != ("", ""),
                None => !v.is_empty(),
            },
            "expected [namespace/][name-prefix], e.g. default/api, default/ or /api",
        )?;
        check_values(
            [
                ("from-namespace", &self.from_namespace),
                ("to-namespace", &self.to_namespace),
                ("namespace", &self.namespace),
            ],
            |v| {
                let ns = v.trim_end_matches('/');
                !ns.is_empty() && !ns.contains('/')
            },
            "expected a namespace name, e.g. default",
        )?;
        check_values(
            [
                ("from-service", &self.from_service),
                ("to-service", &self.to_service),
                ("service", &self.service),
            ],
            // `/name`: that service in any namespace, as for pods.
            |v| match v.split_once('/') {
                Some((_, name)) => !name.is_empty() && !name.contains('/'),
                None => !v.is_empty(),
            },
            "expected [namespace/]name, e.g. default/api or /api",
        )?;
        check_values(
            [
                ("from-cluster", &self.from_cluster),
                ("to-cluster", &self.to_cluster),
                ("cluster", &self.cluster),
            ],
            |v| !v.is_empty() && !v.contains('/'),
            "expected a cluster name",
        )?;
        check_ips_and_labels(self)?;
        check_pod_and_service_namespaces(self)?;
        if self.encrypted && self.unencrypted {
            return Err(FlagError {
                flag: "encrypted",
                value: None,
                problem: "cannot be combined with --unencrypted: a flow is one or the other".into(),
            });
        }
        let mut base = FlowFilter {
            verdict: self
                .verdict
                .iter()
                .map(|v| parse_verdict(v))
                .collect::<Result<_, _>>()?,
            traffic_direction: self
                .traffic_direction
                .iter()
                .map(|v| parse_direction(v))
                .collect::<Result<_, _>>()?,
            tcp_flags: self
                .tcp_flags
                .iter()
                .map(|v| parse_tcp_flags(v))
                .collect::<Result<_, _>>()?,
            event_type: self
                .event_type
                .iter()
                .map(|v| parse_event_type(v))
                .collect::<Result<_, _>>()?,
            protocol: self.protocol.clone(),
            node_name: self.node_name.clone(),
            node_labels: self.node_label.clone(),
            source_cluster_name: self.from_cluster.clone(),
            destination_cluster_name: self.to_cluster.clone(),
            source_fqdn: self.from_fqdn.clone(),
            destination_fqdn: self.to_fqdn.clone(),
            http_status_code: self.http_status.clone(),
            http_method: self.http_method.clone(),
            http_path: self.http_path.clone(),
            http_url: self.http_url.clone(),
            http_header: each("http-header", &self.http_header, parse_http_header)?,
            trace_id: self.trace_id.clone(),
            ip_trace_id: each("ip-trace-id", &self.ip_trace_id, parse_ip_trace_id)?,
            source_ip_xlated: self.snat_ip.clone(),
            encrypted: [(self.encrypted, true), (self.unencrypted, false)]
                .into_iter()
                .filter_map(|(given, wanted)| given.then_some(wanted))
                .collect(),
            source_ip: self.from_ip.clone(),
            destination_ip: self.to_ip.clone(),
            source_pod: self.from_pod.clone(),
            destination_pod: self.to_pod.clone(),
            source_label: self.from_label.clone(),
            destination_label: self.to_label.clone(),
            source_port: self.from_port.clone(),
            destination_port: self.to_port.clone(),
            source_service: self.from_service.clone(),
            destination_service: self.to_service.clone(),
            source_workload: each("from-workload", &self.from_workload, parse_workload)?,
            destination_workload: each("to-workload", &self.to_workload, parse_workload)?,
            source_identity: each("from-identity", &self.from_identity, parse_identity)?,
            destination_identity: each("to-identity", &self.to_identity, parse_identity)?,
            drop_reason_desc: self
                .drop_reason_desc
                .iter()
                .map(|v| parse_drop_reason(v))
                .collect::<Result<_, _>>()?,
            interface: self
                .interface
                .iter()
                .map(|name| NetworkInterface {
                    index: 0,
                    name: name.clone(),
                })
                .collect(),
            uuid: self.uuid.clone(),
            ..Default::default()
        };
        for v in &self.ip_version {
            let version = match v.to_ascii_lowercase().as_str() {
                "4" | "v4" | "ipv4" | "ip4" => IpVersion::IPv4,
                "6" | "v6" | "ipv6" | "ip6" => IpVersion::IPv6,
                // Flows without IP (hubble's `none`).
                "none" => IpVersion::IpNotUsed,
                _ => return Err(bad("ip-version", v, "expected 4, 6 or none")),
            };
            base.ip_version.push(version as i32);
        }
        if self.ipv4 {
            base.ip_version.push(IpVersion::IPv4 as i32);
        }
        if self.ipv6 {
            base.ip_version.push(IpVersion::IPv6 as i32);
        }
        // Any namespace is the namespace "" (pods `/`), which the server
        // reads as any.
        let with_any = |names: &[String], any: bool| -> Vec<String> {
            let mut v = names.to_vec();
            if any {
                v.push(String::new());
            }
            v
        };
        let namespace = with_any(&self.namespace, self.all_namespaces);
        let from_namespace = with_any(&self.from_namespace, self.from_all_namespaces);
        let to_namespace = with_any(&self.to_namespace, self.to_all_namespaces);
        let neutral = [
            &self.ip,
            &self.pod,
            &namespace,
            &self.label,
            &self.port,
            &self.service,
            &self.workload,
            &self.identity,
            &self.fqdn,
            &self.cluster,
        ];
        let mut variants = if neutral.iter().all(|v| v.is_empty()) {
            vec![base]
        } else {
            let (mut from, mut to) = (base.clone(), base);
            from.source_ip.extend(self.ip.iter().cloned());
            to.destination_ip.extend(self.ip.iter().cloned());
            from.source_pod.extend(self.pod.iter().cloned());
            to.destination_pod.extend(self.pod.iter().cloned());
            from.source_label.extend(self.label.iter().cloned());
            to.destination_label.extend(self.label.iter().cloned());
            from.source_port.extend(self.port.iter().cloned());
            to.destination_port.extend(self.port.iter().cloned());
            from.source_service.extend(self.service.iter().cloned());
            to.destination_service.extend(self.service.iter().cloned());
            let workloads = each("workload", &self.workload, parse_workload)?;
            from.source_workload.extend(workloads.iter().cloned());
            to.destination_workload.extend(workloads);
            let identities = each("identity", &self.identity, parse_identity)?;
            from.source_identity.extend(identities.iter().copied());
            to.destination_identity.extend(identities);
            from.source_fqdn.extend(self.fqdn.iter().cloned());
            to.destination_fqdn.extend(self.fqdn.iter().cloned());
            from.source_cluster_name
                .extend(self.cluster.iter().cloned());
            to.destination_cluster_name
                .extend(self.cluster.iter().cloned());
            in_namespaces(&mut from, Side::Source, &namespace, "namespace")?;
            in_namespaces(&mut to, Side::Destination, &namespace, "namespace")?;
            vec![from, to]
        };
        // After every pod is in place: they are the pods put in the namespace.
        for f in &mut variants {
            in_namespaces(f, Side::Source, &from_namespace, "from-namespace")?;
            in_namespaces(f, Side::Destination, &to_namespace, "to-namespace")?;
        }
        if variants == [FlowFilter::default()] {
            return Ok(Vec::new());
        }
        Ok(variants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut FilterArgs)) -> FilterArgs {
        let mut a = FilterArgs::default();
        f(&mut a);
        a
    }

    #[test]
    fn no_flags_no_filter() {
        assert_eq!(
            FilterArgs::default().whitelist().unwrap(),
            Vec::<FlowFilter>::new()
        );
    }

    /// `agent:NAME` as Hubble's own flag test gives them: a pasted
    /// `--type agent:policy-updated` stopped at "only trace has named ones".
    #[test]
    fn agent_sub_types_are_taken_by_name_and_number() {
        let types = |names: &[&str]| {
            let w = args(|a| a.event_type = names.iter().map(|n| n.to_string()).collect())
                .whitelist()
                .unwrap();
            w[0].event_type
                .iter()
                .map(|t| (t.r#type, t.match_sub_type, t.sub_type))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            types(&[
                "agent",
                "agent:3",
                "agent:policy-updated",
                "agent:service-deleted",
                "agent:unspecified",
            ]),
            [
                (130, false, 0),
                (130, true, 3),
                (130, true, 5),
                (130, true, 12),
                (130, true, 0)
            ]
        );
        // Trace's names stay trace's.
        assert!(
            args(|a| a.event_type = vec!["agent:to-endpoint".into()])
                .whitelist()
                .is_err()
        );
    }

    #[test]
    fn directional_flags_and_together_in_one_filter() {
        let w = args(|a| {
            a.from_pod = vec!["default/frontend".into()];
            a.to_port = vec!["8080".into()];
            a.verdict = vec!["forwarded".into()];
        })
        .whitelist()
        .unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].source_pod, ["default/frontend"]);
        assert_eq!(w[0].destination_port, ["8080"]);
        assert_eq!(w[0].verdict, [Verdict::Forwarded as i32]);
    }

    #[test]
    fn dns_names_match_either_end_and_l7_flags_match_no_flow() {
        use observer_runtime::filter::compile;
        let w = args(|a| a.fqdn = vec!["*.example.com".into()])
            .whitelist()
            .unwrap();
        assert_eq!(
            w,
            [
                FlowFilter {
                    source_fqdn: vec!["*.example.com".into()],
                    ..Default::default()
                },
                FlowFilter {
                    destination_fqdn: vec!["*.example.com".into()],
                    ..Default::default()
                },
            ]
        );
        let to_api = observer_proto::flow::Flow {
            destination_names: vec!["api.example.com".into()],
            ..Default::default()
        };
        assert!(compile(&w, &[]).unwrap().matches(&to_api));
        let other = args(|a| a.to_fqdn = vec!["*.example.org".into()])
            .whitelist()
            .unwrap();
        assert!(!compile(&other, &[]).unwrap().matches(&to_api));
        // Hubble's L7 flags are taken, and match nothing: no L7 is captured.
        let l7 = args(|a| {
            a.http_status = vec!["5+".into()];
            a.http_method = vec!["get".into()];
            a.http_path = vec!["/api".into()];
            a.http_url = vec!["http://api".into()];
            a.http_header = vec!["x-request-id:4:2".into()];
            a.trace_id = vec!["abc".into()];
            a.ip_trace_id = vec!["7".into()];
        })
        .whitelist()
        .unwrap();
        assert_eq!(
            l7,
            [FlowFilter {
                http_status_code: vec!["5+".into()],
                http_method: vec!["get".into()],
                http_path: vec!["/api".into()],
                http_url: vec!["http://api".into()],
                http_header: vec![HttpHeader {
                    key: "x-request-id".into(),
                    value: "4:2".into()
                }],
                trace_id: vec!["abc".into()],
                ip_trace_id: vec![7],
                ..Default::default()
            }]
        );
        assert!(!compile(&l7, &[]).unwrap().matches(&to_api));
        let refused = |f: fn(&mut FilterArgs)| args(f).whitelist().unwrap_err().to_string();
        assert_eq!(
            refused(|a| a.http_header = vec!["x-request-id".into()]),
            "--http-header \"x-request-id\": expected name:value, e.g. x-request-id:42"
        );
        assert_eq!(
            refused(|a| a.ip_trace_id = vec!["0".into()]),
            "--ip-trace-id \"0\": expected a number above 0"
        );
        let both = args(|a| {
            a.fqdn = vec!["a".into()];
            a.from_fqdn = vec!["b".into()];
        })
        .whitelist()
        .unwrap_err();
        assert_eq!(
            both.to_string(),
            "--fqdn \"a\": cannot be combined with --from-fqdn: --fqdn names either end of a \
             flow, --from-fqdn one; use --from-fqdn or --to-fqdn"
        );
    }

    #[test]
    fn node_labels_and_clusters_become_their_fields() {
        let w = args(|a| {
            a.node_label = vec!["zone=a".into()];
            a.from_cluster = vec!["east".into()];
        })
        .whitelist()
        .unwrap();
        assert_eq!(
            w,
            [FlowFilter {
                node_labels: vec!["zone=a".into()],
                source_cluster_name: vec!["east".into()],
                ..Default::default()
            }]
        );
        // --cluster is either end's cluster, as Hubble's (it had named
        // where the flow was seen, the nodes `east/*`, as an older Hubble
        // did, and refused --node-name beside it).
        let w = args(|a| {
            a.cluster = vec!["east".into()];
            a.node_name = vec!["node1".into()];
            a.to_port = vec!["53".into()];
        })
        .whitelist()
        .unwrap();
        let seen = FlowFilter {
            node_name: vec!["node1".into()],
            destination_port: vec!["53".into()],
            ..Default::default()
        };
        assert_eq!(
            w,
            [
                FlowFilter {
                    source_cluster_name: vec!["east".into()],
                    ..seen.clone()
                },
                FlowFilter {
                    destination_cluster_name: vec!["east".into()],
                    ..seen
                }
            ]
        );
        let refused = |f: fn(&mut FilterArgs)| args(f).whitelist().unwrap_err().to_string();
        assert_eq!(
            refused(|a| a.node_label = vec!["zone in (".into()]),
            refused(|a| a.label = vec!["zone in (".into()]).replacen("--label", "--node-label", 1)
        );
        assert_eq!(
            refused(|a| a.to_cluster = vec![String::new()]),
            "--to-cluster \"\": expected a cluster name"
        );
        assert_eq!(
            refused(|a| a.cluster = vec!["east/node1".into()]),
            "--cluster \"east/node1\": expected a cluster name"
        );
    }

    /// `/api` is a service in any namespace, as it is a pod (and as `-A
    /// --to-service api` asks for it): it was refused for services alone.
    #[test]
    fn a_service_in_any_namespace() {
        use observer_runtime::filter::compile;
        let w = args(|a| a.to_service = vec!["/api".into()])
            .whitelist()
            .unwrap();
        assert_eq!(
            w,
            [FlowFilter {
                destination_service: vec!["/api".into()],
                ..Default::default()
            }]
        );
        let to = |ns: &str| observer_proto::flow::Flow {
            destination_service: Some(observer_proto::flow::Service {
                name: "api".into(),
                namespace: ns.into(),
            }),
            ..Default::default()
        };
        let filter = compile(&w, &[]).unwrap();
        assert!(filter.matches(&to("shop")) && filter.matches(&to("default")));
    }

    /// From the review against Hubble: a pod of one namespace and a service
    /// of another at one end were taken, and selected nothing.
    #[test]
    fn a_pod_and_a_service_of_two_namespaces_at_one_end_are_refused() {
        let refused = |f: fn(&mut FilterArgs)| args(f).whitelist().unwrap_err().to_string();
        assert_eq!(
            refused(|a| {
                a.from_service = vec!["cilium/foo".into()];
                a.from_pod = vec!["kube-system/hubble".into()];
            }),
            "--from-pod \"kube-system/hubble\": its namespace is not that of --from-service \
             \"cilium/foo\": a flow's end is in one namespace (as in Hubble)"
        );
        assert_eq!(
            refused(|a| {
                a.pod = vec!["default/api".into()];
                a.to_service = vec!["db".into()];
            }),
            "--pod \"default/api\": its namespace is not that of --to-service \"db\": a \
             flow's end is in one namespace (as in Hubble)"
        );
        // One namespace, or the two ends apart: taken.
        for ok in [
            args(|a| {
                a.from_service = vec!["default/api".into()];
                a.from_pod = vec!["default/api-1".into()];
            }),
            args(|a| {
                a.from_pod = vec!["kube-system/hubble".into()];
                a.to_service = vec!["default/api".into()];
            }),
        ] {
            assert!(ok.whitelist().is_ok(), "{ok:?}");
        }
    }

    /// Hubble's --snat-ip and --encrypted/--unencrypted were missing (clap
    /// stopped at them); the server matched both fields already.
    #[test]
    fn snat_ip_and_encryption_flags_as_hubble_has_them() {
        use observer_runtime::filter::compile;
        let w = args(|a| {
            a.snat_ip = vec!["198.18.0.0/24".into()];
            a.unencrypted = true;
        })
        .whitelist()
        .unwrap();
        assert_eq!(
            w,
            [FlowFilter {
                source_ip_xlated: vec!["198.18.0.0/24".into()],
                encrypted: vec![false],
                ..Default::default()
            }]
        );
        let flow = |xlated: &str, encrypted: bool| observer_proto::flow::Flow {
            ip: Some(observer_proto::flow::Ip {
                source_xlated: xlated.into(),
                encrypted,
                ..Default::default()
            }),
            ..Default::default()
        };
        let filter = compile(&w, &[]).unwrap();
        assert!(filter.matches(&flow("198.18.0.7", false)));
        assert!(!filter.matches(&flow("198.18.1.7", false)));
        assert!(!filter.matches(&flow("198.18.0.7", true)));
        let refused = |f: fn(&mut FilterArgs)| args(f).whitelist().unwrap_err().to_string();
        assert_eq!(
            refused(|a| a.snat_ip = vec!["nat".into()]),
            "--snat-ip \"nat\": not an IP address or CIDR"
        );
        assert_eq!(
            refused(|a| {
                a.encrypted = true;
                a.unencrypted = true;
            }),
            "--encrypted: cannot be combined with --unencrypted: a flow is one or the other"
        );
    }

    #[test]
    fn neutral_flags_split_into_source_or_destination() {
        let w = args(|a| {
            a.ip = vec!["198.18.0.2".into()];
            a.protocol = vec!["tcp".into()];
        })
        .whitelist()
        .unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].source_ip.as_slice(), w[0].destination_ip.len()),
            (&["198.18.0.2".to_string()][..], 0)
        );
        assert_eq!(
            (w[1].source_ip.len(), w[1].destination_ip.as_slice()),
            (0, &["198.18.0.2".to_string()][..])
        );
        assert!(w.iter().all(|f| f.protocol == ["tcp"]));
        let ns = args(|a| a.namespace = vec!["other".into()])
            .whitelist()
            .unwrap();
        assert_eq!(ns[0].source_pod, ["other/"]);
        assert_eq!(ns[1].destination_pod, ["other/"]);
    }

    #[test]
    fn one_end_named_by_address_and_by_pod_is_refused_as_in_hubble() {
        let refused = |f: fn(&mut FilterArgs)| args(f).whitelist().unwrap_err().to_string();
        let why = "an end of a flow is named by its address, its DNS name, or its pod and \
                   namespace, not two of these (as in Hubble); use --from-* for one end and \
                   --to-* for the other";
        // `--ip X -n prod` would need X to be a pod of prod at the same end.
        assert_eq!(
            refused(|a| {
                a.ip = vec!["198.18.0.5".into()];
                a.namespace = vec!["prod".into()];
            }),
            format!("--ip \"198.18.0.5\": cannot be combined with --namespace: {why}")
        );
        assert_eq!(
            refused(|a| {
                a.from_ip = vec!["198.18.0.5".into()];
                a.from_pod = vec!["default/api".into()];
            }),
            format!("--from-ip \"198.18.0.5\": cannot be combined with --from-pod: {why}")
        );
        assert_eq!(
            refused(|a| {
                a.to_fqdn = vec!["api.example".into()];
                a.all_namespaces = true;
            }),
            format!("--to-fqdn \"api.example\": cannot be combined with --all-namespaces: {why}")
        );
        assert_eq!(
            refused(|a| {
                a.ip = vec!["198.18.0.5".into()];
                a.fqdn = vec!["api.example".into()];
            }),
            format!("--ip \"198.18.0.5\": cannot be combined with --fqdn: {why}")
        );
        // The two ends named differently are one filter.
        let w = args(|a| {
            a.from_ip = vec!["198.18.0.5".into()];
            a.to_namespace = vec!["prod".into()];
            a.to_pod = vec!["api".into()];
        })
        .whitelist()
        .unwrap();
        assert_eq!(
            w,
            [FlowFilter {
                source_ip: vec!["198.18.0.5".into()],
                destination_pod: vec!["prod/api".into()],
                ..Default::default()
            }]
        );
    }

    #[test]
    fn flag_values_are_parsed_or_rejected_by_name() {
        let w = args(|a| {
            a.tcp_flags = vec!["syn,ack".into()];
            a.event_type = vec!["trace:to-endpoint".into()];
            a.ipv6 = true;
        })
        .whitelist()
        .unwrap();
        let flags = &w[0].tcp_flags[0];
        assert!(flags.syn && flags.ack && !flags.fin);
        assert_eq!(
            w[0].event_type[0],
            EventTypeFilter {
                r#type: 4,
                match_sub_type: true,
                sub_type: 0
            }
        );
        assert_eq!(w[0].ip_version, [IpVersion::IPv6 as i32]);
        // Cilium's crypto points (12, 13), as hubble names them.
        let w = args(|a| a.event_type = vec!["trace:from-crypto".into(), "trace:to-crypto".into()])
            .whitelist()
            .unwrap();
        let subs: Vec<i32> = w[0].event_type.iter().map(|t| t.sub_type).collect();
        assert_eq!(subs, [12, 13]);
        let w = args(|a| a.ip_version = vec!["v4".into(), "6".into()])
            .whitelist()
            .unwrap();
        assert_eq!(
            w[0].ip_version,
            [IpVersion::IPv4 as i32, IpVersion::IPv6 as i32]
        );
        let w = args(|a| a.ip_version = vec!["none".into()])
            .whitelist()
            .unwrap();
        assert_eq!(w[0].ip_version, [IpVersion::IpNotUsed as i32]);
        let err = args(|a| a.ip_version = vec!["5".into()])
            .whitelist()
            .unwrap_err();
        assert_eq!(err.to_string(), "--ip-version \"5\": expected 4, 6 or none");
        let err = args(|a| a.verdict = vec!["maybe".into()])
            .whitelist()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--verdict \"maybe\": unknown verdict (FORWARDED, DROPPED, AUDIT, ERROR, ...)"
        );
        let err = args(|a| a.tcp_flags = vec!["SYN,BOGUS".into()])
            .whitelist()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--tcp-flags \"SYN,BOGUS\": unknown TCP flag \"BOGUS\""
        );
    }

    #[test]
    fn services_workloads_identities_and_the_rest_of_hubbles_flags() {
        let w = args(|a| {
            a.to_service = vec!["api".into()];
            a.to_namespace = vec!["shop".into()];
            a.from_workload = vec![
                "Deployment/frontend".into(),
                "batch".into(),
                "StatefulSet/".into(),
            ];
            a.from_identity = vec!["world".into(), "4242".into()];
            a.drop_reason_desc = vec!["policy_denied".into()];
            a.interface = vec!["lxc1".into()];
            a.uuid = vec!["u-1".into()];
        })
        .whitelist()
        .unwrap();
        let want = FlowFilter {
            destination_service: vec!["shop/api".into()],
            source_workload: vec![
                Workload {
                    name: "frontend".into(),
                    kind: "Deployment".into(),
                },
                Workload {
                    name: "batch".into(),
                    kind: String::new(),
                },
                // Any StatefulSet, as hubble's `StatefulSet/`.
                Workload {
                    name: String::new(),
                    kind: "StatefulSet".into(),
                },
            ],
            source_identity: vec![2, 4242],
            drop_reason_desc: vec![DropReason::PolicyDenied as i32],
            interface: vec![NetworkInterface {
                index: 0,
                name: "lxc1".into(),
            }],
            uuid: vec!["u-1".into()],
            ..Default::default()
        };
        assert_eq!(w, [want]);

        // Neutral: either end, the namespace on each side's services.
        let w = args(|a| {
            a.service = vec!["api".into()];
            a.identity = vec!["host".into()];
            a.from_namespace = vec!["shop".into()];
        })
        .whitelist()
        .unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(
            (
                &w[0].source_service,
                &w[0].source_identity,
                &w[0].source_pod
            ),
            (&vec!["shop/api".to_string()], &vec![1], &vec![])
        );
        assert_eq!(
            (&w[1].destination_service, &w[1].destination_identity),
            (&vec!["api".to_string()], &vec![1])
        );
        assert_eq!(w[1].source_pod, ["shop/"], "no source name: any pod there");

        for (set, message) in [
            (
                Box::new(|a: &mut FilterArgs| a.from_identity = vec!["nobody".into()])
                    as Box<dyn Fn(&mut FilterArgs)>,
                "--from-identity \"nobody\": not a security identity: a number or one of host, world, unmanaged, health, init, remote-node, kube-apiserver, ingress, world-ipv4, world-ipv6",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.to_workload = vec!["/".into()]),
                "--to-workload \"/\": expected [kind/]name or kind/, e.g. Deployment/api or Deployment/",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.service = vec!["a/b/c".into()]),
                "--service \"a/b/c\": expected [namespace/]name, e.g. default/api or /api",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.to_service = vec!["default/".into()]),
                "--to-service \"default/\": expected [namespace/]name, e.g. default/api or /api",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.from_pod = vec!["/".into()]),
                "--from-pod \"/\": expected [namespace/][name-prefix], e.g. default/api, default/ or /api",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.pod = vec!["x/y/z".into()]),
                "--pod \"x/y/z\": expected [namespace/][name-prefix], e.g. default/api, default/ or /api",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.from_namespace = vec![String::new()]),
                "--from-namespace \"\": expected a namespace name, e.g. default",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.drop_reason_desc = vec!["oops".into()]),
                "--drop-reason-desc \"oops\": unknown drop reason (POLICY_DENIED, POLICY_DENY, ...)",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.event_type = vec!["trace:to-pod".into()]),
                "--type \"trace:to-pod\": unknown observation point (to-endpoint, to-proxy, to-host, to-stack, to-overlay, from-endpoint, from-proxy, from-host, from-stack, from-overlay, from-network, to-network, from-crypto, to-crypto, or a number)",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.event_type = vec!["drop:policy".into()]),
                "--type \"drop:policy\": unknown event sub-type: only trace and agent have named ones; give a number (for drop, its reason's, e.g. drop:133)",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.event_type = vec!["agent:Policy updated".into()]),
                "--type \"agent:Policy updated\": unknown agent event sub-type (unspecified, message, agent-started, endpoint-regenerate-success, endpoint-regenerate-failure, policy-updated, policy-deleted, endpoint-created, endpoint-deleted, ipcache-upserted, ipcache-deleted, service-upserted, service-deleted, or a number)",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.event_type = vec!["dropped".into()]),
                "--type \"dropped\": unknown event type (trace, drop, policy-verdict, trace-sock, capture, debug, l7, agent, or a number)",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.event_type = vec!["tcp-lifecycle".into()]),
                "--type \"tcp-lifecycle\": TCP lifecycle reports have no event type, so no --type selects them (as in Hubble, whose type filters leave them out); SQL lists them: observe query \"SELECT * FROM flows WHERE lifecycle_kind IS NOT NULL\"",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.event_type = vec!["policy-verdict,drop".into()]),
                "--type \"policy-verdict,drop\": one event type per --type: give the flag once for each (--type policy-verdict --type drop)",
            ),
            (
                Box::new(|a: &mut FilterArgs| a.event_type = vec!["trace:to-endpoint,drop".into()]),
                "--type \"trace:to-endpoint,drop\": one event type per --type: give the flag once for each (--type trace:to-endpoint --type drop)",
            ),
            (
                Box::new(|a: &mut FilterArgs| {
                    a.service = vec!["api".into()];
                    a.to_service = vec!["db".into()];
                }),
                "--service \"api\": cannot be combined with --to-service: --service names either end of a flow, --to-service one; use --from-service or --to-service",
            ),
            (
                Box::new(|a: &mut FilterArgs| {
                    a.to_service = vec!["other/api".into()];
                    a.to_namespace = vec!["shop".into()];
                }),
                "--to-namespace \"shop\": the namespace does not hold the service \"other/api\"",
            ),
        ] {
            let mut a = FilterArgs::default();
            set(&mut a);
            let err = a.whitelist().unwrap_err().to_string();
            assert!(err.starts_with(message), "{err}");
        }
    }
}
