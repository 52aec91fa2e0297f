//! tc probe cost per packet: the average run time of `tc_ingress` and `tc_egress`
//! per invocation, from the kernel's BPF run-time statistics (`run_time_ns` /
//! `run_cnt`, counted while this benchmark holds a `BPF_ENABLE_STATS` fd), while
//! the lab carries TCP-heavy request/response traffic on node1's `lxc` interfaces.
//! A packet between two endpoints is seen twice (ingress of the sender's `lxc`,
//! egress of the receiver's); "packets" counts program runs.
//!
//! Five modes in the same run, rounds interleaved F L C A B F L C A B: the
//! floor (the programs parse each packet and return, nothing else: `cost_stop`
//! `PARSED`), two rungs of the default mode stopped short (`LOOKED_UP`: the
//! flow's lookup and nothing more, so every run misses; `BEFORE_EVENTS`:
//! counting, new flows and policy, no events sent), the default mode
//! (aggregation in the kernel) and "every packet" (`aggregate: false`, one
//! ring-buffer event per packet). The rungs split default's cost above the
//! floor. Each round loads a fresh probe, so its statistics start at zero, and
//! a thread drains the ring buffer meanwhile.
//! Goal: default mode ≤ 150 ns/packet; printed with its ratio to the floor,
//! and with the load: program runs a second, the programs' share of the CPUs'
//! time and how idle the CPUs were. Nothing is asserted about timing.
//!
//! `cargo bench -p benches --bench tc_cost` as root (it builds a lab of network
//! namespaces and loads BPF; otherwise it prints "skipped: needs root" and exits 0).
//! `TC_COST_SECS`: seconds of traffic per round (default 5), `TC_COST_ROUNDS`:
//! rounds per mode (default 2). `TC_COST_ONLY`: `floor`, `lookup`, `count`,
//! `default` or `every` runs that mode alone (for a profiler). After the table,
//! one more default round with `time_paths` on splits its runs by path (a new
//! flow, an event, neither) with each path's time; `TC_COST_PATHS=0` skips it.
//! `TC_COST_DRAIN_US`: how long the drain thread sleeps when the ring is empty
//! (default 500). A reader that keeps up makes every event that finds the ring
//! empty send a wake-up (irq_work, a self-IPI), which is part of the measured
//! cost; see benches/README.md.

use std::time::Duration;

use anyhow::Context;
use benches::probe_load::{Sample, round};
use flow_probe::kernel::events::{cost_stop, tc_path};
use flow_probe::kernel::loader::ProbeConfig;
use observe_lab::{Lab, LabOptions, Scenario, run_traffic_once};

/// Rounds per mode unless `TC_COST_ROUNDS` says otherwise.
const ROUNDS: usize = 2;
const GOAL_NS: f64 = 150.0;

/// TCP-heavy load with larger payloads, both families; a little UDP and ICMP.
const SCENARIO: &str = r#"
description: tc_cost benchmark load
endpoints:
  - {name: web, namespace: bench, labels: {app: web}}
  - {name: api, namespace: bench, labels: {app: api}}
  - {name: db, namespace: bench, labels: {app: db}}
  - {name: cache, namespace: bench, labels: {app: cache}}
traffic:
  - {from: web, to: api, protocol: tcp, port: 8080, request_bytes: 2000, response_bytes: 200000}
  - {from: web, to: api, protocol: tcp, port: 8080, family: ipv6, request_bytes: 2000, response_bytes: 200000}
  - {from: api, to: db, protocol: tcp, port: 5432, request_bytes: 20000, response_bytes: 100000}
  - {from: api, to: cache, protocol: tcp, port: 6379, request_bytes: 500, response_bytes: 16000}
  - {from: web, to: cache, protocol: tcp, port: 6379, family: ipv6, request_bytes: 500, response_bytes: 16000}
  - {from: cache, to: db, protocol: tcp, port: 5432, request_bytes: 60000, response_bytes: 60000}
  - {from: web, to: db, protocol: udp, port: 5353, request_bytes: 512}
  - {from: web, to: db, protocol: icmp, family: ipv6}
"#;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Floor,
    /// The floor and the flow's lookup, nothing more.
    Lookup,
    /// Everything but sending events.
    Count,
    Default,
    EveryPacket,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Floor => "floor (parse only)",
            Mode::Lookup => "lookup (no count)",
            Mode::Count => "count (no events)",
            Mode::Default => "default (aggregate)",
            Mode::EveryPacket => "every packet",
        }
    }

    /// The name `TC_COST_ONLY` takes.
    fn key(self) -> &'static str {
        match self {
            Mode::Floor => "floor",
            Mode::Lookup => "lookup",
            Mode::Count => "count",
            Mode::Default => "default",
            Mode::EveryPacket => "every",
        }
    }

    fn config(self) -> ProbeConfig {
        ProbeConfig {
            aggregate: self != Mode::EveryPacket,
            cost_stop: match self {
                Mode::Floor => cost_stop::PARSED,
                Mode::Lookup => cost_stop::LOOKED_UP,
                Mode::Count => cost_stop::BEFORE_EVENTS,
                Mode::Default | Mode::EveryPacket => cost_stop::NOWHERE,
            },
            ..ProbeConfig::default()
        }
    }
}

/// One line of the table.
fn row(s: &Sample, mode: Mode, round: &str) {
    println!(
        "{:<20} {round:>5} {:>10} {:>10} {:>7.3} {:>7} {:>9.1} {:>9.1} {:>9.1}",
        mode.name(),
        s.packets,
        s.events,
        s.events as f64 / s.packets.max(1) as f64,
        s.lost,
        Sample::ns(s.ingress),
        Sample::ns(s.egress),
        s.ns_all(),
    );
}

fn main() -> anyhow::Result<()> {
    if !observe_lab::is_root() {
        println!("tc_cost: skipped: needs root (it builds a lab and loads BPF programs)");
        return Ok(());
    }
    let secs = std::env::var("TC_COST_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(Duration::from_secs(5), Duration::from_secs_f64);
    let drain_pause = std::env::var("TC_COST_DRAIN_US")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_micros(500), Duration::from_micros);
    let rounds = std::env::var("TC_COST_ROUNDS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(ROUNDS);
    let modes = [
        Mode::Floor,
        Mode::Lookup,
        Mode::Count,
        Mode::Default,
        Mode::EveryPacket,
    ];
    let only = std::env::var("TC_COST_ONLY").ok();
    if let Some(m) = &only
        && !modes.iter().any(|mode| mode.key() == m)
    {
        anyhow::bail!("TC_COST_ONLY={m:?}: expected floor, lookup, count, default or every");
    }
    let by_path = std::env::var("TC_COST_PATHS").map_or(true, |v| v != "0");
    let scenario = Scenario::parse(SCENARIO, "<tc_cost scenario>")?;
    let state_dir = std::env::temp_dir().join(format!("tc-cost-{}", std::process::id()));
    let lab = Lab::up(&scenario, &LabOptions::with_state_dir(&state_dir))?;
    // Neighbour resolution and first-use costs happen here, not in round 1.
    run_traffic_once(&lab, &scenario)?;
    // Counting stays on while this fd lives.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")?;

    println!(
        "tc program cost per packet, lab {} ({} rounds x {secs:.1?} per mode, interleaved)",
        lab.prefix(),
        rounds
    );
    println!("machine: {}", benches::machine());
    println!(
        "{:<20} {:>5} {:>10} {:>10} {:>7} {:>7} {:>9} {:>9} {:>9}",
        "mode", "round", "packets", "events", "ev/pkt", "lost", "ns/pkt in", "ns/pkt eg", "ns/pkt"
    );
    let mut totals = [Sample::default(); 5];
    for r in 1..=rounds {
        for (i, mode) in modes.into_iter().enumerate() {
            if only.as_deref().is_some_and(|m| m != mode.key()) {
                continue;
            }
            let sample = round(
                &lab,
                &scenario,
                mode.config(),
                secs,
                drain_pause,
                |_| Ok(()),
            )?;
            row(&sample, mode, &r.to_string());
            if sample.read + sample.lost != sample.events {
                eprintln!(
                    "note: read {} events from the ring, kernel emitted {} ({} lost)",
                    sample.read, sample.events, sample.lost
                );
            }
            totals[i].add(&sample);
        }
    }
    for (mode, total) in modes.into_iter().zip(&totals) {
        row(total, mode, "all");
    }
    let [floor, lookup, count, base, every] = totals.map(|t| t.ns_all());
    println!(
        "default vs floor: {:.2}x ns/packet (+{:.1} ns over parsing alone)",
        base / floor,
        base - floor
    );
    println!(
        "default over the floor, rung by rung: the flow's lookup {:+.1} ns (each run a miss: both slots and the spill bit), then counting, new flows and policy {:+.1}, then sending events {:+.1}",
        lookup - floor,
        count - lookup,
        base - count
    );
    println!(
        "every packet vs default (baseline): {:.2}x ns/packet",
        every / base
    );
    println!(
        "goal <= {GOAL_NS} ns/packet (default mode, {base:.1} ns): {}",
        if base <= GOAL_NS { "met" } else { "NOT met" }
    );
    // The cost of a packet depends on what ran on its CPU before it: a
    // sparse load leaves the programs' code and maps cold.
    for (mode, total) in modes.into_iter().zip(&totals) {
        if total.packets > 0 {
            println!(
                "load, {}: {:.0} runs/s; the programs ran {:.2}% of the CPUs' time, the CPUs were idle {:.0}% of it",
                mode.name(),
                total.runs_per_sec(),
                100.0 * total.program_share(),
                100.0 * total.idle_share()
            );
        }
    }
    if by_path {
        let cfg = ProbeConfig {
            time_paths: true,
            ..Mode::Default.config()
        };
        let sample = round(&lab, &scenario, cfg, secs, drain_pause, |_| Ok(()))?;
        print_paths(&sample);
    }
    drop(lab);
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(())
}

/// The default mode's runs by the path they took, from one more round with
/// each run timed by the programs themselves (`time_paths`).
fn print_paths(s: &Sample) {
    let names = [
        (tc_path::COUNTED, "counted, no event"),
        (tc_path::EVENT, "counted, with an event"),
        (tc_path::MISS, "no entry (new flow)"),
        (tc_path::UNTRACKED, "not tracked (not IP)"),
    ];
    let runs: u64 = s.paths.iter().map(|p| p.runs).sum();
    let ns: u64 = s.paths.iter().map(|p| p.ns).sum();
    println!();
    println!(
        "default mode by path: one more round of {} runs, each timed by the program from its first clock read to its last",
        s.packets
    );
    println!(
        "(two clock reads a run: this round's run-time statistics say {:.1} ns/packet, its clocks {:.1})",
        s.ns_all(),
        ns as f64 / runs.max(1) as f64
    );
    println!(
        "{:<24} {:>10} {:>7} {:>9} {:>7}",
        "path", "runs", "% runs", "ns/run", "% time"
    );
    for (index, name) in names {
        let p = &s.paths[index as usize];
        println!(
            "{name:<24} {:>10} {:>7.1} {:>9.1} {:>7.1}",
            p.runs,
            100.0 * p.runs as f64 / runs.max(1) as f64,
            p.ns as f64 / p.runs.max(1) as f64,
            100.0 * p.ns as f64 / ns.max(1) as f64,
        );
    }
}
