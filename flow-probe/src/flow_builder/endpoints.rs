//! The endpoint behind an address: from the endpoints file, the node itself
//! (reserved:host), or reserved:world;
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
    /// The endpoints of `file`, seen from `node`: an endpoint ID names one
    /// of the node's own endpoints, so those of other nodes carry none (0),
    /// as Hubble gives remote endpoints identity, labels and names only.
    pub fn new(file: &EndpointsFile, node: &str) -> Self {
        let identities = file.identities();
        let mut by_ip = HashMap::default();
        for ep in &file.endpoints {
            let labels = ep.identity_labels();
            let proto_ep = Endpoint {
                id: if ep.node == node { ep.id } else { 0 },
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

    /// Names `extra` (an IPv6 link-local address) as the endpoint that has
    /// `of`; nothing when none has `of`, or when a file endpoint has `extra`.
    pub fn alias(&mut self, extra: IpAddr, of: IpAddr) {
        if self.by_ip.contains_key(&extra) {
            return;
        }
        if let Some(endpoint) = self.by_ip.get(&of).map(|k| k.endpoint.clone()) {
            let text = extra.to_string();
            self.by_ip.insert(extra, Known { text, endpoint });
        }
    }

    /// Names `ip`, one of the node's own addresses, `reserved:host`
    /// (identity 1), unless an endpoint has it.
    pub fn host(&mut self, ip: IpAddr) {
        self.by_ip.entry(ip).or_insert_with(|| Known {
            text: ip.to_string(),
            endpoint: Endpoint {
                identity: reserved::HOST,
                labels: vec!["reserved:host".to_string()],
                ..Default::default()
            },
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_nodes_own_endpoints_carry_their_id() {
        let file = EndpointsFile::parse(
            "endpoints:\n\
             - {id: 7, name: web, namespace: shop, labels: {app: web}, ipv4: 198.18.2.7, node: node1}\n\
             - {id: 9, name: db, namespace: shop, labels: {app: db}, ipv4: 198.18.2.9, ipv6: \"fd42::9\", node: node2}\n",
            "endpoints.yaml",
        )
        .unwrap();
        let at_node1 = Endpoints::new(&file, "node1");
        let web = at_node1.endpoint_of([198, 18, 2, 7].into());
        let db = at_node1.endpoint_of([198, 18, 2, 9].into());
        let db_v6 = at_node1.endpoint_of("fd42::9".parse().unwrap());
        assert_eq!((web.id, web.pod_name.as_str()), (7, "web"));
        // A remote endpoint keeps what names it, not its ID.
        assert_eq!(
            (db.id, db.pod_name.as_str(), db.namespace.as_str()),
            (0, "db", "shop")
        );
        assert_eq!(
            db.labels,
            vec!["k8s:app=db", "k8s:io.kubernetes.pod.namespace=shop"]
        );
        assert!(db.identity >= 256);
        assert_eq!(db_v6, db);
        // Seen from node2, the other way round.
        let at_node2 = Endpoints::new(&file, "node2");
        assert_eq!(at_node2.endpoint_of([198, 18, 2, 7].into()).id, 0);
        assert_eq!(at_node2.endpoint_of([198, 18, 2, 9].into()).id, 9);
        assert_eq!(
            at_node2.endpoint_of([198, 18, 2, 9].into()).identity,
            db.identity
        );
    }
}
