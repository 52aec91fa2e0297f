//! Traffic items: the endpoints or service they name, ports and payload sizes.

use super::problem::{Problem, fail};
use super::services;
use crate::scenario::{Expect, Protocol, Scenario, TrafficSpec};

/// Largest TCP request or response.
pub const MAX_TCP_BYTES: u32 = 1 << 20;
/// Largest UDP or ICMP payload (one unfragmented packet on a 1500-byte link).
pub const MAX_DATAGRAM_BYTES: u32 = 1400;

pub(super) fn check(s: &Scenario) -> Result<(), Problem> {
    for (i, t) in s.traffic.iter().enumerate() {
        let at = format!("traffic[{i}]");
        services::check_target(s, &at, t)?;
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

fn check_sizes(at: &str, t: &TrafficSpec) -> Result<(), Problem> {
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
