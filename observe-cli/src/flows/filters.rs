//! `observe flows` filter flags → Hubble `FlowFilter`s, with Hubble's semantics:
//! flags of different kinds are ANDed, repeated flags of one kind are ORed, and a
//! direction-neutral flag (`--ip`, `--pod`, `--label`, `--port`, `--namespace`)
//! matches either side, so it splits the filter into a source variant and a
//! destination variant.

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

/// Appends `value` to one side's field of every filter in `fs`.
fn set_all(
    fs: &mut [FlowFilter],
    values: &[String],
    field: fn(&mut FlowFilter) -> &mut Vec<String>,
) {
    if values.is_empty() {
        return;
    }
    for f in fs {
        field(f).extend(values.iter().cloned());
    }
}

/// Doubles every filter: one copy gets the values on the source side, the other
/// on the destination side.
fn split_either(
    fs: Vec<FlowFilter>,
    values: &[String],
    src: fn(&mut FlowFilter) -> &mut Vec<String>,
    dst: fn(&mut FlowFilter) -> &mut Vec<String>,
) -> Vec<FlowFilter> {
    if values.is_empty() {
        return fs;
    }
    let mut out = Vec::with_capacity(fs.len() * 2);
    for f in fs {
        let mut a = f.clone();
        src(&mut a).extend(values.iter().cloned());
        let mut b = f;
        dst(&mut b).extend(values.iter().cloned());
        out.push(a);
        out.push(b);
    }
    out
}

/// A namespace alone is a pod filter on the `namespace/` prefix, as in Hubble.
fn namespaces_as_pods(ns: &[String]) -> Vec<String> {
    ns.iter()
        .map(|n| format!("{}/", n.trim_end_matches('/')))
        .collect()
}

impl FilterArgs {
    /// The whitelist these flags describe; empty when no flag was given.
    pub fn whitelist(&self) -> Result<Vec<FlowFilter>, FlagError> {
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
            ..Default::default()
        };
        if self.ipv4 {
            base.ip_version.push(IpVersion::IPv4 as i32);
        }
        if self.ipv6 {
            base.ip_version.push(IpVersion::IPv6 as i32);
        }
        let mut fs = vec![base];
        set_all(&mut fs, &self.from_ip, |f| &mut f.source_ip);
        set_all(&mut fs, &self.to_ip, |f| &mut f.destination_ip);
        set_all(&mut fs, &self.from_pod, |f| &mut f.source_pod);
        set_all(&mut fs, &self.to_pod, |f| &mut f.destination_pod);
        set_all(&mut fs, &namespaces_as_pods(&self.from_namespace), |f| {
            &mut f.source_pod
        });
        set_all(&mut fs, &namespaces_as_pods(&self.to_namespace), |f| {
            &mut f.destination_pod
        });
        set_all(&mut fs, &self.from_label, |f| &mut f.source_label);
        set_all(&mut fs, &self.to_label, |f| &mut f.destination_label);
        set_all(&mut fs, &self.from_port, |f| &mut f.source_port);
        set_all(&mut fs, &self.to_port, |f| &mut f.destination_port);
        fs = split_either(
            fs,
            &self.ip,
            |f| &mut f.source_ip,
            |f| &mut f.destination_ip,
        );
        fs = split_either(
            fs,
            &self.pod,
            |f| &mut f.source_pod,
            |f| &mut f.destination_pod,
        );
        fs = split_either(
            fs,
            &namespaces_as_pods(&self.namespace),
            |f| &mut f.source_pod,
            |f| &mut f.destination_pod,
        );
        fs = split_either(
            fs,
            &self.label,
            |f| &mut f.source_label,
            |f| &mut f.destination_label,
        );
        fs = split_either(
            fs,
            &self.port,
            |f| &mut f.source_port,
            |f| &mut f.destination_port,
        );
        if fs.len() == 1 && fs[0] == FlowFilter::default() {
            return Ok(Vec::new());
        }
        Ok(fs)
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
