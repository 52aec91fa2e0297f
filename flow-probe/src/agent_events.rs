//! What flow-probe tells as agent events (`GetAgentEvents`, `observe
//! agent-events`), as a Cilium agent tells its own: its start, then each
//! change the watchers put in force, found by comparing what was in force
//! before with what is now:
//! - [`policy_changes`]: a policy put in force or changed (POLICY_UPDATED),
//!   or taken out (POLICY_DELETED), with Cilium's policy labels and the
//!   policy generation as its revision;
//! - [`ipcache_changes`]: an address or CIDR given an identity, or another
//!   one (IPCACHE_UPSERTED), or forgotten (IPCACHE_DELETED);
//! - [`endpoint_changes`]: an endpoint of this node appearing
//!   (ENDPOINT_CREATED) or gone (ENDPOINT_DELETED);
//! - [`service_changes`]: a service frontend and its backends in the socket
//!   load balancer (SERVICE_UPSERTED), or gone (SERVICE_DELETED).
//!
//! The watchers call these and push what they return to the node's
//! [`AgentEventLog`], which the gRPC service serves.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use cluster_spec::endpoints::EndpointsFile;
use cluster_spec::policy::{IpcacheEntry, Policy};
use cluster_spec::services::compile::Frontend;
use observer_proto::flow::agent_event::Notification;
use observer_proto::flow::{
    AgentEvent, AgentEventType, EndpointUpdateNotification, IpCacheNotification,
    PolicyUpdateNotification, ServiceDeleteNotification, ServiceUpsertNotification,
    ServiceUpsertNotificationAddr, TimeNotification,
};
use observer_proto::time::timestamp;
use observer_runtime::agent_events::AgentEventLog;

use crate::sources::{EndpointSet, EndpointWatch};

fn event(kind: AgentEventType, notification: Notification) -> AgentEvent {
    AgentEvent {
        r#type: kind as i32,
        notification: Some(notification),
    }
}

/// The probe started at `time` (ns since the epoch).
pub fn started(time: i128) -> AgentEvent {
    event(
        AgentEventType::AgentStarted,
        Notification::AgentStart(TimeNotification {
            time: Some(timestamp(time)),
        }),
    )
}

/// The policies of `after` that are new or differ from `before`'s of the
/// same namespace and name (where they were read aside), then those of
/// `before` gone from `after`. `revision`: the policy generation now in
/// force. Each of our policies is one rule, as a CiliumNetworkPolicy with
/// a `spec` is to Cilium.
pub fn policy_changes(before: &[Policy], after: &[Policy], revision: u64) -> Vec<AgentEvent> {
    let key = |p: &Policy| (p.namespace.clone(), p.name.clone());
    let same = |a: &Policy, b: &Policy| {
        Policy {
            origin: String::new(),
            ..a.clone()
        } == Policy {
            origin: String::new(),
            ..b.clone()
        }
    };
    let old: HashMap<_, &Policy> = before.iter().map(|p| (key(p), p)).collect();
    let new: HashMap<_, &Policy> = after.iter().map(|p| (key(p), p)).collect();
    let told = |kind, p: &Policy| {
        event(
            kind,
            Notification::PolicyUpdate(PolicyUpdateNotification {
                labels: p.labels(),
                revision,
                rule_count: 1,
            }),
        )
    };
    let updated = after
        .iter()
        .filter(|p| old.get(&key(p)).is_none_or(|o| !same(o, p)))
        .map(|p| told(AgentEventType::PolicyUpdated, p));
    let deleted = before
        .iter()
        .filter(|p| !new.contains_key(&key(p)))
        .map(|p| told(AgentEventType::PolicyDeleted, p));
    updated.chain(deleted).collect()
}

/// The endpoint (namespace, pod) whose address `addr` is, if any.
fn owner(endpoints: &EndpointsFile, addr: IpAddr) -> Option<(&str, &str)> {
    endpoints
        .endpoints
        .iter()
        .find(|e| e.ipv4.map(IpAddr::V4) == Some(addr) || e.ipv6.map(IpAddr::V6) == Some(addr))
        .map(|e| (e.namespace.as_str(), e.name.as_str()))
}

/// The ipcache entries of `after` that are new or changed identity since
/// `before`, then those gone; an endpoint's address is named by its
/// namespace and pod (from `endpoints`, or for one gone, `endpoints_before`).
pub fn ipcache_changes(
    before: &[IpcacheEntry],
    after: &[IpcacheEntry],
    endpoints_before: &EndpointsFile,
    endpoints: &EndpointsFile,
) -> Vec<AgentEvent> {
    let prefix = |e: &IpcacheEntry| (e.addr, e.prefix_len);
    let old: BTreeMap<_, u32> = before.iter().map(|e| (prefix(e), e.identity)).collect();
    let new: BTreeMap<_, u32> = after.iter().map(|e| (prefix(e), e.identity)).collect();
    let told = |kind, e: &IpcacheEntry, old_identity: Option<u32>, names: &EndpointsFile| {
        let full = e.prefix_len == if e.addr.is_ipv4() { 32 } else { 128 };
        let (namespace, pod) = full
            .then(|| owner(names, e.addr))
            .flatten()
            .unwrap_or_default();
        event(
            kind,
            Notification::IpcacheUpdate(IpCacheNotification {
                cidr: format!("{}/{}", e.addr, e.prefix_len),
                identity: e.identity,
                old_identity,
                namespace: namespace.to_string(),
                pod_name: pod.to_string(),
                ..Default::default()
            }),
        )
    };
    let mut out = Vec::new();
    for (key, &identity) in &new {
        let e = IpcacheEntry {
            addr: key.0,
            prefix_len: key.1,
            identity,
        };
        match old.get(key) {
            Some(&was) if was == identity => {}
            was => out.push(told(
                AgentEventType::IpcacheUpserted,
                &e,
                was.copied(),
                endpoints,
            )),
        }
    }
    for (key, &identity) in &old {
        if !new.contains_key(key) {
            let e = IpcacheEntry {
                addr: key.0,
                prefix_len: key.1,
                identity,
            };
            out.push(told(
                AgentEventType::IpcacheDeleted,
                &e,
                None,
                endpoints_before,
            ));
        }
    }
    out
}

/// This node's endpoints in `after` and not in `before` (by id), then those
/// gone. An endpoint that cannot be attached says why in `error`.
pub fn endpoint_changes(before: &EndpointSet, after: &EndpointSet) -> Vec<AgentEvent> {
    let ids = |set: &EndpointSet| -> BTreeMap<u32, usize> {
        (set.endpoints.iter().enumerate())
            .map(|(i, e)| (e.found.endpoint.id, i))
            .collect()
    };
    let (old, new) = (ids(before), ids(after));
    let told = |kind, set: &EndpointSet, i: usize| {
        let found = &set.endpoints[i].found;
        let e = &found.endpoint;
        event(
            kind,
            Notification::EndpointUpdate(EndpointUpdateNotification {
                id: u64::from(e.id),
                labels: e.identity_labels(),
                error: found.problem.clone().unwrap_or_default(),
                pod_name: e.name.clone(),
                namespace: e.namespace.clone(),
            }),
        )
    };
    let created = (new.iter())
        .filter(|(id, _)| !old.contains_key(id))
        .map(|(_, &i)| told(AgentEventType::EndpointCreated, after, i));
    let deleted = (old.iter())
        .filter(|(id, _)| !new.contains_key(id))
        .map(|(_, &i)| told(AgentEventType::EndpointDeleted, before, i));
    created.chain(deleted).collect()
}

/// Follows the endpoint sets and tells each change of this node's
/// endpoints to `log`, from the first complete set on, until `stop`.
pub async fn follow_endpoints(
    mut sets: EndpointWatch,
    log: Arc<AgentEventLog>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut told: Option<Arc<EndpointSet>> = None;
    tokio::pin!(stop);
    loop {
        let set = sets.borrow_and_update().clone();
        if set.complete {
            let before = told.take().unwrap_or_default();
            log.push(endpoint_changes(&before, &set));
            told = Some(set);
        }
        tokio::select! {
            () = &mut stop => return,
            changed = sets.changed() => if changed.is_err() { return },
        }
    }
}

fn addr(ip: IpAddr, port: u16) -> ServiceUpsertNotificationAddr {
    ServiceUpsertNotificationAddr {
        ip: ip.to_string(),
        port: u32::from(port),
    }
}

/// The frontends of `after` that are new or changed since `before` (by
/// id), then those gone.
pub fn service_changes(before: &[Frontend], after: &[Frontend]) -> Vec<AgentEvent> {
    let old: HashMap<u32, &Frontend> = before.iter().map(|f| (f.id, f)).collect();
    let new: HashMap<u32, &Frontend> = after.iter().map(|f| (f.id, f)).collect();
    let upserted = after
        .iter()
        .filter(|f| old.get(&f.id).is_none_or(|o| o != f))
        .map(|f| {
            event(
                AgentEventType::ServiceUpserted,
                Notification::ServiceUpsert(ServiceUpsertNotification {
                    id: f.id,
                    frontend_address: Some(addr(f.vip, f.port)),
                    backend_addresses: f.backends.iter().map(|b| addr(b.addr, b.port)).collect(),
                    // A VIP of the cluster, any backend from anywhere.
                    r#type: "ClusterIP".into(),
                    name: f.service.name.clone(),
                    namespace: f.service.namespace.clone(),
                    ext_traffic_policy: "Cluster".into(),
                    int_traffic_policy: "Cluster".into(),
                }),
            )
        });
    let deleted = before.iter().filter(|f| !new.contains_key(&f.id)).map(|f| {
        event(
            AgentEventType::ServiceDeleted,
            Notification::ServiceDelete(ServiceDeleteNotification { id: f.id }),
        )
    });
    upserted.chain(deleted).collect()
}

#[cfg(test)]
mod tests {
    use cluster_spec::policy::parse;

    use super::*;

    fn policy(name: &str, port: &str, origin: &str) -> Policy {
        let text = format!(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n\
             metadata: {{name: {name}, namespace: default}}\n\
             spec:\n  endpointSelector: {{matchLabels: {{app: api}}}}\n  ingress:\n\
             \x20   - toPorts: [{{ports: [{{port: \"{port}\", protocol: TCP}}]}}]\n"
        );
        parse(&text, origin).unwrap().remove(0)
    }

    /// Each event's type and what it names, as one line.
    fn lines(events: &[AgentEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                let kind = AgentEventType::try_from(e.r#type).unwrap().as_str_name();
                match &e.notification {
                    Some(Notification::PolicyUpdate(p)) => {
                        format!("{kind} {} {}", p.labels[1], p.revision)
                    }
                    Some(Notification::IpcacheUpdate(i)) => format!(
                        "{kind} {} {} {:?} {}/{}",
                        i.cidr, i.identity, i.old_identity, i.namespace, i.pod_name
                    ),
                    other => format!("{kind} {other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn a_policy_new_or_changed_is_updated_one_gone_deleted_one_moved_nothing() {
        let (a, b) = (policy("a", "80", "1.yaml"), policy("b", "80", "1.yaml"));
        let name = |n: &str| format!("k8s:io.cilium.k8s.policy.name={n}");
        assert_eq!(
            lines(&policy_changes(&[], &[a.clone(), b.clone()], 1)),
            [
                format!("POLICY_UPDATED {} 1", name("a")),
                format!("POLICY_UPDATED {} 1", name("b"))
            ]
        );
        let moved = policy("a", "80", "2.yaml");
        assert!(
            policy_changes(&[a.clone(), b.clone()], &[moved, b.clone()], 2).is_empty(),
            "the same policy read from another file"
        );
        let changed = policy("a", "8080", "1.yaml");
        assert_eq!(
            lines(&policy_changes(&[a, b], &[changed], 3)),
            [
                format!("POLICY_UPDATED {} 3", name("a")),
                format!("POLICY_DELETED {} 3", name("b"))
            ]
        );
    }

    #[test]
    fn an_address_new_or_given_another_identity_is_upserted_one_gone_deleted() {
        let endpoints = EndpointsFile::parse(
            "endpoints:\n\
             - {id: 1, name: api-1, namespace: default, ipv4: 198.18.1.11, node: n}\n\
             - {id: 2, name: api-2, namespace: default, ipv4: 198.18.1.12, node: n}\n",
            "eps.yaml",
        )
        .unwrap();
        let entry = |addr: &str, prefix_len, identity| IpcacheEntry {
            addr: addr.parse().unwrap(),
            prefix_len,
            identity,
        };
        let before = [entry("198.18.1.11", 32, 300), entry("198.18.1.12", 32, 301)];
        let after = [
            entry("198.18.1.11", 32, 302),
            entry("198.18.1.12", 32, 301),
            entry("203.0.113.0", 24, 16_777_217),
        ];
        let only_first = EndpointsFile {
            endpoints: endpoints.endpoints[..1].to_vec(),
        };
        assert_eq!(
            lines(&ipcache_changes(&before, &after, &endpoints, &only_first)),
            [
                "IPCACHE_UPSERTED 198.18.1.11/32 302 Some(300) default/api-1",
                "IPCACHE_UPSERTED 203.0.113.0/24 16777217 None /",
            ]
        );
        assert_eq!(
            lines(&ipcache_changes(
                &after,
                &before[..1],
                &endpoints,
                &only_first
            )),
            [
                "IPCACHE_UPSERTED 198.18.1.11/32 300 Some(302) default/api-1",
                "IPCACHE_DELETED 198.18.1.12/32 301 None default/api-2",
                "IPCACHE_DELETED 203.0.113.0/24 16777217 None /",
            ],
            "a gone address named by the endpoints before"
        );
    }
}
