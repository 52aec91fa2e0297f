//! `observe lab up --containers`, as the library runs it: the built-in
//! scenario with each endpoint a real Podman container, a flow-probe per
//! node finding them through the Docker Engine API (not the endpoints file)
//! and the relay merging the nodes. The scenario's traffic must go as it
//! expects (policy drops, audit, the service VIP), every probe must report
//! exactly its node's containers ready, and the relay must carry every edge
//! of the scenario with the containers named as their scenario endpoints.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;

use e2e::ProbeAddr;
use e2e::scenario_graph::SCENARIO_EDGES;
use observe_lab::node_probes::{self, ProbeOptions};
use observe_lab::{Lab, LabOptions, Scenario, run_traffic_once};
use observer_proto::observe::v1::endpoint_status::State;
use observer_proto::observer::ServerStatusRequest;
use service_graph::GraphBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_scenario_with_containers_through_the_relay() {
    test_support::require_root("it runs Podman containers and loads eBPF");
    let scenario = Scenario::builtin_default();
    // Dropped last: the lab's logs and history.
    let scratch = test_support::scratch::ScratchDir::new("container-lab");
    let opts = LabOptions {
        containers: true,
        ..LabOptions::with_state_dir(scratch.path().join("state"))
    };
    let mut lab = tokio::task::block_in_place(|| Lab::up(&scenario, &opts)).expect("lab up");
    let probes = tokio::task::block_in_place(|| {
        let probes = node_probes::start(&mut lab, &ProbeOptions::new(None)?)?;
        let relay = node_probes::start_relay(&mut lab, &probes, 0)?;
        anyhow::Ok((probes, relay))
    });
    let (probes, relay) = probes.expect("probes and relay start");

    // Each probe: exactly its node's containers, found through the API, ready.
    for p in &probes {
        let wanted: BTreeSet<String> = lab
            .topology()
            .endpoints
            .iter()
            .filter(|e| e.node == p.node)
            .map(|e| e.name.clone())
            .collect();
        let deadline = std::time::Instant::now() + e2e::WAIT;
        loop {
            let status = ProbeAddr::of_lab(p.addr, lab.state_dir(), p.tls)
                .client()
                .await
                .server_status(ServerStatusRequest {})
                .await
                .expect("ServerStatus")
                .into_inner();
            let ready: BTreeSet<String> = status
                .endpoints
                .iter()
                .filter(|e| e.state == State::Ready as i32 && e.source == "docker")
                .map(|e| e.name.clone())
                .collect();
            if ready == wanted && status.endpoints.len() == wanted.len() {
                let docker = &status.endpoint_sources[0];
                // This node's containers, not every node's the runtime has.
                assert_eq!(
                    (docker.name.as_str(), docker.connected, docker.endpoints),
                    ("docker", true, wanted.len() as u32)
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: wanted {wanted:?} ready, has {:#?}",
                p.node,
                status.endpoints
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    let report =
        tokio::task::block_in_place(|| run_traffic_once(&lab, &scenario)).expect("traffic runs");
    assert!(report.all_as_expected(), "{report}");

    let nodes: BTreeSet<String> = lab.nodes().iter().map(|n| n.name.clone()).collect();
    let flows = ProbeAddr::of_lab(relay.addr, lab.state_dir(), relay.tls)
        .wait_for("every scenario edge from every node", |flows| {
            let g = GraphBuilder::build(flows);
            let seen: BTreeSet<String> = flows.iter().map(|f| f.node_name.clone()).collect();
            seen == nodes
                && SCENARIO_EDGES.iter().all(|id| {
                    let (a, b) = id.split_once("->").unwrap();
                    g.find(a, b).is_some()
                })
        })
        .await;
    // The containers are named as the scenario's endpoints, never by their
    // prefixed container names: every pod in the flows is one, and every
    // endpoint the traffic names directly is there (a service's backend is
    // the load balancer's pick).
    let pods: BTreeSet<String> = flows
        .iter()
        .flat_map(|f| [&f.source, &f.destination])
        .flatten()
        .filter(|e| !e.pod_name.is_empty())
        .map(|e| format!("{}/{}", e.namespace, e.pod_name))
        .collect();
    let named = |name: &str| {
        let e = lab.endpoint(name).expect("a scenario endpoint");
        format!("{}/{}", e.namespace, e.name)
    };
    let endpoints: BTreeSet<String> = lab
        .topology()
        .endpoints
        .iter()
        .map(|e| named(&e.name))
        .collect();
    assert!(pods.is_subset(&endpoints), "{pods:?}");
    let direct: BTreeSet<String> = scenario
        .traffic
        .iter()
        .flat_map(|t| [t.from.as_str(), t.to.as_str()])
        .filter(|n| !n.is_empty())
        .map(named)
        .collect();
    assert!(direct.is_subset(&pods), "{direct:?} in {pods:?}");

    // Containers restarted (a new network namespace, its routes and
    // sysctls gone, a new MAC address): the next traffic sets them up again,
    // and every item goes as expected once more. db serves: its peers still
    // had its old MAC address.
    let [client, db] = ["client", "db"].map(|name| {
        lab.endpoint(name)
            .expect("the scenario's endpoint")
            .netns
            .clone()
    });
    let before = std::fs::metadata(format!("/var/run/netns/{client}"))
        .unwrap()
        .ino();
    for c in [&client, &db] {
        observe_lab::podman::podman(&["restart", "--time", "1", c]).expect("podman restart");
    }
    let report =
        tokio::task::block_in_place(|| run_traffic_once(&lab, &scenario)).expect("traffic runs");
    assert!(
        report.all_as_expected(),
        "after restarting {client} and {db}: {report}"
    );
    let pid = observe_lab::podman::pid(&client).unwrap();
    let named = std::fs::metadata(format!("/var/run/netns/{client}"))
        .unwrap()
        .ino();
    let current = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino();
    assert_eq!(named, current, "the name follows the restarted container");
    assert_ne!(named, before);

    let prefix = lab.prefix().to_string();
    tokio::task::block_in_place(|| lab.down()).expect("lab down");
    let left = observe_lab::podman::podman(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=observe.io/lab={prefix}"),
        "--format",
        "{{.Names}}",
    ])
    .unwrap();
    assert_eq!(left, "", "no container of the lab is left");
    let networks =
        observe_lab::podman::podman(&["network", "ls", "--format", "{{.Name}}"]).unwrap();
    assert!(!networks.contains(&prefix), "{networks}");
    let names = observe_lab::netns_list().unwrap();
    assert!(
        !names.iter().any(|n| n.starts_with(&format!("{prefix}-"))),
        "{names:?}"
    );
}
