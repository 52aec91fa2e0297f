//! Services file + endpoints file → frontends with their backends.
//!
//! A frontend is one (VIP, port, protocol) of a service; an IPv4 and an IPv6
//! VIP make two frontends. Its backends are the endpoints of the service's
//! namespace whose labels include every selector label and that have an address
//! of the VIP's family, on `targetPort`, ordered by endpoint name so slots stay
//! put when unrelated endpoints change.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::endpoints::EndpointsFile;

use super::file::{ServiceProtocol, ServicesFile};

/// Namespace and name of a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One backend of a frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub addr: IpAddr,
    pub port: u16,
    /// The endpoint behind it.
    pub endpoint: ServiceRef,
}

/// One (VIP, port, protocol) of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    pub service: ServiceRef,
    /// Kernel id of the frontend: non-zero, stable across reloads.
    pub id: u32,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: ServiceProtocol,
    pub target_port: u16,
    pub backends: Vec<Backend>,
}

/// Every frontend of a services file, for one endpoints file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompiledServices {
    pub frontends: Vec<Frontend>,
    /// VIPs left out, each with why: a VIP that is an endpoint's address
    /// would send the endpoint's own traffic to the service's backends.
    pub refused: Vec<String>,
}

/// Most backends one frontend can have (slots are 16-bit).
pub const MAX_BACKENDS: usize = u16::MAX as usize;

/// The stable id of a frontend: FNV-1a of its service, port, protocol and family.
fn frontend_hash(service: &ServiceRef, port: u16, protocol: ServiceProtocol, ipv6: bool) -> u32 {
    let text = format!(
        "{}/{}/{port}/{protocol}/{}",
        service.namespace,
        service.name,
        if ipv6 { 6 } else { 4 }
    );
    let h = text.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    h.max(1)
}

/// Compiles `file` against `endpoints`.
pub fn compile(file: &ServicesFile, endpoints: &EndpointsFile) -> CompiledServices {
    let mut frontends = Vec::new();
    let mut refused = Vec::new();
    let owner_of = |vip: IpAddr| {
        endpoints
            .endpoints
            .iter()
            .find(|ep| ep.ipv4.map(IpAddr::V4) == Some(vip) || ep.ipv6.map(IpAddr::V6) == Some(vip))
    };
    for svc in &file.services {
        let service = ServiceRef {
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
        };
        let mut members: Vec<_> = match &svc.selector {
            None => Vec::new(),
            Some(sel) => endpoints
                .endpoints
                .iter()
                .filter(|ep| ep.namespace == svc.namespace)
                .filter(|ep| sel.iter().all(|(k, v)| ep.labels.get(k) == Some(v)))
                .collect(),
        };
        members.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        for vip in svc.vip.addrs() {
            if let Some(ep) = owner_of(vip) {
                refused.push(format!(
                    "service {service}: VIP {vip} is the address of endpoint {}/{}; its frontends are left out",
                    ep.namespace, ep.name
                ));
                continue;
            }
            for p in &svc.ports {
                let backends: Vec<Backend> = members
                    .iter()
                    .filter_map(|ep| {
                        let addr = if vip.is_ipv6() {
                            ep.ipv6.map(IpAddr::V6)
                        } else {
                            ep.ipv4.map(IpAddr::V4)
                        }?;
                        Some(Backend {
                            addr,
                            port: p.target(),
                            endpoint: ServiceRef {
                                namespace: ep.namespace.clone(),
                                name: ep.name.clone(),
                            },
                        })
                    })
                    .take(MAX_BACKENDS)
                    .collect();
                frontends.push(Frontend {
                    id: frontend_hash(&service, p.port, p.protocol, vip.is_ipv6()),
                    service: service.clone(),
                    vip,
                    port: p.port,
                    protocol: p.protocol,
                    target_port: p.target(),
                    backends,
                });
            }
        }
    }
    // Ids must be unique: on a hash collision the later frontend (in a fixed
    // order) takes the next free id.
    frontends.sort_by(|a, b| {
        (&a.service, a.port, a.protocol, a.vip).cmp(&(&b.service, b.port, b.protocol, b.vip))
    });
    let mut used = HashSet::new();
    for f in &mut frontends {
        while f.id == 0 || !used.insert(f.id) {
            f.id = f.id.wrapping_add(1);
        }
    }
    CompiledServices { frontends, refused }
}

impl CompiledServices {
    /// The frontend with this kernel id.
    pub fn by_id(&self, id: u32) -> Option<&Frontend> {
        self.frontends.iter().find(|f| f.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use test_support::specs::{ENDPOINTS, SERVICES};

    #[test]
    fn backends_are_the_selected_endpoints_of_the_namespace_and_family() {
        let eps = EndpointsFile::parse(ENDPOINTS, "eps").unwrap();
        let svcs = ServicesFile::parse(SERVICES, "svcs").unwrap();
        let c = compile(&svcs, &eps);
        assert_eq!(c.frontends.len(), 3);
        let v4 = c
            .frontends
            .iter()
            .find(|f| f.vip == "198.18.100.10".parse::<IpAddr>().unwrap())
            .unwrap();
        let names: Vec<&str> = v4
            .backends
            .iter()
            .map(|b| b.endpoint.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["api-1", "api-2"],
            "sorted by name, other namespace left out"
        );
        assert!(v4.backends.iter().all(|b| b.port == 8080));
        let v6 = c
            .frontends
            .iter()
            .find(|f| f.vip == "fd42:100::10".parse::<IpAddr>().unwrap())
            .unwrap();
        let names: Vec<&str> = v6
            .backends
            .iter()
            .map(|b| b.endpoint.name.as_str())
            .collect();
        assert_eq!(names, ["api-2"], "api-1 has no IPv6 address");
        assert_ne!(v4.id, v6.id);
        let none = c
            .frontends
            .iter()
            .find(|f| f.service.name == "none")
            .unwrap();
        assert!(none.backends.is_empty());
        assert_eq!(none.protocol, ServiceProtocol::Udp);

        // Ids are stable: the same input compiles to the same ids.
        assert_eq!(compile(&svcs, &eps), c);
        assert!(c.refused.is_empty());
    }

    #[test]
    fn a_vip_that_is_an_endpoints_address_is_left_out_and_named() {
        let eps = EndpointsFile::parse(ENDPOINTS, "eps").unwrap();
        let taken = eps.endpoints[0].clone();
        let svcs = ServicesFile::parse(
            &format!(
                "services:\n  - {{name: clash, namespace: default, vip: {{ipv4: {}, ipv6: \"fd42:100::77\"}}, ports: [{{port: 80}}]}}\n",
                taken.ipv4.unwrap()
            ),
            "svcs",
        )
        .unwrap();
        let c = compile(&svcs, &eps);
        let vips: Vec<String> = c.frontends.iter().map(|f| f.vip.to_string()).collect();
        assert_eq!(vips, ["fd42:100::77"], "the IPv6 VIP stays");
        assert_eq!(
            c.refused,
            [format!(
                "service default/clash: VIP {} is the address of endpoint {}/{}; its frontends are left out",
                taken.ipv4.unwrap(),
                taken.namespace,
                taken.name
            )]
        );
    }
}
