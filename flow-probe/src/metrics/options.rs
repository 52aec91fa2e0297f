//! Per-metric options of Hubble's flow metrics, in the syntax of Hubble's
//! `--hubble-metrics` entries: `NAME[:KEY=VALUE;KEY...]`, e.g.
//! `drop:sourceContext=pod;destinationContext=namespace|ip`.
//!
//! `sourceContext` / `destinationContext` (or their `…EgressContext` /
//! `…IngressContext` forms, which take precedence for flows of that traffic
//! direction) add the label `source` / `destination` to that metric, after
//! its own labels, valued by a [`Context`] chain (the first non-empty
//! value). `labelsContext` adds the labels it names before those. A metric
//! without options keeps exactly its usual labels.

use observer_proto::flow::{Flow, TrafficDirection};

use super::context::{self, CONTEXT_NAMES, Context};

/// Hubble's flow metrics, by the names `--hubble-metrics` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowMetric {
    /// `hubble_flows_processed_total`.
    Flow,
    /// `hubble_drop_total`.
    Drop,
    /// `hubble_tcp_flags_total`.
    Tcp,
    /// `hubble_port_distribution_total`.
    PortDistribution,
    /// `hubble_icmp_total`.
    Icmp,
    /// `hubble_policy_verdicts_total`.
    Policy,
    /// `hubble_flows_to_world_total`.
    FlowsToWorld,
}

impl FlowMetric {
    pub const ALL: [FlowMetric; 7] = [
        Self::Flow,
        Self::Drop,
        Self::Tcp,
        Self::PortDistribution,
        Self::Icmp,
        Self::Policy,
        Self::FlowsToWorld,
    ];

    /// The name in `--metric` (Hubble's).
    pub fn name(self) -> &'static str {
        match self {
            Self::Flow => "flow",
            Self::Drop => "drop",
            Self::Tcp => "tcp",
            Self::PortDistribution => "port-distribution",
            Self::Icmp => "icmp",
            Self::Policy => "policy",
            Self::FlowsToWorld => "flows-to-world",
        }
    }

    /// The Prometheus metric it configures.
    pub fn family(self) -> &'static str {
        match self {
            Self::Flow => "hubble_flows_processed_total",
            Self::Drop => "hubble_drop_total",
            Self::Tcp => "hubble_tcp_flags_total",
            Self::PortDistribution => "hubble_port_distribution_total",
            Self::Icmp => "hubble_icmp_total",
            Self::Policy => "hubble_policy_verdicts_total",
            Self::FlowsToWorld => "hubble_flows_to_world_total",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// Names accepted by [`MetricOptions::parse`] before the `:`.
pub const METRIC_NAMES: &str = "flow, drop, tcp, port-distribution, icmp, policy, flows-to-world";

/// Hubble's metrics of what no probe here captures (DNS and L7 records,
/// SCTP chunks): accepted (so a `--hubble-metrics` list can be pasted
/// whole) with a warning, and never exported.
pub const NOT_CAPTURED_METRICS: [&str; 5] = ["dns", "http", "httpV2", "kafka", "sctp"];

/// Options accepted after the `:` (case-insensitive, as in Hubble).
pub const OPTION_NAMES: &str = "sourceContext, destinationContext, sourceEgressContext, \
     sourceIngressContext, destinationEgressContext, destinationIngressContext, labelsContext";

/// A label `labelsContext` may add, in the order they are added (Hubble's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContextLabel {
    SourceIp,
    SourcePod,
    SourceNamespace,
    SourceWorkload,
    SourceApp,
    DestinationIp,
    DestinationPod,
    DestinationNamespace,
    DestinationWorkload,
    DestinationApp,
    TrafficDirection,
}

impl ContextLabel {
    const ALL: [ContextLabel; 11] = [
        Self::SourceIp,
        Self::SourcePod,
        Self::SourceNamespace,
        Self::SourceWorkload,
        Self::SourceApp,
        Self::DestinationIp,
        Self::DestinationPod,
        Self::DestinationNamespace,
        Self::DestinationWorkload,
        Self::DestinationApp,
        Self::TrafficDirection,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::SourceIp => "source_ip",
            Self::SourcePod => "source_pod",
            Self::SourceNamespace => "source_namespace",
            Self::SourceWorkload => "source_workload",
            Self::SourceApp => "source_app",
            Self::DestinationIp => "destination_ip",
            Self::DestinationPod => "destination_pod",
            Self::DestinationNamespace => "destination_namespace",
            Self::DestinationWorkload => "destination_workload",
            Self::DestinationApp => "destination_app",
            Self::TrafficDirection => "traffic_direction",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == s)
    }

    /// Appends the label's value for `flow` to `out`.
    pub fn write(self, flow: &Flow, out: &mut Vec<u8>) {
        let source = matches!(
            self,
            Self::SourceIp
                | Self::SourcePod
                | Self::SourceNamespace
                | Self::SourceWorkload
                | Self::SourceApp
        );
        let ep = if source {
            flow.source.as_ref()
        } else {
            flow.destination.as_ref()
        };
        let value = match self {
            Self::SourceIp | Self::DestinationIp => context::ip(flow, source),
            Self::TrafficDirection => match flow.traffic_direction() {
                TrafficDirection::Ingress => "ingress",
                TrafficDirection::Egress => "egress",
                TrafficDirection::Unknown => "unknown",
            },
            _ => {
                let Some(ep) = ep else { return };
                match self {
                    Self::SourcePod | Self::DestinationPod => &ep.pod_name,
                    Self::SourceNamespace | Self::DestinationNamespace => &ep.namespace,
                    Self::SourceWorkload | Self::DestinationWorkload => {
                        ep.workloads.first().map_or("", |w| w.name.as_str())
                    }
                    _ => context::app(&ep.labels),
                }
            }
        };
        out.extend_from_slice(value.as_bytes());
    }
}

fn label_names() -> String {
    ContextLabel::ALL.map(ContextLabel::name).join(", ")
}

/// The `source` or `destination` label of one metric: its chain for any
/// flow, and the chains that take precedence for one traffic direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndContext {
    pub any: Option<Context>,
    pub egress: Option<Context>,
    pub ingress: Option<Context>,
}

impl EndContext {
    /// Whether the metric has this label.
    pub fn is_set(&self) -> bool {
        self.any.is_some() || self.egress.is_some() || self.ingress.is_some()
    }

    /// The chain that values `flow`'s label (none: the label is empty).
    pub fn for_flow(&self, flow: &Flow) -> Option<&Context> {
        match flow.traffic_direction() {
            TrafficDirection::Ingress if self.ingress.is_some() => self.ingress.as_ref(),
            TrafficDirection::Egress if self.egress.is_some() => self.egress.as_ref(),
            _ => self.any.as_ref(),
        }
    }
}

/// Options of `flows-to-world` alone (Hubble's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToWorldOptions {
    /// `any-drop`: count drops of every reason, not only POLICY_DENIED.
    pub any_drop: bool,
    /// `port`: a `port` label, the destination port (empty for ICMP).
    pub port: bool,
    /// `syn-only`: only TCP SYNs that are no reply.
    pub syn_only: bool,
}

/// The context labels of one metric.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextOptions {
    /// Adds the label `source`.
    pub source: EndContext,
    /// Adds the label `destination`.
    pub destination: EndContext,
    /// Labels of `labelsContext`, in Hubble's order, each once.
    pub labels: Vec<ContextLabel>,
}

impl ContextOptions {
    /// The labels these options add, in order.
    pub fn label_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.labels.iter().map(|l| l.name()).collect();
        if self.source.is_set() {
            names.push("source");
        }
        if self.destination.is_set() {
            names.push("destination");
        }
        names
    }

    pub fn is_empty(&self) -> bool {
        !self.source.is_set() && !self.destination.is_set() && self.labels.is_empty()
    }
}

/// The options of every flow metric (none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricOptions {
    contexts: [ContextOptions; 7],
    /// `flows-to-world`'s own options.
    pub to_world: ToWorldOptions,
    /// Metrics named of what is not captured, which nothing exports
    /// ([`NOT_CAPTURED_METRICS`]).
    pub not_captured: Vec<String>,
}

impl MetricOptions {
    pub fn get(&self, m: FlowMetric) -> &ContextOptions {
        &self.contexts[m as usize]
    }

    /// Parses the values of `--metric`: each holds one or more entries
    /// separated by spaces (so a `--hubble-metrics` list can be pasted); an
    /// entry is `NAME` or `NAME:KEY=VALUE;KEY=VALUE`. A metric named twice,
    /// an unknown metric, option, context or label is an error naming it and
    /// the valid choices.
    pub fn parse<S: AsRef<str>>(flags: &[S]) -> Result<Self, String> {
        let mut opts = MetricOptions::default();
        let mut seen = Vec::new();
        for entry in flags.iter().flat_map(|f| f.as_ref().split_whitespace()) {
            let err = |msg: String| format!("--metric {entry:?}: {msg}");
            let (name, rest) = entry.split_once(':').unwrap_or((entry, ""));
            if NOT_CAPTURED_METRICS.contains(&name) {
                opts.not_captured.push(name.to_string());
                continue;
            }
            let metric = FlowMetric::parse(name)
                .ok_or_else(|| err(format!("unknown metric {name:?} (one of: {METRIC_NAMES})")))?;
            if seen.contains(&metric) {
                return Err(err(format!("metric {name:?} given twice")));
            }
            seen.push(metric);
            let o = &mut opts.contexts[metric as usize];
            for opt in rest.split(';').filter(|o| !o.trim().is_empty()) {
                let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
                let key = key.trim();
                let lower = key.to_ascii_lowercase();
                if metric == FlowMetric::FlowsToWorld {
                    let flag = match lower.as_str() {
                        "any-drop" => Some(&mut opts.to_world.any_drop),
                        "port" => Some(&mut opts.to_world.port),
                        "syn-only" => Some(&mut opts.to_world.syn_only),
                        _ => None,
                    };
                    if let Some(flag) = flag {
                        *flag = true;
                        continue;
                    }
                }
                if lower == "labelscontext" {
                    if !o.labels.is_empty() {
                        return Err(err(format!("option {key} given twice")));
                    }
                    o.labels = parse_labels(value).map_err(|e| err(format!("{key}: {e}")))?;
                    continue;
                }
                let slot = match lower.as_str() {
                    "sourcecontext" => &mut o.source.any,
                    "sourceegresscontext" => &mut o.source.egress,
                    "sourceingresscontext" => &mut o.source.ingress,
                    "destinationcontext" => &mut o.destination.any,
                    "destinationegresscontext" => &mut o.destination.egress,
                    "destinationingresscontext" => &mut o.destination.ingress,
                    _ => {
                        let own = if metric == FlowMetric::FlowsToWorld {
                            ", any-drop, port, syn-only"
                        } else {
                            ""
                        };
                        return Err(err(format!(
                            "unknown option {key:?} for metric {name} (one of: {OPTION_NAMES}{own})"
                        )));
                    }
                };
                if value.trim().is_empty() {
                    return Err(err(format!(
                        "option {key} needs a value: one or more of {CONTEXT_NAMES}, separated by |"
                    )));
                }
                if slot.is_some() {
                    return Err(err(format!("option {key} given twice")));
                }
                *slot = Some(Context::parse(value).map_err(|e| err(format!("{key}: {e}")))?);
            }
        }
        Ok(opts)
    }
}

/// `source_pod,destination_pod`: each name known, in Hubble's order.
fn parse_labels(value: &str) -> Result<Vec<ContextLabel>, String> {
    let mut labels = value
        .split(',')
        .map(|l| {
            ContextLabel::parse(l.trim()).ok_or_else(|| {
                format!(
                    "unknown label {:?} (one or more of: {})",
                    l.trim(),
                    label_names()
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    labels.sort();
    labels.dedup();
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(s: &str) -> Option<Context> {
        Some(Context::parse(s).unwrap())
    }

    fn any(s: &str) -> EndContext {
        EndContext {
            any: ctx(s),
            ..Default::default()
        }
    }

    #[test]
    fn parses_hubble_entries() {
        let o = MetricOptions::parse(&[
            "drop:sourceContext=pod;destinationContext=namespace|ip",
            "flow port-distribution:destinationcontext=workload; tcp",
        ])
        .unwrap();
        assert_eq!(
            o.get(FlowMetric::Drop),
            &ContextOptions {
                source: any("pod"),
                destination: any("namespace|ip"),
                labels: vec![],
            }
        );
        assert_eq!(
            o.get(FlowMetric::Drop).label_names(),
            ["source", "destination"]
        );
        assert_eq!(
            o.get(FlowMetric::PortDistribution),
            &ContextOptions {
                source: EndContext::default(),
                destination: any("workload"),
                labels: vec![],
            }
        );
        assert_eq!(
            o.get(FlowMetric::PortDistribution).label_names(),
            ["destination"]
        );
        for m in [
            FlowMetric::Flow,
            FlowMetric::Tcp,
            FlowMetric::Icmp,
            FlowMetric::Policy,
        ] {
            assert!(o.get(m).is_empty(), "{m:?}");
        }
        assert_eq!(
            MetricOptions::parse::<&str>(&[]),
            Ok(MetricOptions::default())
        );
    }

    /// What Cilium's policy verdicts dashboard asks of Hubble, and the
    /// direction-specific contexts: taken as Hubble takes them.
    #[test]
    fn parses_labels_direction_contexts_and_flows_to_world_options() {
        let o = MetricOptions::parse(&[
            "policy:sourceContext=app|workload-name|pod|reserved-identity;destinationContext=app|workload-name|pod|dns|reserved-identity;labelsContext=source_namespace,destination_namespace",
            "flow:sourceEgressContext=pod;destinationIngressContext=Pod;labelsContext=traffic_direction,source_ip,source_ip",
            "flows-to-world:any-drop;port;syn-only;destinationContext=ip dns:query;ignoreAAAA httpV2:exemplars=true sctp",
        ])
        .unwrap();
        let policy = o.get(FlowMetric::Policy);
        assert_eq!(
            policy.label_names(),
            [
                "source_namespace",
                "destination_namespace",
                "source",
                "destination"
            ]
        );
        let flow = o.get(FlowMetric::Flow);
        assert_eq!(
            flow,
            &ContextOptions {
                source: EndContext {
                    egress: ctx("pod"),
                    ..Default::default()
                },
                destination: EndContext {
                    ingress: ctx("pod"),
                    ..Default::default()
                },
                labels: vec![ContextLabel::SourceIp, ContextLabel::TrafficDirection],
            }
        );
        assert_eq!(
            flow.label_names(),
            ["source_ip", "traffic_direction", "source", "destination"]
        );
        assert_eq!(
            o.to_world,
            ToWorldOptions {
                any_drop: true,
                port: true,
                syn_only: true
            }
        );
        assert_eq!(o.not_captured, ["dns", "httpV2", "sctp"]);
    }

    #[test]
    fn errors_name_the_problem_and_the_choices() {
        let e = |s: &str| MetricOptions::parse(&[s]).unwrap_err();
        assert_eq!(
            e("drops:sourceContext=pod"),
            r#"--metric "drops:sourceContext=pod": unknown metric "drops" (one of: flow, drop, tcp, port-distribution, icmp, policy, flows-to-world)"#
        );
        assert_eq!(
            e("drop:labelsContext=source_pod,node"),
            r#"--metric "drop:labelsContext=source_pod,node": labelsContext: unknown label "node" (one or more of: source_ip, source_pod, source_namespace, source_workload, source_app, destination_ip, destination_pod, destination_namespace, destination_workload, destination_app, traffic_direction)"#
        );
        assert_eq!(
            e("drop:any-drop"),
            r#"--metric "drop:any-drop": unknown option "any-drop" for metric drop (one of: sourceContext, destinationContext, sourceEgressContext, sourceIngressContext, destinationEgressContext, destinationIngressContext, labelsContext)"#
        );
        assert_eq!(
            e("flows-to-world:tcp-only"),
            r#"--metric "flows-to-world:tcp-only": unknown option "tcp-only" for metric flows-to-world (one of: sourceContext, destinationContext, sourceEgressContext, sourceIngressContext, destinationEgressContext, destinationIngressContext, labelsContext, any-drop, port, syn-only)"#
        );
        assert_eq!(
            e("drop:sourceContext=pod|nodename"),
            r#"--metric "drop:sourceContext=pod|nodename": sourceContext: unknown metrics context "nodename" (one of: namespace, workload, workload-name, pod, pod-short, pod-name, app, identity, reserved-identity, ip, dns)"#
        );
        assert_eq!(
            e("icmp:sourceContext"),
            r#"--metric "icmp:sourceContext": option sourceContext needs a value: one or more of namespace, workload, workload-name, pod, pod-short, pod-name, app, identity, reserved-identity, ip, dns, separated by |"#
        );
        assert_eq!(
            e("tcp:sourceContext=pod;sourceContext=ip"),
            r#"--metric "tcp:sourceContext=pod;sourceContext=ip": option sourceContext given twice"#
        );
        assert_eq!(
            MetricOptions::parse(&["drop", "drop:sourceContext=pod"]).unwrap_err(),
            r#"--metric "drop:sourceContext=pod": metric "drop" given twice"#
        );
    }
}
