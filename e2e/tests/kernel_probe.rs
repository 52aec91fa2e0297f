//! The probe in the kernel, in-process: lost events are never silent, a
//! stopped pipeline has read every event first, and stopping the probe leaves
//! no program, link or pin behind.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use e2e::in_process::{enricher_for, watched_netns};
use flow_probe::enrich::Enricher;
use flow_probe::kernel::config::GcConfig;
use flow_probe::kernel::features::KernelFeatures;
use flow_probe::kernel::loader::{LoadedProbe, ProbeConfig};
use flow_probe::kernel::sysfs;
use flow_probe::pipeline::{self, Pipeline};
use observe_lab::{Lab, LabOptions, Scenario};
use observer_proto::flow::{Flow, TraceObservationPoint};
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_runtime::store::FlowStore;
use test_support::flows::udp_ports;
use tokio::sync::broadcast::error::RecvError;

const TWO: &str = "endpoints:\n  - {name: a, namespace: t, labels: {app: a}}\n  - {name: b, namespace: t, labels: {app: b}}\n";

fn lab(tag: &str) -> Lab {
    test_support::require_root("it loads eBPF programs into a lab of namespaces");
    let dir = std::env::temp_dir().join(format!("flow-probe-{tag}-{}", std::process::id()));
    Lab::up(
        &Scenario::parse(TWO, "two.yaml").unwrap(),
        &LabOptions::with_state_dir(dir),
    )
    .expect("lab up")
}

fn host_interfaces(lab: &Lab) -> Vec<String> {
    lab.endpoints_file()
        .endpoints
        .iter()
        .filter_map(|e| e.interface.clone())
        .collect()
}

/// Sends `n` datagrams from endpoint `from` to distinct ports of `to`: each one
/// is a new flow, so an event, at both veths.
fn flood(lab: &Lab, from: &str, to: &str, n: u16) {
    let src = lab.endpoint(from).unwrap().netns.clone();
    let dst: SocketAddr = (lab.endpoint(to).unwrap().ipv4, 0).into();
    std::thread::spawn(move || {
        sysfs::enter_netns(&src).unwrap();
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        for port in 0..n {
            let mut to = dst;
            to.set_port(20_000 + port);
            sock.send_to(b"flood", to).unwrap();
        }
    })
    .join()
    .unwrap();
}

/// Takes the lab's host-side veths down, so no packet, hence no event, comes
/// after what a test sent.
fn links_down(lab: &Lab) {
    let node = lab.node_netns("node1").unwrap();
    for iface in host_interfaces(lab) {
        let ok = std::process::Command::new("ip")
            .args(["-n", node, "link", "set", &iface, "down"])
            .status()
            .unwrap();
        assert!(ok.success(), "ip link set {iface} down");
    }
}

/// Resolves once `done` holds for everything pushed to `store` so far
/// (true), or after `e2e::WAIT` (false): the stop signal of a pipeline that
/// must first have read what the test expects.
async fn stored(store: &FlowStore, done: impl Fn(&[GetFlowsResponse]) -> bool) -> bool {
    // The snapshot holds what was pushed before we subscribed: nothing is missed.
    let (snapshot, mut rx) = store.snapshot_and_follow();
    let mut seen: Vec<GetFlowsResponse> = snapshot.iter().map(|e| (*e.response).clone()).collect();
    let follow = async {
        while !done(&seen) {
            match rx.recv().await {
                Ok(e) => seen.push((*e.response).clone()),
                Err(RecvError::Lagged(n)) => panic!("the test's follower lagged by {n}"),
                Err(RecvError::Closed) => return false,
            }
        }
        true
    };
    tokio::time::timeout(e2e::WAIT, follow)
        .await
        .unwrap_or(false)
}

/// Runs `probe`'s pipeline into `store` until `done` holds for what it
/// stored; fails when it did not within `e2e::WAIT` (see [`stored`]), so
/// that what the pipeline tells at its stop cannot make up for it.
async fn read_until(
    probe: &mut LoadedProbe,
    enricher: Enricher,
    store: &Arc<FlowStore>,
    done: impl Fn(&[GetFlowsResponse]) -> bool,
) {
    let held = std::sync::atomic::AtomicBool::new(false);
    let stop = async {
        let done = stored(store, done).await;
        held.store(done, std::sync::atomic::Ordering::Relaxed);
    };
    pipeline::run(
        probe,
        Pipeline::new(enricher, store.clone()),
        Duration::from_millis(100),
        stop,
    )
    .await
    .unwrap();
    assert!(
        held.load(std::sync::atomic::Ordering::Relaxed),
        "the pipeline did not store what the test waited for within {:?}",
        e2e::WAIT
    );
}

/// Everything in the store, oldest first.
fn stored_responses(store: &FlowStore) -> Vec<GetFlowsResponse> {
    store
        .snapshot()
        .iter()
        .map(|e| (*e.response).clone())
        .collect()
}

/// Flows delivered and events reported lost, in `responses`.
fn delivered_and_lost(responses: &[GetFlowsResponse]) -> (u64, u64) {
    let (mut flows, mut lost) = (0u64, 0u64);
    for r in responses {
        match &r.response_types {
            Some(ResponseTypes::Flow(_)) => flows += 1,
            Some(ResponseTypes::LostEvents(l)) => lost += l.num_events_lost,
            other => panic!("unexpected record {other:?}"),
        }
    }
    (flows, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_plus_reported_lost_equals_what_the_kernel_tried() {
    let lab = lab("lost");
    let ifaces = host_interfaces(&lab);
    // One page of ring buffer holds ~30 events; nobody reads it during the flood.
    // The tracepoints watch only this lab's namespaces: other tests' traffic
    // must not add events after ours stopped.
    let cfg = ProbeConfig {
        ringbuf_bytes: 4096,
        netns: Some(lab.node_netns("node1").unwrap().to_string()),
        drop_netns: watched_netns(&lab),
        ..ProbeConfig::default()
    };
    let mut probe =
        LoadedProbe::start(&cfg, &ifaces, &KernelFeatures::probe()).expect("probe loads");
    flood(&lab, "a", "b", 2000);
    links_down(&lab);
    let before = probe.counters().unwrap();
    assert!(
        before.events_lost > 0,
        "the flood must overflow a one-page ring: {before:?}"
    );

    let store = Arc::new(FlowStore::new(100_000));
    let pipeline = Pipeline::new(Enricher::new("node1", &lab.endpoints_file()), store.clone());
    // Stop once every event the kernel tried is in the stream, as a flow or
    // as counted lost.
    let stop = async {
        stored(&store, |seen| {
            let (flows, lost) = delivered_and_lost(seen);
            flows + lost >= before.events_tried
        })
        .await;
    };
    pipeline::run(&mut probe, pipeline, Duration::from_millis(50), stop)
        .await
        .unwrap();

    let after = probe.counters().unwrap();
    assert_eq!(after, before, "no event after the veths went down");
    let responses = stored_responses(&store);
    let (flows, lost) = delivered_and_lost(&responses);
    assert_eq!(
        lost, after.events_lost,
        "every lost event is reported in the stream"
    );
    assert_eq!(
        flows + lost,
        after.events_tried,
        "delivered {flows} + lost {lost} vs tried {}",
        after.events_tried
    );
    // A bound, not a count: b answers some datagrams with ICMP port
    // unreachable (rate-limited by the kernel), and the fresh interfaces send
    // their own IPv6 neighbour and multicast traffic; each is a flow too.
    assert!(
        after.events_tried >= 4000,
        "2000 new flows at two veths: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_pipeline_first_reads_the_ring_to_the_end() {
    let lab = lab("drain");
    let cfg = ProbeConfig {
        netns: Some(lab.node_netns("node1").unwrap().to_string()),
        drop_netns: watched_netns(&lab),
        ..ProbeConfig::default()
    };
    let mut probe = LoadedProbe::start(&cfg, &host_interfaces(&lab), &KernelFeatures::probe())
        .expect("probe loads");
    flood(&lab, "a", "b", 100);
    links_down(&lab);
    let before = probe.counters().unwrap();
    assert_eq!(before.events_lost, 0, "a 4 MiB ring holds them all");

    let store = Arc::new(FlowStore::new(10_000));
    let pipeline = Pipeline::new(enricher_for(&probe, &lab), store.clone());
    // Told to stop before it starts: what it delivers, it read on the way out.
    pipeline::run(
        &mut probe,
        pipeline,
        Duration::from_secs(3600),
        std::future::ready(()),
    )
    .await
    .unwrap();

    assert_eq!(
        probe.counters().unwrap(),
        before,
        "no event after the flood"
    );
    let responses = stored_responses(&store);
    assert_eq!(
        delivered_and_lost(&responses),
        (before.events_tried, 0),
        "every event the kernel wrote is in the store"
    );
    let mut flood_ports: Vec<u32> = flows_of(&responses)
        .filter(|f| leaving_a(f))
        .filter_map(udp_ports)
        .map(|(_, dport)| dport)
        .filter(|p| (20_000..20_100).contains(p))
        .collect();
    flood_ports.sort_unstable();
    assert_eq!(flood_ports, (20_000..20_100).collect::<Vec<u32>>());
}

#[test]
fn stopping_the_probe_unloads_its_programs_and_links() {
    let lab = lab("unload");
    let node = lab.node_netns("node1").unwrap().to_string();
    let cfg = ProbeConfig {
        netns: Some(node),
        ..ProbeConfig::default()
    };
    let probe = LoadedProbe::start(&cfg, &host_interfaces(&lab), &KernelFeatures::probe())
        .expect("probe loads");
    let ids: Vec<u32> = probe.program_ids.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), 2);
    let loaded = || -> Vec<u32> {
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|p| p.id())
            .filter(|id| ids.contains(id))
            .collect()
    };
    assert_eq!(
        loaded().len(),
        2,
        "both programs are in the kernel while attached"
    );
    let pin_dir = flow_probe::kernel::pins::pin_dir(cfg.netns.as_deref());
    assert!(pin_dir.join("link_lxc1_ingress").exists() && pin_dir.join("POLICY").exists());
    drop(probe);
    assert!(!pin_dir.exists(), "a clean stop removes the pins");
    // Unpinned links and programs are freed by the kernel after an RCU grace period.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !loaded().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        loaded(),
        Vec::<u32>::new(),
        "programs are gone after the probe stops"
    );
}

#[test]
fn a_start_that_fails_leaves_no_pins_behind() {
    let lab = lab("failed-start");
    let node = lab.node_netns("node1").unwrap().to_string();
    let cfg = ProbeConfig {
        netns: Some(node),
        ..ProbeConfig::default()
    };
    let mut interfaces = host_interfaces(&lab);
    interfaces.push("nosuchif0".into());
    let err = LoadedProbe::start(&cfg, &interfaces, &KernelFeatures::probe())
        .err()
        .expect("no such interface");
    assert!(format!("{err:#}").contains("nosuchif0"), "{err:#}");
    // The interfaces before it were attached and pinned; all went with it.
    let pin_dir = flow_probe::kernel::pins::pin_dir(cfg.netns.as_deref());
    assert!(
        !pin_dir.exists(),
        "{:?}",
        std::fs::read_dir(&pin_dir).map(|d| d.count())
    );
}

/// The port the trickle's last datagram goes to: a new flow, so always an event.
const MARKER_PORT: u16 = 7778;

/// Sends `n` datagrams of one flow from `netns` to `dst`, `gap` apart (the
/// pacing the periodic reports measure), then one datagram from the same
/// socket to [`MARKER_PORT`]; returns the source port.
fn trickle(netns: String, dst: SocketAddr, n: u32, gap: Duration) -> u16 {
    sysfs::enter_netns(&netns).unwrap();
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    for _ in 0..n {
        sock.send_to(b"tick", dst).unwrap();
        std::thread::sleep(gap);
    }
    let mut marker = dst;
    marker.set_port(MARKER_PORT);
    sock.send_to(b"done", marker).unwrap();
    sock.local_addr().unwrap().port()
}

fn leaving_a(f: &Flow) -> bool {
    f.trace_observation_point == TraceObservationPoint::FromEndpoint as i32
}

fn flows_of(responses: &[GetFlowsResponse]) -> impl Iterator<Item = &Flow> {
    responses.iter().filter_map(|r| match &r.response_types {
        Some(ResponseTypes::Flow(f)) => Some(f),
        _ => None,
    })
}

/// Packet counts of the events of one trickled flow, seen leaving endpoint a.
async fn trickle_events(cfg: ProbeConfig, lab: &Lab, n: u32, gap: Duration) -> Vec<u64> {
    let mut probe = LoadedProbe::start(&cfg, &host_interfaces(lab), &KernelFeatures::probe())
        .expect("probe loads");
    let enricher = enricher_for(&probe, lab);
    let store = Arc::new(FlowStore::new(10_000));
    let netns = lab.endpoint("a").unwrap().netns.clone();
    let dst: SocketAddr = (lab.endpoint("b").unwrap().ipv4, 7777).into();
    let sender = std::thread::spawn(move || trickle(netns, dst, n, gap));
    // The marker leaves a after the trickle's packets, and the ring hands
    // events over in the order the kernel made them: once the marker's event
    // is in the store, so is every event of the trickle.
    let marker =
        |f: &Flow| leaving_a(f) && udp_ports(f).is_some_and(|(_, d)| d == u32::from(MARKER_PORT));
    read_until(&mut probe, enricher, &store, |seen| {
        flows_of(seen).any(marker)
    })
    .await;
    let sport = u32::from(sender.join().unwrap());
    let responses = stored_responses(&store);
    assert!(
        flows_of(&responses)
            .any(|f| marker(f) && udp_ports(f) == Some((sport, u32::from(MARKER_PORT)))),
        "the marker datagram's flow never arrived"
    );
    flows_of(&responses)
        .filter(|f| leaving_a(f) && udp_ports(f) == Some((sport, 7777)))
        .map(|f| f.volume.unwrap().fwd_packets)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_levels_and_periodic_reports() {
    let lab = lab("aggregation");
    let node = Some(lab.node_netns("node1").unwrap().to_string());
    let gap = Duration::from_millis(40);
    // Default aggregation: one event, on the flow's first packet, and the
    // last report at the stop.
    let cfg = ProbeConfig {
        netns: node.clone(),
        ..ProbeConfig::default()
    };
    assert_eq!(trickle_events(cfg, &lab, 10, gap).await, [1, 10]);
    // "Every packet": one event per packet, counters rising by one.
    let cfg = ProbeConfig {
        netns: node.clone(),
        aggregate: false,
        ..ProbeConfig::default()
    };
    assert_eq!(
        trickle_events(cfg, &lab, 10, gap).await,
        (1..=10).collect::<Vec<u64>>()
    );
    // Periodic reports every 150 ms over 20 packets at least 40 ms apart (760 ms
    // or more from first to last, five ticks; a late tick delays the next):
    // the first packet, then at least two reports, each carrying the counters
    // so far; the last, at the stop at the latest, all 20.
    let cfg = ProbeConfig {
        netns: node,
        report_interval: Duration::from_millis(150),
        ..ProbeConfig::default()
    };
    let counts = trickle_events(cfg, &lab, 20, gap).await;
    assert_eq!(counts.first(), Some(&1), "{counts:?}");
    assert!(
        counts.len() >= 3 && counts.windows(2).all(|w| w[1] > w[0]) && counts.last() == Some(&20),
        "{counts:?}"
    );
}

/// A probe started as `cfg` says, and 12 datagrams 10 ms apart from a to
/// b:7777 (then the marker, see [`trickle`]) already sent: the probe, an
/// enricher and a store for its pipeline, and the stream's source port.
fn trickled_twelve(lab: &Lab, cfg: &ProbeConfig) -> (LoadedProbe, Enricher, Arc<FlowStore>, u32) {
    let probe = LoadedProbe::start(cfg, &host_interfaces(lab), &KernelFeatures::probe())
        .expect("probe loads");
    let enricher = enricher_for(&probe, lab);
    let netns = lab.endpoint("a").unwrap().netns.clone();
    let dst: SocketAddr = (lab.endpoint("b").unwrap().ipv4, 7777).into();
    let sport = std::thread::spawn(move || trickle(netns, dst, 12, Duration::from_millis(10)))
        .join()
        .unwrap();
    (
        probe,
        enricher,
        Arc::new(FlowStore::new(10_000)),
        u32::from(sport),
    )
}

/// A UDP stream has no FIN and, without periodic reports, no event after its
/// first packet: when the garbage collection deletes it (idle), its last
/// report carries the whole of it, or its volume would stop at one packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_udp_stream_is_told_whole_when_it_is_collected() {
    let lab = lab("udp-end");
    let cfg = ProbeConfig {
        netns: Some(lab.node_netns("node1").unwrap().to_string()),
        gc: GcConfig {
            interval: Duration::from_millis(200),
            other_idle: Duration::from_secs(1),
            ..GcConfig::default()
        },
        ..ProbeConfig::default()
    };
    let (mut probe, enricher, store, sport) = trickled_twelve(&lab, &cfg);
    let stream = |f: &&Flow| leaving_a(f) && udp_ports(f) == Some((sport, 7777));
    read_until(&mut probe, enricher, &store, |seen| {
        flows_of(seen).filter(stream).count() >= 2
    })
    .await;
    let responses = stored_responses(&store);
    let told: Vec<(u64, u64, bool, bool)> = flows_of(&responses)
        .filter(stream)
        .map(|f| {
            let v = f.volume.unwrap();
            (
                v.fwd_packets,
                v.rev_packets,
                f.is_reply == Some(false),
                v.report,
            )
        })
        .collect();
    // The first packet's event, then the end, marked as a report (no
    // packet): 12 datagrams, none back.
    assert_eq!(told, [(1, 0, true, false), (12, 0, true, true)]);
    let end = flows_of(&responses).filter(stream).last().unwrap();
    assert!(
        end.summary
            .contains("; report of the connection so far: 12 packets / "),
        "{}",
        end.summary
    );
}

/// A probe that stops without `--persist` takes its tables with it: what no
/// event told of a live connection (here a UDP stream's packets after its
/// first) is told by a last report at the stop, at both veths, or it would be
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_tells_what_no_event_told() {
    let lab = lab("stop-words");
    let cfg = ProbeConfig {
        netns: Some(lab.node_netns("node1").unwrap().to_string()),
        ..ProbeConfig::default()
    };
    let (mut probe, enricher, store, sport) = trickled_twelve(&lab, &cfg);
    let port = |f: &Flow| udp_ports(f).is_some_and(|(s, _)| s == sport);
    // Stopped once the marker's first packet reached b: the stream's 12 are
    // in the tables, and their events (only the first) in the store.
    let marker_at_b = |f: &Flow| {
        !leaving_a(f) && port(f) && udp_ports(f).is_some_and(|(_, d)| d == u32::from(MARKER_PORT))
    };
    read_until(&mut probe, enricher, &store, |seen| {
        flows_of(seen).any(marker_at_b)
    })
    .await;
    let responses = stored_responses(&store);
    let mut told: Vec<(bool, u32, u64, u64, bool)> = flows_of(&responses)
        .filter(|f| port(f))
        .map(|f| {
            let v = f.volume.unwrap();
            let (_, dport) = udp_ports(f).unwrap();
            (leaving_a(f), dport, v.fwd_packets, v.fwd_bytes, v.report)
        })
        .collect();
    told.sort();
    // Whole frames: 14 + 20 + 8 + 4 bytes of "tick" or "done".
    let marker = u32::from(MARKER_PORT);
    assert_eq!(
        told,
        [
            (false, 7777, 1, 46, false),
            (false, 7777, 12, 552, true),
            (false, marker, 1, 46, false),
            (true, 7777, 1, 46, false),
            (true, 7777, 12, 552, true),
            (true, marker, 1, 46, false),
        ],
        "each veth: the stream's first packet, its last report at the stop, the marker's one packet"
    );
}

/// ICMP messages other than echo have no ports, so all of them between two
/// addresses share one flow entry at an interface: each must still be a
/// flow, or only the first port unreachable of a pair would ever show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_icmp_error_is_a_flow() {
    let lab = lab("icmp-errors");
    let cfg = ProbeConfig {
        netns: Some(lab.node_netns("node1").unwrap().to_string()),
        ..ProbeConfig::default()
    };
    let mut probe = LoadedProbe::start(&cfg, &host_interfaces(&lab), &KernelFeatures::probe())
        .expect("probe loads");
    let enricher = enricher_for(&probe, &lab);
    let store = Arc::new(FlowStore::new(10_000));
    // Three closed ports of b: three port unreachables back to a (fewer than
    // the six the kernel sends to one peer before it rate-limits).
    flood(&lab, "a", "b", 3);
    let unreachable = |f: &&Flow| {
        matches!(
            f.l4.as_ref().and_then(|l| l.protocol.as_ref()),
            Some(observer_proto::flow::layer4::Protocol::IcmPv4(i)) if (i.r#type, i.code) == (3, 3)
        )
    };
    read_until(&mut probe, enricher, &store, |seen| {
        flows_of(seen).filter(unreachable).count() >= 6
    })
    .await;
    let responses = stored_responses(&store);
    let b = lab.endpoint("b").unwrap().ipv4.to_string();
    let mut seen: Vec<(i32, String)> = flows_of(&responses)
        .filter(unreachable)
        .map(|f| {
            let ip = f.ip.as_ref().unwrap();
            assert_eq!(ip.source, b, "{f:?}");
            (f.trace_observation_point, f.summary.clone())
        })
        .collect();
    seen.sort();
    let at = |point: TraceObservationPoint| {
        (
            point as i32,
            "ICMPv4 DestinationUnreachable(Port)".to_string(),
        )
    };
    assert_eq!(
        seen,
        [
            at(TraceObservationPoint::FromEndpoint),
            at(TraceObservationPoint::FromEndpoint),
            at(TraceObservationPoint::FromEndpoint),
            at(TraceObservationPoint::ToEndpoint),
            at(TraceObservationPoint::ToEndpoint),
            at(TraceObservationPoint::ToEndpoint),
        ]
    );
}
