//! Service-graph build cost: 1,000,000 synthetic flows folded into a
//! `GraphBuilder` (200 endpoints in 20 workloads, 250,000 TCP connections of
//! four flows each: request at from-endpoint and to-endpoint, two replies).
//! Reports time, rate and peak memory (VmHWM). Baseline in the same run:
//! iterating the same flows without building. The brief sets no number for
//! it; the reference printed is 1,000,000 flows in under 10 s (an assumption).

use std::hint::black_box;
use std::time::Instant;

use observer_proto::flow::{Flow, Ip, Layer4, Tcp, TraceObservationPoint, Verdict, layer4};
use observer_proto::observe::v1::FlowVolume;
use service_graph::GraphBuilder;

const FLOWS: u64 = 1_000_000;
const POOL: u64 = 4_096;
const T0: i64 = 1_795_705_445;

/// A template of flow kind `k` (0..4) between endpoints of pair `p`.
fn template(p: u64, k: u64) -> Flow {
    let (a, b) = (p % 200, (p * 7 + 1) % 200);
    let reply = k >= 2;
    let (s, d) = if reply { (b, a) } else { (a, b) };
    Flow {
        verdict: if p.is_multiple_of(16) {
            Verdict::Dropped
        } else {
            Verdict::Forwarded
        } as i32,
        drop_reason_desc: if p.is_multiple_of(16) { 133 } else { 0 },
        ip: Some(Ip {
            source: format!("10.0.{}.{}", s / 250, s % 250),
            destination: format!("10.0.{}.{}", d / 250, d % 250),
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp::default())),
        }),
        source: Some(benches::workload_endpoint(s)),
        destination: Some(benches::workload_endpoint(d)),
        trace_observation_point: if k.is_multiple_of(2) {
            TraceObservationPoint::FromEndpoint
        } else {
            TraceObservationPoint::ToEndpoint
        } as i32,
        is_reply: Some(reply),
        ..Default::default()
    }
}

/// Flow `n`: the pool's template, with its connection's ports, time and volume.
fn set(f: &mut Flow, n: u64) {
    let conn = n / 4;
    let reply = f.is_reply == Some(true);
    let (cport, sport) = (10_000 + (conn % 50_000) as u32, 8000 + (conn % 8) as u32);
    if let Some(layer4::Protocol::Tcp(t)) = f.l4.as_mut().and_then(|l| l.protocol.as_mut()) {
        (t.source_port, t.destination_port) = if reply {
            (sport, cport)
        } else {
            (cport, sport)
        };
    }
    let t = n as i64 * 10_000; // 100,000 flows/s of flow time
    f.time = Some(prost_types::Timestamp {
        seconds: T0 + t / 1_000_000_000,
        nanos: (t % 1_000_000_000) as i32,
    });
    f.volume = Some(FlowVolume {
        fwd_bytes: 100 * (n % 4 + 1),
        fwd_packets: n % 4 + 1,
        rev_bytes: 1000,
        rev_packets: 1,
        first_packet: false,
        report: false,
        echo_id: 0,
    });
}

fn main() {
    // 1,024 endpoint pairs x 4 kinds; flow n uses pair (n/4) % 1024, kind n % 4.
    let mut pool: Vec<Flow> = (0..POOL).map(|i| template(i / 4, i % 4)).collect();
    let idx = |n: u64| (((n / 4) % (POOL / 4)) * 4 + n % 4) as usize;
    let rss0 = benches::memory_mb("VmRSS:");

    // Baseline: the same flows, iterated and touched, not built.
    let t = Instant::now();
    let mut sum = 0u64;
    for n in 0..FLOWS {
        let f = &mut pool[idx(n)];
        set(f, n);
        sum = sum.wrapping_add(black_box(&*f).volume.as_ref().map_or(0, |v| v.fwd_bytes));
    }
    black_box(sum);
    let base = t.elapsed();
    let hwm_base = benches::memory_mb("VmHWM:");

    let t = Instant::now();
    let mut b = GraphBuilder::new();
    for n in 0..FLOWS {
        let f = &mut pool[idx(n)];
        set(f, n);
        b.add(f);
    }
    let build = t.elapsed();
    let hwm_build = benches::memory_mb("VmHWM:");
    let conns = b.connections();
    let g = b.into_graph();
    let flows: u64 = g.edges().iter().map(|e| e.edge.flows).sum();

    println!(
        "service graph from {FLOWS} synthetic flows ({} nodes, {} edges, {conns} connections tracked, {flows} request flows on edges)",
        g.nodes().len(),
        g.edges().len()
    );
    println!(
        "{:<32} {:>10} {:>14} {:>14}",
        "", "time s", "flows/s", "peak RSS MB"
    );
    println!(
        "{:<32} {:>10.3} {:>14.0} {:>14.1}",
        "baseline: iterate, no graph",
        base.as_secs_f64(),
        FLOWS as f64 / base.as_secs_f64(),
        hwm_base
    );
    println!(
        "{:<32} {:>10.3} {:>14.0} {:>14.1}",
        "GraphBuilder::add",
        build.as_secs_f64(),
        FLOWS as f64 / build.as_secs_f64(),
        hwm_build
    );
    println!(
        "RSS before: {rss0:.1} MB; the builder adds {:.1} MB at peak; {:.1}x the baseline time",
        hwm_build - hwm_base,
        build.as_secs_f64() / base.as_secs_f64()
    );
    let goal = build.as_secs_f64() < 10.0;
    println!(
        "reference (assumed, no goal set) 1,000,000 flows < 10 s: {} ({:.2} s)",
        if goal { "met" } else { "NOT met" },
        build.as_secs_f64()
    );
}
