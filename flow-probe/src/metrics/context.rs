//! Source and destination context labels, as Hubble's `sourceContext` /
//! `destinationContext` options: `namespace|workload|...`, the first option
//! that gives a non-empty value wins.

use observer_proto::flow::Flow;

/// One way of naming an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    /// The namespace.
    Namespace,
    /// `namespace/workload-name` (the first workload).
    Workload,
    /// The workload's name alone.
    WorkloadName,
    /// `namespace/pod-name` (`namespace/` without a pod name, as Hubble).
    Pod,
    /// `namespace/` and the pod name without its generated suffixes
    /// (`api-7d9f8-x2k4q` → `api`), Hubble's deprecated `pod-short`.
    PodShort,
    /// The pod's name alone.
    PodName,
    /// The first of the endpoint's labels that is `k8s:app.kubernetes.io/name`,
    /// `k8s:k8s-app` or `k8s:app`, in the order of its labels.
    App,
    /// Every identity label, joined by `,`.
    Identity,
    /// `reserved:kube-apiserver` when the endpoint has it, else its first
    /// `reserved:` label.
    ReservedIdentity,
    /// The IP address.
    Ip,
    /// The DNS names of the flow's end, joined by `,`: none are captured, so
    /// empty (a chain falls through it), as Hubble's on a flow without them.
    Dns,
}

impl ContextKind {
    /// Case-insensitive, as Hubble's.
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "namespace" => Self::Namespace,
            "workload" => Self::Workload,
            "workload-name" => Self::WorkloadName,
            "pod" => Self::Pod,
            "pod-short" => Self::PodShort,
            "pod-name" => Self::PodName,
            "app" => Self::App,
            "identity" => Self::Identity,
            "reserved-identity" => Self::ReservedIdentity,
            "ip" => Self::Ip,
            "dns" => Self::Dns,
            _ => return None,
        })
    }
}

/// Names accepted by [`Context::parse`].
pub const CONTEXT_NAMES: &str = "namespace, workload, workload-name, pod, pod-short, pod-name, app, identity, reserved-identity, ip, dns";

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
        let start = out.len();
        for k in &self.0 {
            one(*k, flow, source, out);
            if out.len() > start {
                return;
            }
        }
    }
}

/// Appends one kind's value (possibly empty) to `out`.
fn one(kind: ContextKind, flow: &Flow, source: bool, out: &mut Vec<u8>) {
    if kind == ContextKind::Ip {
        return out.extend_from_slice(ip(flow, source).as_bytes());
    }
    let ep = if source {
        flow.source.as_ref()
    } else {
        flow.destination.as_ref()
    };
    let Some(ep) = ep else { return };
    let workload = ep.workloads.first().map_or("", |w| w.name.as_str());
    let value: &str = match kind {
        ContextKind::Namespace => &ep.namespace,
        ContextKind::Workload => return qualified(&ep.namespace, workload, out),
        ContextKind::WorkloadName => workload,
        ContextKind::Pod => return in_namespace(&ep.namespace, &ep.pod_name, out),
        ContextKind::PodShort => {
            return in_namespace(&ep.namespace, short_pod_name(&ep.pod_name), out);
        }
        ContextKind::PodName => &ep.pod_name,
        ContextKind::App => app(&ep.labels),
        ContextKind::Identity => return joined(&ep.labels, out),
        ContextKind::ReservedIdentity => reserved_identity(&ep.labels),
        ContextKind::Ip | ContextKind::Dns => "",
    };
    out.extend_from_slice(value.as_bytes());
}

/// The flow's source or destination address.
pub fn ip(flow: &Flow, source: bool) -> &str {
    flow.ip.as_ref().map_or("", |ip| {
        if source {
            ip.source.as_str()
        } else {
            ip.destination.as_str()
        }
    })
}

/// `namespace/name`, `name` without a namespace, nothing without a name.
fn qualified(namespace: &str, name: &str, out: &mut Vec<u8>) {
    if name.is_empty() {
        return;
    }
    in_namespace(namespace, name, out);
}

/// `namespace/name` (`namespace/` without a name), `name` without a
/// namespace: Hubble's `pod` context.
fn in_namespace(namespace: &str, name: &str, out: &mut Vec<u8>) {
    if !namespace.is_empty() {
        out.extend_from_slice(namespace.as_bytes());
        out.push(b'/');
    }
    out.extend_from_slice(name.as_bytes());
}

fn joined(labels: &[String], out: &mut Vec<u8>) {
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(l.as_bytes());
    }
}

/// A pod name without the one or two `-[a-z0-9]+` parts a controller
/// appends (`web-0` → `web`, `api-7d9f8-x2k4q` → `api`); a name with
/// none is itself.
fn short_pod_name(name: &str) -> &str {
    let generated = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let mut keep = name;
    for _ in 0..2 {
        match keep.rsplit_once('-') {
            Some((rest, part)) if !rest.is_empty() && generated(part) => keep = rest,
            _ => break,
        }
    }
    keep
}

/// The value of the first label with one of Kubernetes' app keys.
pub fn app(labels: &[String]) -> &str {
    const KEYS: [&str; 3] = ["k8s:app.kubernetes.io/name=", "k8s:k8s-app=", "k8s:app="];
    labels
        .iter()
        .find_map(|l| {
            KEYS.iter()
                .find_map(|k| l.strip_prefix(k))
                .filter(|v| !v.is_empty())
        })
        .unwrap_or("")
}

fn reserved_identity(labels: &[String]) -> &str {
    const KUBE_APISERVER: &str = "reserved:kube-apiserver";
    if labels.iter().any(|l| l == KUBE_APISERVER) {
        return KUBE_APISERVER;
    }
    labels
        .iter()
        .find(|l| l.starts_with("reserved:"))
        .map_or("", String::as_str)
}
