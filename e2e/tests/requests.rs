//! The relay's API without a lab (no root needed), in-process on 127.0.0.1:0:
//! request checks, and how a peer that cannot be reached is reported.

use std::time::{Duration, Instant};

use observer_proto::flow::FlowFilter;
use observer_proto::observer::{GetFlowsRequest, GetNodesRequest};
use observer_proto::relay::NodeState;
use relay::peer::state::NOT_CONNECTED_YET;

use e2e::RelayUnderTest;
use e2e::responses::{event, node_status, shape};

#[tokio::test]
async fn bad_requests_are_invalid_arguments() {
    let relay = RelayUnderTest::start(vec![e2e::REFUSING_PEER.to_string()]).await;
    let mut client = relay.client().await;
    let err = client
        .get_flows(GetFlowsRequest {
            first: true,
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "first cannot be combined with follow");
    let err = client
        .get_flows(GetFlowsRequest {
            whitelist: vec![FlowFilter {
                destination_port: vec!["http".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "invalid flow filter: destination_port: invalid port \"http\""
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_peer_is_unavailable_with_its_error_and_flows_still_answer() {
    let dead = e2e::REFUSING_PEER.to_string();
    let relay = RelayUnderTest::start(vec![dead.clone()]).await;
    // The first attempt fails fast (connection refused); wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.state().peers().views()[0].last_error.as_deref() == Some(NOT_CONNECTED_YET) {
        assert!(Instant::now() < deadline, "no connection attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = relay.status().await;
    assert_eq!(
        (s.num_connected_nodes, s.num_unavailable_nodes),
        (Some(0), Some(1))
    );
    assert_eq!(s.unavailable_nodes, [dead.as_str()]);
    assert_eq!((s.num_flows, s.max_flows), (0, 0));

    let nodes = relay
        .client()
        .await
        .get_nodes(GetNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        (nodes[0].name.as_str(), nodes[0].address.as_str()),
        (dead.as_str(), dead.as_str())
    );
    assert_eq!(nodes[0].state, NodeState::NodeUnavailable as i32);

    // GetFlows does not fail: it says which node is missing and why.
    let answer = relay.get_flows(GetFlowsRequest::default()).await;
    assert_eq!(answer.len(), 1, "one node-status event and nothing else");
    let status = node_status(&answer[0]).expect("a node-status event");
    assert_eq!(
        shape(status),
        event(NodeState::NodeUnavailable, &[dead.as_str()])
    );
    assert!(
        status.message.starts_with("connecting: "),
        "{}",
        status.message
    );
    relay.shutdown().await;
}

/// ServerStatus through the relay counts what the nodes hold when it is
/// asked, as Hubble Relay's does, not what they held at the last poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_status_counts_what_the_nodes_hold_now() {
    let store = std::sync::Arc::new(observer_runtime::store::FlowStore::new(100));
    let (addr, stop) = e2e::in_process::serve_probe("n1", store.clone(), None).await;
    let mut cfg = RelayUnderTest::config(vec![addr], None);
    // Polled once, when it connects.
    cfg.peer.status_interval = Duration::from_secs(3600);
    let relay = RelayUnderTest::start_config(cfg).await;
    relay
        .wait_status("the node", |s| s.num_connected_nodes == Some(1))
        .await;
    for i in 0..3 {
        store.push(test_support::history_flows::response(
            observer_proto::flow::Flow {
                uuid: format!("u{i}"),
                ..Default::default()
            },
        ));
    }
    let s = relay.status().await;
    assert_eq!((s.num_flows, s.seen_flows, s.max_flows), (3, 3, 100));
    relay.shutdown().await;
    let _ = stop.send(true);
}

/// Reads `answer` to its end: the flows' uuids and how many other
/// responses came (node status). Panics if it has not ended after 30 s.
async fn to_the_end(
    mut answer: tonic::Streaming<observer_proto::observer::GetFlowsResponse>,
) -> (Vec<String>, usize) {
    use observer_proto::observer::get_flows_response::ResponseTypes;
    let read = async {
        let (mut flows, mut others) = (Vec::new(), 0);
        while let Some(r) = answer.message().await.unwrap() {
            match r.response_types {
                Some(ResponseTypes::Flow(f)) => flows.push(f.uuid),
                _ => others += 1,
            }
        }
        (flows, others)
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the follow did not end after its --until")
}

/// A follow with an `until` ends once the clock passes it, on a probe and
/// through the relay, although no later flow comes to end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_follow_ends_after_its_until() {
    let store = std::sync::Arc::new(observer_runtime::store::FlowStore::new(100));
    let now = observer_proto::time::now_nanos();
    store.push(test_support::history_flows::response(
        observer_proto::flow::Flow {
            uuid: "held".into(),
            time: Some(observer_proto::time::timestamp(now - 1_000_000_000)),
            ..Default::default()
        },
    ));
    let (addr, stop) = e2e::in_process::serve_probe("n1", store.clone(), None).await;
    let relay = RelayUnderTest::start(vec![addr.clone()]).await;
    relay
        .wait_status("the node", |s| s.num_connected_nodes == Some(1))
        .await;
    let request = || GetFlowsRequest {
        number: 1,
        follow: true,
        until: Some(observer_proto::time::timestamp(
            observer_proto::time::now_nanos() + 300_000_000,
        )),
        ..Default::default()
    };
    let mut probe = observer_proto::observer::observer_client::ObserverClient::connect(format!(
        "http://{addr}"
    ))
    .await
    .unwrap();
    let direct = probe.get_flows(request()).await.unwrap().into_inner();
    let relayed = relay.client().await.get_flows(request()).await.unwrap();
    let (direct, relayed) = tokio::join!(to_the_end(direct), to_the_end(relayed.into_inner()));
    assert_eq!(direct, (vec!["held".to_string()], 0));
    // Through the relay, the node's status first.
    assert_eq!(relayed, (vec!["held".to_string()], 1));
    relay.shutdown().await;
    let _ = stop.send(true);
}

/// A follow with an `until` whose client reads slowly: the flows from
/// before `until` still queued for it when the clock ends the follow go
/// out first, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_a_follow_with_until_gets_every_flow_before_it() {
    const FLOWS: usize = 900;
    let store = std::sync::Arc::new(observer_runtime::store::FlowStore::new(2 * FLOWS));
    let (addr, stop) = e2e::in_process::serve_probe("n1", store.clone(), None).await;
    let mut probe = observer_proto::observer::observer_client::ObserverClient::connect(format!(
        "http://{addr}"
    ))
    .await
    .unwrap();
    let until = observer_proto::time::now_nanos() + 1_000_000_000;
    let mut answer = probe
        .get_flows(GetFlowsRequest {
            follow: true,
            until: Some(observer_proto::time::timestamp(until)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // 5 kB each: more than the transport holds unread (2 MB a stream).
    for i in 0..FLOWS {
        store.push(test_support::history_flows::response(
            observer_proto::flow::Flow {
                uuid: format!("f{i}"),
                summary: "x".repeat(5000),
                time: Some(observer_proto::time::timestamp(
                    observer_proto::time::now_nanos().min(until),
                )),
                ..Default::default()
            },
        ));
    }
    // Past until and its grace before the first read.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = Vec::new();
    let read = async {
        while let Some(r) = answer.message().await.unwrap() {
            if let Some(observer_proto::observer::get_flows_response::ResponseTypes::Flow(f)) =
                r.response_types
            {
                got.push(f.uuid);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the follow ends");
    let want: Vec<String> = (0..FLOWS).map(|i| format!("f{i}")).collect();
    assert_eq!(got, want);
    let _ = stop.send(true);
}
