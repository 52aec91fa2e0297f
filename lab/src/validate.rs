//! Scenario validation: every check names the field path it is about.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::Value;

use super::addr;
use super::scenario::{Expect, Protocol, Scenario};

/// Longest endpoint or node name (they become network namespace names).
pub const MAX_NAME_LEN: usize = 20;
/// Most endpoints in one scenario (every node's /24 then has room for all).
pub const MAX_ENDPOINTS: usize = 200;
/// Largest TCP request or response.
pub const MAX_TCP_BYTES: u32 = 1 << 20;
/// Largest UDP or ICMP payload (one unfragmented packet on a 1500-byte link).
pub const MAX_DATAGRAM_BYTES: u32 = 1400;
/// The only policy kind a scenario may carry.
pub const POLICY_KIND: &str = "CiliumNetworkPolicy";
/// Longest policy name (a Kubernetes object name; it also names the policy file).
pub const MAX_POLICY_NAME_LEN: usize = 253;

/// One validation failure: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub problem: String,
}

fn fail<T>(field: impl Into<String>, problem: impl Into<String>) -> Result<T, Problem> {
    Err(Problem {
        field: field.into(),
        problem: problem.into(),
    })
}

/// Checks the whole scenario, stopping at the first problem.
pub fn check(s: &Scenario) -> Result<(), Problem> {
    check_endpoints(s)?;
    super::lb::check(s)?;
    check_traffic(s)?;
    check_policies(s)
}

/// `[a-z0-9]([a-z0-9-]*[a-z0-9])?` of at most `max` characters.
fn check_label_like(field: &str, what: &str, value: &str, max: usize) -> Result<(), Problem> {
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if value.is_empty()
        || value.len() > max
        || !ok_chars
        || value.starts_with('-')
        || value.ends_with('-')
    {
        return fail(
            field,
            format!(
                "{what} {value:?} must be 1-{max} characters of a-z, 0-9 and '-', \
                 starting and ending with a letter or digit"
            ),
        );
    }
    Ok(())
}

fn check_endpoints(s: &Scenario) -> Result<(), Problem> {
    if s.endpoints.is_empty() {
        return fail("endpoints", "at least one endpoint is needed");
    }
    if s.endpoints.len() > MAX_ENDPOINTS {
        return fail(
            "endpoints",
            format!("at most {MAX_ENDPOINTS} endpoints are supported"),
        );
    }
    let nodes = s.nodes();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut addrs: HashMap<IpAddr, usize> = HashMap::new();
    for (i, ep) in s.endpoints.iter().enumerate() {
        let at = format!("endpoints[{i}]");
        check_label_like(&format!("{at}.name"), "name", &ep.name, MAX_NAME_LEN)?;
        if let Some(first) = names.insert(&ep.name, i) {
            return fail(
                format!("{at}.name"),
                format!(
                    "duplicate endpoint name {:?} (also endpoints[{first}])",
                    ep.name
                ),
            );
        }
        if nodes.contains(&ep.name.as_str()) {
            return fail(
                format!("{at}.name"),
                format!("{:?} is also the name of a node", ep.name),
            );
        }
        check_label_like(&format!("{at}.namespace"), "namespace", &ep.namespace, 63)?;
        check_label_like(&format!("{at}.node"), "node", &ep.node, MAX_NAME_LEN)?;
        for key in ep.labels.keys() {
            if key.is_empty() || key.contains(['=', ',', ' ']) {
                return fail(format!("{at}.labels"), format!("bad label key {key:?}"));
            }
        }
        if let Some(w) = &ep.workload
            && w.name.is_empty()
        {
            return fail(format!("{at}.workload.name"), "must not be empty");
        }
        if let Some(v4) = ep.ipv4 {
            addr::check_v4(v4).or_else(|p| fail(format!("{at}.ipv4"), p))?;
        }
        if let Some(v6) = ep.ipv6 {
            addr::check_v6(v6).or_else(|p| fail(format!("{at}.ipv6"), p))?;
        }
        let explicit = [
            ("ipv4", ep.ipv4.map(IpAddr::V4)),
            ("ipv6", ep.ipv6.map(IpAddr::V6)),
        ];
        for (key, ip) in explicit {
            if let Some(ip) = ip
                && let Some(other) = addrs.insert(ip, i)
            {
                return fail(
                    format!("{at}.{key}"),
                    format!(
                        "{ip} is already used by endpoints[{other}] ({})",
                        s.endpoints[other].name
                    ),
                );
            }
        }
    }
    if nodes.len() > usize::from(addr::MAX_NODES) {
        return fail(
            "endpoints",
            format!("at most {} nodes are supported", addr::MAX_NODES),
        );
    }
    Ok(())
}

fn check_traffic(s: &Scenario) -> Result<(), Problem> {
    for (i, t) in s.traffic.iter().enumerate() {
        let at = format!("traffic[{i}]");
        super::lb::check_target(s, &at, t)?;
        let to_endpoint = t.to_service.is_none().then_some(("to", &t.to));
        for (key, name) in [("from", &t.from)].into_iter().chain(to_endpoint) {
            if s.endpoint(name).is_none() {
                return fail(format!("{at}.{key}"), format!("unknown endpoint {name:?}"));
            }
        }
        if t.from == t.to {
            return fail(
                format!("{at}.to"),
                format!(
                    "same endpoint as from ({:?}); traffic must cross the lab network",
                    t.to
                ),
            );
        }
        match (t.protocol, t.port) {
            (Protocol::Icmp, Some(_)) => return fail(format!("{at}.port"), "not allowed for icmp"),
            (Protocol::Tcp | Protocol::Udp, None) => {
                return fail(format!("{at}.port"), format!("required for {}", t.protocol));
            }
            (_, Some(0)) => return fail(format!("{at}.port"), "0 is not a valid port (1-65535)"),
            _ => {}
        }
        if t.protocol == Protocol::Icmp && t.expect == Expect::Refused {
            return fail(
                format!("{at}.expect"),
                "refused applies only to tcp and udp",
            );
        }
        check_sizes(&at, t)?;
    }
    Ok(())
}

fn check_sizes(at: &str, t: &super::scenario::TrafficSpec) -> Result<(), Problem> {
    let no_connection = matches!(t.expect, Expect::Refused | Expect::Dropped);
    match t.protocol {
        Protocol::Tcp => {
            for (key, value) in [
                ("request_bytes", t.request_bytes),
                ("response_bytes", t.response_bytes),
            ] {
                match value {
                    Some(_) if no_connection => {
                        return fail(
                            format!("{at}.{key}"),
                            format!(
                                "not allowed with expect: {} (no connection, no data)",
                                t.expect
                            ),
                        );
                    }
                    Some(n) if n > MAX_TCP_BYTES => {
                        return fail(
                            format!("{at}.{key}"),
                            format!("{n} is over {MAX_TCP_BYTES}"),
                        );
                    }
                    _ => {}
                }
            }
        }
        Protocol::Udp | Protocol::Icmp => {
            if t.response_bytes.is_some() {
                return fail(
                    format!("{at}.response_bytes"),
                    format!(
                        "not allowed for {} (the reply echoes the request)",
                        t.protocol
                    ),
                );
            }
            if let Some(n) = t.request_bytes
                && n > MAX_DATAGRAM_BYTES
            {
                return fail(
                    format!("{at}.request_bytes"),
                    format!("{n} is over {MAX_DATAGRAM_BYTES} for {}", t.protocol),
                );
            }
        }
    }
    Ok(())
}

/// Light checks of the policy documents (flow-probe validates them fully): each is
/// a mapping with `kind: CiliumNetworkPolicy` and a `metadata.name` fit for a file
/// name, and no two share namespace and name.
fn check_policies(s: &Scenario) -> Result<(), Problem> {
    let mut seen: HashMap<(Option<&str>, &str), usize> = HashMap::new();
    for (i, policy) in s.policies.iter().enumerate() {
        let at = format!("policies[{i}]");
        let Some(doc) = policy.as_object() else {
            return fail(
                at,
                format!(
                    "must be a mapping (a {POLICY_KIND} document), not {}",
                    kind_of(policy)
                ),
            );
        };
        match doc.get("kind") {
            None => return fail(format!("{at}.kind"), "missing"),
            Some(Value::String(kind)) if kind == POLICY_KIND => {}
            Some(Value::String(kind)) => {
                return fail(
                    format!("{at}.kind"),
                    format!("{kind:?} is not supported (only {POLICY_KIND})"),
                );
            }
            Some(other) => {
                return fail(
                    format!("{at}.kind"),
                    format!("must be the string {POLICY_KIND}, not {}", kind_of(other)),
                );
            }
        }
        let metadata = match doc.get("metadata") {
            None => return fail(format!("{at}.metadata.name"), "missing"),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return fail(
                    format!("{at}.metadata"),
                    format!("must be a mapping, not {}", kind_of(other)),
                );
            }
        };
        let name = match metadata.get("name") {
            None => return fail(format!("{at}.metadata.name"), "missing"),
            Some(Value::String(name)) => name.as_str(),
            Some(other) => {
                return fail(
                    format!("{at}.metadata.name"),
                    format!("must be a string, not {}", kind_of(other)),
                );
            }
        };
        check_object_name(&format!("{at}.metadata.name"), name)?;
        let namespace = match metadata.get("namespace") {
            None => None,
            Some(Value::String(ns)) => Some(ns.as_str()),
            Some(other) => {
                return fail(
                    format!("{at}.metadata.namespace"),
                    format!("must be a string, not {}", kind_of(other)),
                );
            }
        };
        if let Some(first) = seen.insert((namespace, name), i) {
            let shown = match namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_string(),
            };
            return fail(
                format!("{at}.metadata.name"),
                format!("duplicate policy {shown:?} (also policies[{first}])"),
            );
        }
    }
    Ok(())
}

/// A Kubernetes object name: `[a-z0-9]([a-z0-9.-]*[a-z0-9])?`, at most
/// [`MAX_POLICY_NAME_LEN`] characters.
fn check_object_name(field: &str, name: &str) -> Result<(), Problem> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.len() > MAX_POLICY_NAME_LEN
        || !ok_chars
        || !edge_ok(name.bytes().next())
        || !edge_ok(name.bytes().last())
    {
        return fail(
            field,
            format!(
                "name {name:?} must be 1-{MAX_POLICY_NAME_LEN} characters of a-z, 0-9, '-' \
                 and '.', starting and ending with a letter or digit"
            ),
        );
    }
    Ok(())
}

/// What kind of YAML value this is, for error messages (read into JSON's
/// value type, which holds every document a policy can be).
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}
