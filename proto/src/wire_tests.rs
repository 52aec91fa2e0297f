//! Guards the field numbers clients depend on. The expected numbers were
//! taken from Cilium's api/v1 protos; a failure here means wire breakage.

use prost::Message;
use prost::encoding::decode_key;

use crate::flow::*;
use crate::observe::v1::{FlowVolume, KernelFeature, PolicyStamp};
use crate::observer::{GetFlowsResponse, ServerStatusResponse};

/// Field number of the single field set in `msg`.
fn tag(msg: &impl Message) -> u32 {
    let buf = msg.encode_to_vec();
    let (tag, _) = decode_key(&mut buf.as_slice()).expect("one encoded field");
    tag
}

fn some<T: Default>() -> Option<T> {
    Some(T::default())
}

#[test]
fn flow_field_numbers_match_cilium() {
    let d = Flow::default;
    let policy = || vec![Policy::default()];
    #[rustfmt::skip]
    let cases: Vec<(Flow, u32)> = vec![
        (Flow { time: some(), ..d() }, 1),
        (Flow { verdict: 1, ..d() }, 2),
        (Flow { drop_reason: 1, ..d() }, 3),
        (Flow { ethernet: some(), ..d() }, 4),
        (Flow { ip: some(), ..d() }, 5),
        (Flow { l4: some(), ..d() }, 6),
        (Flow { source: some(), ..d() }, 8),
        (Flow { destination: some(), ..d() }, 9),
        (Flow { r#type: 1, ..d() }, 10),
        (Flow { node_name: "n".into(), ..d() }, 11),
        (Flow { source_names: vec![String::new()], ..d() }, 13),
        (Flow { destination_names: vec![String::new()], ..d() }, 14),
        (Flow { reply: true, ..d() }, 16),
        (Flow { event_type: some(), ..d() }, 19),
        (Flow { source_service: some(), ..d() }, 20),
        (Flow { destination_service: some(), ..d() }, 21),
        (Flow { traffic_direction: 1, ..d() }, 22),
        (Flow { policy_match_type: 1, ..d() }, 23),
        (Flow { trace_observation_point: 1, ..d() }, 24),
        (Flow { drop_reason_desc: 1, ..d() }, 25),
        (Flow { is_reply: Some(false), ..d() }, 26),
        (Flow { interface: some(), ..d() }, 28),
        (Flow { sock_xlate_point: 1, ..d() }, 31),
        (Flow { socket_cookie: 1, ..d() }, 32),
        (Flow { cgroup_id: 1, ..d() }, 33),
        (Flow { uuid: "u".into(), ..d() }, 34),
        (Flow { trace_reason: 1, ..d() }, 36),
        (Flow { node_labels: vec![String::new()], ..d() }, 37),
        (Flow { summary: "s".into(), ..d() }, 100_000),
        (Flow { egress_allowed_by: policy(), ..d() }, 21_001),
        (Flow { ingress_allowed_by: policy(), ..d() }, 21_002),
        (Flow { egress_denied_by: policy(), ..d() }, 21_004),
        (Flow { ingress_denied_by: policy(), ..d() }, 21_005),
        (Flow { volume: Some(FlowVolume::default()), ..d() }, 1000),
        (Flow { policy_in_force: Some(PolicyStamp::default()), ..d() }, 1003),
    ];
    for (flow, want) in cases {
        assert_eq!(tag(&flow), want, "{flow:?}");
    }
}

#[test]
fn is_reply_false_is_present_on_the_wire() {
    // An empty BoolValue (26, length 0) means "known, not a reply".
    let flow = Flow {
        is_reply: Some(false),
        ..Default::default()
    };
    assert_eq!(flow.encode_to_vec(), [0xd2, 0x01, 0x00]);
    assert_eq!(Flow::default().encode_to_vec(), [0u8; 0]);
}

#[test]
fn response_and_extension_numbers() {
    let resp = GetFlowsResponse {
        node_name: "n".into(),
        ..Default::default()
    };
    assert_eq!(tag(&resp), 1000);
    let resp = GetFlowsResponse {
        time: Some(Default::default()),
        ..Default::default()
    };
    assert_eq!(tag(&resp), 1001);
    let status = ServerStatusResponse {
        flows_rate: 1.0,
        ..Default::default()
    };
    assert_eq!(tag(&status), 9);
    let status = ServerStatusResponse {
        kernel_features: vec![KernelFeature::default()],
        ..Default::default()
    };
    assert_eq!(tag(&status), 1000);
    let status = ServerStatusResponse {
        endpoints: vec![Default::default()],
        ..Default::default()
    };
    assert_eq!(tag(&status), 1001);
    let status = ServerStatusResponse {
        endpoint_sources: vec![Default::default()],
        ..Default::default()
    };
    assert_eq!(tag(&status), 1002);
    let status = ServerStatusResponse {
        config_files: vec![Default::default()],
        ..Default::default()
    };
    assert_eq!(tag(&status), 1003);
    let filter = FlowFilter {
        tcp_flags: vec![TcpFlags::default()],
        ..Default::default()
    };
    assert_eq!(tag(&filter), 23);
    let filter = FlowFilter {
        source_ip_xlated: vec![String::new()],
        ..Default::default()
    };
    assert_eq!(tag(&filter), 34);
    let ip = Ip {
        source_xlated: "x".into(),
        ..Default::default()
    };
    assert_eq!(tag(&ip), 5);
    let ep = Endpoint {
        cluster_name: "c".into(),
        ..Default::default()
    };
    assert_eq!(tag(&ep), 7);
}
