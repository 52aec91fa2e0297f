//! flow-probe tells the volume of a connection that no event told (a UDP
//! stream's packets after its first, a download's bytes) in reports: every
//! `--report-interval` (10 s unless told otherwise) while the connection
//! lives, and, at a clean stop without `--persist` (which takes the flow
//! tables away), before its server stops; then the stream ends with
//! "shutting down", which a follower tells from a clean end. A probe
//! restarted over the tables a killed one left reports and counts their
//! connections from their growth on, not again from their start.
//!
//! Needs root and the flow-probe binary (`cargo build --bins`).

use std::net::{SocketAddr, UdpSocket};

use e2e::WAIT;
use flow_probe::kernel::sysfs;
use observe_lab::Scenario;
use observe_lab::node_probes::ProbeOptions;
use observer_proto::flow::{Flow, TraceObservationPoint};
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use test_support::flows::udp_ports;

const TWO: &str = "endpoints:\n  - {name: a, namespace: t, labels: {app: a}}\n  - {name: b, namespace: t, labels: {app: b}}\n";

/// Sends 12 datagrams of 4 bytes from `netns` to `dst`, one socket; returns
/// its port.
fn twelve_datagrams(netns: String, dst: SocketAddr) -> u32 {
    sysfs::enter_netns(&netns).unwrap();
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    for _ in 0..12 {
        sock.send_to(b"tick", dst).unwrap();
    }
    u32::from(sock.local_addr().unwrap().port())
}

/// `(sent from a's side, packets, bytes, a report)` of each flow, sorted.
fn volumes(told: &[Flow]) -> Vec<(bool, u64, u64, bool)> {
    let mut seen: Vec<_> = told
        .iter()
        .map(|f| {
            let v = f.volume.unwrap();
            let from_a = f.trace_observation_point == TraceObservationPoint::FromEndpoint as i32;
            (from_a, v.fwd_packets, v.fwd_bytes, v.report)
        })
        .collect();
    seen.sort();
    seen
}

/// A follow of node1's probe, from now on.
async fn follow(env: &e2e::Env) -> tonic::Streaming<GetFlowsResponse> {
    env.client()
        .await
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Reads `stream` until the next flow of the UDP stream from `sport`
/// (added to `told`), or its end's status.
async fn next_flow(
    stream: &mut tonic::Streaming<GetFlowsResponse>,
    sport: u32,
    told: &mut Vec<Flow>,
) -> Option<tonic::Status> {
    loop {
        let got = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("the stream neither went on nor ended");
        match got {
            Ok(Some(r)) => {
                if let Some(ResponseTypes::Flow(f)) = r.response_types
                    && udp_ports(&f).is_some_and(|(s, _)| s == sport)
                {
                    told.push(f);
                    return None;
                }
            }
            Ok(None) => panic!("the follow ended without a status"),
            Err(status) => return Some(status),
        }
    }
}

/// A lab of a and b with node1's probe started as `opts`, a follow of it,
/// and 12 datagrams sent from a to b; their source port.
async fn followed_datagrams(
    opts: &ProbeOptions,
) -> (e2e::Env, tonic::Streaming<GetFlowsResponse>, u32) {
    let env = e2e::start_with(&Scenario::parse(TWO, "two.yaml").unwrap(), opts);
    let stream = follow(&env).await;
    let netns = env.lab.endpoint("a").unwrap().netns.clone();
    let dst: SocketAddr = (env.lab.endpoint("b").unwrap().ipv4, 7777).into();
    let sport = std::thread::spawn(move || twelve_datagrams(netns, dst))
        .join()
        .unwrap();
    (env, stream, sport)
}

/// At each veth, sorted as [`volumes`]: the first packet's event, then a
/// report of all 12 (whole frames: 14 + 20 + 8 + 4 bytes).
const FIRST_THEN_REPORT: [(bool, u64, u64, bool); 4] = [
    (false, 1, 46, false),
    (false, 12, 552, true),
    (true, 1, 46, false),
    (true, 12, 552, true),
];

/// Without `--report-interval`, a live connection's volume is told every
/// 10 s: a UDP stream of 12 datagrams, by its first packet's events and
/// then one report at each veth, while the probe runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_connection_is_reported_by_default() {
    let opts = ProbeOptions::new(None).expect("flow-probe binary (cargo build --bins)");
    let (mut env, mut stream, sport) = followed_datagrams(&opts).await;
    let mut told: Vec<Flow> = Vec::new();
    while told.len() < 4 {
        assert!(
            next_flow(&mut stream, sport, &mut told).await.is_none(),
            "the stream ended"
        );
    }
    assert_eq!(
        volumes(&told),
        FIRST_THEN_REPORT,
        "each veth: the first packet's event, then a periodic report"
    );
    let _ = env.lab.stop_process("flow-probe node1");
}

/// Periodic reports off, so what is told at the stop is the stop's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_gets_the_last_reports_before_a_clean_stop() {
    let opts = ProbeOptions {
        persist: false,
        extra_args: vec!["--report-interval".into(), "0".into()],
        ..ProbeOptions::new(None).expect("flow-probe binary (cargo build --bins)")
    };
    let (mut env, mut stream, sport) = followed_datagrams(&opts).await;
    let mut told: Vec<Flow> = Vec::new();
    // The stream's first packet, at a's veth and at b's.
    while told.len() < 2 {
        assert!(
            next_flow(&mut stream, sport, &mut told).await.is_none(),
            "the stream ended early"
        );
    }
    let stopped = tokio::task::block_in_place(|| env.lab.stop_process("flow-probe node1"));
    assert_eq!(stopped.unwrap(), 1);
    let end = loop {
        if let Some(status) = next_flow(&mut stream, sport, &mut told).await {
            break status;
        }
    };
    assert_eq!(end.code(), tonic::Code::Unavailable, "{end:?}");
    assert_eq!(end.message(), flow_probe::server::SHUTTING_DOWN);

    assert_eq!(
        volumes(&told),
        FIRST_THEN_REPORT,
        "each veth: the first packet's event, then the last report at the stop"
    );
}

/// Sends `n` datagrams from `netns` to `n` ports of `dst`: a new flow each.
fn datagrams_to_ports(netns: String, dst: std::net::Ipv4Addr, n: u16) {
    sysfs::enter_netns(&netns).unwrap();
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    for port in 0..n {
        sock.send_to(b"x", (dst, 20_000 + port)).unwrap();
    }
}

/// A follower that never reads fills its stream's windows and the server's
/// queue; the probe must still stop on SIGTERM. Without `--persist` it
/// detaches as soon as its capture ends, before it waits for the follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_never_reads_does_not_hold_the_stop() {
    let opts = ProbeOptions {
        persist: false,
        ..ProbeOptions::new(None).expect("flow-probe binary (cargo build --bins)")
    };
    let mut env = e2e::start_with(&Scenario::parse(TWO, "two.yaml").unwrap(), &opts);
    let stream = follow(&env).await;
    let netns = env.lab.endpoint("a").unwrap().netns.clone();
    let dst = env.lab.endpoint("b").unwrap().ipv4;
    for _ in 0..4 {
        let netns = netns.clone();
        std::thread::spawn(move || datagrams_to_ports(netns, dst, 5000))
            .join()
            .unwrap();
    }
    let pid = env.probe.pid;
    // SAFETY: kill(2) on the pid of a child the lab started and holds.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + WAIT;
    let exited = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    };
    while !exited() {
        assert!(
            std::time::Instant::now() < deadline,
            "flow-probe {pid} did not stop while a follower did not read"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(&env.probe.log).unwrap();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in {log}"))
    };
    assert!(
        at("detached from 2 interfaces, pins removed")
            < at("stopped without waiting longer (5 s) for clients that do not read their answers"),
        "{log}"
    );
    drop(stream);
    let _ = env.lab.stop_process("flow-probe node1");
}

/// Sum of the series of `name` whose labels hold every one of `labels`.
fn sum_of(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

/// The reports of the UDP stream from `sport` seen at a's veth, until one
/// says `packets`; the packet counts of each.
async fn reports_until(
    stream: &mut tonic::Streaming<GetFlowsResponse>,
    sport: u32,
    packets: u64,
) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.last() != Some(&packets) {
        let mut told = Vec::new();
        assert!(
            next_flow(stream, sport, &mut told).await.is_none(),
            "the stream ended"
        );
        let f = &told[0];
        let v = f.volume.unwrap();
        if v.report && f.trace_observation_point == TraceObservationPoint::FromEndpoint as i32 {
            seen.push(v.fwd_packets);
        }
    }
    seen
}

/// A probe killed and started again adopts the flow tables with what its
/// predecessor told of them: the connection is reported when it grows, with
/// its whole count, and the volume metrics count only the growth (before,
/// the new probe reported 12 datagrams at once and counted them again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_probe_tells_and_counts_only_what_grew() {
    let opts = ProbeOptions {
        extra_args: vec!["--report-interval".into(), "1".into()],
        ..ProbeOptions::new(None).expect("flow-probe binary (cargo build --bins)")
    };
    let mut env = e2e::start_with(&Scenario::parse(TWO, "two.yaml").unwrap(), &opts);
    let netns = env.lab.endpoint("a").unwrap().netns.clone();
    let dst: SocketAddr = (env.lab.endpoint("b").unwrap().ipv4, 7777).into();
    // One socket across the restart: its datagrams are one connection.
    let (send, sends) = std::sync::mpsc::channel::<u32>();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let sender = std::thread::spawn(move || {
        sysfs::enter_netns(&netns).unwrap();
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        port_tx
            .send(u32::from(sock.local_addr().unwrap().port()))
            .unwrap();
        for n in sends {
            for _ in 0..n {
                sock.send_to(b"tick", dst).unwrap();
            }
        }
    });
    let sport = port_rx.recv().unwrap();
    let mut stream = follow(&env).await;
    send.send(12).unwrap();
    assert_eq!(
        reports_until(&mut stream, sport, 12).await.last(),
        Some(&12)
    );

    env.kill_probe().await;
    tokio::task::block_in_place(|| env.restart_probe_with(&opts));
    // Everything the new probe held too: its first report runs at its start.
    let mut stream = env
        .client()
        .await
        .get_flows(GetFlowsRequest {
            follow: true,
            number: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Reports run every second from the start: a report of the adopted
    // entry as it was would come before this one.
    send.send(3).unwrap();
    assert_eq!(reports_until(&mut stream, sport, 15).await, [15]);
    drop(send);
    sender.join().unwrap();
    // 3 datagrams counted at a's veth, not 15 (a new series shows 0 at its
    // first scrape); b's answers (ICMP port unreachable, rate-limited) at
    // most one each, not every one since the start.
    let deadline = std::time::Instant::now() + WAIT;
    let text = loop {
        let text = tokio::task::block_in_place(|| env.metrics_text());
        let sent = sum_of(
            &text,
            "observe_flow_packets_total",
            &["source_workload=\"t/a\""],
        );
        if sent > 0 || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let at_source = |from: &str| {
        let from = format!("source_workload=\"{from}\"");
        sum_of(
            &text,
            "observe_flow_packets_total",
            &["observed_at=\"source\"", &from],
        )
    };
    assert_eq!(at_source("t/a"), 3, "{text}");
    assert!(at_source("t/b") <= 3, "{text}");
    let _ = env.lab.stop_process("flow-probe node1");
}

/// TCP segments the stack of namespace `netns` has sent (`TcpOutSegs`:
/// a GSO packet counts as its segments; retransmissions do not count).
/// The TCP stack's segments sent and sent again (`OutSegs`,
/// `RetransSegs` of /proc/net/snmp) in `netns`.
fn tcp_segments_sent(netns: &str) -> (u64, u64) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", netns, "cat", "/proc/net/snmp"])
        .output()
        .expect("ip (iproute2)");
    assert!(out.status.success(), "/proc/net/snmp in {netns}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let counter = |name: &str| -> u64 {
        let at = names.split_whitespace().position(|n| n == name).unwrap();
        values.split_whitespace().nth(at).unwrap().parse().unwrap()
    };
    (counter("OutSegs"), counter("RetransSegs"))
}

/// A TCP send of a local socket leaves as one packet of up to 64 KiB (TSO),
/// which the probe counted as one packet: a download of 4 MiB was some
/// dozens of packets where the sender's TCP stack counted thousands of
/// segments. At b's veth, each direction of the connection now counts the
/// segments its sender's TCP stack sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gso_packet_counts_as_its_segments() {
    use std::io::{Read, Write};

    let opts = ProbeOptions {
        extra_args: vec!["--report-interval".into(), "1".into()],
        ..ProbeOptions::new(None).expect("flow-probe binary (cargo build --bins)")
    };
    let env = e2e::start_with(&Scenario::parse(TWO, "two.yaml").unwrap(), &opts);
    let a_netns = env.lab.endpoint("a").unwrap().netns.clone();
    let b = env.lab.endpoint("b").unwrap();
    // A segment lost on the host between the veths (a full backlog) is sent
    // again: the sender's count then holds one that b's veth never saw, and
    // the run says nothing exact. Up to three runs, until one sends nothing
    // twice.
    for run in 1..=3 {
        let b_netns = b.netns.clone();
        let dst: SocketAddr = (b.ipv4, 8080).into();
        let before = [tcp_segments_sent(&a_netns), tcp_segments_sent(&b_netns)];
        let listener = std::thread::spawn(move || {
            sysfs::enter_netns(&b_netns).unwrap();
            std::net::TcpListener::bind(dst).unwrap()
        })
        .join()
        .unwrap();
        const SENT: usize = 4 << 20;
        let ns = a_netns.clone();
        let client = std::thread::spawn(move || {
            sysfs::enter_netns(&ns).unwrap();
            let mut c = std::net::TcpStream::connect(dst).unwrap();
            c.write_all(&vec![7u8; SENT]).unwrap();
            c
        });
        let (mut server, _) = listener.accept().unwrap();
        let mut got = vec![0u8; SENT];
        server.read_exact(&mut got).unwrap();
        // Both ends stay open: no FIN, so the reports tell the counts.
        let client = client.join().unwrap();
        let sport = u32::from(client.local_addr().unwrap().port());

        let b_veth = b.host_interface.clone();
        let b_netns = b.netns.clone();
        let reported = |flows: &[Flow]| {
            flows
                .iter()
                .filter(|f| f.interface.as_ref().is_some_and(|i| i.name == b_veth))
                .filter(|f| test_support::flows::ports(f) == Some((sport, 8080)))
                .filter_map(|f| f.volume.filter(|v| v.report))
                .next_back()
        };
        let counted = |flows: &[Flow]| reported(flows).map(|v| (v.fwd_packets, v.rev_packets));
        let stacks = || {
            let (a, b) = (tcp_segments_sent(&a_netns), tcp_segments_sent(&b_netns));
            (
                (a.0 - before[0].0, b.0 - before[1].0),
                a.1 > before[0].1 || b.1 > before[1].1,
            )
        };
        // The last ACKs may still be on their way: the report catches up.
        let flows = env
            .wait_for("a report at b's veth with the TCP stacks' counts", |f| {
                let (sent, again) = stacks();
                again || counted(f) == Some(sent)
            })
            .await;
        let (sent, again) = stacks();
        if again && run < 3 {
            drop((client, server));
            continue;
        }
        assert!(!again, "each of 3 runs sent a segment again: {sent:?}");
        let (from_a, from_b) = counted(&flows).unwrap();
        // 4 MiB in segments of at most 1,448 bytes (MSS 1,460 less timestamps).
        assert!(from_a > (SENT / 1448) as u64, "{from_a} packets from a");
        assert_eq!((from_a, from_b), sent);
        // And bytes as on the wire: each segment with its headers (Ethernet,
        // IPv4, TCP with timestamps: 66 bytes; the SYN's options 8 more).
        assert_eq!(
            reported(&flows).unwrap().fwd_bytes,
            SENT as u64 + 74 + 66 * (from_a - 1)
        );
        drop((client, server));
        return;
    }
}
