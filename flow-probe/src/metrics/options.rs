//! Per-metric options of Hubble's flow metrics, in the syntax of Hubble's
//! `--hubble-metrics` entries: `NAME[:KEY=VALUE;KEY=VALUE...]`, e.g.
//! `drop:sourceContext=pod;destinationContext=namespace|ip`.
//!
//! `sourceContext` / `destinationContext` add the label `source` /
//! `destination` to that metric, after its own labels, valued by a
//! [`Context`] chain (the first non-empty value). A metric without options
//! keeps exactly its usual labels.

use super::context::{CONTEXT_NAMES, Context};

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

/// Options accepted after the `:` (case-insensitive, as in Hubble).
pub const OPTION_NAMES: &str = "sourceContext, destinationContext";

/// The context labels of one metric.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextOptions {
    /// Adds the label `source`.
    pub source: Option<Context>,
    /// Adds the label `destination`.
    pub destination: Option<Context>,
}

impl ContextOptions {
    /// The labels these options add, in order.
    pub fn label_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.source.is_some() {
            names.push("source");
        }
        if self.destination.is_some() {
            names.push("destination");
        }
        names
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_none() && self.destination.is_none()
    }
}

/// The options of every flow metric (none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricOptions([ContextOptions; 7]);

impl MetricOptions {
    pub fn get(&self, m: FlowMetric) -> &ContextOptions {
        &self.0[m as usize]
    }

    /// Parses the values of `--metric`: each holds one or more entries
    /// separated by spaces (so a `--hubble-metrics` list can be pasted); an
    /// entry is `NAME` or `NAME:KEY=VALUE;KEY=VALUE`. A metric named twice,
    /// an unknown metric, option or context is an error naming it and the
    /// valid choices.
    pub fn parse<S: AsRef<str>>(flags: &[S]) -> Result<Self, String> {
        let mut opts = MetricOptions::default();
        let mut seen = Vec::new();
        for entry in flags.iter().flat_map(|f| f.as_ref().split_whitespace()) {
            let err = |msg: String| format!("--metric {entry:?}: {msg}");
            let (name, rest) = entry.split_once(':').unwrap_or((entry, ""));
            let metric = FlowMetric::parse(name)
                .ok_or_else(|| err(format!("unknown metric {name:?} (one of: {METRIC_NAMES})")))?;
            if seen.contains(&metric) {
                return Err(err(format!("metric {name:?} given twice")));
            }
            seen.push(metric);
            let o = &mut opts.0[metric as usize];
            for opt in rest.split(';').filter(|o| !o.trim().is_empty()) {
                let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
                let key = key.trim();
                let slot = match key.to_ascii_lowercase().as_str() {
                    "sourcecontext" => &mut o.source,
                    "destinationcontext" => &mut o.destination,
                    _ => {
                        return Err(err(format!(
                            "unknown option {key:?} for metric {name} (one of: {OPTION_NAMES})"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(s: &str) -> Option<Context> {
        Some(Context::parse(s).unwrap())
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
                source: ctx("pod"),
                destination: ctx("namespace|ip"),
            }
        );
        assert_eq!(
            o.get(FlowMetric::Drop).label_names(),
            ["source", "destination"]
        );
        assert_eq!(
            o.get(FlowMetric::PortDistribution),
            &ContextOptions {
                source: None,
                destination: ctx("workload"),
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

    #[test]
    fn errors_name_the_problem_and_the_choices() {
        let e = |s: &str| MetricOptions::parse(&[s]).unwrap_err();
        assert_eq!(
            e("drops:sourceContext=pod"),
            r#"--metric "drops:sourceContext=pod": unknown metric "drops" (one of: flow, drop, tcp, port-distribution, icmp, policy, flows-to-world)"#
        );
        assert_eq!(
            e("drop:labelsContext=source_pod"),
            r#"--metric "drop:labelsContext=source_pod": unknown option "labelsContext" for metric drop (one of: sourceContext, destinationContext)"#
        );
        assert_eq!(
            e("drop:sourceContext=pod|nodename"),
            r#"--metric "drop:sourceContext=pod|nodename": sourceContext: unknown metrics context "nodename" (one of: namespace, workload, workload-name, pod, pod-name, app, identity, reserved-identity, ip)"#
        );
        assert_eq!(
            e("icmp:sourceContext"),
            r#"--metric "icmp:sourceContext": option sourceContext needs a value: one or more of namespace, workload, workload-name, pod, pod-name, app, identity, reserved-identity, ip, separated by |"#
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
