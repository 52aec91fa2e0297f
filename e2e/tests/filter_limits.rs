//! GetFlows filters against the real flow-probe on a lab: a filter over the
//! size limits is refused with the exact InvalidArgument (once, 300,000
//! source IPs held the probe's other RPCs for 14.6 s), and the largest filters
//! allowed, several at once and one following, answer exactly what a small
//! filter answers while ServerStatus keeps answering within a 1 s deadline.

use std::net::IpAddr;
use std::time::Duration;

use observe_lab::{Scenario, run_traffic_once};
use observer_proto::flow::{Flow, FlowFilter};
use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::observer::{GetFlowsRequest, ServerStatusRequest};
use observer_proto::time::timestamp;
use observer_runtime::filter::limits::{MAX_FIELD_ENTRIES, MAX_PATTERN_BYTES, MAX_TOTAL_ENTRIES};
use tonic::transport::Channel;

/// `n` IPv4 addresses in 10.0.0.0/8, where the lab has none.
fn other_ips(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255))
        .collect()
}

/// ServerStatus with a 1 s gRPC deadline, on a connection of its own.
async fn status_within_1s(client: &mut ObserverClient<Channel>) {
    let mut request = tonic::Request::new(ServerStatusRequest {});
    request.set_timeout(Duration::from_secs(1));
    let status = client.server_status(request).await;
    assert!(status.is_ok(), "ServerStatus within 1 s: {status:?}");
}

fn refusal(result: Result<Vec<Flow>, tonic::Status>) -> (tonic::Code, String) {
    let status = result.expect_err("refused");
    (status.code(), status.message().to_string())
}

fn uuids(flows: &[Flow]) -> Vec<&str> {
    flows.iter().map(|f| f.uuid.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_over_the_limits_are_refused_and_large_ones_block_nothing() {
    let scenario = Scenario::builtin_capture();
    let env = e2e::start(&scenario, &[]);
    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    let flows = env
        .wait_for("the traffic's flows", |flows| flows.len() >= 20)
        .await;
    // A window that holds what the ring held then, however late more arrive.
    let until = flows.last().unwrap().time;
    let frontend: IpAddr = env
        .lab
        .endpoints_file()
        .endpoints
        .iter()
        .find(|e| e.name == "frontend")
        .and_then(|e| e.ipv4)
        .expect("frontend has an IPv4 address")
        .into();
    let mut status_client = env.client().await;

    // Over the limits: refused, naming the limit; the probe answers status.
    let issue_15 = GetFlowsRequest {
        whitelist: vec![FlowFilter {
            source_ip: other_ips(300_000),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        refusal(env.get_flows(issue_15).await),
        (
            tonic::Code::InvalidArgument,
            "invalid flow filter: source_ip: too many entries: 300000 (limit 4096 per field)"
                .to_string()
        )
    );
    status_within_1s(&mut status_client).await;
    let full = FlowFilter {
        source_ip: other_ips(MAX_FIELD_ENTRIES),
        ..Default::default()
    };
    let mut too_many = vec![full; MAX_TOTAL_ENTRIES / MAX_FIELD_ENTRIES];
    too_many.push(FlowFilter::default());
    assert_eq!(
        refusal(
            env.get_flows(GetFlowsRequest {
                blacklist: too_many,
                ..Default::default()
            })
            .await
        ),
        (
            tonic::Code::InvalidArgument,
            "invalid flow filter: too many entries: 16385 across the whitelist and blacklist \
             (limit 16384)"
                .to_string()
        )
    );
    status_within_1s(&mut status_client).await;

    // The largest allowed: the frontend among 4,095 other sources, 4,096
    // sources that match nothing, and a blacklist of 4,096 more sources and
    // every byte of the pattern budget in node-name patterns that match no
    // node: the answer is the frontend's flows.
    let mut sources = other_ips(MAX_FIELD_ENTRIES - 1);
    sources.push(frontend.to_string());
    let pattern = format!("z{}", "*z".repeat(255));
    let large = GetFlowsRequest {
        until,
        whitelist: vec![
            FlowFilter {
                source_ip: sources,
                ..Default::default()
            },
            FlowFilter {
                source_ip: other_ips(MAX_FIELD_ENTRIES),
                ..Default::default()
            },
        ],
        blacklist: vec![
            FlowFilter {
                source_ip: other_ips(MAX_FIELD_ENTRIES),
                ..Default::default()
            },
            FlowFilter {
                node_name: vec![pattern.clone(); MAX_PATTERN_BYTES / pattern.len()],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let small = GetFlowsRequest {
        until,
        whitelist: vec![FlowFilter {
            source_ip: vec![frontend.to_string()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let expected = env.get_flows(small).await.expect("the small filter");
    assert!(
        expected.len() >= 4,
        "the frontend's flows: {}",
        expected.len()
    );

    // One follower with the large filter stays open throughout; it starts
    // with the ring's flows (since the epoch).
    let mut follower = env
        .client()
        .await
        .get_flows(GetFlowsRequest {
            follow: true,
            since: Some(timestamp(0)),
            ..large.clone()
        })
        .await
        .expect("the follower starts")
        .into_inner();
    let mut answers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (env_client, request) = (env.client().await, large.clone());
        answers.spawn(async move {
            let mut client = env_client;
            let mut stream = client.get_flows(request).await?.into_inner();
            let mut flows = Vec::new();
            while let Some(r) = stream.message().await? {
                if let Some(observer_proto::observer::get_flows_response::ResponseTypes::Flow(f)) =
                    r.response_types
                {
                    flows.push(f);
                }
            }
            Ok::<_, tonic::Status>(flows)
        });
    }
    for _ in 0..10 {
        status_within_1s(&mut status_client).await;
    }
    while let Some(answer) = answers.join_next().await {
        let flows = answer.unwrap().expect("the large filter is allowed");
        assert_eq!(uuids(&flows), uuids(&expected));
    }
    // The follower sent the same flows first.
    for want in &expected {
        let got = follower.message().await.unwrap().expect("a flow");
        match got.response_types {
            Some(observer_proto::observer::get_flows_response::ResponseTypes::Flow(f)) => {
                assert_eq!(f.uuid, want.uuid)
            }
            other => panic!("expected a flow, got {other:?}"),
        }
    }
    status_within_1s(&mut status_client).await;
    drop(follower);
}
