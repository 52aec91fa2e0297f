//! `observe flows` filter flags → Hubble `FlowFilter`s, with Hubble's semantics:
//! flags of different kinds are ANDed, repeated flags of one kind are ORed, and
//! the direction-neutral flags (`--ip`, `--pod`, `--label`, `--port`,
//! `--namespace`) match either end: the filter becomes a source variant and a
//! destination variant, each with all of them on its side. Namespace flags
//! place the pods of their side in the namespace (`-n other --pod client` is
//! `other/client` at either end); a neutral flag with a directional one for
//! the same field is refused, as Hubble refuses it.

use observer_proto::flow::{
    EventTypeFilter, FlowFilter, IpVersion, TcpFlags, TrafficDirection, Verdict,
};

/// The filter flags as given on the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Source IP or CIDR.
    #[arg(long = "from-ip")]
    pub from_ip: Vec<String>,
    /// Destination IP or CIDR.
    #[arg(long = "to-ip")]
    pub to_ip: Vec<String>,
    /// Source or destination IP or CIDR.
    #[arg(long = "ip")]
    pub ip: Vec<String>,
    /// Source pod, `[namespace/]name-prefix`.
    #[arg(long = "from-pod")]
    pub from_pod: Vec<String>,
    /// Destination pod, `[namespace/]name-prefix`.
    #[arg(long = "to-pod")]
    pub to_pod: Vec<String>,
    /// Source or destination pod.
    #[arg(long = "pod")]
    pub pod: Vec<String>,
    /// Source namespace.
    #[arg(long = "from-namespace")]
    pub from_namespace: Vec<String>,
    /// Destination namespace.
    #[arg(long = "to-namespace")]
    pub to_namespace: Vec<String>,
    /// Source or destination namespace.
    #[arg(long = "namespace", short = 'n')]
    pub namespace: Vec<String>,
    /// Source label selector, e.g. `app=frontend`.
    #[arg(long = "from-label")]
    pub from_label: Vec<String>,
    /// Destination label selector.
    #[arg(long = "to-label")]
    pub to_label: Vec<String>,
    /// Source or destination label selector.
    #[arg(long = "label", short = 'l')]
    pub label: Vec<String>,
    /// Source port.
    #[arg(long = "from-port")]
    pub from_port: Vec<String>,
    /// Destination port.
    #[arg(long = "to-port")]
    pub to_port: Vec<String>,
    /// Source or destination port.
    #[arg(long = "port")]
    pub port: Vec<String>,
    /// L4 protocol: tcp, udp, icmp, icmpv4, icmpv6.
    #[arg(long = "protocol")]
    pub protocol: Vec<String>,
    /// Verdict: FORWARDED, DROPPED, AUDIT, ...
    #[arg(long = "verdict")]
    pub verdict: Vec<String>,
    /// TCP flags that must all be set, comma-separated: `SYN,ACK`.
    #[arg(long = "tcp-flags")]
    pub tcp_flags: Vec<String>,
    /// Event type: trace, drop, policy-verdict, `trace:to-endpoint`, or a number.
    #[arg(long = "type", short = 't')]
    pub event_type: Vec<String>,
    /// Node name or `*` glob.
    #[arg(long = "node-name")]
    pub node_name: Vec<String>,
    /// ingress or egress.
    #[arg(long = "traffic-direction")]
    pub traffic_direction: Vec<String>,
    /// Only IPv4 flows.
    #[arg(long = "ipv4", short = '4')]
    pub ipv4: bool,
    /// Only IPv6 flows.
    #[arg(long = "ipv6", short = '6')]
    pub ipv6: bool,
}

/// A flag value that cannot become a filter.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--{flag} {value:?}: {problem}")]
pub struct FlagError {
    pub flag: &'static str,
    pub value: String,
    pub problem: String,
}

/// IPs and label selectors checked here, with the server's own parser, so
/// that an error names the flag given rather than a `FlowFilter` field.
fn check_ips_and_labels(args: &FilterArgs) -> Result<(), FlagError> {
    use observer_runtime::filter::{FilterError, compile};
    let ip = |v: &str| FlowFilter {
        source_ip: vec![v.to_string()],
        ..Default::default()
    };
    let label = |v: &str| FlowFilter {
        source_label: vec![v.to_string()],
        ..Default::default()
    };
    type OneEntry<'a> = &'a dyn Fn(&str) -> FlowFilter;
    let flags: [(&'static str, &Vec<String>, OneEntry); 6] = [
        ("from-ip", &args.from_ip, &ip),
        ("to-ip", &args.to_ip, &ip),
        ("ip", &args.ip, &ip),
        ("from-label", &args.from_label, &label),
        ("to-label", &args.to_label, &label),
        ("label", &args.label, &label),
    ];
    for (flag, values, filter) in flags {
        for v in values {
            match compile(&[filter(v)], &[]) {
                Err(FilterError::InvalidCidr { .. }) => {
                    return Err(bad(flag, v, "not an IP address or CIDR"));
                }
                Err(FilterError::InvalidLabelSelector { reason, .. }) => {
                    return Err(bad(flag, v, &format!("not a label selector: {reason}")));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn bad(flag: &'static str, value: &str, problem: &str) -> FlagError {
    FlagError {
        flag,
        value: value.to_string(),
        problem: problem.to_string(),
    }
}

fn parse_verdict(v: &str) -> Result<i32, FlagError> {
    Verdict::from_str_name(&v.to_ascii_uppercase())
        .map(|v| v as i32)
        .ok_or_else(|| {
            bad(
                "verdict",
                v,
                "unknown verdict (FORWARDED, DROPPED, AUDIT, ERROR, ...)",
            )
        })
}

fn parse_direction(v: &str) -> Result<i32, FlagError> {
    match v.to_ascii_lowercase().as_str() {
        "ingress" => Ok(TrafficDirection::Ingress as i32),
        "egress" => Ok(TrafficDirection::Egress as i32),
        _ => Err(bad("traffic-direction", v, "expected ingress or egress")),
    }
}

fn parse_tcp_flags(v: &str) -> Result<TcpFlags, FlagError> {
    let mut f = TcpFlags::default();
    for name in v.split(',').map(str::trim) {
        let slot = match name.to_ascii_uppercase().as_str() {
            "SYN" => &mut f.syn,
            "ACK" => &mut f.ack,
            "FIN" => &mut f.fin,
            "RST" => &mut f.rst,
            "PSH" => &mut f.psh,
            "URG" => &mut f.urg,
            "ECE" => &mut f.ece,
            "CWR" => &mut f.cwr,
            "NS" => &mut f.ns,
            _ => return Err(bad("tcp-flags", v, &format!("unknown TCP flag {name:?}"))),
        };
        *slot = true;
    }
    Ok(f)
}

/// Hubble's event type names and their monitor numbers.
fn parse_event_type(v: &str) -> Result<EventTypeFilter, FlagError> {
    let (name, sub) = match v.split_once(':') {
        Some((n, s)) => (n, Some(s)),
        None => (v, None),
    };
    let r#type = match name {
        "drop" => 1,
        "debug" => 2,
        "capture" => 3,
        "trace" => 4,
        "policy-verdict" => 5,
        "trace-sock" | "sock" => 7,
        "l7" => 129,
        "agent" => 130,
        n => n
            .parse()
            .map_err(|_| bad("type", v, "unknown event type"))?,
    };
    let sub_type = match sub {
        None => None,
        Some(s) => Some(match (r#type, s) {
            (4, "to-endpoint") => 0,
            (4, "to-proxy") => 1,
            (4, "to-host") => 2,
            (4, "to-stack") => 3,
            (4, "to-overlay") => 4,
            (4, "from-endpoint") => 5,
            (4, "from-proxy") => 6,
            (4, "from-host") => 7,
            (4, "from-stack") => 8,
            (4, "from-overlay") => 9,
            (4, "from-network") => 10,
            (4, "to-network") => 11,
            (_, n) => n
                .parse()
                .map_err(|_| bad("type", v, "unknown event sub-type"))?,
        }),
    };
    Ok(EventTypeFilter {
        r#type,
        match_sub_type: sub_type.is_some(),
        sub_type: sub_type.unwrap_or(0),
    })
}

/// Which end of a flow a flag names.
#[derive(Clone, Copy)]
enum Side {
    Source,
    Destination,
}

fn pods(f: &mut FlowFilter, side: Side) -> &mut Vec<String> {
    match side {
        Side::Source => &mut f.source_pod,
        Side::Destination => &mut f.destination_pod,
    }
}

/// Puts one side's pods of `f` in the namespaces `ns`, as Hubble does: a
/// pod without a namespace is looked for in each of them, no pod at all
/// means any pod there, and a pod in another namespace is an error (its
/// flag, `ns_flag`, says which).
fn in_namespaces(
    f: &mut FlowFilter,
    side: Side,
    ns: &[String],
    ns_flag: &'static str,
) -> Result<(), FlagError> {
    if ns.is_empty() {
        return Ok(());
    }
    let ns: Vec<&str> = ns.iter().map(|n| n.trim_end_matches('/')).collect();
    let given = std::mem::take(pods(f, side));
    let given = if given.is_empty() {
        vec![String::new()]
    } else {
        given
    };
    let mut out = Vec::new();
    for pod in given {
        match pod.split_once('/') {
            Some((pod_ns, _)) => {
                if let Some(other) = ns.iter().find(|n| **n != pod_ns) {
                    return Err(bad(
                        ns_flag,
                        other,
                        &format!("the namespace does not hold the pod {pod:?}"),
                    ));
                }
                out.push(pod);
            }
            None => out.extend(ns.iter().map(|n| format!("{n}/{pod}"))),
        }
    }
    *pods(f, side) = out;
    Ok(())
}

/// Flags that feed one field from both a direction-neutral and a directional
/// flag (they would OR where flags of different kinds AND), refused as Hubble
/// refuses them.
fn check_combinations(a: &FilterArgs) -> Result<(), FlagError> {
    let pairs: [(&'static str, &[String], &'static str, &[String]); 12] = [
        ("ip", &a.ip, "from-ip", &a.from_ip),
        ("ip", &a.ip, "to-ip", &a.to_ip),
        ("pod", &a.pod, "from-pod", &a.from_pod),
        ("pod", &a.pod, "to-pod", &a.to_pod),
        ("namespace", &a.namespace, "from-pod", &a.from_pod),
        ("namespace", &a.namespace, "to-pod", &a.to_pod),
        (
            "namespace",
            &a.namespace,
            "from-namespace",
            &a.from_namespace,
        ),
        ("namespace", &a.namespace, "to-namespace", &a.to_namespace),
        ("label", &a.label, "from-label", &a.from_label),
        ("label", &a.label, "to-label", &a.to_label),
        ("port", &a.port, "from-port", &a.from_port),
        ("port", &a.port, "to-port", &a.to_port),
    ];
    for (neutral, values, directional, others) in pairs {
        if let (Some(v), false) = (values.first(), others.is_empty()) {
            return Err(bad(
                neutral,
                v,
                &format!(
                    "cannot be combined with --{directional}: --{neutral} names either end \
                     of a flow, --{directional} one; use --from-{neutral} or --to-{neutral}"
                ),
            ));
        }
    }
    Ok(())
}

impl FilterArgs {
    /// The whitelist these flags describe; empty when no flag was given.
    ///
    /// As in Hubble: flags of different kinds AND, values of one flag OR,
    /// and the direction-neutral flags (`--ip`, `--pod`, `--namespace`,
    /// `--label`, `--port`) make two filters, one with all of them on the
    /// source side and one with all of them on the destination side.
    pub fn whitelist(&self) -> Result<Vec<FlowFilter>, FlagError> {
        check_combinations(self)?;
        for (flag, values) in [
            ("from-port", &self.from_port),
            ("to-port", &self.to_port),
            ("port", &self.port),
        ] {
            if let Some(v) = values.iter().find(|v| v.parse::<u16>().is_err()) {
                return Err(bad(flag, v, "not a port number (0 to 65535)"));
            }
        }
        check_ips_and_labels(self)?;
        let mut base = FlowFilter {
            verdict: self
                .verdict
                .iter()
                .map(|v| parse_verdict(v))
                .collect::<Result<_, _>>()?,
            traffic_direction: self
                .traffic_direction
                .iter()
                .map(|v| parse_direction(v))
                .collect::<Result<_, _>>()?,
            tcp_flags: self
                .tcp_flags
                .iter()
                .map(|v| parse_tcp_flags(v))
                .collect::<Result<_, _>>()?,
            event_type: self
                .event_type
                .iter()
                .map(|v| parse_event_type(v))
                .collect::<Result<_, _>>()?,
            protocol: self.protocol.clone(),
            node_name: self.node_name.clone(),
            source_ip: self.from_ip.clone(),
            destination_ip: self.to_ip.clone(),
            source_pod: self.from_pod.clone(),
            destination_pod: self.to_pod.clone(),
            source_label: self.from_label.clone(),
            destination_label: self.to_label.clone(),
            source_port: self.from_port.clone(),
            destination_port: self.to_port.clone(),
            ..Default::default()
        };
        if self.ipv4 {
            base.ip_version.push(IpVersion::IPv4 as i32);
        }
        if self.ipv6 {
            base.ip_version.push(IpVersion::IPv6 as i32);
        }
        let neutral = [
            &self.ip,
            &self.pod,
            &self.namespace,
            &self.label,
            &self.port,
        ];
        let mut variants = if neutral.iter().all(|v| v.is_empty()) {
            vec![base]
        } else {
            let (mut from, mut to) = (base.clone(), base);
            from.source_ip.extend(self.ip.iter().cloned());
            to.destination_ip.extend(self.ip.iter().cloned());
            from.source_pod.extend(self.pod.iter().cloned());
            to.destination_pod.extend(self.pod.iter().cloned());
            from.source_label.extend(self.label.iter().cloned());
            to.destination_label.extend(self.label.iter().cloned());
            from.source_port.extend(self.port.iter().cloned());
            to.destination_port.extend(self.port.iter().cloned());
            in_namespaces(&mut from, Side::Source, &self.namespace, "namespace")?;
            in_namespaces(&mut to, Side::Destination, &self.namespace, "namespace")?;
            vec![from, to]
        };
        // After every pod is in place: they are the pods put in the namespace.
        for f in &mut variants {
            in_namespaces(f, Side::Source, &self.from_namespace, "from-namespace")?;
            in_namespaces(f, Side::Destination, &self.to_namespace, "to-namespace")?;
        }
        if variants == [FlowFilter::default()] {
            return Ok(Vec::new());
        }
        Ok(variants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut FilterArgs)) -> FilterArgs {
        let mut a = FilterArgs::default();
        f(&mut a);
        a
    }

    #[test]
    fn no_flags_no_filter() {
        assert_eq!(
            FilterArgs::default().whitelist().unwrap(),
            Vec::<FlowFilter>::new()
        );
    }

    #[test]
    fn directional_flags_and_together_in_one_filter() {
        let w = args(|a| {
            a.from_pod = vec!["default/frontend".into()];
            a.to_port = vec!["8080".into()];
            a.verdict = vec!["forwarded".into()];
        })
        .whitelist()
        .unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].source_pod, ["default/frontend"]);
        assert_eq!(w[0].destination_port, ["8080"]);
        assert_eq!(w[0].verdict, [Verdict::Forwarded as i32]);
    }

    #[test]
    fn neutral_flags_split_into_source_or_destination() {
        let w = args(|a| {
            a.ip = vec!["198.18.0.2".into()];
            a.protocol = vec!["tcp".into()];
        })
        .whitelist()
        .unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].source_ip.as_slice(), w[0].destination_ip.len()),
            (&["198.18.0.2".to_string()][..], 0)
        );
        assert_eq!(
            (w[1].source_ip.len(), w[1].destination_ip.as_slice()),
            (0, &["198.18.0.2".to_string()][..])
        );
        assert!(w.iter().all(|f| f.protocol == ["tcp"]));
        let ns = args(|a| a.namespace = vec!["other".into()])
            .whitelist()
            .unwrap();
        assert_eq!(ns[0].source_pod, ["other/"]);
        assert_eq!(ns[1].destination_pod, ["other/"]);
    }

    #[test]
    fn flag_values_are_parsed_or_rejected_by_name() {
        let w = args(|a| {
            a.tcp_flags = vec!["syn,ack".into()];
            a.event_type = vec!["trace:to-endpoint".into()];
            a.ipv6 = true;
        })
        .whitelist()
        .unwrap();
        let flags = &w[0].tcp_flags[0];
        assert!(flags.syn && flags.ack && !flags.fin);
        assert_eq!(
            w[0].event_type[0],
            EventTypeFilter {
                r#type: 4,
                match_sub_type: true,
                sub_type: 0
            }
        );
        assert_eq!(w[0].ip_version, [IpVersion::IPv6 as i32]);
        let err = args(|a| a.verdict = vec!["maybe".into()])
            .whitelist()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--verdict \"maybe\": unknown verdict (FORWARDED, DROPPED, AUDIT, ERROR, ...)"
        );
        let err = args(|a| a.tcp_flags = vec!["SYN,BOGUS".into()])
            .whitelist()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--tcp-flags \"SYN,BOGUS\": unknown TCP flag \"BOGUS\""
        );
    }
}
