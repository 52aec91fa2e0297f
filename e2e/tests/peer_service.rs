//! `peer.Peer` as a stock hubble-relay sees it, through a client generated
//! from Cilium's own peer.proto (`e2e::cilium`), not our structs: a real
//! lab of two nodes, a real flow-probe on each (mTLS), the relay in-process
//! over them with `--cluster-name lab`.
//!
//! A probe lists itself; the relay lists both probes as `lab/NODE`, tells
//! `PEER_DELETED` when node1's probe stops and `PEER_ADDED` when it is back.
//!
//! Needs root (network namespaces, eBPF) and the flow-probe binary
//! (`cargo build --bins`, or `FLOW_PROBE_BIN`). The lab stops the probes and
//! deletes its namespaces when the test ends, also on panic.

use std::time::{Duration, Instant};

use e2e::cilium::peer::peer_client::PeerClient;
use e2e::cilium::peer::{ChangeNotification, ChangeNotificationType, NotifyRequest, Tls};
use e2e::{ProbeAddr, RelayUnderTest, WAIT};
use observe_lab::Scenario;
use tonic::Streaming;

const SCENARIO: &str = "\
endpoints:
  - {name: web, namespace: shop, labels: {app: web}, node: node1}
  - {name: api, namespace: shop, labels: {app: api}, node: node2}
traffic:
  - {from: web, to: api, protocol: tcp, port: 8080}
";

/// A notification as Cilium's client decodes it: type, name, address, TLS
/// server name.
fn seen(n: &ChangeNotification) -> (ChangeNotificationType, String, String, Option<String>) {
    (
        n.r#type(),
        n.name.clone(),
        n.address.clone(),
        n.tls.as_ref().map(|t: &Tls| t.server_name.clone()),
    )
}

async fn next(
    stream: &mut Streaming<ChangeNotification>,
) -> (ChangeNotificationType, String, String, Option<String>) {
    let n = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a change notification in time")
        .expect("the Notify stream")
        .expect("the Notify stream goes on");
    seen(&n)
}

/// Waits until `pid` has exited (a zombie counts: the lab reaps it later).
async fn wait_exited(pid: u32) {
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(
            Instant::now() < deadline,
            "flow-probe {pid} ignored SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubble_peer_clients_list_the_probes_and_hear_one_stop_and_start() {
    use ChangeNotificationType::{PeerAdded, PeerDeleted};
    let scenario = Scenario::parse(SCENARIO, "peer-service.yaml").unwrap();
    let mut env = tokio::task::block_in_place(|| e2e::start(&scenario, &[]));
    let [node1, node2] = [env.probes[0].clone(), env.probes[1].clone()];
    assert!(node1.tls && node2.tls, "the lab serves mTLS");

    // A probe lists itself, at the address the client reached, with TLS
    // checked against that address's host.
    let mut probe = PeerClient::new(env.server(node2.addr).channel().await)
        .notify(NotifyRequest {})
        .await
        .expect("Notify on a probe")
        .into_inner();
    assert_eq!(
        next(&mut probe).await,
        (
            PeerAdded,
            "node2".to_string(),
            node2.addr.to_string(),
            Some("127.0.0.1".to_string())
        )
    );

    // The relay lists both probes it follows, named in its cluster.
    let peer_tls =
        observe_cli::connect::lab_tls(&env.state_dir, None).expect("the lab's certificates");
    let mut cfg = RelayUnderTest::config(
        vec![node1.addr.to_string(), node2.addr.to_string()],
        Some(peer_tls),
    );
    cfg.cluster_name = Some("lab".into());
    let relay = RelayUnderTest::start_config(cfg).await;
    relay
        .wait_status("both probes connected", |s| {
            s.num_connected_nodes == Some(2)
        })
        .await;
    let mut peers = PeerClient::new(ProbeAddr::plaintext(relay.addr()).channel().await)
        .notify(NotifyRequest {})
        .await
        .expect("Notify on the relay")
        .into_inner();
    let listed = |name: &str, addr: std::net::SocketAddr| {
        (
            name.to_string(),
            addr.to_string(),
            Some("127.0.0.1".to_string()),
        )
    };
    let (n1, n2) = (
        listed("lab/node1", node1.addr),
        listed("lab/node2", node2.addr),
    );
    let added = |(name, addr, tls): &(String, String, Option<String>)| {
        (PeerAdded, name.clone(), addr.clone(), tls.clone())
    };
    let deleted = |(name, addr, tls): &(String, String, Option<String>)| {
        (PeerDeleted, name.clone(), addr.clone(), tls.clone())
    };
    assert_eq!(next(&mut peers).await, added(&n1));
    assert_eq!(next(&mut peers).await, added(&n2));

    // node1's probe stops: the relay deletes it.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(node1.pid as i32).expect("a pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM to node1's probe");
    wait_exited(node1.pid).await;
    assert_eq!(next(&mut peers).await, deleted(&n1));

    // It starts again on the same address: the relay adds it back.
    tokio::task::block_in_place(|| env.restart_probe());
    assert_eq!(env.probe.addr, node1.addr);
    assert_eq!(next(&mut peers).await, added(&n1));

    // A new client hears the whole list again.
    let mut again = PeerClient::new(ProbeAddr::plaintext(relay.addr()).channel().await)
        .notify(NotifyRequest {})
        .await
        .expect("Notify on the relay")
        .into_inner();
    assert_eq!(next(&mut again).await, added(&n1));
    assert_eq!(next(&mut again).await, added(&n2));

    // The relay's shutdown ends its Notify streams.
    relay.shutdown().await;
    assert!(
        matches!(peers.message().await, Ok(None)),
        "the stream ends with the relay"
    );
}
