//! What a stock Hubble client reads: the probe's GetFlows answers over the
//! real lab, decoded with Cilium's own .proto files (`tests/data/cilium-api`,
//! compiled by `build.rs`) as `DynamicMessage`s, never with our generated
//! types, and the Hubble fields checked for every kind of event the lab
//! makes: traces, allowed, audited and denied policy verdicts, policy and
//! kernel drops, socket translations and TCP lifecycle reports. Requests are
//! Cilium's messages too: a field mask, a bad mask path and L7 filters.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use e2e::{ips, ports};
use flow_probe::enrich::kernel_reasons;
use flow_probe::kernel::sysfs;
use observe_lab::{Scenario, run_traffic_once};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, Value};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

const CLUSTER: &str = "lab-cluster";
const NODE_LABEL: &str = "topology.kubernetes.io/zone=z1";

fn pool() -> DescriptorPool {
    let bytes = include_bytes!(concat!(env!("OUT_DIR"), "/cilium_api.bin"));
    DescriptorPool::decode(bytes.as_ref()).expect("Cilium's descriptor set")
}

/// Bytes in, bytes out: the gRPC payloads as they are on the wire.
#[derive(Debug, Clone, Copy)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// A client speaking Cilium's `observer.Observer` by its descriptors.
struct HubbleClient {
    pool: DescriptorPool,
    channel: Channel,
}

impl HubbleClient {
    /// Cilium's `GetFlowsRequest`, filled from protojson-like `set` calls.
    fn request(&self) -> DynamicMessage {
        DynamicMessage::new(self.message("observer.GetFlowsRequest"))
    }

    fn message(&self, name: &str) -> prost_reflect::MessageDescriptor {
        self.pool
            .get_message_by_name(name)
            .unwrap_or_else(|| panic!("Cilium's API has {name}"))
    }

    /// The flows of a GetFlows answer, as Cilium's `flow.Flow`s.
    async fn get_flows(&self, req: &DynamicMessage) -> Result<Vec<DynamicMessage>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/observer.Observer/GetFlows");
        let mut stream = grpc
            .server_streaming(tonic::Request::new(req.encode_to_vec()), path, Raw)
            .await?
            .into_inner();
        let resp = self.message("observer.GetFlowsResponse");
        let mut flows = Vec::new();
        while let Some(bytes) = stream.message().await? {
            let r = DynamicMessage::decode(resp.clone(), bytes.as_slice())
                .expect("a GetFlowsResponse by Cilium's descriptor");
            if let Some(f) = msg(&r, "flow") {
                flows.push(f);
            }
        }
        Ok(flows)
    }
}

/// Field `name` of `m` when set (Cilium's descriptor must have it).
fn field(m: &DynamicMessage, name: &str) -> Option<Value> {
    let f = m
        .descriptor()
        .get_field_by_name(name)
        .unwrap_or_else(|| panic!("Cilium's {} has no {name}", m.descriptor().full_name()));
    m.has_field(&f).then(|| m.get_field(&f).into_owned())
}

fn msg(m: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    field(m, name).and_then(|v| v.as_message().cloned())
}

fn text(m: &DynamicMessage, name: &str) -> String {
    field(m, name)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn number(m: &DynamicMessage, name: &str) -> u64 {
    match field(m, name) {
        Some(Value::U32(n)) => n.into(),
        Some(Value::U64(n)) => n,
        Some(Value::I32(n)) => n as u64,
        Some(other) => panic!("{name} is no number: {other:?}"),
        None => 0,
    }
}

/// The name of enum field `name` (its zero value when unset).
fn enum_name(m: &DynamicMessage, name: &str) -> String {
    let f = m.descriptor().get_field_by_name(name).unwrap();
    let n = m.get_field(&f).as_enum_number().expect("an enum field");
    f.kind()
        .as_enum()
        .and_then(|e| e.get_value(n))
        .map(|v| v.name().to_string())
        .unwrap_or_else(|| format!("{name} {n} not in Cilium's enum"))
}

/// (type, sub_type) of the Cilium event type, if any.
fn event_type(f: &DynamicMessage) -> Option<(u64, u64)> {
    msg(f, "event_type").map(|e| (number(&e, "type"), number(&e, "sub_type")))
}

/// `is_reply`'s value; `None` when absent (unknown).
fn is_reply(f: &DynamicMessage) -> Option<bool> {
    msg(f, "is_reply").map(|b| field(&b, "value").and_then(|v| v.as_bool()) == Some(true))
}

fn ip(f: &DynamicMessage, side: &str) -> String {
    msg(f, "IP").map(|i| text(&i, side)).unwrap_or_default()
}

fn pod(f: &DynamicMessage, side: &str) -> String {
    msg(f, side)
        .map(|e| text(&e, "pod_name"))
        .unwrap_or_default()
}

fn describe(f: &DynamicMessage) -> String {
    format!(
        "{} {} -> {} {:?} {} ({})",
        enum_name(f, "Type"),
        ip(f, "source"),
        ip(f, "destination"),
        event_type(f),
        enum_name(f, "verdict"),
        text(f, "Summary")
    )
}

/// The flow's Ethernet addresses, as Cilium fills them on L2 devices: two
/// MACs written `aa:bb:cc:dd:ee:ff`, the source a unicast one.
fn assert_ethernet(f: &DynamicMessage) {
    let d = describe(f);
    let eth = msg(f, "ethernet").unwrap_or_else(|| panic!("no ethernet: {d}"));
    let (src, dst) = (text(&eth, "source"), text(&eth, "destination"));
    for mac in [&src, &dst] {
        let bytes: Vec<&str> = mac.split(':').collect();
        assert!(
            bytes.len() == 6
                && bytes.iter().all(|b| b.len() == 2
                    && b.chars()
                        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())),
            "{mac}: {d}"
        );
    }
    let first = u8::from_str_radix(&src[..2], 16).unwrap();
    assert_eq!(first & 1, 0, "a unicast source MAC: {src}: {d}");
    assert_ne!(src, "00:00:00:00:00:00", "{d}");
}

/// Connects from `from`'s namespace to `to` with a SYN that a netfilter rule
/// in the server drops: two SYNs, then the connect times out.
fn connect_into_netfilter_drop(from_netns: String, to: SocketAddr) {
    sysfs::enter_netns(&from_netns).unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_tcp_user_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let err = sock
        .connect_timeout(&to.into(), Duration::from_secs(10))
        .unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::TimedOut,
        "dropped, not refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubble_client_reads_every_kind_of_event_with_hubbles_semantics() {
    let scenario = Scenario::builtin_default();
    let env = e2e::start(
        &scenario,
        &["--cluster-name", CLUSTER, "--node-label", NODE_LABEL],
    );
    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    // A kernel drop: frontend's own firewall drops what comes to port 9000
    // (frontend's policy lets api in, so the SYN reaches the netfilter rule).
    let frontend = env.lab.endpoint("frontend").unwrap().clone();
    let api = env.lab.endpoint("api").unwrap().clone();
    let api2 = env.lab.endpoint("api-2").unwrap().clone();
    e2e::firewall_drop_tcp_port(&frontend.netns, 9000);
    let to = SocketAddr::from((frontend.ipv4, 9000));
    let api_ns = api.netns.clone();
    tokio::task::spawn_blocking(move || connect_into_netfilter_drop(api_ns, to))
        .await
        .unwrap();

    // Every kind is in the ring before the Hubble client looks.
    let kernel_drop = |f: &observer_proto::flow::Flow| f.kernel_drop.is_some();
    env.wait_for("every kind of event", |flows| {
        let kind = |t: i32| {
            flows
                .iter()
                .filter(move |f| f.event_type.as_ref().is_some_and(|e| e.r#type == t))
        };
        kind(7).count() >= 4
            && kind(5).filter(|f| f.verdict == 2).count() >= 2
            && kind(5).any(|f| f.verdict == 4)
            && flows.iter().any(kernel_drop)
            && flows.iter().any(|f| f.tcp_lifecycle.is_some())
    })
    .await;

    let target = env.connect_args(env.probe.addr).target(&[]).unwrap();
    let (channel, _) = target.channel().await.expect("connect");
    let client = HubbleClient {
        pool: pool(),
        channel,
    };
    let flows = client.get_flows(&client.request()).await.expect("GetFlows");
    let all = || flows.iter().map(describe).collect::<Vec<_>>().join("\n");

    // Every flow: the node's name in its cluster, as Cilium writes it, and
    // its labels; known endpoints in the cluster.
    for f in &flows {
        assert_eq!(text(f, "node_name"), format!("{CLUSTER}/node1"));
        let labels: Vec<String> = field(f, "node_labels")
            .and_then(|v| {
                v.as_list().map(|l| {
                    l.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default();
        assert_eq!(labels, [NODE_LABEL], "{}", describe(f));
        for side in ["source", "destination"] {
            if let Some(ep) = msg(f, side).filter(|e| !text(e, "pod_name").is_empty()) {
                assert_eq!(text(&ep, "cluster_name"), CLUSTER, "{}", describe(f));
            }
        }
    }

    let of_type = |t: u64| -> Vec<&DynamicMessage> {
        flows
            .iter()
            .filter(|f| event_type(f).is_some_and(|(ty, _)| ty == t))
            .collect()
    };

    // Traces of packets: a trace point, the reply bit twice (is_reply and
    // reply), and the connection state as trace_reason. (A periodic report,
    // which a connection left open may get if the run takes 10 s, is no
    // packet: it has no Ethernet header.)
    let traces: Vec<_> = of_type(4)
        .into_iter()
        .filter(|f| !text(f, "Summary").contains("; report of the connection so far"))
        .collect();
    assert!(!traces.is_empty(), "{}", all());
    for f in &traces {
        let d = describe(f);
        assert_eq!(enum_name(f, "Type"), "L3_L4", "{d}");
        assert_eq!(enum_name(f, "verdict"), "FORWARDED", "{d}");
        assert_ne!(
            enum_name(f, "trace_observation_point"),
            "UNKNOWN_POINT",
            "{d}"
        );
        assert_ne!(
            enum_name(f, "traffic_direction"),
            "TRAFFIC_DIRECTION_UNKNOWN",
            "{d}"
        );
        let reply = is_reply(f).unwrap_or_else(|| panic!("a trace knows its direction: {d}"));
        assert_eq!(
            field(f, "reply").and_then(|v| v.as_bool()).unwrap_or(false),
            reply,
            "{d}"
        );
        let reason = enum_name(f, "trace_reason");
        if reply {
            assert_eq!(reason, "REPLY", "{d}");
        } else {
            assert!(reason == "NEW" || reason == "ESTABLISHED", "{d}");
        }
        assert!(msg(f, "interface").is_some(), "{d}");
        assert_ethernet(f);
    }
    assert!(traces.iter().any(|f| enum_name(f, "trace_reason") == "NEW"));

    // Policy verdicts: allowed naming the policy, audited, and denied.
    let verdicts = of_type(5);
    let allowed: Vec<_> = verdicts
        .iter()
        .filter(|f| enum_name(f, "verdict") == "FORWARDED")
        .collect();
    assert!(!allowed.is_empty(), "{}", all());
    for f in &allowed {
        assert_eq!(is_reply(f), Some(false), "{}", describe(f));
        let policies = field(f, "ingress_allowed_by").and_then(|v| v.as_list().map(<[Value]>::len));
        assert!(policies.unwrap_or(0) > 0, "{}", describe(f));
    }
    assert!(
        verdicts.iter().any(|f| enum_name(f, "verdict") == "AUDIT"),
        "{}",
        all()
    );
    let denied: Vec<_> = verdicts
        .iter()
        .filter(|f| enum_name(f, "verdict") == "DROPPED")
        .collect();
    let reasons: std::collections::BTreeSet<String> = denied
        .iter()
        .map(|f| enum_name(f, "drop_reason_desc"))
        .collect();
    assert_eq!(
        reasons,
        ["POLICY_DENIED", "POLICY_DENY"].map(String::from).into(),
        "{}",
        all()
    );
    for f in &denied {
        assert_eq!(is_reply(f), None, "{}", describe(f));
        assert_eq!(enum_name(f, "trace_observation_point"), "UNKNOWN_POINT");
    }
    let explicit = denied
        .iter()
        .find(|f| enum_name(f, "drop_reason_desc") == "POLICY_DENY")
        .unwrap();
    let by = field(explicit, "ingress_denied_by").unwrap();
    let names: Vec<String> = by
        .as_list()
        .unwrap()
        .iter()
        .map(|p| text(p.as_message().unwrap(), "name"))
        .collect();
    assert_eq!(names, ["db-deny-client"]);

    // Drops (policy and kernel): Cilium's reason, no reply bit, no trace point.
    let drops = of_type(1);
    for f in &drops {
        let d = describe(f);
        assert_eq!(enum_name(f, "verdict"), "DROPPED", "{d}");
        assert_eq!(is_reply(f), None, "{d}");
        assert_eq!(field(f, "reply").and_then(|v| v.as_bool()), None, "{d}");
        assert_eq!(
            enum_name(f, "trace_observation_point"),
            "UNKNOWN_POINT",
            "{d}"
        );
        // Cilium's reason for the kernel's where one fits (the kernel's own
        // drops of the fresh interfaces vary); the policy drops' always.
        let reason = enum_name(f, "drop_reason_desc");
        let summary = text(f, "Summary");
        match summary
            .split("(kernel drop: ")
            .nth(1)
            .and_then(|r| r.strip_suffix(')'))
        {
            Some(kernel) => assert_eq!(
                reason,
                kernel_reasons::cilium_reason(kernel).as_str_name(),
                "{d}"
            ),
            None => assert!(reason.starts_with("POLICY_DEN"), "{d}"),
        }
        let code = number(f, "drop_reason");
        assert_eq!(event_type(f), Some((1, code)), "{d}");
    }
    // Each policy drop has its policy verdict (same packet, same reason).
    for reason in ["POLICY_DENIED", "POLICY_DENY"] {
        let n = |fs: &[&DynamicMessage]| {
            fs.iter()
                .filter(|f| {
                    enum_name(f, "drop_reason_desc") == reason
                        && !text(f, "Summary").contains("kernel drop")
                })
                .count()
        };
        assert_eq!(
            n(&drops),
            n(&denied.iter().map(|f| **f).collect::<Vec<_>>()),
            "{reason}: {}",
            all()
        );
    }
    let kernel: Vec<_> = drops
        .iter()
        .filter(|f| text(f, "Summary").contains("(kernel drop: NETFILTER_DROP)"))
        .collect();
    assert!(!kernel.is_empty(), "{}", all());
    for f in &kernel {
        assert_ethernet(f);
        assert_eq!(
            enum_name(f, "drop_reason_desc"),
            "POLICY_DENIED",
            "{}",
            describe(f)
        );
        assert_eq!(
            (ip(f, "source"), ip(f, "destination")),
            (api.ipv4.to_string(), frontend.ipv4.to_string())
        );
    }

    // Socket translations: the pre/post pair; the post one to the backend.
    let sock = of_type(7);
    let vips = ["198.18.100.10", "fd42:100::10"];
    let backends = [
        api.ipv4.to_string(),
        api.ipv6.to_string(),
        api2.ipv4.to_string(),
        api2.ipv6.to_string(),
    ];
    let mut pairs = 0;
    for pre in sock.iter().filter(|f| event_type(f) == Some((7, 1))) {
        let d = describe(pre);
        assert_eq!(enum_name(pre, "Type"), "SOCK", "{d}");
        assert_eq!(enum_name(pre, "verdict"), "TRACED", "{d}");
        assert!(vips.contains(&ip(pre, "destination").as_str()), "{d}");
        let svc = msg(pre, "destination_service").expect("the service at its frontend");
        assert_eq!(
            (text(&svc, "namespace"), text(&svc, "name")),
            ("default".into(), "api".into())
        );
        assert_eq!(is_reply(pre), None, "{d}");
        let cookie = number(pre, "socket_cookie");
        let post = sock
            .iter()
            .find(|f| event_type(f) == Some((7, 2)) && number(f, "socket_cookie") == cookie)
            .unwrap_or_else(|| panic!("no post-translation flow of {d}"));
        let d = describe(post);
        assert_eq!(enum_name(post, "verdict"), "TRANSLATED", "{d}");
        assert!(backends.contains(&ip(post, "destination")), "{d}");
        assert!(
            ["api", "api-2"].contains(&pod(post, "destination").as_str()),
            "{d}"
        );
        assert!(msg(post, "destination_service").is_none(), "{d}");
        assert_eq!(ip(post, "source"), ip(pre, "source"), "{d}");
        pairs += 1;
    }
    assert_eq!(pairs, 2, "one pair per connection to the VIP: {}", all());

    // TCP lifecycle: nothing a Hubble tool takes for traffic.
    let lifecycle: Vec<_> = flows.iter().filter(|f| event_type(f).is_none()).collect();
    assert!(!lifecycle.is_empty(), "{}", all());
    for f in &lifecycle {
        let d = describe(f);
        assert_eq!(enum_name(f, "Type"), "UNKNOWN_TYPE", "{d}");
        assert_eq!(enum_name(f, "verdict"), "VERDICT_UNKNOWN", "{d}");
        assert_eq!(is_reply(f), None, "{d}");
        assert_eq!(
            enum_name(f, "traffic_direction"),
            "TRAFFIC_DIRECTION_UNKNOWN",
            "{d}"
        );
        assert!(text(f, "Summary").starts_with("TCP "), "{d}");
    }
    // Every flow is one of these kinds.
    assert_eq!(
        traces.len() + verdicts.len() + drops.len() + sock.len() + lifecycle.len(),
        flows.len(),
        "{}",
        all()
    );

    // Requests as a Hubble client makes them. Fixed window: the same flows.
    let until = prost_types::Timestamp::from(std::time::SystemTime::now());
    let window = |mut req: DynamicMessage| {
        let ts = DynamicMessage::decode(
            client.message("google.protobuf.Timestamp"),
            until.encode_to_vec().as_slice(),
        )
        .unwrap();
        req.set_field_by_name("until", Value::Message(ts));
        req
    };
    let uuids = |fs: &[DynamicMessage]| fs.iter().map(|f| text(f, "uuid")).collect::<Vec<_>>();
    let everything = client.get_flows(&window(client.request())).await.unwrap();
    assert!(!everything.is_empty());

    // field_mask: only the listed fields come back.
    let mask_of = |paths: &[&str]| {
        let mut m = DynamicMessage::new(client.message("google.protobuf.FieldMask"));
        m.set_field_by_name(
            "paths",
            Value::List(paths.iter().map(|p| Value::String(p.to_string())).collect()),
        );
        let mut req = window(client.request());
        req.set_field_by_name("field_mask", Value::Message(m));
        req
    };
    let masked = client
        .get_flows(&mask_of(&["verdict", "IP.source", "source.pod_name"]))
        .await
        .unwrap();
    assert_eq!(masked.len(), everything.len());
    for f in &masked {
        let set: Vec<String> = f.fields().map(|(d, _)| d.name().to_string()).collect();
        assert!(
            set.iter()
                .all(|n| ["verdict", "IP", "source"].contains(&n.as_str())),
            "{set:?}"
        );
        if let Some(i) = msg(f, "IP") {
            assert_eq!(
                i.fields()
                    .map(|(d, _)| d.name().to_string())
                    .collect::<Vec<_>>(),
                ["source"]
            );
        }
        if let Some(s) = msg(f, "source") {
            let s_set: Vec<String> = s.fields().map(|(d, _)| d.name().to_string()).collect();
            assert!(s_set.iter().all(|n| n == "pod_name"), "{s_set:?}");
        }
    }
    let err = client.get_flows(&mask_of(&["IP.src"])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("\"IP.src\""), "{}", err.message());

    // L7 filters: nothing in a whitelist, everything through a blacklist.
    let l7 = || {
        let mut filter = DynamicMessage::new(client.message("flow.FlowFilter"));
        filter.set_field_by_name(
            "http_status_code",
            Value::List(vec![Value::String("200".into())]),
        );
        Value::List(vec![Value::Message(filter)])
    };
    let mut white = window(client.request());
    white.set_field_by_name("whitelist", l7());
    assert!(client.get_flows(&white).await.unwrap().is_empty());
    let mut black = window(client.request());
    black.set_field_by_name("blacklist", l7());
    assert_eq!(
        uuids(&client.get_flows(&black).await.unwrap()),
        uuids(&everything)
    );

    // The cluster-name and node-label filters match what --cluster-name and
    // --node-label filled.
    let filtered = |field: &str, value: &str| {
        let mut filter = DynamicMessage::new(client.message("flow.FlowFilter"));
        filter.set_field_by_name(field, Value::List(vec![Value::String(value.into())]));
        let mut req = window(client.request());
        req.set_field_by_name("whitelist", Value::List(vec![Value::Message(filter)]));
        req
    };
    let in_cluster = client
        .get_flows(&filtered("source_cluster_name", CLUSTER))
        .await
        .unwrap();
    let want: Vec<String> = everything
        .iter()
        .filter(|f| msg(f, "source").is_some_and(|e| text(&e, "cluster_name") == CLUSTER))
        .map(|f| text(f, "uuid"))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(uuids(&in_cluster), want);
    let other = client
        .get_flows(&filtered("destination_cluster_name", "elsewhere"))
        .await
        .unwrap();
    assert!(other.is_empty());
    let labelled = client
        .get_flows(&filtered("node_labels", "topology.kubernetes.io/zone=z1"))
        .await
        .unwrap();
    assert_eq!(uuids(&labelled), uuids(&everything));

    // Our own types see the same netfilter drop, its kernel reason kept in
    // our extension (Flow field 1001, which Cilium's Flow does not declare).
    let ours = env.all_flows().await;
    let netfilter: Vec<_> = ours
        .iter()
        .filter(|f| {
            f.kernel_drop
                .as_ref()
                .is_some_and(|k| k.name == "NETFILTER_DROP")
        })
        .collect();
    assert_eq!(netfilter.len(), kernel.len());
    for f in netfilter {
        assert_eq!(ips(f), (IpAddr::V4(api.ipv4), IpAddr::V4(frontend.ipv4)));
        assert_eq!(ports(f).map(|p| p.1), Some(9000));
    }
}
