//! End to end: a real lab of three nodes, a real flow-probe on each, the relay
//! in-process over them. Flows of all nodes come through one API in time order;
//! a node's probe dying and coming back shows up in-band as node-status events
//! while the other nodes' flows keep coming.
//!
//! Needs root (network namespaces, eBPF) and the flow-probe binary
//! (`cargo build --bins`, or `FLOW_PROBE_BIN`). Everything is torn down when the
//! test ends, also on panic: the lab stops the probes (the restarted one too)
//! and deletes its namespaces.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use observe_lab::node_probes::{self, ProbeOptions};
use observe_lab::{Lab, LabOptions, Scenario, run_traffic_once};
use observer_proto::flow::LostEventSource;
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNodesRequest,
};
use observer_proto::relay::NodeState;
use relay::flow_numbers::run_and_number;
use tokio::task::block_in_place;

use e2e::responses::{assert_time_order, describe, event, flow, is_flow_on, node_status, shape};
use e2e::{RelayUnderTest, WAIT};

const SCENARIO: &str = "\
endpoints:
  - {name: web, namespace: shop, labels: {app: web}, node: node1}
  - {name: api, namespace: shop, labels: {app: api}, node: node2}
  - {name: db, namespace: data, labels: {app: db}, node: node3}
traffic:
  - {from: web, to: api, protocol: tcp, port: 8080}
  - {from: api, to: db, protocol: tcp, port: 5432}
  - {from: db, to: web, protocol: udp, port: 5353}
";

/// While node3's probe is down: traffic between node1 and node2 only.
const WITHOUT_NODE3: &str = "  - {from: web, to: api, protocol: tcp, port: 8081}\n";
/// After node3's probe is back.
const WITH_NODE3_AGAIN: &str = "  - {from: api, to: db, protocol: tcp, port: 5433}\n";

const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// Removes the test's state directory (probe logs and ready files stay in it)
/// after the lab is down.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn with_traffic(items: &str) -> Scenario {
    let head = SCENARIO.split("traffic:").next().unwrap();
    Scenario::parse(&format!("{head}traffic:\n{items}"), "fanin-more.yaml").unwrap()
}

fn run_traffic(lab: &Lab, scenario: &Scenario) {
    let report = block_in_place(|| run_traffic_once(lab, scenario)).expect("traffic runs");
    assert!(report.all_as_expected(), "{report}");
}

/// Waits until `pid` has exited (a zombie counts: the lab reaps it later).
fn wait_exited(pid: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let gone = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        });
        if gone {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "flow-probe {pid} ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts flow-probe for `node` again, with the arguments `node_probes::start`
/// uses, on the same address; the lab stops it on teardown.
fn restart_probe(lab: &mut Lab, opts: &ProbeOptions, node: &str, addr: SocketAddr) {
    let netns = lab.node_netns(node).expect("node namespace").to_string();
    let ready = lab.state_dir().join(format!("probe-{node}-again.addr"));
    let log = lab.state_dir().join(format!("probe-{node}-again.log"));
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new(&opts.binary)
        .args(["--netns", &netns, "--node-name", node, "--attach-endpoints"])
        .args(&opts.extra_args)
        .arg("--listen")
        .arg(addr.to_string())
        // Not the default 9965: another probe of this machine may hold it.
        .args(["--metrics-listen", "127.0.0.1:0"])
        .arg("--endpoints")
        .arg(lab.endpoints_path())
        .arg("--ready-file")
        .arg(&ready)
        .args(if opts.tls {
            node_probes::server_tls_args(&lab.certs())
        } else {
            Vec::new()
        })
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("start flow-probe again");
    lab.adopt_child(child, &format!("flow-probe {node} (restarted)"))
        .unwrap();
    wait_ready(&ready, &log);
}

fn wait_ready(ready: &Path, log: &Path) {
    let deadline = Instant::now() + WAIT;
    while !ready.exists() {
        assert!(
            Instant::now() < deadline,
            "restarted flow-probe not ready; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_merge_in_time_order_and_a_node_failure_is_reported_in_band() {
    test_support::require_root("it builds network namespaces and loads eBPF");
    let scenario = Scenario::parse(SCENARIO, "fanin.yaml").unwrap();
    let dir = DirGuard(std::env::temp_dir().join(format!("relay-fanin-{}", std::process::id())));
    let mut lab =
        block_in_place(|| Lab::up(&scenario, &LabOptions::with_state_dir(&dir.0))).expect("lab up");
    let opts = ProbeOptions::new(None).expect("flow-probe binary (cargo build --bins)");
    let probes = block_in_place(|| node_probes::start(&mut lab, &opts)).expect("probes start");
    let names: Vec<&str> = probes.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(names, NODES);

    // The relay follows the probes over mTLS with the lab's client certificate.
    assert!(probes.iter().all(|p| p.tls));
    let peer_tls = observe_cli::connect::lab_tls(lab.state_dir(), None).expect("lab certificates");
    let relay = RelayUnderTest::start_with(
        probes.iter().map(|p| p.addr.to_string()).collect(),
        Some(peer_tls),
    )
    .await;
    relay
        .wait_status("3 connected peers", |s| s.num_connected_nodes == Some(3))
        .await;

    // A following client first hears that all three nodes are connected.
    let mut follower = relay.follow().await;
    let first = follower.until("the first response", |_| true).await;
    assert_eq!(first, 0);
    let connected = node_status(&follower.log[0]).expect("starts with a node-status event");
    assert_eq!(shape(connected), event(NodeState::NodeConnected, &NODES));

    run_traffic(&lab, &scenario);
    let everywhere = [
        ("node1", 8080),
        ("node2", 8080),
        ("node2", 5432),
        ("node3", 5432),
        ("node3", 5353),
        ("node1", 5353),
    ];
    follower.until_flows(1, &everywhere).await;
    assert_time_order(&follower.log);

    // The same flows through a plain GetFlows: node status first, then time order.
    let answer = relay.get_flows(GetFlowsRequest::default()).await;
    assert_eq!(
        answer
            .iter()
            .filter_map(node_status)
            .map(shape)
            .collect::<Vec<_>>(),
        [event(NodeState::NodeConnected, &NODES)]
    );
    assert!(node_status(&answer[0]).is_some());
    let flows = &answer[1..];
    assert!(
        flows.iter().all(|r| flow(r).is_some()),
        "{}",
        describe(flows)
    );
    for (node, port) in everywhere {
        assert!(
            flows.iter().any(|r| is_flow_on(r, node, port)),
            "no flow on {node} port {port}:\n{}",
            describe(flows)
        );
    }
    let nodes_seen: BTreeSet<&str> = flows.iter().map(|r| r.node_name.as_str()).collect();
    assert_eq!(nodes_seen, BTreeSet::from(NODES));
    assert_time_order(flows);

    // Filters apply through the relay: only node2's flows.
    let only_node2 = relay
        .get_flows(GetFlowsRequest {
            whitelist: vec![observer_proto::flow::FlowFilter {
                node_name: vec!["node2".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await;
    let only: BTreeSet<&str> = only_node2
        .iter()
        .filter(|r| flow(r).is_some())
        .map(|r| r.node_name.as_str())
        .collect();
    assert_eq!(only, BTreeSet::from(["node2"]));

    let status = relay.status().await;
    assert_eq!(
        (status.num_connected_nodes, status.num_unavailable_nodes),
        (Some(3), Some(0))
    );
    assert!(status.unavailable_nodes.is_empty());
    assert_eq!(status.version, relay::state::VERSION);
    // Once polled, the peers' counters add up to what they hold: everything
    // the relay merged (no traffic runs now).
    relay
        .wait_status("the peers' flow counts", |s| {
            s.num_flows >= flows.len() as u64 && s.max_flows == 3 * 4095
        })
        .await;

    let nodes = relay
        .client()
        .await
        .get_nodes(GetNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let listed: Vec<(&str, String, i32)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.address.clone(), n.state))
        .collect();
    let expected: Vec<(&str, String, i32)> = probes
        .iter()
        .map(|p| {
            (
                p.node.as_str(),
                p.addr.to_string(),
                NodeState::NodeConnected as i32,
            )
        })
        .collect();
    assert_eq!(listed, expected);
    assert!(
        nodes
            .iter()
            .all(|n| n.version.starts_with("flow-probe") && n.max_flows == 4095 && n.uptime_ns > 0),
        "{nodes:?}"
    );

    let namespaces: BTreeSet<String> = relay
        .client()
        .await
        .get_namespaces(GetNamespacesRequest {})
        .await
        .unwrap()
        .into_inner()
        .namespaces
        .into_iter()
        .map(|n| n.namespace)
        .collect();
    assert!(
        namespaces.contains("shop") && namespaces.contains("data"),
        "{namespaces:?}"
    );

    // node3's probe goes away: the follower is told in-band, its stream goes on.
    let node3 = probes[2].clone();
    let killed_at = std::time::SystemTime::now();
    // SAFETY: kill(2) on the pid of a child the lab started and still holds.
    let rc = unsafe { libc::kill(node3.pid as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill flow-probe node3");
    let down_at = follower
        .until("node3 unavailable", |r| {
            node_status(r)
                .is_some_and(|e| shape(e) == event(NodeState::NodeUnavailable, &["node3"]))
        })
        .await;
    let message = &node_status(&follower.log[down_at]).unwrap().message;
    assert!(!message.is_empty(), "the event says why");

    let status = relay
        .wait_status("node3 unavailable", |s| s.num_unavailable_nodes == Some(1))
        .await;
    assert_eq!(status.num_connected_nodes, Some(2));
    assert_eq!(status.unavailable_nodes, ["node3"]);
    let answer = relay
        .get_flows(GetFlowsRequest {
            number: 1,
            ..Default::default()
        })
        .await;
    let opening: Vec<_> = answer.iter().map_while(node_status).map(shape).collect();
    assert_eq!(
        opening,
        [
            event(NodeState::NodeConnected, &["node1", "node2"]),
            event(NodeState::NodeUnavailable, &["node3"]),
        ]
    );

    // The other nodes' flows keep arriving on the same stream.
    run_traffic(&lab, &with_traffic(WITHOUT_NODE3));
    follower
        .until_flows(down_at, &[("node1", 8081), ("node2", 8081)])
        .await;
    // Flows node3 saw before it went down may still leave the reorder window
    // after the status event; none may come from after.
    let killed_ns = killed_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    assert!(
        follower.log[down_at..]
            .iter()
            .all(|r| flow(r).is_none_or(|f| r.node_name != "node3"
                || f.time
                    .as_ref()
                    .is_some_and(
                        |t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
                            <= killed_ns
                    ))),
        "no flows from node3 while it is down"
    );

    // node3's probe comes back on the same address: the relay reconnects.
    block_in_place(|| wait_exited(node3.pid));
    block_in_place(|| restart_probe(&mut lab, &opts, "node3", node3.addr));
    let up_at = follower
        .until("node3 connected again", |r| {
            node_status(r).is_some_and(|e| shape(e) == event(NodeState::NodeConnected, &["node3"]))
        })
        .await;
    let status = relay
        .wait_status("3 connected again", |s| s.num_connected_nodes == Some(3))
        .await;
    assert_eq!(status.num_unavailable_nodes, Some(0));
    assert!(status.unavailable_nodes.is_empty());
    run_traffic(&lab, &with_traffic(WITH_NODE3_AGAIN));
    follower
        .until_flows(up_at, &[("node2", 5433), ("node3", 5433)])
        .await;
    // (After a reconnect, the peer's history can be older than what already
    // went out: the relay passes such flows as late, so order is only asserted
    // while every node was up.)
    assert_time_order(&follower.log[..down_at]);

    drop(follower);
    relay.shutdown().await;
    block_in_place(|| lab.down()).expect("lab down");
}

/// A probe killed while traffic goes on finds, when it starts again, the
/// kernel's backlog of events (its ring buffer is pinned): more than its
/// buffer of recent flows holds, so the new run's first flows leave it
/// before the relay comes back. The relay tells exactly those as lost (from
/// the gap before the run's first flow it reads: runs number their flows
/// from 1), and every flow of the run after it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_probe_whose_buffer_let_its_backlog_go_is_told_lost() {
    test_support::require_root("it builds network namespaces and loads eBPF");
    const ONE_NODE: &str = "\
endpoints:
  - {name: web, namespace: shop, labels: {app: web}}
  - {name: api, namespace: shop, labels: {app: api}}
traffic:
  - {from: web, to: api, protocol: tcp, port: 7000}
";
    let scenario = Scenario::parse(ONE_NODE, "backlog.yaml").unwrap();
    let dir = DirGuard(std::env::temp_dir().join(format!("relay-backlog-{}", std::process::id())));
    let mut lab =
        block_in_place(|| Lab::up(&scenario, &LabOptions::with_state_dir(&dir.0))).expect("lab up");
    let mut opts = ProbeOptions::new(None).expect("flow-probe binary (cargo build --bins)");
    opts.extra_args = vec!["--ring-capacity".into(), "32".into()];
    let probes = block_in_place(|| node_probes::start(&mut lab, &opts)).expect("probes start");
    let peer_tls = observe_cli::connect::lab_tls(lab.state_dir(), None).expect("lab certificates");
    let relay = RelayUnderTest::start_with(vec![probes[0].addr.to_string()], Some(peer_tls)).await;
    relay
        .wait_status("node1 connected", |s| s.num_connected_nodes == Some(1))
        .await;
    let mut follower = relay.follow().await;
    run_traffic(&lab, &scenario);
    follower.until_flows(0, &[("node1", 7000)]).await;
    let run_of = |r: &GetFlowsResponse| flow(r).and_then(|f| run_and_number(&f.uuid));
    let first_run = follower
        .log
        .iter()
        .find_map(run_of)
        .expect("a numbered flow")
        .0;

    // SIGKILL: nothing of the probe's own is flushed; its programs stay.
    // SAFETY: kill(2) on the pid of a child the lab started and still holds.
    let rc = unsafe { libc::kill(probes[0].pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill flow-probe node1");
    block_in_place(|| wait_exited(probes[0].pid));
    // Dozens of connections, each a few events at two hooks: hundreds of
    // flows waiting in the kernel's ring for a buffer of 32.
    let many = "  - {from: web, to: api, protocol: tcp, port: 7001}\n".repeat(40);
    let head = ONE_NODE.split("traffic:").next().unwrap();
    let backlog = Scenario::parse(&format!("{head}traffic:\n{many}"), "more.yaml").unwrap();
    run_traffic(&lab, &backlog);
    block_in_place(|| restart_probe(&mut lab, &opts, "node1", probes[0].addr));

    let lost_at = follower
        .until("the new run's lost flows", |r| {
            matches!(&r.response_types, Some(ResponseTypes::LostEvents(l))
                if l.source == LostEventSource::HubbleRingBuffer as i32 && r.node_name == "node1")
        })
        .await;
    let Some(ResponseTypes::LostEvents(lost)) = &follower.log[lost_at].response_types else {
        unreachable!()
    };
    let lost = lost.num_events_lost;
    // What the relay holds of the new run: from its first number on, none
    // missing.
    let answer = relay.get_flows(GetFlowsRequest::default()).await;
    let mut numbers: Vec<u64> = answer
        .iter()
        .filter_map(run_of)
        .filter(|(run, _)| *run != first_run)
        .map(|(_, n)| n)
        .collect();
    numbers.sort_unstable();
    let (first, last) = (numbers[0], *numbers.last().unwrap());
    assert!(lost > 0, "a backlog of hundreds through a buffer of 32");
    assert_eq!(lost, first - 1, "the run's flows before the first read");
    assert_eq!(numbers, (first..=last).collect::<Vec<_>>());

    drop(follower);
    relay.shutdown().await;
    block_in_place(|| lab.down()).expect("lab down");
}
