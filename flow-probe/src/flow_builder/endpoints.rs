//! The endpoint behind an address: from the endpoints file, or reserved:world;
//! with each known address's text, made once.

use std::collections::HashMap;
use std::net::IpAddr;

use cluster_spec::endpoints::{EndpointsFile, reserved};
use observer_proto::flow::{self, Endpoint};

use super::reuse::{set_endpoint, set_ip_text, set_str};
use crate::metrics::key::BuildKeyHasher;

/// Who is behind an address.
pub trait EndpointOf {
    /// The endpoint of `ip` (reserved:world when no endpoint has it).
    fn endpoint_of(&self, ip: IpAddr) -> Endpoint;
}

impl<F: Fn(IpAddr) -> Endpoint> EndpointOf for F {
    fn endpoint_of(&self, ip: IpAddr) -> Endpoint {
        self(ip)
    }
}

/// An endpoint's address and the endpoint.
struct Known {
    text: String,
    endpoint: Endpoint,
}

/// The endpoints of the endpoints file by address, with their identities.
pub struct Endpoints {
    by_ip: HashMap<IpAddr, Known, BuildKeyHasher>,
    world: Endpoint,
}

impl Endpoints {
    pub fn new(file: &EndpointsFile) -> Self {
        let identities = file.identities();
        let mut by_ip = HashMap::default();
        for ep in &file.endpoints {
            let labels = ep.identity_labels();
            let proto_ep = Endpoint {
                id: ep.id,
                identity: identities
                    .get(&labels)
                    .copied()
                    .unwrap_or(reserved::UNKNOWN),
                namespace: ep.namespace.clone(),
                labels,
                pod_name: ep.name.clone(),
                workloads: ep
                    .workload
                    .iter()
                    .map(|w| flow::Workload {
                        name: w.name.clone(),
                        kind: w.kind.clone(),
                    })
                    .collect(),
                ..Default::default()
            };
            let v4 = ep.ipv4.map(IpAddr::V4);
            let v6 = ep.ipv6.map(IpAddr::V6);
            for addr in v4.into_iter().chain(v6) {
                let known = Known {
                    text: addr.to_string(),
                    endpoint: proto_ep.clone(),
                };
                by_ip.insert(addr, known);
            }
        }
        let world = Endpoint {
            identity: reserved::WORLD,
            labels: vec!["reserved:world".to_string()],
            ..Default::default()
        };
        Endpoints { by_ip, world }
    }

    /// Names `cluster` as the cluster of every endpoint of the file (not of
    /// reserved:world, which belongs to none), as Cilium's `cluster_name`.
    pub fn in_cluster(mut self, cluster: &str) -> Self {
        for k in self.by_ip.values_mut() {
            k.endpoint.cluster_name = cluster.to_string();
        }
        self
    }

    /// The endpoint that has `ip`, if one does.
    pub fn get(&self, ip: IpAddr) -> Option<&Endpoint> {
        self.by_ip.get(&ip).map(|k| &k.endpoint)
    }

    /// Writes `ip`'s text and its endpoint (reserved:world when unknown) into
    /// `text` and `endpoint`, in their memory.
    pub fn fill(&self, ip: IpAddr, text: &mut String, endpoint: &mut Option<Endpoint>) {
        match self.by_ip.get(&ip) {
            Some(k) => {
                set_str(text, &k.text);
                set_endpoint(endpoint, &k.endpoint);
            }
            None => {
                set_ip_text(text, ip);
                set_endpoint(endpoint, &self.world);
            }
        }
    }
}

impl EndpointOf for Endpoints {
    fn endpoint_of(&self, ip: IpAddr) -> Endpoint {
        self.get(ip).unwrap_or(&self.world).clone()
    }
}
