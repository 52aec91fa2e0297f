//! Which graph node an endpoint belongs to: its namespace and workload (the first
//! workload's name, else its `app` label, else its pod name), or one node for
//! everything outside the cluster (`world`) and one for the node itself (`host`).

use observer_proto::flow::{Endpoint, Flow};

/// Cilium's reserved identities that get a node of their own.
const IDENTITY_HOST: u32 = 1;
const IDENTITY_WORLD: u32 = 2;

/// What a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupKind {
    /// Pods of one workload in one namespace.
    Workload,
    /// Addresses outside the cluster (`reserved:world`).
    World,
    /// The node's own network stack (`reserved:host`).
    Host,
    /// A service whose flow reached no endpoint (a connect to a VIP
    /// without a backend).
    Service,
    /// An endpoint with no name and no reserved label.
    Unknown,
}

impl GroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Workload => "workload",
            GroupKind::World => "world",
            GroupKind::Host => "host",
            GroupKind::Service => "service",
            GroupKind::Unknown => "unknown",
        }
    }
}

/// One node of the service graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    /// `namespace/name`, or `world`, `host`, `reserved:<label>`, `unknown`.
    pub id: String,
    /// The workload name (or the id for the reserved nodes).
    pub title: String,
    /// Empty for the reserved nodes.
    pub namespace: String,
    pub kind: GroupKind,
}

impl Group {
    fn reserved(id: &str, kind: GroupKind) -> Self {
        Group {
            id: id.to_string(),
            title: id.to_string(),
            namespace: String::new(),
            kind,
        }
    }
}

/// The value of label `key` in Cilium's `source:key=value` form (or `key=value`).
fn label<'a>(labels: &'a [String], key: &str) -> Option<&'a str> {
    labels.iter().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        let k = k.rsplit_once(':').map_or(k, |(_, k)| k);
        (k == key && !v.is_empty()).then_some(v)
    })
}

/// The node a flow's destination is drawn as: its endpoint's, or, when
/// that names nothing (a VIP without a backend), the service it was for.
pub fn destination_group(flow: &Flow) -> Group {
    let group = group_of(flow.destination.as_ref());
    match &flow.destination_service {
        Some(svc) if group.kind == GroupKind::Unknown && !svc.name.is_empty() => Group {
            id: if svc.namespace.is_empty() {
                svc.name.clone()
            } else {
                format!("{}/{}", svc.namespace, svc.name)
            },
            title: svc.name.clone(),
            namespace: svc.namespace.clone(),
            kind: GroupKind::Service,
        },
        _ => group,
    }
}

/// The node an endpoint is drawn as.
pub fn group_of(ep: Option<&Endpoint>) -> Group {
    let Some(ep) = ep else {
        return Group::reserved("unknown", GroupKind::Unknown);
    };
    let has = |l: &str| ep.labels.iter().any(|x| x == l);
    if ep.identity == IDENTITY_HOST || has("reserved:host") {
        return Group::reserved("host", GroupKind::Host);
    }
    if ep.identity == IDENTITY_WORLD || ep.labels.iter().any(|l| l.starts_with("reserved:world")) {
        return Group::reserved("world", GroupKind::World);
    }
    let name = ep
        .workloads
        .first()
        .map(|w| w.name.as_str())
        .filter(|n| !n.is_empty())
        // The application labels Kubernetes add-ons use, in Hubble UI's order.
        .or_else(|| label(&ep.labels, "app"))
        .or_else(|| label(&ep.labels, "k8s-app"))
        .or_else(|| label(&ep.labels, "app.kubernetes.io/name"))
        .unwrap_or(ep.pod_name.as_str());
    if name.is_empty() {
        let reserved = ep.labels.iter().find(|l| l.starts_with("reserved:"));
        return match reserved {
            Some(r) => Group::reserved(r, GroupKind::Unknown),
            None => Group::reserved("unknown", GroupKind::Unknown),
        };
    }
    let id = if ep.namespace.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", ep.namespace)
    };
    Group {
        id,
        title: name.to_string(),
        namespace: ep.namespace.clone(),
        kind: GroupKind::Workload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::flow::Workload;

    fn ep(f: impl FnOnce(&mut Endpoint)) -> Endpoint {
        let mut e = Endpoint {
            identity: 4000,
            namespace: "default".into(),
            pod_name: "api-0".into(),
            labels: vec!["k8s:app=api".into()],
            ..Default::default()
        };
        f(&mut e);
        e
    }

    #[test]
    fn workload_then_app_label_then_pod_name() {
        let w = ep(|e| {
            e.workloads = vec![Workload {
                name: "api-server".into(),
                kind: "Deployment".into(),
            }]
        });
        assert_eq!(group_of(Some(&w)).id, "default/api-server");
        let g = group_of(Some(&ep(|_| {})));
        assert_eq!(
            (
                g.id.as_str(),
                g.title.as_str(),
                g.namespace.as_str(),
                g.kind
            ),
            ("default/api", "api", "default", GroupKind::Workload)
        );
        let pod = ep(|e| e.labels = vec!["k8s:tier=backend".into()]);
        assert_eq!(group_of(Some(&pod)).id, "default/api-0");
        // CoreDNS's replicas (k8s-app), a Helm chart's (app.kubernetes.io/name).
        for label in [
            "k8s:k8s-app=kube-dns",
            "k8s:app.kubernetes.io/name=kube-dns",
        ] {
            let replica = ep(|e| e.labels = vec![label.into()]);
            assert_eq!(group_of(Some(&replica)).id, "default/kube-dns", "{label}");
        }
    }

    #[test]
    fn reserved_identities_are_one_node_each() {
        let world = ep(|e| {
            e.identity = 2;
            e.pod_name.clear();
        });
        assert_eq!(group_of(Some(&world)).id, "world");
        let world_label = Endpoint {
            labels: vec!["reserved:world-ipv6".into()],
            ..Default::default()
        };
        assert_eq!(group_of(Some(&world_label)).kind, GroupKind::World);
        let host = Endpoint {
            identity: 1,
            ..Default::default()
        };
        assert_eq!(group_of(Some(&host)).id, "host");
        let health = Endpoint {
            identity: 4,
            labels: vec!["reserved:health".into()],
            ..Default::default()
        };
        assert_eq!(group_of(Some(&health)).id, "reserved:health");
        assert_eq!(group_of(None).id, "unknown");
    }

    #[test]
    fn a_flow_to_no_endpoint_goes_to_its_service() {
        let svc = observer_proto::flow::Service {
            name: "api".into(),
            namespace: "default".into(),
        };
        let to_vip = Flow {
            destination_service: Some(svc.clone()),
            ..Default::default()
        };
        let g = destination_group(&to_vip);
        assert_eq!(
            (
                g.id.as_str(),
                g.title.as_str(),
                g.namespace.as_str(),
                g.kind
            ),
            ("default/api", "api", "default", GroupKind::Service)
        );
        // A backend reached: its endpoint, as always.
        let reached = Flow {
            destination: Some(ep(|e| e.pod_name = "api-1".into())),
            ..to_vip
        };
        assert_eq!(destination_group(&reached).kind, GroupKind::Workload);
        assert_eq!(destination_group(&Flow::default()).id, "unknown");
    }
}
