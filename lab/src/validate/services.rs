//! Services: each as flow-probe checks it, VIPs in the lab's ranges (lab
//! traffic never leaves the machine) and none an endpoint's address,
//! and traffic items with `to_service` that name a service, one of its ports and
//! a VIP of their family.

use std::net::IpAddr;

use cluster_spec::services::ServicesFile;

use super::problem::{Problem, fail};
use crate::addr;
use crate::scenario::{Family, Scenario, TrafficSpec};

/// Checks the scenario's services (as flow-probe would) and that no VIP is an
/// endpoint's address.
pub(super) fn check(s: &Scenario) -> Result<(), Problem> {
    let file = ServicesFile {
        services: s.services.clone(),
    };
    file.validate()
        .map_err(|(field, problem)| Problem { field, problem })?;
    for (i, svc) in s.services.iter().enumerate() {
        for (key, vip) in [
            ("ipv4", svc.vip.ipv4.map(IpAddr::V4)),
            ("ipv6", svc.vip.ipv6.map(IpAddr::V6)),
        ] {
            let Some(vip) = vip else { continue };
            let in_lab = match vip {
                IpAddr::V4(a) => addr::check_v4(a),
                IpAddr::V6(a) => addr::check_v6(a),
            };
            if let Err(problem) = in_lab {
                return fail(format!("services[{i}].vip.{key}"), problem);
            }
            let owner = s.endpoints.iter().find(|ep| {
                ep.ipv4.map(IpAddr::V4) == Some(vip) || ep.ipv6.map(IpAddr::V6) == Some(vip)
            });
            if let Some(ep) = owner {
                return fail(
                    format!("services[{i}].vip.{key}"),
                    format!("{vip} is the address of endpoint {:?}", ep.name),
                );
            }
        }
    }
    Ok(())
}

/// Checks where a traffic item goes: exactly one of `to` and `to_service`, and
/// for a service, a port and a VIP that it has.
pub(super) fn check_target(s: &Scenario, at: &str, t: &TrafficSpec) -> Result<(), Problem> {
    let Some(reference) = &t.to_service else {
        if t.to.is_empty() {
            return fail(at, "give to (an endpoint) or to_service (a service)");
        }
        return Ok(());
    };
    if !t.to.is_empty() {
        return fail(format!("{at}.to_service"), "not allowed together with to");
    }
    let Some(svc) = s.service(reference) else {
        return fail(
            format!("{at}.to_service"),
            format!("unknown service {reference:?}"),
        );
    };
    let Some(proto) = t.protocol.service_protocol() else {
        return fail(
            format!("{at}.protocol"),
            "icmp cannot go to a service (tcp or udp)",
        );
    };
    if let Some(port) = t.port
        && !svc
            .ports
            .iter()
            .any(|p| p.port == port && p.protocol == proto)
    {
        let ports: Vec<String> = svc
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.port, p.protocol))
            .collect();
        return fail(
            format!("{at}.port"),
            format!(
                "service {}/{} has no port {port}/{proto} (it has {})",
                svc.namespace,
                svc.name,
                ports.join(", ")
            ),
        );
    }
    if svc.vip.of_family(t.family == Family::Ipv6).is_none() {
        return fail(
            format!("{at}.family"),
            format!(
                "service {}/{} has no {} VIP",
                svc.namespace, svc.name, t.family
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::scenario::Scenario;

    const BASE: &str = "endpoints:\n  - {name: client, namespace: default, ipv4: 198.18.1.10}\n  - {name: api-1, namespace: default, labels: {app: api}}\nservices:\n  - {name: api, namespace: default, vip: {ipv4: 198.18.100.10}, ports: [{port: 80, targetPort: 8080}], selector: {app: api}}\n";

    fn err(extra: &str) -> String {
        Scenario::parse(&format!("{BASE}{extra}"), "s.yaml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn service_items_are_checked_against_the_services() {
        let ok = Scenario::parse(
            &format!("{BASE}traffic:\n  - {{from: client, to_service: api, protocol: tcp, port: 80}}\n  - {{from: client, to_service: default/api, protocol: tcp, port: 80}}\n"),
            "s.yaml",
        )
        .unwrap();
        assert_eq!(ok.traffic[0].to_service.as_deref(), Some("api"));
        assert_eq!(ok.traffic[0].to, "");
        assert_eq!(
            err("traffic:\n  - {from: client, to_service: apii, protocol: tcp, port: 80}\n"),
            "scenario s.yaml: traffic[0].to_service: unknown service \"apii\""
        );
        assert_eq!(
            err("traffic:\n  - {from: client, to_service: api, protocol: tcp, port: 81}\n"),
            "scenario s.yaml: traffic[0].port: service default/api has no port 81/TCP (it has 80/TCP)"
        );
        assert_eq!(
            err("traffic:\n  - {from: client, to_service: api, protocol: udp, port: 80}\n"),
            "scenario s.yaml: traffic[0].port: service default/api has no port 80/UDP (it has 80/TCP)"
        );
        assert_eq!(
            err(
                "traffic:\n  - {from: client, to_service: api, protocol: tcp, family: ipv6, port: 80}\n"
            ),
            "scenario s.yaml: traffic[0].family: service default/api has no ipv6 VIP"
        );
        assert_eq!(
            err(
                "traffic:\n  - {from: client, to: api-1, to_service: api, protocol: tcp, port: 80}\n"
            ),
            "scenario s.yaml: traffic[0].to_service: not allowed together with to"
        );
        assert_eq!(
            err("traffic:\n  - {from: client, protocol: tcp, port: 80}\n"),
            "scenario s.yaml: traffic[0]: give to (an endpoint) or to_service (a service)"
        );
        assert_eq!(
            err("traffic:\n  - {from: client, to_service: api, protocol: icmp}\n"),
            "scenario s.yaml: traffic[0].protocol: icmp cannot go to a service (tcp or udp)"
        );
    }

    #[test]
    fn services_are_checked_as_flow_probe_would() {
        assert_eq!(
            err(
                "  - {name: web, namespace: default, vip: {ipv4: 198.18.1.10}, ports: [{port: 80}]}\n"
            ),
            "scenario s.yaml: services[1].vip.ipv4: 198.18.1.10 is the address of endpoint \"client\""
        );
        assert_eq!(
            err(
                "  - {name: web, namespace: default, vip: {ipv4: 198.18.100.11}, ports: [{port: 0}]}\n"
            ),
            "scenario s.yaml: services[1].ports[0].port: must be between 1 and 65535"
        );
    }

    /// A VIP outside the lab's ranges was taken: the socket LB answers it
    /// only in the lab's cgroup, and anything else sent there (a process
    /// outside the cgroup, a probe not yet started) went towards a real
    /// address.
    #[test]
    fn a_vip_outside_the_lab_ranges_is_refused() {
        assert_eq!(
            err(
                "  - {name: web, namespace: default, vip: {ipv4: 10.96.0.10}, ports: [{port: 80}]}\n"
            ),
            "scenario s.yaml: services[1].vip.ipv4: 10.96.0.10 is outside the lab range 198.18.0.0/15"
        );
        assert_eq!(
            err(
                "  - {name: web, namespace: default, vip: {ipv6: \"fd00::10\"}, ports: [{port: 80}]}\n"
            ),
            "scenario s.yaml: services[1].vip.ipv6: fd00::10 is outside the lab range fd42::/16"
        );
    }
}
