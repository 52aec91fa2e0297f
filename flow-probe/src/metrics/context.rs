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
        let mut out = Vec::new();
        self.write(flow, source, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the value for the flow's source (`source == true`) or
    /// destination to `out`: the first kind of the chain that gives a
    /// non-empty value, else nothing. Allocates nothing.
    pub fn write(&self, flow: &Flow, source: bool, out: &mut Vec<u8>) {
        let ep = if source {
            flow.source.as_ref()
        } else {
            flow.destination.as_ref()
        };
        let ip = flow.ip.as_ref().map_or("", |ip| {
            if source {
                ip.source.as_str()
            } else {
                ip.destination.as_str()
            }
        });
        let start = out.len();
        for k in &self.0 {
            one(*k, ep, ip, out);
            if out.len() > start {
                return;
            }
        }
    }
}

/// Appends one kind's value (possibly empty) to `out`.
fn one(kind: ContextKind, ep: Option<&Endpoint>, ip: &str, out: &mut Vec<u8>) {
    if kind == ContextKind::Ip {
        return out.extend_from_slice(ip.as_bytes());
    }
    let Some(ep) = ep else { return };
    let workload = ep.workloads.first().map_or("", |w| w.name.as_str());
    let value: &str = match kind {
        ContextKind::Namespace => &ep.namespace,
        ContextKind::Workload => return qualified(&ep.namespace, workload, out),
        ContextKind::WorkloadName => workload,
        ContextKind::Pod => return qualified(&ep.namespace, &ep.pod_name, out),
        ContextKind::PodName => &ep.pod_name,
        ContextKind::App => app(&ep.labels),
        ContextKind::Identity => return super::key::write_u32(out, ep.identity),
        ContextKind::ReservedIdentity if ep.identity < 256 => ep
            .labels
            .iter()
            .find(|l| l.starts_with("reserved:"))
            .map_or("", String::as_str),
        ContextKind::ReservedIdentity | ContextKind::Ip => "",
    };
    out.extend_from_slice(value.as_bytes());
}

/// `namespace/name`, `name` without a namespace, nothing without a name.
fn qualified(namespace: &str, name: &str, out: &mut Vec<u8>) {
    if name.is_empty() {
        return;
    }
    if !namespace.is_empty() {
        out.extend_from_slice(namespace.as_bytes());
        out.push(b'/');
    }
    out.extend_from_slice(name.as_bytes());
}

fn app(labels: &[String]) -> &str {
    for key in ["app", "app.kubernetes.io/name", "k8s-app"] {
        for l in labels {
            let l = l.strip_prefix("k8s:").unwrap_or(l);
            if let Some(v) = l.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                return v;
            }
        }
    }
    ""
}
