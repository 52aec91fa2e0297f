//! Rows of history back into flows, for the readers of the SQL engine:
//! `GetFlows` with a `since` older than the ring, and the service graph
//! tables. A row holds what [`super::schema`] keeps, so the flow has those
//! fields: time, node, UUID, verdict, drop reasons, event type, addresses,
//! ports, protocol and TCP flags, both endpoints (identity, namespace, pod,
//! first workload, labels), services, direction, observation point, reply,
//! trace reason, ICMP type and code, policies (with the labels and kind
//! flow-probe gives every policy), the policy in force, volume, lifecycle,
//! interface, Ethernet addresses, endpoint clusters, node labels and summary.

use datafusion::arrow::array::{
    Array, BooleanArray, Int32Array, RecordBatch, StringArray, UInt8Array, UInt32Array, UInt64Array,
};
use observer_proto::flow::layer4::Protocol;
use observer_proto::flow::{
    CiliumEventType, DropReason, Endpoint, Ethernet, Flow, FlowType, IcmPv4, IcmPv6, Ip, IpVersion,
    Layer4, NetworkInterface, Policy, Sctp, Service, SocketTranslationPoint, Tcp, TcpFlags,
    TraceObservationPoint, TraceReason, TrafficDirection, Udp, Verdict, Workload,
};
use observer_proto::observe::v1::tcp_lifecycle::Kind;
use observer_proto::observe::v1::{FlowVolume, KernelDrop, PolicyStamp, TcpLifecycle};
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;

use observer_proto::time::timestamp;

struct Row<'a> {
    b: &'a RecordBatch,
    i: usize,
}

impl Row<'_> {
    fn col<T: 'static>(&self, name: &str) -> Option<&T> {
        self.b.column_by_name(name)?.as_any().downcast_ref::<T>()
    }
    fn s(&self, name: &str) -> Option<String> {
        let a = self.col::<StringArray>(name)?;
        a.is_valid(self.i).then(|| a.value(self.i).to_string())
    }
    fn text(&self, name: &str) -> String {
        self.s(name).unwrap_or_default()
    }
    fn u32(&self, name: &str) -> Option<u32> {
        let a = self.col::<UInt32Array>(name)?;
        a.is_valid(self.i).then(|| a.value(self.i))
    }
    fn u64(&self, name: &str) -> Option<u64> {
        let a = self.col::<UInt64Array>(name)?;
        a.is_valid(self.i).then(|| a.value(self.i))
    }
    fn u8(&self, name: &str) -> Option<u8> {
        let a = self.col::<UInt8Array>(name)?;
        a.is_valid(self.i).then(|| a.value(self.i))
    }
    fn i32(&self, name: &str) -> Option<i32> {
        let a = self.col::<Int32Array>(name)?;
        a.is_valid(self.i).then(|| a.value(self.i))
    }
    fn endpoint(&self, side: &str) -> Option<Endpoint> {
        let identity = self.u32(&format!("{side}_identity"))?;
        Some(Endpoint {
            id: self.u32(&format!("{side}_endpoint_id")).unwrap_or(0),
            identity,
            namespace: self.text(&format!("{side}_namespace")),
            pod_name: self.text(&format!("{side}_pod")),
            cluster_name: self.text(&format!("{side}_cluster")),
            labels: split(self.s(&format!("{side}_labels"))),
            workloads: self
                .s(&format!("{side}_workload"))
                .map(|name| Workload {
                    name,
                    kind: self.text(&format!("{side}_workload_kind")),
                })
                .into_iter()
                .collect(),
        })
    }
    fn policies(&self, name: &str) -> Vec<Policy> {
        split(self.s(name))
            .into_iter()
            .map(|p| {
                let (namespace, name) = p.split_once('/').unwrap_or(("", &p));
                // Every policy flow-probe names is a namespaced
                // CiliumNetworkPolicy, its labels made of its name and
                // namespace; one without a namespace is no such policy.
                let bare = Policy {
                    namespace: namespace.into(),
                    name: name.into(),
                    ..Default::default()
                };
                if namespace.is_empty() {
                    return bare;
                }
                Policy {
                    labels: cluster_spec::policy::policy_labels(name, namespace),
                    kind: cluster_spec::policy::KIND.into(),
                    ..bare
                }
            })
            .collect()
    }
    fn service(&self, name: &str) -> Option<Service> {
        let s = self.s(name)?;
        let (namespace, name) = s.split_once('/').unwrap_or(("", &s));
        Some(Service {
            namespace: namespace.into(),
            name: name.into(),
        })
    }
}

fn split(s: Option<String>) -> Vec<String> {
    s.map(|s| s.split(',').map(String::from).collect())
        .unwrap_or_default()
}

fn flags(s: &str) -> TcpFlags {
    let mut f = TcpFlags::default();
    for name in s.split(',') {
        match name {
            "SYN" => f.syn = true,
            "ACK" => f.ack = true,
            "PSH" => f.psh = true,
            "FIN" => f.fin = true,
            "RST" => f.rst = true,
            "URG" => f.urg = true,
            "ECE" => f.ece = true,
            "CWR" => f.cwr = true,
            "NS" => f.ns = true,
            _ => {}
        }
    }
    f
}

fn l4(r: &Row) -> Option<Layer4> {
    let (sp, dp) = (
        r.u32("source_port").unwrap_or(0),
        r.u32("destination_port").unwrap_or(0),
    );
    let icmp = (
        r.u8("icmp_type").map_or(0, u32::from),
        r.u8("icmp_code").map_or(0, u32::from),
    );
    let protocol = match r.s("protocol")?.as_str() {
        "TCP" => Protocol::Tcp(Tcp {
            source_port: sp,
            destination_port: dp,
            flags: r.s("tcp_flags").map(|f| flags(&f)),
        }),
        "UDP" => Protocol::Udp(Udp {
            source_port: sp,
            destination_port: dp,
        }),
        "SCTP" => Protocol::Sctp(Sctp {
            source_port: sp,
            destination_port: dp,
        }),
        "ICMPv4" => Protocol::IcmPv4(IcmPv4 {
            r#type: icmp.0,
            code: icmp.1,
        }),
        "ICMPv6" => Protocol::IcmPv6(IcmPv6 {
            r#type: icmp.0,
            code: icmp.1,
        }),
        _ => return None,
    };
    Some(Layer4 {
        protocol: Some(protocol),
    })
}

fn flow(r: &Row, time: i64) -> Flow {
    let enum_of =
        |name: &str, parse: fn(&str) -> Option<i32>| r.s(name).and_then(|s| parse(&s)).unwrap_or(0);
    let ip_version = r.col::<UInt8Array>("ip_version").and_then(|a| {
        a.is_valid(r.i).then(|| match a.value(r.i) {
            4 => IpVersion::IPv4 as i32,
            6 => IpVersion::IPv6 as i32,
            _ => 0,
        })
    });
    let fwd_bytes = r.u64("fwd_bytes");
    let verdict = enum_of("verdict", |s| Verdict::from_str_name(s).map(|v| v as i32));
    let drop_reason_desc = enum_of("drop_reason", |s| {
        DropReason::from_str_name(s).map(|v| v as i32)
    });
    let is_reply = r
        .col::<BooleanArray>("is_reply")
        .and_then(|a| a.is_valid(r.i).then(|| a.value(r.i)));
    let (source_mac, destination_mac) = (r.s("source_mac"), r.s("destination_mac"));
    Flow {
        time: Some(timestamp(i128::from(time))),
        node_name: r.text("node"),
        node_labels: split(r.s("node_labels")),
        uuid: r.text("uuid"),
        verdict,
        // The deprecated number carries the same value as its description.
        drop_reason: u32::try_from(drop_reason_desc).unwrap_or(0),
        drop_reason_desc,
        kernel_drop: r
            .s("kernel_drop")
            .map(|name| KernelDrop { reason: 0, name }),
        event_type: r.i32("event_type").map(|t| CiliumEventType {
            r#type: t,
            sub_type: r.i32("event_subtype").unwrap_or(0),
        }),
        r#type: enum_of("flow_type", |s| {
            FlowType::from_str_name(s).map(|v| v as i32)
        }),
        ip: ip_version.map(|ip_version| Ip {
            source: r.text("source_ip"),
            destination: r.text("destination_ip"),
            ip_version,
            ..Default::default()
        }),
        l4: l4(r),
        source: r.endpoint("source"),
        destination: r.endpoint("destination"),
        source_service: r.service("source_service"),
        destination_service: r.service("destination_service"),
        traffic_direction: enum_of("traffic_direction", |s| {
            TrafficDirection::from_str_name(s).map(|v| v as i32)
        }),
        trace_observation_point: enum_of("observation_point", |s| {
            TraceObservationPoint::from_str_name(s).map(|v| v as i32)
        }),
        sock_xlate_point: enum_of("sock_xlate_point", |s| {
            SocketTranslationPoint::from_str_name(s).map(|v| v as i32)
        }),
        is_reply,
        // The deprecated flag: a reply that was not dropped, as flow-probe sets it.
        reply: is_reply == Some(true) && verdict != Verdict::Dropped as i32,
        policy_match_type: r.u32("policy_match_type").unwrap_or(0),
        interface: r.u32("interface_index").map(|index| NetworkInterface {
            index,
            name: r.text("interface_name"),
        }),
        ethernet: (source_mac.is_some() || destination_mac.is_some()).then(|| Ethernet {
            source: source_mac.unwrap_or_default(),
            destination: destination_mac.unwrap_or_default(),
        }),
        socket_cookie: r.u64("socket_cookie").unwrap_or(0),
        cgroup_id: r.u64("cgroup_id").unwrap_or(0),
        trace_reason: enum_of("trace_reason", |s| {
            // A report is told by its volume; its reason is Hubble's.
            let s = if s == super::schema::REPORT {
                "ESTABLISHED"
            } else {
                s
            };
            TraceReason::from_str_name(s).map(|v| v as i32)
        }),
        policy_in_force: r.s("policy_version").map(|version| PolicyStamp {
            generation: r.u64("policy_generation").unwrap_or(0),
            version,
        }),
        ingress_allowed_by: r.policies("ingress_allowed_by"),
        ingress_denied_by: r.policies("ingress_denied_by"),
        egress_allowed_by: r.policies("egress_allowed_by"),
        egress_denied_by: r.policies("egress_denied_by"),
        volume: fwd_bytes.map(|fwd_bytes| FlowVolume {
            fwd_bytes,
            fwd_packets: r.u64("fwd_packets").unwrap_or(0),
            rev_bytes: r.u64("rev_bytes").unwrap_or(0),
            rev_packets: r.u64("rev_packets").unwrap_or(0),
            first_packet: false,
            report: r.s("trace_reason").as_deref() == Some(super::schema::REPORT),
            echo_id: 0,
        }),
        tcp_lifecycle: r.s("lifecycle_kind").map(|k| TcpLifecycle {
            kind: Kind::from_str_name(&k).map_or(0, |k| k as i32),
            duration_ns: r.u64("lifecycle_duration_ns").unwrap_or(0),
            retransmits: r.u32("lifecycle_retransmits").unwrap_or(0),
        }),
        summary: r.text("summary"),
        ..Default::default()
    }
}

/// Every row of `batch` (of the history schema, or some of its columns with
/// `time` among them) as a flow; a batch without `time` has none.
pub fn flows(batch: &RecordBatch) -> Vec<Flow> {
    let Some(times) = super::schema::times(batch) else {
        return Vec::new();
    };
    (0..batch.num_rows())
        .map(|i| flow(&Row { b: batch, i }, times.value(i)))
        .collect()
}

/// Every row of `batch` (of the history schema) as a flow response.
pub fn responses(batch: &RecordBatch) -> Vec<GetFlowsResponse> {
    flows(batch)
        .into_iter()
        .map(|f| GetFlowsResponse {
            node_name: f.node_name.clone(),
            time: f.time,
            response_types: Some(ResponseTypes::Flow(f)),
        })
        .collect()
}
