//! The topology plan: every name and address the lab will create, computed from a
//! scenario and a prefix without touching the system.
//!
//! - Node `N` is the network namespace `<prefix>-N`, holding the bridge `br0`
//!   (IPv6 disabled, no addresses: it only switches frames) and, for each of its
//!   endpoints, the host-side veth `lxc<id>` enslaved to `br0`.
//! - Endpoint `E` is the network namespace `<prefix>-E`, holding `lo` and `eth0`
//!   (the veth peer) with one IPv4 /24 and one IPv6 /64 address (see [`super::addr`]).
//! - With several nodes, node 1's bridge is cabled to every other node's bridge by a
//!   veth pair (`nlk<k>` in node 1, `nlk1` in node k): the lab is one L2 segment, and
//!   every endpoint has on-link routes to the other nodes' subnets.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result, bail};
use cluster_spec::endpoints::{Endpoint, EndpointsFile, Workload};
use serde::{Deserialize, Serialize};

use super::addr;
use super::scenario::Scenario;

/// Bridge in every node namespace.
pub const BRIDGE: &str = "br0";
/// Interface name inside every endpoint namespace.
pub const ENDPOINT_INTERFACE: &str = "eth0";

/// Everything the lab builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Prefix of every network namespace name of this lab.
    pub prefix: String,
    pub nodes: Vec<NodePlan>,
    pub endpoints: Vec<EndpointPlan>,
    /// Veth pairs joining node bridges.
    pub node_links: Vec<NodeLink>,
}

/// One node: a namespace with a bridge, where flow-probe attaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// Scenario node name (the `node` of the endpoints file).
    pub name: String,
    /// 1-based number, in order of first appearance.
    pub number: u8,
    /// Network namespace name, `<prefix>-<name>`.
    pub netns: String,
    /// Bridge inside `netns`.
    pub bridge: String,
}

/// One endpoint: its namespace, cabling and addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPlan {
    /// Endpoint ID: 1.. in scenario order.
    pub id: u32,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub workload: Option<Workload>,
    /// Scenario node name.
    pub node: String,
    /// Network namespace of the node.
    pub node_netns: String,
    /// Network namespace of the endpoint, `<prefix>-<name>`.
    pub netns: String,
    /// Host-side veth in the node namespace, `lxc<id>`.
    pub host_interface: String,
    /// Interface inside the endpoint namespace (`eth0`).
    pub interface: String,
    /// Address on `interface`, /24.
    pub ipv4: Ipv4Addr,
    /// Address on `interface`, /64.
    pub ipv6: Ipv6Addr,
    /// Other lab /24 networks, routed on-link through `interface`.
    pub routes_v4: Vec<Ipv4Addr>,
    /// Other lab /64 networks, routed on-link through `interface`.
    pub routes_v6: Vec<Ipv6Addr>,
}

/// A veth pair between two node bridges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLink {
    pub netns_a: String,
    pub dev_a: String,
    pub netns_b: String,
    pub dev_b: String,
}

impl EndpointPlan {
    /// The endpoint's address in the given family.
    pub fn ip(&self, family: super::scenario::Family) -> IpAddr {
        match family {
            super::scenario::Family::Ipv4 => IpAddr::V4(self.ipv4),
            super::scenario::Family::Ipv6 => IpAddr::V6(self.ipv6),
        }
    }
}

impl Topology {
    /// Plans the lab for a (validated) scenario.
    pub fn plan(scenario: &Scenario, prefix: &str) -> Result<Topology> {
        scenario.validate()?;
        let nodes: Vec<NodePlan> = scenario
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, name)| NodePlan {
                name: name.to_string(),
                number: u8::try_from(i + 1).expect("validation caps the node count"),
                netns: format!("{prefix}-{name}"),
                bridge: BRIDGE.to_string(),
            })
            .collect();
        let node_links = nodes
            .iter()
            .skip(1)
            .map(|n| NodeLink {
                netns_a: nodes[0].netns.clone(),
                dev_a: format!("nlk{}", n.number),
                netns_b: n.netns.clone(),
                dev_b: "nlk1".to_string(),
            })
            .collect();

        let mut taken: HashSet<IpAddr> = HashSet::new();
        for ep in &scenario.endpoints {
            taken.extend(ep.ipv4.map(IpAddr::V4));
            taken.extend(ep.ipv6.map(IpAddr::V6));
        }
        let mut next_host: BTreeMap<u8, u8> = BTreeMap::new();
        let mut endpoints = Vec::with_capacity(scenario.endpoints.len());
        for (i, ep) in scenario.endpoints.iter().enumerate() {
            let node = nodes
                .iter()
                .find(|n| n.name == ep.node)
                .expect("nodes come from endpoints");
            let id = u32::try_from(i + 1).expect("validation caps the endpoint count");
            let next = next_host.entry(node.number).or_insert(addr::FIRST_HOST);
            let n = node.number;
            let ipv4 = match ep.ipv4 {
                Some(a) => a,
                None => free_host(next, &mut taken, |h| addr::node_host_v4(n, h).into())
                    .map(|h| addr::node_host_v4(n, h))
                    .with_context(|| {
                        format!("endpoints[{i}].ipv4: no free address on {}", node.name)
                    })?,
            };
            let ipv6 = match ep.ipv6 {
                Some(a) => a,
                // Same host digits as the IPv4 address when that is still free.
                None => match addr::node_host_v6(n, ipv4.octets()[3]) {
                    same if taken.insert(same.into()) => same,
                    _ => free_host(next, &mut taken, |h| addr::node_host_v6(n, h).into())
                        .map(|h| addr::node_host_v6(n, h))
                        .with_context(|| {
                            format!("endpoints[{i}].ipv6: no free address on {}", node.name)
                        })?,
                },
            };
            endpoints.push(EndpointPlan {
                id,
                name: ep.name.clone(),
                namespace: ep.namespace.clone(),
                labels: ep.labels.clone(),
                workload: ep.workload.clone(),
                node: node.name.clone(),
                node_netns: node.netns.clone(),
                netns: format!("{prefix}-{}", ep.name),
                host_interface: format!("lxc{id}"),
                interface: ENDPOINT_INTERFACE.to_string(),
                ipv4,
                ipv6,
                routes_v4: Vec::new(),
                routes_v6: Vec::new(),
            });
        }
        let nets_v4: BTreeSet<Ipv4Addr> = endpoints.iter().map(|e| addr::net_v4(e.ipv4)).collect();
        let nets_v6: BTreeSet<Ipv6Addr> = endpoints.iter().map(|e| addr::net_v6(e.ipv6)).collect();
        for ep in &mut endpoints {
            let own_v4 = addr::net_v4(ep.ipv4);
            let own_v6 = addr::net_v6(ep.ipv6);
            ep.routes_v4 = nets_v4.iter().copied().filter(|n| *n != own_v4).collect();
            ep.routes_v6 = nets_v6.iter().copied().filter(|n| *n != own_v6).collect();
        }
        if endpoints.iter().any(|e| e.host_interface.len() > 15) {
            bail!("interface names over 15 characters");
        }
        Ok(Topology {
            prefix: prefix.to_string(),
            nodes,
            endpoints,
            node_links,
        })
    }

    /// The endpoint with this scenario name.
    pub fn endpoint(&self, name: &str) -> Option<&EndpointPlan> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// The node with this scenario name.
    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every network namespace of the lab: nodes first, then endpoints.
    pub fn all_netns(&self) -> Vec<String> {
        let nodes = self.nodes.iter().map(|n| n.netns.clone());
        nodes
            .chain(self.endpoints.iter().map(|e| e.netns.clone()))
            .collect()
    }

    /// The endpoints file flow-probe reads: `interface` is the host-side veth.
    pub fn endpoints_file(&self) -> EndpointsFile {
        let endpoints = self
            .endpoints
            .iter()
            .map(|e| Endpoint {
                id: e.id,
                name: e.name.clone(),
                namespace: e.namespace.clone(),
                labels: e.labels.clone(),
                workload: e.workload.clone(),
                ipv4: Some(e.ipv4),
                ipv6: Some(e.ipv6),
                node: e.node.clone(),
                interface: Some(e.host_interface.clone()),
                netns: Some(e.netns.clone()),
            })
            .collect();
        EndpointsFile { endpoints }
    }
}

/// The next host number whose address (made by `make`) is free; marks it taken.
fn free_host(
    next: &mut u8,
    taken: &mut HashSet<IpAddr>,
    make: impl Fn(u8) -> IpAddr,
) -> Option<u8> {
    while *next <= addr::LAST_HOST {
        let host = *next;
        *next += 1;
        if taken.insert(make(host)) {
            return Some(host);
        }
    }
    None
}

impl std::fmt::Display for Topology {
    /// A summary for people: nodes, then one line per endpoint.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "lab {}", self.prefix)?;
        for node in &self.nodes {
            writeln!(
                f,
                "node {}: netns {}, bridge {}",
                node.name, node.netns, node.bridge
            )?;
            for e in self.endpoints.iter().filter(|e| e.node == node.name) {
                writeln!(
                    f,
                    "  [{}] {}/{}: netns {}, {} <-> {}, {} {}",
                    e.id,
                    e.namespace,
                    e.name,
                    e.netns,
                    e.interface,
                    e.host_interface,
                    e.ipv4,
                    e.ipv6
                )?;
            }
        }
        Ok(())
    }
}
