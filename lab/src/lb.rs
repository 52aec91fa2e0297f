//! Services in the lab: the scenario's `services:` (the format of flow-probe's
//! services file, see [`cluster_spec::services::file`]), written to
//! `<state_dir>/services.yaml` for flow-probe's `--services`, with the lab's
//! cgroup as `--lb-cgroup`; and traffic items with `to_service: NAME`, whose
//! client connects to the service's VIP and port.
//!
//! ```yaml
//! services:
//!   - name: api
//!     namespace: default
//!     vip: {ipv4: 198.18.100.10, ipv6: "fd42:100::10"}
//!     ports: [{port: 80, protocol: TCP, targetPort: 8080}]
//!     selector: {app: api}
//! traffic:
//!   - {from: client, to_service: api, protocol: tcp, port: 80}
//! ```
//!
//! `to_service` takes `name` or `namespace/name`; `port` is the service port (a
//! port of the service with the item's protocol) and `family` picks the VIP.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use cluster_spec::endpoints::EndpointsFile;
use cluster_spec::services::{CompiledServices, Frontend, ServicesFile, compile};
use cluster_spec::services::{Service, ServiceProtocol};

use super::instance::Lab;
use super::scenario::{Family, Protocol, Scenario, TrafficSpec};
use super::validate::Problem;

/// Name of the services file in a state directory.
pub const SERVICES_FILE: &str = "services.yaml";

fn fail<T>(field: impl Into<String>, problem: impl Into<String>) -> Result<T, Problem> {
    Err(Problem {
        field: field.into(),
        problem: problem.into(),
    })
}

/// The service `to_service` names: `name` or `namespace/name`.
pub fn find_service<'a>(services: &'a [Service], reference: &str) -> Option<&'a Service> {
    match reference.split_once('/') {
        Some((ns, name)) => services
            .iter()
            .find(|s| s.namespace == ns && s.name == name),
        None => services.iter().find(|s| s.name == reference),
    }
}

fn protocol_of(p: Protocol) -> Option<ServiceProtocol> {
    match p {
        Protocol::Tcp => Some(ServiceProtocol::Tcp),
        Protocol::Udp => Some(ServiceProtocol::Udp),
        Protocol::Icmp => None,
    }
}

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
    let Some(svc) = find_service(&s.services, reference) else {
        return fail(
            format!("{at}.to_service"),
            format!("unknown service {reference:?}"),
        );
    };
    let Some(proto) = protocol_of(t.protocol) else {
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

/// Writes `<state_dir>/services.yaml` from the scenario (atomically).
pub(super) fn write_services_file(lab: &Lab) -> Result<()> {
    let file = ServicesFile {
        services: lab.scenario().services.clone(),
    };
    let yaml = cluster_spec::yaml::to_string(&file).context("encoding the services file")?;
    let text = format!(
        "# Services of lab {} (written by the lab; flow-probe reads it).\n{yaml}",
        lab.prefix()
    );
    write_atomically(&lab.services_path(), &text)
}

/// Writes `path` through a temporary file and a rename, so a reader (flow-probe
/// polls the services and endpoints files) never sees half of it.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// flow-probe's flags for the lab's services: `--services` and `--lb-cgroup`,
/// when the scenario has services (none otherwise: no load balancer is loaded).
pub fn probe_args(lab: &Lab) -> Vec<OsString> {
    if lab.scenario().services.is_empty() {
        return Vec::new();
    }
    vec![
        "--services".into(),
        lab.services_path().into(),
        "--lb-cgroup".into(),
        lab.cgroup_path().into(),
    ]
}

/// The services as flow-probe sees them now: the lab's services file compiled
/// against its endpoints file (both may have been edited since `Lab::up`).
pub fn current_services(lab: &Lab) -> Result<CompiledServices> {
    let services = ServicesFile::load(&lab.services_path())?;
    let endpoints = EndpointsFile::load(&lab.endpoints_path())?;
    Ok(compile(&services, &endpoints))
}

/// The frontend a `to_service` item connects to, from the current files.
pub fn frontend_of(lab: &Lab, t: &TrafficSpec) -> Result<Frontend> {
    let reference = t
        .to_service
        .as_deref()
        .ok_or_else(|| anyhow!("not a service item"))?;
    let compiled = current_services(lab)?;
    let file = ServicesFile::load(&lab.services_path())?;
    let svc = find_service(&file.services, reference).ok_or_else(|| {
        anyhow!(
            "service {reference:?} is not in {}",
            lab.services_path().display()
        )
    })?;
    let proto = protocol_of(t.protocol).ok_or_else(|| anyhow!("icmp cannot go to a service"))?;
    let port = t.port.unwrap_or(0);
    compiled
        .frontends
        .into_iter()
        .find(|f| {
            f.service.namespace == svc.namespace
                && f.service.name == svc.name
                && f.port == port
                && f.protocol == proto
                && f.vip.is_ipv6() == (t.family == Family::Ipv6)
        })
        .ok_or_else(|| {
            anyhow!(
                "service {reference:?} has no {} {port}/{proto} frontend",
                t.family
            )
        })
}

#[cfg(test)]
mod tests {
    use super::super::scenario::Scenario;

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
}
