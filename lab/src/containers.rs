//! A container lab: the same topology, each endpoint a real Podman container
//! that flow-probe finds through the Docker Engine API (`podman system
//! service`), not through the endpoints file.
//!
//! - Node `N` is an internal podman network `<prefix>-N` (its bridge, with
//!   the host side of each container's veth, lives in the host's network
//!   namespace, which the lab names `<prefix>-N` so that each node's probe
//!   pins apart); node 1's bridge is cabled to every other node's by a veth
//!   pair `<prefix>l<k>`/`<prefix>m<k>`, so the lab is one L2 segment as the
//!   namespace lab is. Internal networks get no NAT, no route out and no DNS.
//! - Endpoint `E` is the container `<prefix>-E` on its node's network with
//!   the planned addresses; its labels are the scenario's, plus `E` as its
//!   pod name (`io.kubernetes.pod.name`), its namespace as compose project, its workload as compose service, its node
//!   (`observe.io/node`) and the lab (`observe.io/lab`, which the probes
//!   filter on). Its network namespace is named `<prefix>-E`, so the traffic
//!   generator enters it as any lab endpoint's; the on-link routes to the
//!   other nodes' subnets are added there.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::addr;
use super::ip::{ip, ip_in, netns_attach, netns_del};
use super::netns::{NETNS_DIR, write_sysctls};
use super::podman::{self, ApiService, ContainerSpec, PodmanSet};
use super::setup::ENDPOINT_SYSCTLS;
use super::topology::{EndpointPlan, Topology};

/// The label every container of a lab carries (its prefix); the probes
/// follow only those.
pub const LAB_LABEL: &str = "observe.io/lab";
/// The label naming a container's node (flow-probe attaches to its own).
pub const NODE_LABEL: &str = "observe.io/node";
/// The pod name flow-probe gives a container (the scenario's name; the
/// container's own carries the lab's prefix).
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// Docker Compose's labels, which flow-probe reads as namespace and workload.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// What every container runs: nothing, for as long as the lab lives (the
/// traffic generator brings its own sockets into the container's namespace).
const IDLE: [&str; 2] = ["sleep", "2000000000"];

/// What a container lab made outside its namespaces, for its teardown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLab {
    pub podman: PodmanSet,
    /// The Docker Engine API socket the probes read.
    pub socket: PathBuf,
    /// One end of each veth pair joining node bridges (host namespace).
    pub links: Vec<String>,
}

impl ContainerLab {
    /// The probes' flags: this API, this lab's containers only.
    pub fn probe_args(&self, prefix: &str) -> Vec<std::ffi::OsString> {
        vec![
            "--containers".into(),
            self.socket.clone().into(),
            "--container-label".into(),
            format!("{LAB_LABEL}={prefix}").into(),
        ]
    }

    /// Removes the links and everything podman made; returns the problems.
    pub fn remove(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for link in std::mem::take(&mut self.links) {
            if Path::new("/sys/class/net").join(&link).exists()
                && let Err(e) = ip(&["link", "del", &link])
            {
                errors.push(format!("{e:#}"));
            }
        }
        errors.extend(self.podman.remove_all());
        errors
    }
}

/// Builds the containers of `topo` (filling in each node's bridge and each
/// endpoint's host-side veth) and starts the API service in `state_dir`.
/// On error, what was made is in `made`, for the caller to remove.
pub fn build(topo: &mut Topology, state_dir: &Path, made: &mut ContainerLab) -> Result<ApiService> {
    let prefix = topo.prefix.clone();
    let image = format!("localhost/{prefix}-lab:busybox");
    made.podman.import_busybox(&image)?;
    for node in &mut topo.nodes {
        let eps: Vec<_> = topo
            .endpoints
            .iter()
            .filter(|e| e.node == node.name)
            .collect();
        let v4: BTreeSet<_> = eps.iter().map(|e| addr::net_v4(e.ipv4)).collect();
        let v6: BTreeSet<_> = eps.iter().map(|e| addr::net_v6(e.ipv6)).collect();
        if v4.len() != 1 || v6.len() != 1 {
            bail!(
                "node {}: a container lab needs a node's endpoints in one /24 and one /64 (podman gives a container an address in every subnet of its network)",
                node.name
            );
        }
        let subnets = [
            format!("{}/{}", v4.first().unwrap(), addr::V4_PREFIX_LEN),
            format!("{}/{}", v6.first().unwrap(), addr::V6_PREFIX_LEN),
        ];
        let network = node.netns.clone();
        made.podman
            .create_network(&network, &[&subnets[0], &subnets[1]])?;
        node.bridge = podman::podman(&[
            "network",
            "inspect",
            "--format",
            "{{.NetworkInterface}}",
            &network,
        ])?;
        netns_attach(&node.netns, std::process::id())
            .with_context(|| format!("naming the host's network namespace {}", node.netns))?;
    }
    for ep in &mut topo.endpoints {
        let mut labels: BTreeMap<String, String> = ep.labels.clone();
        labels.insert(POD_NAME_LABEL.into(), ep.name.clone());
        labels.insert(COMPOSE_PROJECT.into(), ep.namespace.clone());
        if let Some(w) = &ep.workload {
            labels.insert(COMPOSE_SERVICE.into(), w.name.clone());
        }
        labels.insert(NODE_LABEL.into(), ep.node.clone());
        labels.insert(LAB_LABEL.into(), prefix.clone());
        made.podman.run(&ContainerSpec {
            name: ep.netns.clone(),
            image: image.clone(),
            network: ep.node_netns.clone(),
            ipv4: Some(ep.ipv4),
            ipv6: Some(ep.ipv6),
            labels,
            command: IDLE.iter().map(|s| s.to_string()).collect(),
        })?;
        let pid = podman::pid(&ep.netns)?;
        ep.host_interface = set_up_endpoint(ep, pid)?;
    }
    // Podman makes a network's bridge with its first container.
    for (k, node) in topo.nodes.iter().enumerate().skip(1) {
        let (a, b) = (format!("{prefix}l{}", k + 1), format!("{prefix}m{}", k + 1));
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
        made.links.push(a.clone());
        ip(&["link", "set", &a, "master", &topo.nodes[0].bridge, "up"])?;
        ip(&["link", "set", &b, "master", &node.bridge, "up"])?;
    }
    made.socket = state_dir.join("podman.sock");
    ApiService::start(&made.socket, &state_dir.join("podman.log"))
}

/// Names the network namespace of endpoint `ep`'s container (process `pid`)
/// after it, sets its sysctls and its on-link routes to the other nodes'
/// subnets; returns the host side of its veth.
fn set_up_endpoint(ep: &EndpointPlan, pid: u32) -> Result<String> {
    netns_attach(&ep.netns, pid)
        .with_context(|| format!("naming the network namespace of {}", ep.name))?;
    write_sysctls(&ep.netns, ENDPOINT_SYSCTLS)?;
    for net in &ep.routes_v4 {
        let to = format!("{net}/{}", addr::V4_PREFIX_LEN);
        ip_in(&ep.netns, &["route", "add", &to, "dev", &ep.interface])?;
    }
    for net in &ep.routes_v6 {
        let to = format!("{net}/{}", addr::V6_PREFIX_LEN);
        ip_in(
            &ep.netns,
            &["-6", "route", "add", &to, "dev", &ep.interface],
        )?;
    }
    host_side(pid, &ep.interface).with_context(|| format!("the host side of {}'s veth", ep.name))
}

/// Sets up again the endpoints whose container restarted since the lab
/// named its namespace (a new namespace: the name still holds the old one,
/// without the container's veth, and the routes and sysctls went with it);
/// returns their names. A container that is not running is left as it is:
/// its traffic fails and says so.
pub fn refresh_restarted(topo: &Topology) -> Result<Vec<String>> {
    let mut refreshed = Vec::new();
    for ep in &topo.endpoints {
        let Ok(pid) = podman::pid(&ep.netns) else {
            continue;
        };
        let current = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino());
        let named = std::fs::metadata(Path::new(NETNS_DIR).join(&ep.netns)).map(|m| m.ino());
        if let (Ok(current), Ok(named)) = (&current, &named)
            && current == named
        {
            continue;
        }
        if named.is_ok() {
            netns_del(&ep.netns)
                .with_context(|| format!("forgetting {}'s old network namespace", ep.name))?;
        }
        set_up_endpoint(ep, pid)?;
        refreshed.push(ep.name.clone());
        forget_neighbour(topo, ep);
    }
    Ok(refreshed)
}

/// Makes every other namespace of the lab forget `ep`'s link-layer address:
/// a restarted container has a new one, and a peer that still sends to the
/// old one (a server's clients, which do not hear from it first) gets no
/// answer until its entry fails. Namespaces that are gone are skipped.
fn forget_neighbour(topo: &Topology, ep: &EndpointPlan) {
    let others = topo
        .endpoints
        .iter()
        .filter(|o| o.name != ep.name)
        .map(|o| o.netns.as_str())
        .chain(topo.nodes.iter().map(|n| n.netns.as_str()));
    for netns in others {
        for addr in [ep.ipv4.to_string(), ep.ipv6.to_string()] {
            if let Err(e) = ip_in(netns, &["neigh", "flush", "to", &addr]) {
                log::debug!("forgetting {addr} in {netns}: {e:#}");
            }
        }
    }
}

/// The host-side name of the veth whose container end is `ifname` in process
/// `pid`'s namespace (its `iflink` is the host side's index).
fn host_side(pid: u32, ifname: &str) -> Result<String> {
    let inside = format!("/proc/{pid}/root/sys/class/net/{ifname}/iflink");
    let peer = std::fs::read_to_string(&inside).with_context(|| inside.clone())?;
    for entry in std::fs::read_dir("/sys/class/net")?.flatten() {
        let index = std::fs::read_to_string(entry.path().join("ifindex")).unwrap_or_default();
        if index.trim() == peer.trim() {
            return Ok(entry.file_name().to_string_lossy().to_string());
        }
    }
    bail!("no interface with index {} here", peer.trim())
}
