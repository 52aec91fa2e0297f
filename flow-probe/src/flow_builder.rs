//! The parts every flow of this node shares, built one way for tc flows
//! ([`crate::enrich`]), SOCK flows ([`crate::services::flows`]) and TCP
//! lifecycle flows ([`crate::lifecycle`]): Unix time from kernel time, the
//! flow's UUID ([`FlowIds`]), the node name, the IP header with its version,
//! the endpoints behind the addresses ([`Endpoints`]), and TCP / UDP ports.
//! Each caller adds only what is its own.
//!
//! - [`ids`]: the run's flow UUIDs.
//! - [`endpoints`]: the endpoint behind an address.
//! - [`reuse`]: writing a flow into the memory of an older one
//!   ([`NodeFlows::fill`] does so for the common part).

pub mod endpoints;
pub mod ids;
pub mod reuse;

use std::net::IpAddr;

use cluster_spec::endpoints::EndpointsFile;
use observer_proto::flow::{
    self, Endpoint, Flow, FlowType, Ip, IpVersion, Layer4, TcpFlags, layer4,
};

pub use endpoints::{EndpointOf, Endpoints};
pub use ids::FlowIds;

/// IP protocol numbers of the kernel events.
pub mod ipproto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// This node's flows: its name, cluster and labels, the run's flow ids and
/// its endpoints.
pub struct NodeFlows {
    /// The node's own name, and the one flows carry (see [`absolute_node_name`]).
    node: String,
    node_name: String,
    cluster_name: String,
    node_labels: Vec<String>,
    ids: FlowIds,
    endpoints: Endpoints,
}

impl NodeFlows {
    pub fn new(node_name: &str, file: &EndpointsFile) -> Self {
        NodeFlows {
            node: node_name.to_string(),
            node_name: node_name.to_string(),
            cluster_name: String::new(),
            node_labels: Vec::new(),
            ids: FlowIds::new(),
            endpoints: Endpoints::new(file, node_name),
        }
    }

    /// Names the cluster of this node and its endpoints (`--cluster-name`)
    /// and the node's labels (`key=value`), as Cilium fills `cluster_name`
    /// and `node_labels`.
    pub fn set_cluster(&mut self, cluster_name: &str, node_labels: Vec<String>) {
        self.node_name = absolute_node_name(cluster_name, &self.node);
        self.cluster_name = cluster_name.to_string();
        self.node_labels = node_labels;
        let endpoints = std::mem::replace(
            &mut self.endpoints,
            Endpoints::new(&EndpointsFile::default(), ""),
        );
        self.endpoints = endpoints.in_cluster(cluster_name);
    }

    /// A UUID for a flow made beside another one from the same event.
    pub fn next_uuid(&mut self) -> String {
        self.ids.next_uuid()
    }

    /// Takes back the last UUID's number ([`FlowIds::give_back`]).
    pub fn give_back_uuid(&mut self) {
        self.ids.give_back();
    }

    /// Draws flow UUIDs from `ids` instead.
    pub fn set_ids(&mut self, ids: FlowIds) {
        self.ids = ids;
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The endpoints from here on (a source changed them).
    pub fn set_endpoints(&mut self, file: &EndpointsFile) {
        self.endpoints = Endpoints::new(file, &self.node).in_cluster(&self.cluster_name);
    }

    /// Names each `(extra, of)`'s extra address as the endpoint of `of`
    /// (see [`Endpoints::alias`]).
    pub fn alias_endpoints(&mut self, aliases: impl IntoIterator<Item = (IpAddr, IpAddr)>) {
        for (extra, of) in aliases {
            self.endpoints.alias(extra, of);
        }
    }

    /// Names the node's own addresses `reserved:host` (see [`Endpoints::host`]).
    pub fn host_addresses(&mut self, addresses: impl IntoIterator<Item = IpAddr>) {
        for ip in addresses {
            self.endpoints.host(ip);
        }
    }

    /// Writes into `f`, in its memory, what every flow of this node shares:
    /// its time (kernel time `ktime_ns` plus `unix_offset_ns`), the next
    /// UUID, the type, the node's name and labels, the IP header and the
    /// endpoints behind `src` and `dst`. Other fields keep what `f` held.
    pub fn fill(
        &mut self,
        f: &mut Flow,
        unix_offset_ns: i128,
        ty: FlowType,
        ktime_ns: u64,
        (src, dst): (IpAddr, IpAddr),
    ) {
        f.time = Some(observer_proto::time::timestamp(
            i128::from(ktime_ns) + unix_offset_ns,
        ));
        self.ids.write_next(&mut f.uuid);
        let Ip {
            source,
            source_xlated,
            destination,
            ip_version,
            encrypted,
        } = f.ip.get_or_insert_with(Ip::default);
        self.endpoints.fill(src, source, &mut f.source);
        self.endpoints.fill(dst, destination, &mut f.destination);
        source_xlated.clear();
        *ip_version = if src.is_ipv6() {
            IpVersion::IPv6
        } else {
            IpVersion::IPv4
        } as i32;
        *encrypted = false;
        f.r#type = ty as i32;
        reuse::set_str(&mut f.node_name, &self.node_name);
        // Vec<String>::clone_from reuses the strings it keeps.
        f.node_labels.clone_from(&self.node_labels);
    }

    /// What the next flow is built from (it takes the next UUID);
    /// `unix_offset_ns` turns kernel monotonic time into Unix time.
    pub fn next(&mut self, unix_offset_ns: i128) -> FlowContext<'_> {
        let uuid = self.ids.next_uuid();
        self.context(uuid, unix_offset_ns)
    }

    /// What a flow is built from, with a UUID drawn before (by
    /// [`Self::next_uuid`]).
    pub fn context(&self, uuid: String, unix_offset_ns: i128) -> FlowContext<'_> {
        FlowContext {
            uuid,
            node_name: &self.node_name,
            node_labels: &self.node_labels,
            unix_offset_ns,
            endpoint_of: &self.endpoints,
        }
    }
}

/// What one flow is built from besides its event.
pub struct FlowContext<'a> {
    pub uuid: String,
    pub node_name: &'a str,
    pub node_labels: &'a [String],
    /// Kernel monotonic time plus this is Unix time, in nanoseconds.
    pub unix_offset_ns: i128,
    pub endpoint_of: &'a dyn EndpointOf,
}

impl FlowContext<'_> {
    /// The endpoint of `ip` (reserved:world when unknown).
    pub fn endpoint(&self, ip: IpAddr) -> Endpoint {
        self.endpoint_of.endpoint_of(ip)
    }

    /// A flow of `ty` from `src` to `dst` at kernel time `ktime_ns`, with its
    /// time, UUID, node name and IP header; no endpoints.
    pub fn flow(self, ty: FlowType, ktime_ns: u64, src: IpAddr, dst: IpAddr) -> Flow {
        Flow {
            time: Some(observer_proto::time::timestamp(
                i128::from(ktime_ns) + self.unix_offset_ns,
            )),
            uuid: self.uuid,
            ip: Some(Ip {
                source: src.to_string(),
                destination: dst.to_string(),
                ip_version: if src.is_ipv6() {
                    IpVersion::IPv6
                } else {
                    IpVersion::IPv4
                } as i32,
                ..Default::default()
            }),
            r#type: ty as i32,
            node_name: self.node_name.to_string(),
            node_labels: self.node_labels.to_vec(),
            ..Default::default()
        }
    }

    /// [`Self::flow`] with the endpoints behind both addresses.
    pub fn flow_between_endpoints(
        self,
        ty: FlowType,
        ktime_ns: u64,
        src: IpAddr,
        dst: IpAddr,
    ) -> Flow {
        Flow {
            source: Some(self.endpoint(src)),
            destination: Some(self.endpoint(dst)),
            ..self.flow(ty, ktime_ns, src, dst)
        }
    }
}

/// The node's name as Cilium puts it in flows: `cluster/node` when the node
/// is in a named cluster other than Cilium's `default`, else the node's name.
pub fn absolute_node_name(cluster: &str, node: &str) -> String {
    if cluster.is_empty() || cluster == "default" {
        node.to_string()
    } else {
        format!("{cluster}/{node}")
    }
}

/// The address in a kernel event's 16 bytes (IPv4 in the first 4).
pub fn addr(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == 6 {
        IpAddr::from(*bytes)
    } else {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
}

/// TCP (with `tcp_flags`) or UDP with these ports; `None` for other protocols.
pub fn ports(proto: u8, sport: u16, dport: u16, tcp_flags: Option<TcpFlags>) -> Option<Layer4> {
    let protocol = match proto {
        ipproto::TCP => layer4::Protocol::Tcp(flow::Tcp {
            source_port: sport.into(),
            destination_port: dport.into(),
            flags: tcp_flags,
        }),
        ipproto::UDP => layer4::Protocol::Udp(flow::Udp {
            source_port: sport.into(),
            destination_port: dport.into(),
        }),
        _ => return None,
    };
    Some(Layer4 {
        protocol: Some(protocol),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_has_unix_time_uuid_node_and_ip_version_from_the_addresses() {
        let world = |_| Endpoint::default();
        let cx = FlowContext {
            uuid: "u".into(),
            node_name: "node1",
            node_labels: &[],
            unix_offset_ns: 1_700_000_000_000_000_000,
            endpoint_of: &world,
        };
        let v6 = cx.flow(
            FlowType::Sock,
            5_000_000_123,
            "fd42::10".parse().unwrap(),
            "fd42::11".parse().unwrap(),
        );
        assert_eq!(
            v6,
            Flow {
                time: Some(prost_types::Timestamp {
                    seconds: 1_700_000_005,
                    nanos: 123
                }),
                uuid: "u".into(),
                ip: Some(Ip {
                    source: "fd42::10".into(),
                    destination: "fd42::11".into(),
                    ip_version: IpVersion::IPv6 as i32,
                    ..Default::default()
                }),
                r#type: FlowType::Sock as i32,
                node_name: "node1".into(),
                ..Default::default()
            }
        );
        assert_eq!(absolute_node_name("", "node1"), "node1");
        assert_eq!(absolute_node_name("default", "node1"), "node1");
        assert_eq!(absolute_node_name("lab", "node1"), "lab/node1");
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&[198, 18, 1, 10]);
        assert_eq!(addr(4, &bytes), IpAddr::from([198, 18, 1, 10]));
        assert_eq!(ports(1, 1, 2, None), None);
    }
}
