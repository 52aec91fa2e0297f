//! Follow latency through the relay against a direct follow on the probes,
//! in one run: from a flow's time (stamped in the kernel) to its delivery to
//! a following client, p50 and p99.
//!
//! A lab of two nodes, the real flow-probe on each (mTLS, the lab's
//! certificates), the relay in-process over them (release build, default
//! 500 ms reorder window). Three followers run at once, all asking
//! `follow` with `number` 0: one on each probe (the baseline: "direct") and
//! one on the relay. Two phases of lab traffic, each `RELAY_LATENCY_SECS`
//! (default 8): both nodes busy (a TCP connection inside each node in every
//! round), then node2 idle (node1's traffic only), where the relay can release
//! a flow only once the clock tells it node2 would have sent anything earlier.
//!
//! `cargo bench -p benches --bench relay_follow_latency` as root (it prints
//! "skipped: needs root" otherwise); the flow-probe binary is found as the lab
//! finds it (`FLOW_PROBE_BIN`, or next to the other binaries).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use observe_cli::connect::{ConnectArgs, lab_tls};
use observe_lab::node_probes::{self, ProbeOptions};
use observe_lab::{Lab, LabOptions, Scenario, run_traffic_with};
use observer_proto::observer::GetFlowsRequest;
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::time::{event_time, now_nanos};
use relay::{PeerOptions, Relay, RelayConfig};

const ENDPOINTS: &str = "\
description: relay_follow_latency benchmark
endpoints:
  - {name: a1, namespace: bench, labels: {app: a1}, node: node1}
  - {name: a2, namespace: bench, labels: {app: a2}, node: node1}
  - {name: b1, namespace: bench, labels: {app: b1}, node: node2}
  - {name: b2, namespace: bench, labels: {app: b2}, node: node2}
traffic:
";
const NODE1: &str = "  - {from: a1, to: a2, protocol: tcp, port: 8080}\n";
const NODE2: &str = "  - {from: b1, to: b2, protocol: tcp, port: 8080}\n";

/// Phases; the followers record into the phase running now.
const PHASES: [&str; 2] = ["both nodes busy", "node2 idle"];
const WARMUP: usize = usize::MAX;
const PATHS: [&str; 2] = ["direct", "relay"];

/// Latencies in µs, by phase and path.
type Recorded = Arc<Mutex<Vec<[Histogram<u64>; 2]>>>;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Follows `target` from now on; records each flow's latency under `path`.
async fn follow(
    connect: ConnectArgs,
    path: usize,
    phase: Arc<AtomicUsize>,
    recorded: Recorded,
) -> anyhow::Result<()> {
    let target = connect.target(&[])?;
    let (mut client, _) = target.observer().await?;
    let mut stream = client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    while let Some(r) = stream.message().await? {
        let now = now_nanos();
        let (Some(ResponseTypes::Flow(_)), Some(t)) = (&r.response_types, event_time(&r)) else {
            continue;
        };
        let p = phase.load(Ordering::Relaxed);
        if p < PHASES.len() {
            let us = u64::try_from((now - t) / 1_000).unwrap_or(0).max(1);
            let mut rec = recorded.lock().unwrap_or_else(|e| e.into_inner());
            let _ = rec[p][path].record(us.min(60_000_000));
        }
    }
    Ok(())
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1_000.0
}

fn main() -> anyhow::Result<()> {
    if !observe_lab::is_root() {
        println!("skipped: needs root");
        return Ok(());
    }
    let secs: u64 = std::env::var("RELAY_LATENCY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let both = Scenario::parse(&format!("{ENDPOINTS}{NODE1}{NODE2}"), "relay_latency.yaml")?;
    let node1_only = Scenario::parse(&format!("{ENDPOINTS}{NODE1}"), "relay_latency.yaml")?;
    let dir = std::env::temp_dir().join(format!("relay-latency-{}", std::process::id()));
    let mut lab = Lab::up(&both, &LabOptions::with_state_dir(&dir))?;
    let probes = node_probes::start(&mut lab, &ProbeOptions::new(None)?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let phase = Arc::new(AtomicUsize::new(WARMUP));
    let recorded: Recorded = Arc::new(Mutex::new(
        PHASES.iter().map(|_| [histogram(), histogram()]).collect(),
    ));
    let lab_args = |addr: SocketAddr| ConnectArgs {
        lab: Some(dir.clone()),
        ..ConnectArgs::server(addr.to_string())
    };
    let relay = rt.block_on(async {
        let cfg = RelayConfig {
            peer: PeerOptions {
                tls: Some(lab_tls(&dir, None)?),
                ..PeerOptions::default()
            },
            ..RelayConfig::new(probes.iter().map(|p| p.addr.to_string()).collect())
        };
        let relay = Relay::start(&cfg)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(relay::server::run(
            tonic::transport::Server::builder(),
            listener,
            relay.state(),
            std::future::pending(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while relay.state().peers().connected_clients().len() < probes.len() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the relay did not reach both probes"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut followers: Vec<(ConnectArgs, usize)> =
            probes.iter().map(|p| (lab_args(p.addr), 0)).collect();
        followers.push((ConnectArgs::server(addr.to_string()), 1));
        for (connect, path) in followers {
            let (phase, recorded) = (phase.clone(), recorded.clone());
            tokio::spawn(async move {
                if let Err(e) = follow(connect, path, phase, recorded).await {
                    eprintln!("follower {}: {e:#}", PATHS[path]);
                }
            });
        }
        Ok::<_, anyhow::Error>(relay)
    })?;

    let never = AtomicBool::new(false);
    let pause = Duration::from_millis(20);
    // Warm-up: connections made, neighbours resolved, the relay's view of
    // each node's delay learned from live flows.
    run_traffic_with(
        &lab,
        &both,
        Duration::from_secs(2),
        pause,
        &never,
        |_, _| {},
    )?;
    for (i, scenario) in [&both, &node1_only].into_iter().enumerate() {
        phase.store(i, Ordering::Relaxed);
        let summary = run_traffic_with(
            &lab,
            scenario,
            Duration::from_secs(secs),
            pause,
            &never,
            |_, _| {},
        )
        .with_context(|| format!("traffic of phase {:?}", PHASES[i]))?;
        anyhow::ensure!(
            summary.unexpected == 0,
            "unexpected traffic results: {summary:?}"
        );
    }
    // What the last phase's flows need to come through.
    std::thread::sleep(Duration::from_secs(1));
    phase.store(WARMUP, Ordering::Relaxed);

    println!(
        "relay follow latency, lab {} (2 nodes, {secs} s per phase): flow time -> delivery",
        lab.prefix()
    );
    println!(
        "{:<18} {:<8} {:>8} {:>9} {:>9} {:>9}",
        "phase", "path", "flows", "p50 ms", "p99 ms", "max ms"
    );
    let rec = recorded.lock().unwrap_or_else(|e| e.into_inner());
    let mut added = Vec::new();
    for (i, name) in PHASES.iter().enumerate() {
        for (path, h) in PATHS.iter().zip(&rec[i]) {
            println!(
                "{name:<18} {path:<8} {:>8} {:>9.2} {:>9.2} {:>9.2}",
                h.len(),
                ms(h, 0.5),
                ms(h, 0.99),
                h.max() as f64 / 1_000.0
            );
        }
        let [direct, relay] = &rec[i];
        added.push((
            name,
            ms(relay, 0.5) - ms(direct, 0.5),
            ms(relay, 0.99) - ms(direct, 0.99),
        ));
    }
    for (name, p50, p99) in &added {
        println!("added by the relay, {name}: p50 {p50:+.2} ms, p99 {p99:+.2} ms");
    }
    let met = added.iter().all(|(_, p50, _)| *p50 <= 100.0);
    println!(
        "goal: <= 100 ms added at p50 with flows in order: {}",
        if met { "met" } else { "NOT met" }
    );
    drop(rec);
    rt.block_on(relay.shutdown());
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
