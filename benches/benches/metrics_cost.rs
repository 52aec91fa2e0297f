//! Cost of the Prometheus metrics: (1) the per-flow update — N synthetic
//! enriched flows (endpoints with workloads, TCP/UDP, volumes) through
//! `Metrics::flow`, against the same loop without metrics as the baseline in
//! the same run, rounds interleaved; (2) a scrape (text encoding of every
//! family) with 10,000 series, with and without the expiry sweep.
//!
//! `cargo bench -p benches --bench metrics_cost`. `METRICS_COST_FLOWS`: flows
//! per round (default 1,000,000).

use std::hint::black_box;
use std::time::{Duration, Instant};

use flow_probe::metrics::{Metrics, MetricsConfig};
use observer_proto::flow::{
    self, CiliumEventType, Endpoint, Flow, Ip, IpVersion, Layer4, TcpFlags, TrafficDirection,
    Verdict, Workload, layer4,
};
use observer_proto::observe::v1::FlowVolume;

const ROUNDS: usize = 5;
const SCRAPE_SERIES: u32 = 10_000;
const SCRAPES: usize = 20;

fn endpoint(i: u32) -> Endpoint {
    let workload = format!("svc-{}", i % 20);
    Endpoint {
        namespace: format!("ns-{}", i % 4),
        pod_name: format!("{workload}-{i}"),
        identity: 300 + i % 20,
        workloads: vec![Workload {
            name: workload.clone(),
            kind: "Deployment".into(),
        }],
        labels: vec![format!("k8s:app={workload}")],
        ..Default::default()
    }
}

/// Flow `i` of a mix: 3 in 4 TCP (SYN, then ACKs), 1 in 4 UDP; 1 in 8 a reply;
/// 64 destination ports, 20 workloads, 4096 connections.
fn synthetic(i: u32) -> Flow {
    let (sport, dport) = (30_000 + i % 4096, 8000 + i % 64);
    let l4 = if i % 4 == 3 {
        layer4::Protocol::Udp(flow::Udp {
            source_port: sport,
            destination_port: dport,
        })
    } else {
        layer4::Protocol::Tcp(flow::Tcp {
            source_port: sport,
            destination_port: dport,
            flags: Some(TcpFlags {
                syn: i.is_multiple_of(3),
                ack: !i.is_multiple_of(3),
                ..Default::default()
            }),
        })
    };
    Flow {
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: format!("198.18.1.{}", 10 + i % 200),
            destination: format!("198.18.2.{}", 10 + (i / 7) % 200),
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 { protocol: Some(l4) }),
        source: Some(endpoint(i)),
        destination: Some(endpoint(i / 3 + 1)),
        event_type: Some(CiliumEventType {
            r#type: 4,
            sub_type: 0,
        }),
        traffic_direction: TrafficDirection::Ingress as i32,
        is_reply: Some(i % 8 == 7),
        volume: Some(FlowVolume {
            fwd_bytes: 100,
            fwd_packets: 1,
            rev_bytes: 0,
            rev_packets: 0,
            first_packet: false,
            report: false,
            echo_id: 0,
        }),
        ..Default::default()
    }
}

/// Runs `n` flows through `each` (after growing the flow's volume, as the
/// kernel's counts grow); the elapsed time.
fn run(flows: &mut [Flow], n: usize, mut each: impl FnMut(&Flow)) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        let f = &mut flows[i % flows.len()];
        if let Some(v) = f.volume.as_mut() {
            v.fwd_bytes += 100;
            v.fwd_packets += 1;
        }
        each(black_box(f));
    }
    start.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn per_flow(n: usize) {
    let mut flows: Vec<Flow> = (0..4096).map(synthetic).collect();
    let metrics = Metrics::new(&MetricsConfig::default());
    // Warm up: every label set exists, the volume tracker knows the connections.
    let warm = flows.len() * 2;
    run(&mut flows, warm, |f| metrics.flow(f));
    let (mut base, mut with) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let b = run(&mut flows, n, |f| {
            black_box(f);
        });
        let w = run(&mut flows, n, |f| metrics.flow(f));
        let (b, w) = (
            b.as_nanos() as f64 / n as f64,
            w.as_nanos() as f64 / n as f64,
        );
        println!(
            "round {round}: baseline {b:.1} ns/flow, with metrics {w:.1} ns/flow, cost {:.1} ns/flow",
            w - b
        );
        base.push(b);
        with.push(w);
    }
    let (b, w) = (median(base), median(with));
    println!(
        "per-flow update ({n} flows/round, {ROUNDS} rounds, medians): baseline {b:.1} ns/flow, with metrics {w:.1} ns/flow, metrics cost {:.1} ns/flow ({:.1}x)",
        w - b,
        w / b
    );
}

fn scrape() {
    let cfg = MetricsConfig {
        max_label_sets: SCRAPE_SERIES as usize,
        ..MetricsConfig::default()
    };
    let metrics = Metrics::new(&cfg);
    // 10,000 destination ports: 10,000 port series (plus the few others).
    for i in 0..SCRAPE_SERIES {
        let mut f = synthetic(i);
        f.is_reply = Some(false);
        f.volume = None;
        if let Some(layer4::Protocol::Tcp(t)) = f.l4.as_mut().and_then(|l| l.protocol.as_mut()) {
            t.destination_port = 10_000 + i;
        } else if let Some(layer4::Protocol::Udp(u)) =
            f.l4.as_mut().and_then(|l| l.protocol.as_mut())
        {
            u.destination_port = 10_000 + i;
        }
        metrics.flow(&f);
    }
    let text = metrics.render();
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let ports = text
        .lines()
        .filter(|l| l.starts_with("hubble_port_distribution_total{"))
        .count();
    assert_eq!(ports, SCRAPE_SERIES as usize, "every port has its series");
    let time = |f: &dyn Fn() -> String| {
        let mut v = Vec::new();
        for _ in 0..SCRAPES {
            let start = Instant::now();
            black_box(f());
            v.push(start.elapsed().as_secs_f64() * 1e3);
        }
        median(v)
    };
    let encode = time(&|| metrics.encode());
    let render = time(&|| metrics.render());
    println!(
        "scrape with {series} series ({ports} port series, {} KiB of text), median of {SCRAPES}: encode {encode:.2} ms, sweep + encode (what /metrics does) {render:.2} ms",
        text.len() / 1024
    );
}

fn main() {
    let n = std::env::var("METRICS_COST_FLOWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    per_flow(n);
    scrape();
}
