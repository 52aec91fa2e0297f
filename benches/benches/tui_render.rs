//! TUI render cost under load: the `observe flows --follow` App fed a synthetic
//! stream at 20,000 flows/s for ~10 s, drawn into ratatui's `TestBackend` once
//! per App tick (100 ms). Reports p50/p99 frame render time and RSS at start,
//! middle and end (the buffer is bounded, so RSS must stay flat). Baseline in
//! the same run: rendering an empty table. Goal: p99 < 16 ms.

use std::hint::black_box;
use std::time::Instant;

use observe_cli::tui::App;
use observe_cli::tui::app::TICK;
use observer_proto::flow::{Flow, Ip, Layer4, Tcp, TraceObservationPoint, Verdict, layer4};
use observer_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const RATE: u64 = 20_000;
const W: u16 = 160;
const H: u16 = 48;

fn secs() -> u64 {
    std::env::var("TUI_RENDER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

fn flow(n: u64, now_ns: i128) -> GetFlowsResponse {
    let (a, b) = (n % 200, (n / 7 + 1) % 200);
    let f = Flow {
        time: Some(prost_types::Timestamp {
            seconds: (now_ns / 1_000_000_000) as i64,
            nanos: (now_ns % 1_000_000_000) as i32,
        }),
        verdict: if n.is_multiple_of(10) {
            Verdict::Dropped
        } else {
            Verdict::Forwarded
        } as i32,
        ip: Some(Ip {
            source: format!("10.0.{}.{}", a / 250, a % 250),
            destination: format!("10.0.{}.{}", b / 250, b % 250),
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: 30_000 + (n % 30_000) as u32,
                destination_port: 8080,
                flags: None,
            })),
        }),
        source: Some(benches::workload_endpoint(a)),
        destination: Some(benches::workload_endpoint(b)),
        trace_observation_point: if n.is_multiple_of(2) {
            TraceObservationPoint::FromEndpoint
        } else {
            TraceObservationPoint::ToEndpoint
        } as i32,
        is_reply: Some(n % 4 == 3),
        node_name: "node1".into(),
        summary: "TCP Flags: ACK".into(),
        ..Default::default()
    };
    GetFlowsResponse {
        node_name: "node1".into(),
        response_types: Some(ResponseTypes::Flow(f)),
        ..Default::default()
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn render_ms(app: &App, term: &mut Terminal<TestBackend>) -> f64 {
    let t = Instant::now();
    term.draw(|f| app.render(f)).expect("draw");
    black_box(term.backend());
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let ticks = secs() * 1000 / TICK.as_millis() as u64;
    let per_tick = RATE * TICK.as_millis() as u64 / 1000;

    // Baseline: an empty table, same number of frames.
    let mut term = Terminal::new(TestBackend::new(W, H)).expect("terminal");
    let mut empty = App::new("").expect("app");
    let mut base = Vec::new();
    for _ in 0..ticks {
        empty.on_tick(std::time::SystemTime::now());
        base.push(render_ms(&empty, &mut term));
    }

    let mut app = App::new("").expect("app");
    let mut frames = Vec::new();
    let mut ingest_ms = Vec::new();
    let mut rss = vec![("start", benches::memory_mb("VmRSS:"))];
    let t0 = Instant::now();
    let t0_ns = service_graph::unix_ns(std::time::SystemTime::now());
    let mut n = 0u64;
    for tick in 0..ticks {
        let t = Instant::now();
        for _ in 0..per_tick {
            let at = t0_ns + (n as i128) * 1_000_000_000 / RATE as i128;
            app.on_response(flow(n, at));
            n += 1;
        }
        ingest_ms.push(t.elapsed().as_secs_f64() * 1e3);
        app.on_tick(std::time::SystemTime::now());
        frames.push(render_ms(&app, &mut term));
        if tick == ticks / 2 {
            rss.push(("middle", benches::memory_mb("VmRSS:")));
        }
        let next = t0 + TICK * (tick as u32 + 1);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    rss.push(("end", benches::memory_mb("VmRSS:")));
    let wall = t0.elapsed();
    let behind = wall.saturating_sub(TICK * ticks as u32);

    println!(
        "TUI render, {W}x{H} TestBackend, {n} flows at {RATE}/s over {:.1} s, one frame per {} ms tick ({} frames)",
        wall.as_secs_f64(),
        TICK.as_millis(),
        frames.len()
    );
    println!("{:<34} {:>9} {:>9} {:>9}", "", "p50 ms", "p99 ms", "max ms");
    let mx = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (bmax, fmax, imax) = (mx(&base), mx(&frames), mx(&ingest_ms));
    let (b50, b99) = (pct(&mut base, 0.5), pct(&mut base, 0.99));
    let (f50, f99) = (pct(&mut frames, 0.5), pct(&mut frames, 0.99));
    let (i50, i99) = (pct(&mut ingest_ms, 0.5), pct(&mut ingest_ms, 0.99));
    println!(
        "{:<34} {b50:>9.3} {b99:>9.3} {bmax:>9.3}",
        "baseline: empty table render"
    );
    println!(
        "{:<34} {f50:>9.3} {f99:>9.3} {fmax:>9.3}",
        "render under 20k flows/s"
    );
    println!(
        "{:<34} {i50:>9.3} {i99:>9.3} {imax:>9.3}",
        "(ingest of one tick's 2,000 flows)"
    );
    println!(
        "RSS MB: {}  (buffer holds {} flows)",
        rss.iter()
            .map(|(w, m)| format!("{w} {m:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
        app.buffer.len()
    );
    println!(
        "loop fell behind real time by {:.0} ms in total",
        behind.as_secs_f64() * 1e3
    );
    println!(
        "goal p99 < 16 ms: {} ({f99:.3} ms)",
        if f99 < 16.0 { "met" } else { "NOT met" }
    );
    let growth = rss[2].1 - rss[1].1;
    println!(
        "RSS middle -> end: {growth:+.1} MB ({})",
        if growth.abs() < 0.1 * rss[1].1.max(1.0) {
            "flat"
        } else {
            "NOT flat"
        }
    );
}
