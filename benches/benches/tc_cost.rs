//! tc probe cost per packet: the average run time of `tc_ingress` and `tc_egress`
//! per invocation, from the kernel's BPF run-time statistics (`run_time_ns` /
//! `run_cnt`, counted while this benchmark holds a `BPF_ENABLE_STATS` fd), while
//! the lab carries TCP-heavy request/response traffic on node1's `lxc` interfaces.
//! A packet between two endpoints is seen twice (ingress of the sender's `lxc`,
//! egress of the receiver's); "packets" counts program runs.
//!
//! Baseline, in the same run: the default mode (aggregation in the kernel) against
//! "every packet" (`aggregate: false`, one ring-buffer event per packet), rounds
//! interleaved A B A B. Each round loads a fresh probe, so its statistics start at
//! zero, and a thread drains the ring buffer meanwhile. Goal: default mode
//! ≤ 150 ns/packet. Nothing is asserted about timing.
//!
//! `cargo bench -p benches --bench tc_cost` as root (it builds a lab of network
//! namespaces and loads BPF; otherwise it prints "skipped: needs root" and exits 0).
//! `TC_COST_SECS`: seconds of traffic per round (default 5). `TC_COST_DRAIN_US`:
//! how long the drain thread sleeps when the ring is empty (default 500). A reader
//! that keeps up makes every event that finds the ring empty send a wake-up
//! (irq_work, a self-IPI), which is part of the measured cost; see benches/README.md.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use flow_probe::kernel::features::KernelFeatures;
use flow_probe::kernel::loader::{LoadedProbe, ProbeConfig};
use observe_cli::lab::{Lab, LabOptions, Scenario, run_traffic_once, run_traffic_with};

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
    Default,
    EveryPacket,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Default => "default (aggregate)",
            Mode::EveryPacket => "every packet",
        }
    }
}

/// What one round (or the sum of a mode's rounds) measured.
#[derive(Clone, Copy, Default)]
struct Sample {
    packets: u64,
    events: u64,
    lost: u64,
    read: u64,
    /// (run time in ns, run count) of tc_ingress and tc_egress.
    ingress: (u128, u64),
    egress: (u128, u64),
}

impl Sample {
    fn add(&mut self, o: &Sample) {
        self.packets += o.packets;
        self.events += o.events;
        self.lost += o.lost;
        self.read += o.read;
        self.ingress = (self.ingress.0 + o.ingress.0, self.ingress.1 + o.ingress.1);
        self.egress = (self.egress.0 + o.egress.0, self.egress.1 + o.egress.1);
    }

    fn ns_per_run((ns, runs): (u128, u64)) -> f64 {
        ns as f64 / runs.max(1) as f64
    }

    fn ns_all(&self) -> f64 {
        Self::ns_per_run((
            self.ingress.0 + self.egress.0,
            self.ingress.1 + self.egress.1,
        ))
    }

    fn row(&self, mode: Mode, round: &str) {
        println!(
            "{:<20} {round:>5} {:>10} {:>10} {:>7.3} {:>7} {:>9.1} {:>9.1} {:>9.1}",
            mode.name(),
            self.packets,
            self.events,
            self.events as f64 / self.packets.max(1) as f64,
            self.lost,
            Self::ns_per_run(self.ingress),
            Self::ns_per_run(self.egress),
            self.ns_all(),
        );
    }
}

/// One round: load the probe in `mode`, drain its ring while the lab carries
/// `secs` of traffic, read the kernel's statistics, detach.
fn round(
    lab: &Lab,
    scenario: &Scenario,
    mode: Mode,
    secs: Duration,
    drain_pause: Duration,
) -> anyhow::Result<Sample> {
    let node = lab.node_netns("node1").context("no node1 in the lab")?;
    let interfaces: Vec<String> = lab
        .endpoints_file()
        .endpoints
        .into_iter()
        .filter_map(|e| e.interface)
        .collect();
    let cfg = ProbeConfig {
        aggregate: mode == Mode::Default,
        netns: Some(node.to_string()),
        ..ProbeConfig::default()
    };
    let mut probe = LoadedProbe::start(&cfg, &interfaces, &KernelFeatures::probe())?;
    let mut ring = probe.take_ring().context("ring buffer already taken")?;
    let stop = AtomicBool::new(false);
    let never = AtomicBool::new(false);
    let (traffic, read) = std::thread::scope(|s| {
        let drain = s.spawn(|| {
            let mut read = 0u64;
            loop {
                let last = stop.load(Ordering::Relaxed);
                let before = read;
                while ring.next().is_some() {
                    read += 1;
                }
                if last {
                    return read;
                }
                if read == before {
                    std::thread::sleep(drain_pause);
                }
            }
        });
        let traffic = run_traffic_with(lab, scenario, secs, Duration::ZERO, &never, |_, _| {});
        stop.store(true, Ordering::Relaxed);
        (traffic, drain.join().expect("drain thread panicked"))
    });
    let traffic = traffic?;
    if traffic.unexpected > 0 {
        eprintln!(
            "warning: {} of {} traffic items did not go as expected",
            traffic.unexpected, traffic.items
        );
    }
    let counters = probe.counters()?;
    let mut sample = Sample {
        packets: counters.packets,
        events: counters.events_tried,
        lost: counters.events_lost,
        read,
        ..Sample::default()
    };
    for p in probe.run_stats()? {
        let slot = match p.name {
            "tc_ingress" => &mut sample.ingress,
            _ => &mut sample.egress,
        };
        *slot = (p.run_time.as_nanos(), p.run_count);
    }
    drop(probe); // detaches before the next round loads its own
    Ok(sample)
}

fn main() -> anyhow::Result<()> {
    if !observe_cli::lab::is_root() {
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
        ROUNDS
    );
    println!(
        "{:<20} {:>5} {:>10} {:>10} {:>7} {:>7} {:>9} {:>9} {:>9}",
        "mode", "round", "packets", "events", "ev/pkt", "lost", "ns/pkt in", "ns/pkt eg", "ns/pkt"
    );
    let modes = [Mode::Default, Mode::EveryPacket];
    let mut totals = [Sample::default(); 2];
    for r in 1..=ROUNDS {
        for (i, mode) in modes.into_iter().enumerate() {
            let sample = round(&lab, &scenario, mode, secs, drain_pause)?;
            sample.row(mode, &r.to_string());
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
        total.row(mode, "all");
    }
    let (base, every) = (totals[0].ns_all(), totals[1].ns_all());
    println!(
        "every packet vs default (baseline): {:.2}x ns/packet",
        every / base
    );
    println!(
        "goal <= {GOAL_NS} ns/packet (default mode, {base:.1} ns): {}",
        if base <= GOAL_NS { "met" } else { "NOT met" }
    );
    drop(lab);
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(())
}
