//! One container, as the Docker Engine API inspects it, turned into the
//! endpoint model: its name is the pod name (or its `io.kubernetes.pod.name`
//! label, as Kubernetes' container runtimes set it); its labels, less the runtime's
//! own bookkeeping, give its identity; its namespace is its compose project
//! (or an explicit `io.kubernetes.pod.namespace` label), else `default`;
//! addresses from its first network; its network namespace from its pid and
//! the host side of its veth from there ([`super::veth`]).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use bollard::models::{ContainerInspectResponse, EndpointSettings};
use cluster_spec::endpoints::{Endpoint, NAMESPACE_LABEL, Workload};

use super::veth::HostVeth;
use crate::sources::Discovered;

/// The label that puts a container on another node than the probe's (the
/// lab runs two nodes' containers on one host).
pub const NODE_LABEL: &str = "observe.io/node";
/// Docker Compose's project: the namespace of its containers.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// Docker Compose's service: the workload of its containers.
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// The pod name a container may carry (Kubernetes' runtimes set it), which
/// then names the endpoint instead of the container's own name.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// The namespace of a container that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Labels that are the runtime's or the image's bookkeeping, not the
/// workload's identity (a compose config hash changes on every deploy).
const NOT_IDENTITY: [&str; 5] = [
    "com.docker.compose.",
    "io.podman.",
    "io.containers.",
    "org.opencontainers.",
    "observe.io/",
];

/// What the container's network namespace gave: the host side of its veth,
/// or why there is none to attach to.
pub type VethLookup<'a> = &'a dyn Fn(u32, &str) -> Result<HostVeth, String>;

/// The endpoint of a running container on `node` (unless it says another
/// node); `find_veth(pid, mac)` finds the host side of its veth.
pub fn discovered(c: &ContainerInspectResponse, node: &str, find_veth: VethLookup) -> Discovered {
    let id = c.id.clone().unwrap_or_default();
    let config = c.config.as_ref();
    let all_labels: BTreeMap<String, String> = config
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let name = match all_labels.get(POD_NAME_LABEL) {
        Some(pod) => pod.clone(),
        None => c
            .name
            .as_deref()
            .unwrap_or(&id)
            .trim_start_matches('/')
            .to_string(),
    };
    let namespace = all_labels
        .get(NAMESPACE_LABEL)
        .or_else(|| all_labels.get(COMPOSE_PROJECT))
        .cloned()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let labels = all_labels
        .iter()
        .filter(|(k, _)| k.as_str() != NAMESPACE_LABEL && k.as_str() != POD_NAME_LABEL)
        .filter(|(k, _)| !NOT_IDENTITY.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let network = first_network(c);
    let ipv4 = network
        .and_then(|n| n.ip_address.as_deref())
        .and_then(|a| a.parse::<Ipv4Addr>().ok());
    let ipv6 = network
        .and_then(|n| n.global_ipv6_address.as_deref())
        .and_then(|a| a.parse::<Ipv6Addr>().ok());
    let pid = c
        .state
        .as_ref()
        .and_then(|s| s.pid)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0);
    let mut found = Discovered {
        image: config
            .and_then(|c| c.image.clone())
            .or_else(|| c.image.clone())
            .unwrap_or_default(),
        netns: pid.map(netns_of).unwrap_or_default(),
        netns_path: pid.map(|p| PathBuf::from(format!("/proc/{p}/ns/net"))),
        ..Discovered::new(
            id,
            Endpoint {
                id: 0,
                name,
                namespace,
                labels,
                workload: all_labels.get(COMPOSE_SERVICE).map(|s| Workload {
                    name: s.clone(),
                    kind: "ComposeService".to_string(),
                }),
                ipv4,
                ipv6,
                node: all_labels
                    .get(NODE_LABEL)
                    .cloned()
                    .unwrap_or_else(|| node.to_string()),
                interface: None,
                netns: None,
            },
        )
    };
    let mode = c
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    let veth = match (mode.as_str(), pid, network) {
        ("host", _, _) => Err("uses the host's network: it has no veth of its own".to_string()),
        ("none", _, _) => Err("has no network".to_string()),
        (m, _, _) if m.starts_with("container:") => Err(format!(
            "shares the network of container {}",
            &m["container:".len()..]
        )),
        (_, None, _) => Err("has no process (pid 0)".to_string()),
        (_, _, None) => Err("is on no network".to_string()),
        (_, Some(pid), Some(net)) => find_veth(pid, net.mac_address.as_deref().unwrap_or("")),
    };
    match veth {
        Ok(v) => {
            found.endpoint.interface = Some(v.name);
            found.ifindex = Some(v.ifindex);
        }
        Err(why) => found.problem = Some(why),
    }
    found
}

/// The network whose addresses the endpoint carries: the first by name that
/// gave it an address.
fn first_network(c: &ContainerInspectResponse) -> Option<&EndpointSettings> {
    let networks = c.network_settings.as_ref()?.networks.as_ref()?;
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    names.into_iter().map(|n| &networks[n]).find(|n| {
        n.ip_address.as_deref().is_some_and(|a| !a.is_empty())
            || n.global_ipv6_address
                .as_deref()
                .is_some_and(|a| !a.is_empty())
    })
}

/// The network namespace of a process, as the kernel names it (`net:[N]`).
fn netns_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerState, HostConfig, NetworkSettings};
    use std::collections::HashMap;

    fn container(labels: &[(&str, &str)], mode: &str) -> ContainerInspectResponse {
        let net = EndpointSettings {
            ip_address: Some("198.18.7.10".into()),
            global_ipv6_address: Some("fd42:0:0:7::10".into()),
            mac_address: Some("c6:3d:0d:f7:b6:69".into()),
            ..Default::default()
        };
        ContainerInspectResponse {
            id: Some("e74eb161".into()),
            name: Some("/web-1".into()),
            state: Some(ContainerState {
                pid: Some(4_000_000),
                running: Some(true),
                ..Default::default()
            }),
            config: Some(ContainerConfig {
                image: Some("localhost/web:1".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some(mode.into()),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([
                    ("zz-empty".to_string(), EndpointSettings::default()),
                    ("lab".to_string(), net),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn veth(pid: u32, mac: &str) -> Result<HostVeth, String> {
        assert_eq!((pid, mac), (4_000_000, "c6:3d:0d:f7:b6:69"));
        Ok(HostVeth {
            name: "veth3".into(),
            ifindex: 12,
        })
    }

    #[test]
    fn a_compose_container_is_an_endpoint_of_its_project_with_its_own_labels() {
        let c = container(
            &[
                ("app", "web"),
                ("tier", "front"),
                ("com.docker.compose.project", "shop"),
                ("com.docker.compose.service", "web"),
                ("com.docker.compose.config-hash", "abc"),
                ("org.opencontainers.image.title", "web"),
            ],
            "bridge",
        );
        let d = discovered(&c, "node1", &veth);
        assert_eq!(d.key, "e74eb161");
        assert_eq!(d.image, "localhost/web:1");
        assert_eq!(d.problem, None);
        assert_eq!(d.ifindex, Some(12));
        assert_eq!(
            d.endpoint,
            Endpoint {
                id: 0,
                name: "web-1".into(),
                namespace: "shop".into(),
                labels: BTreeMap::from([
                    ("app".to_string(), "web".to_string()),
                    ("tier".to_string(), "front".to_string())
                ]),
                workload: Some(Workload {
                    name: "web".into(),
                    kind: "ComposeService".into()
                }),
                ipv4: Some("198.18.7.10".parse().unwrap()),
                ipv6: Some("fd42:0:0:7::10".parse().unwrap()),
                node: "node1".into(),
                interface: Some("veth3".into()),
                netns: None,
            }
        );
        assert_eq!(
            d.endpoint.identity_labels(),
            [
                "k8s:app=web",
                "k8s:io.kubernetes.pod.namespace=shop",
                "k8s:tier=front"
            ]
        );
    }

    #[test]
    fn namespace_and_node_labels_and_the_default_namespace() {
        let plain = discovered(&container(&[("app", "x")], "bridge"), "n1", &veth);
        assert_eq!(plain.endpoint.namespace, DEFAULT_NAMESPACE);
        let labelled = container(
            &[
                (NAMESPACE_LABEL, "other"),
                (POD_NAME_LABEL, "frontend"),
                (COMPOSE_PROJECT, "ignored"),
                (NODE_LABEL, "node2"),
            ],
            "bridge",
        );
        let d = discovered(&labelled, "node1", &veth);
        assert_eq!(
            (
                d.endpoint.name.as_str(),
                d.endpoint.namespace.as_str(),
                d.endpoint.node.as_str()
            ),
            ("frontend", "other", "node2")
        );
        assert!(d.endpoint.labels.is_empty(), "{:?}", d.endpoint.labels);
    }

    #[test]
    fn a_container_without_a_veth_of_its_own_says_why() {
        let problem = |mode: &str| discovered(&container(&[], mode), "n", &veth).problem;
        assert_eq!(
            problem("host").as_deref(),
            Some("uses the host's network: it has no veth of its own")
        );
        assert_eq!(
            problem("container:abc").as_deref(),
            Some("shares the network of container abc")
        );
        let lost = |_: u32, _: &str| Err("no interface with index 12 here".to_string());
        let d = discovered(&container(&[], "bridge"), "n", &lost);
        assert_eq!(
            (d.problem.as_deref(), d.endpoint.interface),
            (Some("no interface with index 12 here"), None)
        );
        assert_eq!(d.endpoint.ipv4, Some("198.18.7.10".parse().unwrap()));
    }
}
