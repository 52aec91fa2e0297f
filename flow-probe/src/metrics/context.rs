//! Source and destination context labels, as Hubble's `sourceContext` /
//! `destinationContext` options: `namespace|workload|...`, the first option
//! that gives a non-empty value wins.

use observer_proto::flow::{Endpoint, Flow};

/// One way of naming an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    /// The namespace.
    Namespace,
    /// `namespace/workload-name` (the first workload).
    Workload,
    /// The workload's name alone.
    WorkloadName,
    /// `namespace/pod-name`.
    Pod,
    /// The pod's name alone.
    PodName,
    /// The `app` label (also `app.kubernetes.io/name`, `k8s-app`).
    App,
    /// The numeric security identity.
    Identity,
    /// The reserved identity's label (`reserved:world`), for reserved identities.
    ReservedIdentity,
    /// The IP address.
    Ip,
}

impl ContextKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "namespace" => Self::Namespace,
            "workload" => Self::Workload,
            "workload-name" => Self::WorkloadName,
            "pod" => Self::Pod,
            "pod-name" => Self::PodName,
            "app" => Self::App,
            "identity" => Self::Identity,
            "reserved-identity" => Self::ReservedIdentity,
            "ip" => Self::Ip,
            _ => return None,
        })
    }
}

/// Names accepted by [`Context::parse`].
pub const CONTEXT_NAMES: &str =
    "namespace, workload, workload-name, pod, pod-name, app, identity, reserved-identity, ip";

/// Default context of the volume metrics' workload labels.
pub const DEFAULT_CONTEXT: &str = "workload|pod|reserved-identity";

/// A fallback chain of context kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context(Vec<ContextKind>);

impl Default for Context {
    fn default() -> Self {
        Context::parse(DEFAULT_CONTEXT).expect("the default context parses")
    }
}

impl Context {
    /// Parses `a|b|c`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let kinds = s
            .split('|')
            .map(|p| {
                ContextKind::parse(p.trim()).ok_or_else(|| {
                    format!("unknown metrics context {p:?} (one of: {CONTEXT_NAMES})")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Context(kinds))
    }

    /// The value for the flow's source (`source == true`) or destination.
    pub fn value(&self, flow: &Flow, source: bool) -> String {
        let ep = if source {
            flow.source.as_ref()
        } else {
            flow.destination.as_ref()
        };
        let ip = flow.ip.as_ref().map(|ip| {
            if source {
                ip.source.as_str()
            } else {
                ip.destination.as_str()
            }
        });
        self.0
            .iter()
            .map(|k| one(*k, ep, ip.unwrap_or("")))
            .find(|v| !v.is_empty())
            .unwrap_or_default()
    }
}

fn one(kind: ContextKind, ep: Option<&Endpoint>, ip: &str) -> String {
    if kind == ContextKind::Ip {
        return ip.to_string();
    }
    let Some(ep) = ep else { return String::new() };
    let qualified = |name: &str| {
        if name.is_empty() {
            String::new()
        } else if ep.namespace.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", ep.namespace)
        }
    };
    let workload = ep.workloads.first().map_or("", |w| w.name.as_str());
    match kind {
        ContextKind::Namespace => ep.namespace.clone(),
        ContextKind::Workload => qualified(workload),
        ContextKind::WorkloadName => workload.to_string(),
        ContextKind::Pod => qualified(&ep.pod_name),
        ContextKind::PodName => ep.pod_name.clone(),
        ContextKind::App => app(&ep.labels),
        ContextKind::Identity => ep.identity.to_string(),
        ContextKind::ReservedIdentity if ep.identity < 256 => ep
            .labels
            .iter()
            .find(|l| l.starts_with("reserved:"))
            .cloned()
            .unwrap_or_default(),
        ContextKind::ReservedIdentity | ContextKind::Ip => String::new(),
    }
}

fn app(labels: &[String]) -> String {
    for key in ["app", "app.kubernetes.io/name", "k8s-app"] {
        for l in labels {
            let l = l.strip_prefix("k8s:").unwrap_or(l);
            if let Some(v) = l.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                return v.to_string();
            }
        }
    }
    String::new()
}
