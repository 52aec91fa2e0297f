//! What each path through `tc_ingress` costs, measured with
//! `BPF_PROG_TEST_RUN` (no lab, no traffic, no other code between runs):
//! an established flow's packet with its entry warm; the same over 20,000
//! flows in rotation, so each entry is cold as it is between a connection's
//! packets under real traffic; a new flow's first packet (insert and event);
//! and an event on an established flow (every-packet mode). Baseline in the
//! same run: the floor (`parse_only`) measured the same way. Explains where
//! `tc_cost`'s time goes; nothing is asserted about timing.
//!
//! `cargo bench -p benches --bench tc_path` as root (otherwise it prints
//! "skipped: needs root"). `TC_PATH_FLOWS`: flows in rotation (default 20,000).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use aya::EbpfLoader;
use aya::maps::{MapData, RingBuf};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use flow_probe::kernel::objects::FLOW_OBJECT;
use test_support::frames;

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
/// Runs per call for the warm rows; the ring is drained between calls.
const BATCH: u32 = 1000;
const BATCHES: u32 = 200;

/// An IPv4 TCP packet 198.18.0.2:`sport` → 198.18.0.3:8080 with a 12-byte
/// option area (timestamps), as Linux sends them.
fn packet(sport: u16, flags: u8, payload: usize) -> Vec<u8> {
    frames::ipv4_tcp(
        ([198, 18, 0, 2], sport),
        ([198, 18, 0, 3], 8080),
        flags,
        12,
        payload,
    )
}

/// A unique bpffs folder for the probe's pinned maps, removed on drop.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `tc_ingress` loaded with its maps, and the ring to drain.
struct Probe {
    ebpf: aya::Ebpf,
    ring: RingBuf<MapData>,
}

impl Probe {
    fn load(pins: &PinDir, aggregate: u32, parse_only: u32) -> anyhow::Result<Probe> {
        // Fresh maps for every mode.
        let _ = std::fs::remove_dir_all(&pins.0);
        std::fs::create_dir_all(&pins.0)?;
        let wakeup: u64 = 32 << 10;
        let mut ebpf = EbpfLoader::new()
            .override_global("aggregate", &aggregate, true)
            .override_global("parse_only", &parse_only, true)
            .override_global("wakeup_bytes", &wakeup, true)
            .default_map_pin_directory(&pins.0)
            .load(FLOW_OBJECT)
            .context("loading the tc flow probe")?;
        let prog: &mut SchedClassifier = ebpf
            .program_mut("tc_ingress")
            .context("no tc_ingress")?
            .try_into()?;
        prog.load()?;
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("no EVENTS")?)?;
        Ok(Probe { ebpf, ring })
    }

    /// Runs `data` `repeat` times; the kernel's average per run.
    fn run(&mut self, data: &[u8], repeat: u32) -> anyhow::Result<Duration> {
        let prog: &SchedClassifier = self
            .ebpf
            .program("tc_ingress")
            .context("no tc_ingress")?
            .try_into()?;
        let r = prog.test_run(TestRunOptions {
            data_in: Some(data),
            repeat,
            ..Default::default()
        })?;
        while self.ring.next().is_some() {}
        Ok(r.duration)
    }
}

/// Nanoseconds per run of each path in one mode.
struct Paths {
    warm: f64,
    new_flow: f64,
    rotation: f64,
}

fn measure(probe: &mut Probe, flows: u16) -> anyhow::Result<Paths> {
    let ack = packet(40_000, TCP_ACK, 100);
    probe.run(&ack, 1)?; // makes its entry
    let mut warm = Duration::ZERO;
    for _ in 0..BATCHES {
        warm += probe.run(&ack, BATCH)?;
    }
    // One call per packet: each a different flow.
    let mut new_flow = Duration::ZERO;
    for i in 0..flows {
        new_flow += probe.run(&packet(1000 + i, TCP_SYN, 0), 1)?;
    }
    let mut rotation = Duration::ZERO;
    for i in 0..flows {
        rotation += probe.run(&packet(1000 + i, TCP_ACK, 100), 1)?;
    }
    let ns = |d: Duration, n: f64| d.as_nanos() as f64 / n;
    Ok(Paths {
        warm: ns(warm, f64::from(BATCHES)),
        new_flow: ns(new_flow, f64::from(flows)),
        rotation: ns(rotation, f64::from(flows)),
    })
}

fn main() -> anyhow::Result<()> {
    if !observe_lab::is_root() {
        println!("tc_path: skipped: needs root (it loads BPF programs)");
        return Ok(());
    }
    let flows = std::env::var("TC_PATH_FLOWS")
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(20_000)
        .clamp(1, 60_000);
    let pins = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/tc-path-{}",
        std::process::id()
    )));
    let mut results = Vec::new();
    for (name, aggregate, parse_only) in [
        ("floor (parse only)", 1, 1),
        ("default (aggregate)", 1, 0),
        ("every packet", 0, 0),
    ] {
        let mut probe = Probe::load(&pins, aggregate, parse_only)?;
        results.push((name, measure(&mut probe, flows)?));
    }
    let floor = &results[0].1;
    println!(
        "tc_ingress per run by path, BPF_PROG_TEST_RUN; warm: {BATCH} runs a call; the rest one run a call, {flows} flows"
    );
    println!(
        "{:<20} {:>18} {:>18} {:>18}",
        "mode", "established, warm", "new flow", "established, cold"
    );
    for (name, p) in &results {
        println!(
            "{name:<20} {:>8.1} ({:>+6.1}) {:>8.1} ({:>+6.1}) {:>8.1} ({:>+6.1})",
            p.warm,
            p.warm - floor.warm,
            p.new_flow,
            p.new_flow - floor.new_flow,
            p.rotation,
            p.rotation - floor.rotation,
        );
    }
    println!("ns per run (in brackets: over the floor, the baseline, measured the same way)");
    Ok(())
}
