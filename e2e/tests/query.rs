//! GetFlows against the real flow-probe: each filter selects exactly the matching
//! flows; number/first/since/follow behave as Hubble's; bad requests get
//! InvalidArgument; `observe flows` flags reach the server.

use std::collections::BTreeSet;

use e2e::{ips, ports};
use observe_lab::{Scenario, run_traffic_once};
use observer_proto::flow::{
    EventTypeFilter, Flow, FlowFilter, IpVersion, TcpFlags, TrafficDirection, layer4::Protocol,
};
use observer_proto::observer::{GetFlowsRequest, get_flows_response::ResponseTypes};
use test_support::flows::tcp_flags;
use tokio_stream::StreamExt;

fn uuids<'a>(flows: impl IntoIterator<Item = &'a Flow>) -> BTreeSet<String> {
    flows.into_iter().map(|f| f.uuid.clone()).collect()
}

fn pod(ep: &Option<observer_proto::flow::Endpoint>) -> (&str, &str) {
    ep.as_ref()
        .map(|e| (e.namespace.as_str(), e.pod_name.as_str()))
        .unwrap_or(("", ""))
}

async fn traffic_env() -> (e2e::Env, Vec<Flow>) {
    let scenario = Scenario::builtin_capture();
    let env = e2e::start(&scenario, &[]);
    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    let last = report.items.last().unwrap().clone();
    // The ICMPv6 echo reply at the client's veth is the last event of the round.
    let flows = env
        .wait_for("the last echo reply", |fl| {
            fl.iter().any(|f| {
                f.is_reply == Some(true)
                    && ips(f) == (last.dst_ip, last.src_ip)
                    && f.trace_observation_point == 101
            })
        })
        .await;
    (env, flows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_filter_selects_exactly_the_matching_flows() {
    let (env, all) = traffic_env().await;
    let only = |filter: FlowFilter| GetFlowsRequest {
        whitelist: vec![filter],
        ..Default::default()
    };
    type Pred = Box<dyn Fn(&Flow) -> bool>;
    let cases: Vec<(&str, GetFlowsRequest, Pred)> = vec![
        (
            "source_pod",
            only(FlowFilter {
                source_pod: vec!["default/frontend".into()],
                ..Default::default()
            }),
            Box::new(|f| pod(&f.source) == ("default", "frontend")),
        ),
        (
            "destination_pod namespace",
            only(FlowFilter {
                destination_pod: vec!["other/".into()],
                ..Default::default()
            }),
            Box::new(|f| pod(&f.destination).0 == "other"),
        ),
        (
            "source_ip exact",
            only(FlowFilter {
                source_ip: vec!["198.18.1.13".into()],
                ..Default::default()
            }),
            Box::new(|f| f.ip.as_ref().unwrap().source == "198.18.1.13"),
        ),
        (
            "destination_ip CIDR",
            only(FlowFilter {
                destination_ip: vec!["fd42:0:0:1::/64".into()],
                ..Default::default()
            }),
            Box::new(|f| {
                f.ip.as_ref()
                    .unwrap()
                    .destination
                    .starts_with("fd42:0:0:1::")
            }),
        ),
        (
            "destination_port",
            only(FlowFilter {
                destination_port: vec!["8080".into()],
                ..Default::default()
            }),
            Box::new(|f| ports(f).is_some_and(|(_, d)| d == 8080)),
        ),
        (
            "protocol udp",
            only(FlowFilter {
                protocol: vec!["udp".into()],
                ..Default::default()
            }),
            Box::new(|f| {
                matches!(
                    f.l4.as_ref().and_then(|l| l.protocol.as_ref()),
                    Some(Protocol::Udp(_))
                )
            }),
        ),
        (
            "tcp_flags SYN",
            only(FlowFilter {
                tcp_flags: vec![TcpFlags {
                    syn: true,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            Box::new(|f| tcp_flags(f).is_some_and(|t| t.syn)),
        ),
        (
            "source_label",
            only(FlowFilter {
                source_label: vec!["app=api".into()],
                ..Default::default()
            }),
            Box::new(|f| {
                f.source
                    .as_ref()
                    .is_some_and(|e| e.labels.contains(&"k8s:app=api".to_string()))
            }),
        ),
        (
            "event_type to-endpoint",
            only(FlowFilter {
                event_type: vec![EventTypeFilter {
                    r#type: 4,
                    match_sub_type: true,
                    sub_type: 0,
                }],
                ..Default::default()
            }),
            Box::new(|f| f.trace_observation_point == 101),
        ),
        (
            "traffic_direction ingress",
            only(FlowFilter {
                traffic_direction: vec![TrafficDirection::Ingress as i32],
                ..Default::default()
            }),
            Box::new(|f| f.traffic_direction == TrafficDirection::Ingress as i32),
        ),
        (
            "ip_version v6",
            only(FlowFilter {
                ip_version: vec![IpVersion::IPv6 as i32],
                ..Default::default()
            }),
            Box::new(|f| f.ip.as_ref().unwrap().ip_version == IpVersion::IPv6 as i32),
        ),
        (
            "reply",
            only(FlowFilter {
                reply: vec![true],
                ..Default::default()
            }),
            Box::new(|f| f.is_reply == Some(true)),
        ),
        (
            "node_name",
            only(FlowFilter {
                node_name: vec!["node1".into()],
                ..Default::default()
            }),
            Box::new(|_| true),
        ),
        (
            "AND within a filter",
            only(FlowFilter {
                source_pod: vec!["other/client".into()],
                protocol: vec!["tcp".into()],
                ..Default::default()
            }),
            Box::new(|f| {
                pod(&f.source) == ("other", "client") && ports(f).is_some_and(|(_, d)| d == 9999)
            }),
        ),
        (
            "OR across filters",
            GetFlowsRequest {
                whitelist: vec![
                    FlowFilter {
                        destination_port: vec!["5432".into()],
                        ..Default::default()
                    },
                    FlowFilter {
                        destination_port: vec!["5353".into()],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            Box::new(|f| ports(f).is_some_and(|(_, d)| d == 5432 || d == 5353)),
        ),
        (
            "blacklist",
            GetFlowsRequest {
                blacklist: vec![FlowFilter {
                    protocol: vec!["icmp".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
            Box::new(|f| {
                !matches!(
                    f.l4.as_ref().and_then(|l| l.protocol.as_ref()),
                    Some(Protocol::IcmPv4(_) | Protocol::IcmPv6(_))
                )
            }),
        ),
    ];
    for (name, req, pred) in cases {
        let got = env
            .get_flows(req)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want: Vec<&Flow> = all.iter().filter(|f| pred(f)).collect();
        assert!(
            !want.is_empty(),
            "{name}: the lab produced no matching flow"
        );
        // Flows that arrived after `all` was taken (neighbour discovery) are not judged.
        let known = uuids(&all);
        let got: BTreeSet<String> = uuids(&got).intersection(&known).cloned().collect();
        assert_eq!(got, uuids(want.iter().copied()), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_first_since_and_follow_behave_like_hubble() {
    let (env, all) = traffic_env().await;
    let n = all.len();
    assert!(n > 20);
    // Bounded by the newest flow we know of: later neighbour discovery is not judged.
    let newest = all[n - 1].time;
    let last5 = env
        .get_flows(GetFlowsRequest {
            number: 5,
            until: newest,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(uuids(&last5), uuids(&all[n - 5..]));
    let first3 = env
        .get_flows(GetFlowsRequest {
            number: 3,
            first: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(uuids(&first3), uuids(&all[..3]));
    // since: everything at or after the time of the 10th-from-last flow.
    let pivot = all[n - 10].time.unwrap();
    let since = env
        .get_flows(GetFlowsRequest {
            since: Some(pivot),
            until: newest,
            ..Default::default()
        })
        .await
        .unwrap();
    let want: Vec<&Flow> = all
        .iter()
        .filter(|f| {
            let t = f.time.unwrap();
            (t.seconds, t.nanos) >= (pivot.seconds, pivot.nanos)
        })
        .collect();
    assert_eq!(uuids(&since), uuids(want));
    let until = env
        .get_flows(GetFlowsRequest {
            until: Some(pivot),
            number: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        until
            .iter()
            .all(|f| (f.time.unwrap().seconds, f.time.unwrap().nanos)
                <= (pivot.seconds, pivot.nanos))
    );

    // follow: only new flows arrive, and new traffic shows up.
    let mut client = env.client().await;
    let filter = FlowFilter {
        destination_port: vec!["8080".into()],
        tcp_flags: vec![TcpFlags {
            syn: true,
            ..Default::default()
        }],
        ..Default::default()
    };
    let req = GetFlowsRequest {
        follow: true,
        whitelist: vec![filter],
        ..Default::default()
    };
    let mut stream = client.get_flows(req).await.unwrap().into_inner();
    let scenario = env.lab.scenario().clone();
    let report = tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).unwrap();
    let sport = report.items[0].src_port.unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("a followed flow")
        .unwrap()
        .unwrap();
    let Some(ResponseTypes::Flow(f)) = next.response_types else {
        panic!("expected a flow, got {next:?}")
    };
    assert_eq!(
        ports(&f),
        Some((sport, 8080)),
        "the first followed flow is the new SYN"
    );
    assert!(!uuids(&all).contains(&f.uuid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_invalid_argument_with_a_message() {
    let env = e2e::start(&Scenario::builtin_capture(), &[]);
    let cases = [
        (
            GetFlowsRequest {
                first: true,
                follow: true,
                number: 1,
                ..Default::default()
            },
            "first cannot be combined with follow",
        ),
        (
            GetFlowsRequest {
                whitelist: vec![FlowFilter {
                    source_ip: vec!["198.18.0.0/33".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
            "198.18.0.0/33",
        ),
        (
            GetFlowsRequest {
                whitelist: vec![FlowFilter {
                    destination_port: vec!["http".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
            "http",
        ),
    ];
    for (req, needle) in cases {
        let err = env.get_flows(req).await.expect_err(needle);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(needle),
            "{needle}: {}",
            err.message()
        );
    }
    // The service is still fine afterwards.
    let status = env
        .client()
        .await
        .server_status(observer_proto::observer::ServerStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.max_flows, 4095);
    assert!(
        status
            .kernel_features
            .iter()
            .any(|k| k.name == "tcx" && k.available)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_flows_flags_reach_the_server() {
    let (env, all) = traffic_env().await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(e2e::observe_binary())
            .arg("flows")
            .args(env.server_args(env.probe.addr))
            .args(["--last", "1000"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // --to-port with JSON output: proto field names, one object per line.
    let json = run(&["--to-port", "8080", "-o", "json"]);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want = all
        .iter()
        .filter(|f| ports(f).is_some_and(|(_, d)| d == 8080))
        .count();
    assert_eq!(lines.len(), want);
    assert!(
        lines
            .iter()
            .all(|l| l["flow"]["l4"]["TCP"]["destination_port"] == 8080
                && l["flow"]["node_name"] == "node1")
    );
    // --pod is direction-neutral: either side is db.
    let compact = run(&["--pod", "default/db", "--protocol", "udp"]);
    let want = all
        .iter()
        .filter(|f| {
            (pod(&f.source) == ("default", "db") || pod(&f.destination) == ("default", "db"))
                && ports(f).is_some_and(|(s, d)| s == 5353 || d == 5353)
        })
        .count();
    assert_eq!(compact.lines().count(), want, "{compact}");
    assert!(
        compact
            .lines()
            .all(|l| l.contains("default/db:5353") && l.ends_with("FORWARDED (UDP)")),
        "{compact}"
    );
    // A bad flag value is named.
    let out = std::process::Command::new(e2e::observe_binary())
        .arg("flows")
        .args(env.server_args(env.probe.addr))
        .args(["--verdict", "maybe"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--verdict \"maybe\": unknown verdict"));
}
