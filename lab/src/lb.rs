//! Services in a running lab: the scenario's `services:` (the format of
//! flow-probe's services file, see [`cluster_spec::services::file`]; checked by
//! [`super::validate`], written by [`super::probe_files`] to
//! `<state_dir>/services.yaml`) are flow-probe's `--services`, with the node's
//! cgroup as `--lb-cgroup` ([`probe_args`]); traffic items with
//! `to_service: NAME` connect to the VIP and port of [`frontend_of`].
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

use anyhow::{Result, anyhow};
use cluster_spec::endpoints::EndpointsFile;
use cluster_spec::services::{CompiledServices, Frontend, ServicesFile, compile};

use super::instance::Lab;
use super::scenario::{Family, TrafficSpec, find_service};

/// `node`'s flow-probe flags for the lab's services: `--services` and its
/// node's `--lb-cgroup`, when the scenario has services (none otherwise: no
/// load balancer is loaded).
pub fn probe_args(lab: &Lab, node: &str) -> Vec<OsString> {
    if lab.scenario().services.is_empty() {
        return Vec::new();
    }
    vec![
        "--services".into(),
        lab.services_path().into(),
        "--lb-cgroup".into(),
        lab.node_cgroup_path(node).into(),
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
    let proto = t
        .protocol
        .service_protocol()
        .ok_or_else(|| anyhow!("icmp cannot go to a service"))?;
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
