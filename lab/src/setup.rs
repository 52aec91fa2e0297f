//! Building a planned topology with `ip` and namespace sysctls.

use anyhow::{Context, Result};

use super::addr::{V4_PREFIX_LEN, V6_PREFIX_LEN};
use super::ip::{ip_in, netns_add};
use super::netns::write_sysctls;
use super::topology::{EndpointPlan, NodeLink, NodePlan, Topology};

/// Node namespaces only switch frames: no IPv6 stack on their interfaces, so they
/// send nothing of their own (no router solicitations, no MLD).
const NODE_SYSCTLS: &[(&str, &str)] = &[
    ("ipv6/conf/all/disable_ipv6", "1"),
    ("ipv6/conf/default/disable_ipv6", "1"),
];

/// Endpoints neither solicit routers nor run duplicate address detection, so
/// their interfaces are quiet and usable as soon as they are up.
pub(crate) const ENDPOINT_SYSCTLS: &[(&str, &str)] = &[
    ("ipv6/conf/all/accept_ra", "0"),
    ("ipv6/conf/default/accept_ra", "0"),
    ("ipv6/conf/all/accept_dad", "0"),
    ("ipv6/conf/default/accept_dad", "0"),
];

/// Creates every namespace, link, address and route of `topo`.
///
/// On error the lab is half-built: the caller removes it by prefix.
pub fn build(topo: &Topology) -> Result<()> {
    for node in &topo.nodes {
        build_node(node).with_context(|| format!("building node {}", node.name))?;
    }
    for link in &topo.node_links {
        build_node_link(link, &topo.nodes[0].bridge)
            .with_context(|| format!("cabling {} to {}", link.netns_a, link.netns_b))?;
    }
    for ep in &topo.endpoints {
        build_endpoint(ep).with_context(|| format!("building endpoint {}", ep.name))?;
    }
    Ok(())
}

fn build_node(node: &NodePlan) -> Result<()> {
    netns_add(&node.netns)?;
    write_sysctls(&node.netns, NODE_SYSCTLS)?;
    ip_in(&node.netns, &["link", "set", "lo", "up"])?;
    ip_in(
        &node.netns,
        &[
            "link",
            "add",
            &node.bridge,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    )?;
    ip_in(&node.netns, &["link", "set", &node.bridge, "up"])
}

fn build_node_link(link: &NodeLink, bridge: &str) -> Result<()> {
    ip_in(
        &link.netns_a,
        &[
            "link",
            "add",
            &link.dev_a,
            "type",
            "veth",
            "peer",
            "name",
            &link.dev_b,
            "netns",
            &link.netns_b,
        ],
    )?;
    ip_in(
        &link.netns_a,
        &["link", "set", &link.dev_a, "master", bridge, "up"],
    )?;
    ip_in(
        &link.netns_b,
        &["link", "set", &link.dev_b, "master", bridge, "up"],
    )
}

fn build_endpoint(ep: &EndpointPlan) -> Result<()> {
    netns_add(&ep.netns)?;
    write_sysctls(&ep.netns, ENDPOINT_SYSCTLS)?;
    let node = ep.node_netns.as_str();
    let ns = ep.netns.as_str();
    let dev = ep.interface.as_str();
    ip_in(
        node,
        &[
            "link",
            "add",
            &ep.host_interface,
            "type",
            "veth",
            "peer",
            "name",
            dev,
            "netns",
            ns,
        ],
    )?;
    ip_in(
        node,
        &[
            "link",
            "set",
            &ep.host_interface,
            "master",
            super::topology::BRIDGE,
            "up",
        ],
    )?;
    let v4 = format!("{}/{V4_PREFIX_LEN}", ep.ipv4);
    let v6 = format!("{}/{V6_PREFIX_LEN}", ep.ipv6);
    ip_in(ns, &["addr", "add", &v4, "dev", dev])?;
    ip_in(ns, &["addr", "add", &v6, "dev", dev, "nodad"])?;
    ip_in(ns, &["link", "set", "lo", "up"])?;
    ip_in(ns, &["link", "set", dev, "up"])?;
    for net in &ep.routes_v4 {
        ip_in(
            ns,
            &[
                "route",
                "add",
                &format!("{net}/{V4_PREFIX_LEN}"),
                "dev",
                dev,
            ],
        )?;
    }
    for net in &ep.routes_v6 {
        ip_in(
            ns,
            &[
                "-6",
                "route",
                "add",
                &format!("{net}/{V6_PREFIX_LEN}"),
                "dev",
                dev,
            ],
        )?;
    }
    Ok(())
}
