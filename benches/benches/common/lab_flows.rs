//! Lab-like flows for the history benchmarks (relay_ingest, sql_top_talkers):
//! a few hundred endpoints in a handful of namespaces talking to a few dozen
//! services, mostly TCP to well-known ports from ephemeral ports, some DNS over
//! UDP and ICMP, about 3% dropped by policy, random byte counts, and times
//! advancing about 50 µs per flow, as flow-probe fills them in. UUIDs come from
//! flow-probe's own generator ([`FlowIds`]: a random prefix per node's probe
//! run and a counter), one per node, as the relay receives them.

use std::sync::Arc;

use flow_probe::enrich::FlowIds;
use observer_proto::flow::layer4::Protocol;
use observer_proto::flow::{
    CiliumEventType, DropReason, Endpoint, Flow, FlowType, IcmPv4, Ip, IpVersion, Layer4, Policy,
    Tcp, TcpFlags, TraceObservationPoint, TrafficDirection, Udp, Verdict, Workload,
};
use observer_proto::observe::v1::tcp_lifecycle::Kind;
use observer_proto::observe::v1::{FlowVolume, TcpLifecycle};
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;

/// Endpoints (pods) of the lab.
pub const ENDPOINTS: usize = 300;
const APPS: usize = 30;
const NAMESPACES: usize = 6;
const NODES: usize = 3;
/// 2026-11-26T10:00:00Z: every generated time of a run stays in a few hours.
pub const START_NS: i64 = 1_795_687_200_000_000_000;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

struct Pod {
    ip: String,
    endpoint: Endpoint,
    node: usize,
    app: usize,
}

/// Makes flows; deterministic for one seed.
pub struct LabFlows {
    pods: Vec<Pod>,
    nodes: Vec<String>,
    /// Each node's probe's UUIDs.
    ids: Vec<FlowIds>,
    state: u64,
    n: u64,
}

impl LabFlows {
    pub fn new(seed: u64) -> Self {
        let pods = (0..ENDPOINTS)
            .map(|i| {
                let app = i % APPS;
                let ns = app % NAMESPACES;
                let hash = splitmix(i as u64);
                let name = format!("app-{app}");
                Pod {
                    ip: format!("10.0.{}.{}", i / 200, i % 200 + 10),
                    endpoint: Endpoint {
                        id: i as u32 + 100,
                        identity: 10_000 + app as u32,
                        namespace: format!("lab-ns-{ns}"),
                        pod_name: format!(
                            "{name}-{:08x}-{:05x}",
                            hash & 0xffff_ffff,
                            (hash >> 32) & 0xfffff
                        ),
                        labels: vec![
                            format!("k8s:app={name}"),
                            format!("k8s:io.kubernetes.pod.namespace=lab-ns-{ns}"),
                        ],
                        workloads: vec![Workload {
                            name,
                            kind: "Deployment".into(),
                        }],
                        ..Default::default()
                    },
                    node: i % NODES,
                    app,
                }
            })
            .collect();
        LabFlows {
            pods,
            nodes: (0..NODES).map(|i| format!("lab-node-{i}")).collect(),
            ids: (0..NODES as u64)
                .map(|i| FlowIds::with_prefix(splitmix(seed ^ splitmix(i))))
                .collect(),
            state: seed,
            n: 0,
        }
    }

    fn rand(&mut self) -> u64 {
        self.state = splitmix(self.state);
        self.state
    }

    /// The next flow, as the relay receives it.
    pub fn next_response(&mut self) -> Arc<GetFlowsResponse> {
        let (node, flow) = self.next_flow();
        Arc::new(GetFlowsResponse {
            node_name: node,
            time: flow.time,
            response_types: Some(ResponseTypes::Flow(flow)),
        })
    }

    /// The next flow and its node.
    pub fn next_flow(&mut self) -> (String, Flow) {
        self.n += 1;
        let r = self.rand();
        let r2 = self.rand();
        let src_i = (r % ENDPOINTS as u64) as usize;
        // Servers: a skewed choice among the apps, then one of its pods.
        let app = ((r >> 16) % APPS as u64 * ((r >> 24) % APPS as u64) / APPS as u64) as usize;
        let dst_i = app + APPS * ((r >> 32) as usize % (ENDPOINTS / APPS));
        let kind = (r >> 40) % 100;
        let dropped = (r >> 48) % 100 < 3;
        let is_reply = !dropped && (r >> 56) % 2 == 1;
        let sport = 32_768 + (r2 % 28_232) as u32;
        let (l4, summary, dport) = if kind < 85 {
            let dport = [80, 443, 8080, 5432, 6379, 9090][(r2 >> 20) as usize % 6];
            let flags = match (r2 >> 24) % 5 {
                0 => TcpFlags {
                    syn: true,
                    ..Default::default()
                },
                1 => TcpFlags {
                    syn: true,
                    ack: true,
                    ..Default::default()
                },
                2 | 3 => TcpFlags {
                    ack: true,
                    psh: true,
                    ..Default::default()
                },
                _ => TcpFlags {
                    fin: true,
                    ack: true,
                    ..Default::default()
                },
            };
            let summary = format!(
                "TCP Flags: {}",
                relay::history::schema::flags_string(&flags)
            );
            let p = Protocol::Tcp(Tcp {
                source_port: sport,
                destination_port: dport,
                flags: Some(flags),
            });
            (p, summary, dport)
        } else if kind < 98 {
            let p = Protocol::Udp(Udp {
                source_port: sport,
                destination_port: 53,
            });
            (p, "UDP".to_string(), 53)
        } else {
            (
                Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 }),
                "ICMPv4 EchoRequest".to_string(),
                0,
            )
        };
        let (a, b) = (&self.pods[src_i], &self.pods[dst_i]);
        let (src, dst) = if is_reply { (b, a) } else { (a, b) };
        let egress = (r2 >> 40).is_multiple_of(2);
        let node = if egress { src.node } else { dst.node };
        let t = START_NS + self.n as i64 * 50_000 + (r2 >> 44) as i64 % 40_000;
        let bytes = 60 + (r2 >> 8) % 20_000;
        let packets = 1 + bytes / 1_200;
        let mut flow = Flow {
            time: Some(prost_types::Timestamp {
                seconds: t.div_euclid(1_000_000_000),
                nanos: t.rem_euclid(1_000_000_000) as i32,
            }),
            uuid: self.ids[node].next_uuid(),
            verdict: if dropped {
                Verdict::Dropped
            } else {
                Verdict::Forwarded
            } as i32,
            ip: Some(Ip {
                source: src.ip.clone(),
                destination: dst.ip.clone(),
                ip_version: IpVersion::IPv4 as i32,
                ..Default::default()
            }),
            l4: Some(Layer4 { protocol: Some(l4) }),
            source: Some(src.endpoint.clone()),
            destination: Some(dst.endpoint.clone()),
            r#type: FlowType::L3L4 as i32,
            node_name: self.nodes[node].clone(),
            event_type: Some(CiliumEventType {
                r#type: if dropped { 1 } else { 4 },
                sub_type: if dropped {
                    DropReason::PolicyDenied as i32
                } else if egress {
                    3
                } else {
                    0
                },
            }),
            traffic_direction: if egress != is_reply {
                TrafficDirection::Egress
            } else {
                TrafficDirection::Ingress
            } as i32,
            trace_observation_point: if egress {
                TraceObservationPoint::FromEndpoint
            } else {
                TraceObservationPoint::ToEndpoint
            } as i32,
            is_reply: Some(is_reply),
            summary,
            volume: Some(FlowVolume {
                fwd_bytes: bytes,
                fwd_packets: packets,
                rev_bytes: if is_reply { 0 } else { bytes / 3 },
                rev_packets: if is_reply { 0 } else { 1 + packets / 2 },
                first_packet: false,
                report: false,
                echo_id: 0,
            }),
            ..Default::default()
        };
        if dropped {
            flow.drop_reason = DropReason::PolicyDenied as u32;
            flow.drop_reason_desc = DropReason::PolicyDenied as i32;
            flow.summary.push_str(" (POLICY_DENIED)");
            flow.ingress_denied_by = vec![policy(dst.app)];
        } else if !egress && dport != 0 {
            flow.ingress_allowed_by = vec![policy(dst.app)];
        }
        if kind < 85 && (r2 >> 50).is_multiple_of(10) {
            flow.tcp_lifecycle = Some(TcpLifecycle {
                kind: Kind::Closed as i32,
                duration_ns: (r2 >> 20) % 5_000_000_000,
                retransmits: ((r2 >> 60) % 3) as u32,
            });
        }
        (self.nodes[node].clone(), flow)
    }
}

fn policy(app: usize) -> Policy {
    Policy {
        name: format!("allow-app-{app}"),
        namespace: format!("lab-ns-{}", app % NAMESPACES),
        ..Default::default()
    }
}
