//! Where the flow slots put connections between two endpoints of the node:
//! each such connection has an entry at both veths, and both hash to one
//! pair of slots (the hash leaves the interface out, so the packet's second
//! sighting finds its line in cache). A pair holds one such connection; a
//! second goes to the neighbouring pair, a third to the LRU table, where
//! every packet pays a hash lookup. This counts, on the real kernel, how many
//! of N new connections ended where, in the default tables (65,536 slots a
//! family), and prints next to it what a Poisson model expects for that
//! placement and for the two it replaced: an entry per pair by a hash with
//! the interface in it, and the pair alone without the neighbour.
//!
//! `cargo bench -p benches --bench slot_spills` as root (it builds a lab and
//! loads BPF; otherwise it prints "skipped: needs root" and exits 0).
//! `SLOT_SPILLS_COUNTS`: the N to try, comma-separated (default
//! 1000,5000,20000). Nothing is asserted.

use std::net::{IpAddr, UdpSocket};

use anyhow::Context;
use aya::maps::{Array, Map, MapData};
use benches::probe_load::interfaces;
use flow_probe::kernel::events::{FlowSlot4, slot_state};
use flow_probe::kernel::features::KernelFeatures;
use flow_probe::kernel::flow_tables::TableKey;
use flow_probe::kernel::loader::{LoadedProbe, ProbeConfig};
use flow_probe::kernel::{pins, sysfs};
use observe_lab::{Lab, LabOptions, Scenario};

const SCENARIO: &str = r#"
description: slot_spills benchmark lab
endpoints:
  - {name: a, namespace: bench, labels: {app: a}}
  - {name: b, namespace: bench, labels: {app: b}}
"#;

/// The first of b's ports the datagrams go to.
const FIRST_PORT: u16 = 20_000;

/// Where one round's connections ended.
struct Placement {
    /// UDP entries in the slots of their own pair, of the neighbouring pair.
    in_pair: usize,
    in_neighbour: usize,
    /// Entries that went to the LRU table (the kernel's `slots_taken`; the
    /// ICMP errors b answers with are one more flow).
    in_lru: u64,
}

fn main() -> anyhow::Result<()> {
    if !observe_lab::is_root() {
        println!("slot_spills: skipped: needs root (it builds a lab and loads BPF programs)");
        return Ok(());
    }
    let counts: Vec<u16> = match std::env::var("SLOT_SPILLS_COUNTS") {
        Ok(v) => v
            .split(',')
            .map(|n| n.trim().parse::<u16>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("SLOT_SPILLS_COUNTS={v:?}: expected numbers up to 45535"))?,
        Err(_) => vec![1000, 5000, 20_000],
    };
    anyhow::ensure!(
        counts.iter().all(|&n| n > 0 && n <= u16::MAX - FIRST_PORT),
        "SLOT_SPILLS_COUNTS: each between 1 and {}",
        u16::MAX - FIRST_PORT
    );
    let scenario = Scenario::parse(SCENARIO, "<slot_spills scenario>")?;
    let state_dir = std::env::temp_dir().join(format!("slot-spills-{}", std::process::id()));
    let lab = Lab::up(&scenario, &LabOptions::with_state_dir(&state_dir))?;
    let cfg = ProbeConfig {
        netns: Some(lab.node_netns("node1").context("no node1")?.to_string()),
        ..ProbeConfig::default()
    };
    let slots = flow_probe::kernel::flow_tables::slot_count(cfg.flow_table_entries);
    let pairs = f64::from(slots / 2);
    println!(
        "new UDP connections a -> b (one datagram each, an entry at each veth), {slots} slots ({pairs} pairs), lab {}",
        lab.prefix()
    );
    println!(
        "{:>8} {:>9} {:>9} {:>11} {:>9} {:>10} | model: {:>9} {:>10} {:>10}",
        "conns",
        "entries",
        "in pair",
        "neighbour",
        "LRU",
        "LRU share",
        "per entry",
        "pair alone",
        "+neighbour"
    );
    for &n in &counts {
        let p = round(&lab, &cfg, n)?;
        let entries = p.in_pair + p.in_neighbour + p.in_lru as usize;
        let conns = f64::from(n);
        // A new entry (per entry) or connection (by pair) goes to the LRU
        // table when its pair, or its pair and the neighbour, are full.
        let per_entry = round_share(2.0 * conns / pairs, 2);
        let pair_alone = round_share(conns / pairs, 1);
        let with_neighbour = round_share(conns / (pairs / 2.0), 2);
        println!(
            "{n:>8} {entries:>9} {:>9} {:>11} {:>9} {:>9.1}% | model: {:>8.1}% {:>9.1}% {:>9.1}%",
            p.in_pair,
            p.in_neighbour,
            p.in_lru,
            100.0 * p.in_lru as f64 / entries.max(1) as f64,
            100.0 * per_entry,
            100.0 * pair_alone,
            100.0 * with_neighbour,
        );
    }
    println!(
        "model: the share expected in the LRU table over the round, for the entries placed one per slot by a hash with the interface in it (the build before 038d80d), a connection's pair alone (038d80d), and its pair then the neighbouring one (a3034c2, this build)"
    );
    drop(lab);
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(())
}

/// The share of the items of a round that find their place full, when items
/// arrive at random until there are `load` per place and a place holds
/// `room`: the chance of a full place, averaged over the round's arrivals.
fn round_share(load: f64, room: u32) -> f64 {
    const STEPS: u32 = 1000;
    (0..STEPS)
        .map(|i| full_chance(load * (f64::from(i) + 0.5) / f64::from(STEPS), room))
        .sum::<f64>()
        / f64::from(STEPS)
}

/// The chance that a place holds `room` items or more when `load` items per
/// place were spread at random (Poisson).
fn full_chance(load: f64, room: u32) -> f64 {
    let mut below = 0.0;
    let mut term = (-load).exp();
    for k in 0..room {
        below += term;
        term *= load / f64::from(k + 1);
    }
    1.0 - below
}

/// Loads a fresh probe (empty tables), sends one datagram from a to each of
/// `n` ports of b, and reads where the UDP entries are.
fn round(lab: &Lab, cfg: &ProbeConfig, n: u16) -> anyhow::Result<Placement> {
    let mut probe = LoadedProbe::start(cfg, &interfaces(lab), &KernelFeatures::probe())?;
    let tables = probe.take_flow_tables().context("flow tables taken")?;
    let a = lab.endpoint("a").context("endpoint a")?;
    let b = IpAddr::V4(lab.endpoint("b").context("endpoint b")?.ipv4);
    let a_ns = a.netns.clone();
    std::thread::spawn(move || -> anyhow::Result<()> {
        sysfs::enter_netns(&a_ns)?;
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        for port in FIRST_PORT..FIRST_PORT + n {
            sock.send_to(b"x", (b, port))?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("sender panicked"))??;
    let pinned = pins::pin_dir(cfg.netns.as_deref()).join("FLOW_SLOTS4");
    let slots: Array<MapData, FlowSlot4> =
        Array::try_from(Map::Array(MapData::from_pin(&pinned)?))?;
    let (mut in_pair, mut in_neighbour) = (0, 0);
    for index in 0..slots.len() {
        let slot = slots.get(&index, 0)?;
        if slot.state != slot_state::USED || slot.key.proto != 17 {
            continue;
        }
        if tables.pair_of(&TableKey::V4(slot.key)) == index >> 1 {
            in_pair += 1;
        } else {
            in_neighbour += 1;
        }
    }
    Ok(Placement {
        in_pair,
        in_neighbour,
        in_lru: probe.counters()?.slots_taken,
    })
}
