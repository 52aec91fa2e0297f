//! Endpoints: names (they become network namespace names), nodes, labels and
//! addresses.

use std::collections::HashMap;
use std::net::IpAddr;

use super::problem::{Problem, fail};
use crate::addr;
use crate::scenario::Scenario;

/// Longest endpoint or node name (they become network namespace names).
pub const MAX_NAME_LEN: usize = 20;
/// Most endpoints in one scenario (every node's /24 then has room for all).
pub const MAX_ENDPOINTS: usize = 200;

/// Most nodes in one scenario: far below what the addresses allow
/// (`addr::MAX_NODES`); a scenario of 200 nodes took minutes and 10 GB
/// before it failed (lab QA).
pub const MAX_NODES: usize = 32;
const _: () = assert!(MAX_NODES <= addr::MAX_NODES as usize);

pub(super) fn check(s: &Scenario) -> Result<(), Problem> {
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
    if nodes.len() > MAX_NODES {
        return fail(
            "endpoints",
            format!(
                "{} nodes; at most {MAX_NODES} are supported: each runs a flow-probe of its \
                 own (about 60 MB), started one after another",
                nodes.len()
            ),
        );
    }
    Ok(())
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
