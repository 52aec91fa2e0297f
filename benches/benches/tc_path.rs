//! What each path through `tc_ingress` costs, measured with
//! `BPF_PROG_TEST_RUN` (no lab, no traffic, no other code between runs):
//! an established flow's packet with its entry warm; the same over 20,000
//! flows in rotation, so each entry is cold as it is between a connection's
//! packets under real traffic; a new flow's first packet (insert and event);
//! and an event on an established flow (every-packet mode). Baseline in the
//! same run: the floor (`cost_stop` `PARSED`) measured the same way. Explains where
//! `tc_cost`'s time goes; nothing is asserted about timing.
//!
//! A second table runs the new flow and the cold established flow again with
//! memory made cold before each run from user space: nothing; the TLB (one
//! line on each of 4,096 small pages, which evicts every cached translation
//! but only 256 KiB of lines); the caches (every line of 16 MiB in 2 MiB
//! pages, a handful of translations); both; the caches, then one unmeasured
//! packet of another flow (the code, settings and stack warm again, the
//! measured flow's own memory not). Under `tc_cost`'s load a new flow costs
//! ~4× what it costs here warm: this says what it meets. Below it, the unit
//! those rows are made of: one read of memory no cache holds, measured from
//! user space (a chain of dependent reads over 1 GiB, in huge and small pages).
//!
//! A last line times a new flow whose pair of slots has one slot taken, with
//! that pair's spill bit clear and set (a flow of the pair beyond it, in the
//! neighbouring pair or the LRU table): the difference is the search beyond
//! the pair (the neighbouring pair's slots and an LRU lookup) that, while one
//! mark covered a whole family, every new flow paid once any flow had spilled.
//!
//! `cargo bench -p benches --bench tc_path` as root (otherwise it prints
//! "skipped: needs root"). `TC_PATH_FLOWS`: flows in rotation (default 20,000);
//! `TC_PATH_EVICT_FLOWS`: flows in the second table (default 2,000; 0 skips it);
//! `TC_PATH_SPILL_PAIRS`: pairs of each kind in the last line (default 1,000; 0
//! skips it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use aya::EbpfLoader;
use aya::maps::{MapData, RingBuf};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use flow_probe::kernel::events::{Flow4Key, cost_stop};
use flow_probe::kernel::flow_tables::{FlowTables, TableKey};
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
    fn load(pins: &PinDir, aggregate: u32, stop: u32) -> anyhow::Result<Probe> {
        // Fresh maps for every mode.
        let _ = std::fs::remove_dir_all(&pins.0);
        flow_probe::kernel::pins::create_dir(&pins.0)?;
        let wakeup: u64 = 32 << 10;
        let mut ebpf = EbpfLoader::new()
            .override_global("aggregate", &aggregate, true)
            .override_global("cost_stop", &stop, true)
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

/// What is made cold before each run of the eviction table.
#[derive(Clone, Copy, PartialEq)]
enum Evict {
    Nothing,
    Tlb,
    Caches,
    Both,
    /// The caches, then one packet of another flow (unmeasured): the code,
    /// settings and stack warm again, the measured flow's own memory not.
    CachesThenOther,
}

impl Evict {
    const ALL: [Evict; 5] = [
        Evict::Nothing,
        Evict::Tlb,
        Evict::Caches,
        Evict::Both,
        Evict::CachesThenOther,
    ];

    fn name(self) -> &'static str {
        match self {
            Evict::Nothing => "nothing",
            Evict::Tlb => "the TLB",
            Evict::Caches => "the caches",
            Evict::Both => "both",
            Evict::CachesThenOther => "caches+other",
        }
    }
}

/// Anonymous memory touched to push other memory out of the TLB or the caches.
struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    const SMALL_PAGE: usize = 4096;
    const LINE: usize = 64;

    /// `len` bytes, in 2 MiB pages when `huge` (transparent huge pages by
    /// madvise; the kernel may still give small ones), else in 4 KiB pages;
    /// every page written once so none faults later.
    fn new(len: usize, huge: bool) -> anyhow::Result<Region> {
        // SAFETY: a new private anonymous mapping; nothing else refers to it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            anyhow::bail!("mmap of {len} bytes: {}", std::io::Error::last_os_error());
        }
        let region = Region {
            ptr: ptr.cast(),
            len,
        };
        let advice = if huge {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        // SAFETY: the range is the mapping made above. A refused advice only
        // changes the page size, which the output reports.
        unsafe { libc::madvise(ptr, len, advice) };
        for offset in (0..len).step_by(Self::SMALL_PAGE) {
            // SAFETY: offset < len, inside the mapping.
            unsafe { region.ptr.add(offset).write_volatile(1) };
        }
        Ok(region)
    }

    /// Reads one byte every `stride` bytes, shifted by `shift(i)` lines at the
    /// i-th read (so reads one page apart do not all fall in one cache set).
    fn touch(&self, stride: usize, shift: impl Fn(usize) -> usize) -> u64 {
        let mut sum = 0u64;
        for (i, offset) in (0..self.len).step_by(stride).enumerate() {
            let at = (offset + shift(i) * Self::LINE) % self.len;
            // SAFETY: at < len, inside the mapping.
            sum += u64::from(unsafe { self.ptr.add(at).read_volatile() });
        }
        sum
    }

    /// Nanoseconds per read of `reads` reads that each depend on the one
    /// before, at lines of the whole region in a random cycle: the latency
    /// of memory no cache holds (once the region is far larger than them).
    fn chase(&self, reads: usize) -> f64 {
        let lines = self.len / Self::LINE;
        // A random cyclic order of the lines (Sattolo's shuffle, xorshift).
        let mut order: Vec<u32> = (0..lines as u32).collect();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for i in (1..lines).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % i as u64) as usize);
        }
        for (line, next) in order.iter().enumerate() {
            // SAFETY: both are line indexes < lines: inside the mapping, and
            // 8-byte aligned (lines are 64 bytes from a page-aligned base).
            unsafe {
                self.ptr
                    .add(line * Self::LINE)
                    .cast::<u64>()
                    .write(*next as u64 * Self::LINE as u64)
            };
        }
        let mut at = 0u64;
        let start = std::time::Instant::now();
        for _ in 0..reads {
            // SAFETY: every stored offset is a line of the mapping.
            at = unsafe { self.ptr.add(at as usize).cast::<u64>().read_volatile() };
        }
        let elapsed = start.elapsed();
        std::hint::black_box(at);
        elapsed.as_nanos() as f64 / reads as f64
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The two regions, and what each eviction touches.
struct Evictor {
    small: Region,
    huge: Region,
}

impl Evictor {
    fn new() -> anyhow::Result<Evictor> {
        Ok(Evictor {
            // 4,096 pages: twice the entries of the largest second-level TLBs.
            small: Region::new(4096 * Region::SMALL_PAGE, false)?,
            huge: Region::new(16 << 20, true)?,
        })
    }

    fn evict(&self, what: Evict) -> u64 {
        let pages = || {
            self.small.touch(Region::SMALL_PAGE, |i| {
                i % (Region::SMALL_PAGE / Region::LINE)
            })
        };
        let lines = || self.huge.touch(Region::LINE, |_| 0);
        match what {
            Evict::Nothing => 0,
            Evict::Tlb => pages(),
            Evict::Caches | Evict::CachesThenOther => lines(),
            Evict::Both => lines() + pages(),
        }
    }
}

/// This process's anonymous memory in huge pages, from /proc/self/smaps_rollup.
fn anon_huge_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = text.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A new flow's first packet for each of `flows` flows, then a packet of each
/// again (its entry cold), one run a call with `before` ahead of each run:
/// nanoseconds per run of each.
fn one_run_each(
    probe: &mut Probe,
    flows: u16,
    mut before: impl FnMut(&mut Probe) -> anyhow::Result<()>,
) -> anyhow::Result<(f64, f64)> {
    let mut new_flow = Duration::ZERO;
    for i in 0..flows {
        let syn = packet(1000 + i, TCP_SYN, 0);
        before(probe)?;
        new_flow += probe.run(&syn, 1)?;
    }
    let mut rotation = Duration::ZERO;
    for i in 0..flows {
        let ack = packet(1000 + i, TCP_ACK, 100);
        before(probe)?;
        rotation += probe.run(&ack, 1)?;
    }
    let ns = |d: Duration| d.as_nanos() as f64 / f64::from(flows);
    Ok((ns(new_flow), ns(rotation)))
}

/// New flow and cold established flow, each run after `evict`.
fn measure_evicted(
    probe: &mut Probe,
    flows: u16,
    evictor: &Evictor,
    what: Evict,
) -> anyhow::Result<(f64, f64)> {
    let other = packet(999, TCP_ACK, 100);
    probe.run(&other, 1)?; // makes its entry
    let mut sink = 0u64;
    let result = one_run_each(probe, flows, |probe| {
        sink = sink.wrapping_add(evictor.evict(what));
        if what == Evict::CachesThenOther {
            probe.run(&other, 1)?;
        }
        Ok(())
    });
    std::hint::black_box(sink);
    result
}

fn measure(probe: &mut Probe, flows: u16) -> anyhow::Result<Paths> {
    let ack = packet(40_000, TCP_ACK, 100);
    probe.run(&ack, 1)?; // makes its entry
    let mut warm = Duration::ZERO;
    for _ in 0..BATCHES {
        warm += probe.run(&ack, BATCH)?;
    }
    let (new_flow, rotation) = one_run_each(probe, flows, |_| Ok(()))?;
    Ok(Paths {
        warm: warm.as_nanos() as f64 / f64::from(BATCHES),
        new_flow,
        rotation,
    })
}

/// The flow table key `tc_ingress` makes of `packet(sport, ..)` under
/// `BPF_PROG_TEST_RUN` (the loopback device: ifindex 1). 198.18.0.2 is the
/// lower address as the program compares them, so it is side 0.
fn key_of(sport: u16) -> TableKey {
    TableKey::V4(Flow4Key {
        addr: [[198, 18, 0, 2], [198, 18, 0, 3]],
        port: [sport, 8080],
        ifindex: 1,
        proto: 6,
        _pad0: [0; 3],
    })
}

/// A new flow into a pair of slots with one slot taken, `pairs` times with
/// the pair's spill bit clear and as often with it set, interleaved: the
/// median ns of a run of each.
fn measure_spill_marks(pins: &PinDir, pairs: usize) -> anyhow::Result<(f64, f64)> {
    let mut probe = Probe::load(pins, 1, 0)?;
    let tables = FlowTables::take_from(&mut probe.ebpf)?;
    // Source ports by the pair of slots their flow hashes to; pairs that
    // four of them share.
    let mut by_pair: HashMap<u32, Vec<u16>> = HashMap::new();
    for sport in 1..=u16::MAX {
        by_pair
            .entry(tables.pair_of(&key_of(sport)))
            .or_default()
            .push(sport);
    }
    let mut quads: Vec<Vec<u16>> = by_pair.into_values().filter(|p| p.len() >= 4).collect();
    quads.sort_unstable();
    anyhow::ensure!(
        quads.len() >= 2 * pairs,
        "only {} pairs with four flows",
        quads.len()
    );
    let (clear, marked) = quads[..2 * pairs].split_at(pairs);
    // Both slots of every pair taken; a third flow of each `marked` pair goes
    // beyond it (the neighbouring pair, or the LRU table when that is full
    // too) and sets its bit; then the first flow of each pair is deleted,
    // leaving one slot free.
    for ports in clear.iter().chain(marked) {
        probe.run(&packet(ports[0], TCP_SYN, 0), 1)?;
        probe.run(&packet(ports[1], TCP_SYN, 0), 1)?;
    }
    for ports in marked {
        probe.run(&packet(ports[2], TCP_SYN, 0), 1)?;
    }
    let firsts: Vec<TableKey> = clear.iter().chain(marked).map(|p| key_of(p[0])).collect();
    anyhow::ensure!(
        tables.delete_flows(&firsts)? == firsts.len(),
        "the first flows were not where the hash says"
    );
    let mut expected: Vec<u32> = marked
        .iter()
        .map(|p| tables.pair_of(&key_of(p[0])))
        .collect();
    expected.sort_unstable();
    anyhow::ensure!(
        tables.spill_marks()[0] == expected,
        "the marked pairs are not those of the flows beyond their pairs"
    );
    let (mut unmarked_ns, mut marked_ns) = (Vec::new(), Vec::new());
    for (c, m) in clear.iter().zip(marked) {
        unmarked_ns.push(probe.run(&packet(c[3], TCP_SYN, 0), 1)?);
        marked_ns.push(probe.run(&packet(m[3], TCP_SYN, 0), 1)?);
    }
    Ok((median_ns(unmarked_ns), median_ns(marked_ns)))
}

/// The median of single runs: one run an interrupt lands in would move a
/// mean of a thousand by tens of nanoseconds.
fn median_ns(mut runs: Vec<Duration>) -> f64 {
    runs.sort_unstable();
    runs.get(runs.len() / 2)
        .map_or(0.0, |d| d.as_nanos() as f64)
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
    for (name, aggregate, stop) in [
        ("floor (parse only)", 1, cost_stop::PARSED),
        ("default (aggregate)", 1, cost_stop::NOWHERE),
        ("every packet", 0, cost_stop::NOWHERE),
    ] {
        let mut probe = Probe::load(&pins, aggregate, stop)?;
        results.push((name, measure(&mut probe, flows)?));
    }
    let floor = &results[0].1;
    println!(
        "tc_ingress per run by path, BPF_PROG_TEST_RUN; warm: {BATCH} runs a call; the rest one run a call, {flows} flows"
    );
    println!("machine: {}", benches::machine());
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

    let evict_flows = std::env::var("TC_PATH_EVICT_FLOWS")
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(2_000)
        .min(60_000);
    let spill_pairs = std::env::var("TC_PATH_SPILL_PAIRS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1_000)
        .min(1_500); // about 4,700 pairs have four of the 65,535 ports
    if spill_pairs > 0 {
        let (unmarked, marked) = measure_spill_marks(&pins, spill_pairs)?;
        println!(
            "new flow into a pair with one slot taken, one run a call, {spill_pairs} pairs each, median: its spill bit clear {unmarked:.0} ns, set {marked:.0} ({:+.0}: the search beyond the pair)",
            marked - unmarked
        );
    }
    if evict_flows == 0 {
        return Ok(());
    }
    let evictor = Evictor::new()?;
    println!();
    println!(
        "the same, one run a call over {evict_flows} flows, after making cold from user space: (this process has {} KiB in huge pages)",
        anon_huge_kib().map_or("?".to_string(), |k| k.to_string())
    );
    println!(
        "{:<12} {:>30} {:>30}",
        "made cold", "new flow: floor, default (+)", "established: floor, default (+)"
    );
    for what in Evict::ALL {
        let mut row = Vec::new();
        for stop in [cost_stop::PARSED, cost_stop::NOWHERE] {
            let mut probe = Probe::load(&pins, 1, stop)?;
            row.push(measure_evicted(&mut probe, evict_flows, &evictor, what)?);
        }
        let ((floor_new, floor_est), (new, est)) = (row[0], row[1]);
        println!(
            "{:<12} {:>8.1} {:>9.1} ({:>+7.1}) {:>8.1} {:>9.1} ({:>+7.1})",
            what.name(),
            floor_new,
            new,
            new - floor_new,
            floor_est,
            est,
            est - floor_est
        );
    }
    // What one read that misses every cache costs on this machine: the
    // unit the cold rows above are made of.
    const CHASED: usize = 1 << 30;
    // One region at a time: each is unmapped at the end of its statement.
    let huge = Region::new(CHASED, true)?.chase(1_000_000);
    let small = Region::new(CHASED, false)?.chase(1_000_000);
    println!(
        "one read of memory no cache holds, from user space (a dependent read at a random line of {} MiB): {huge:.0} ns in huge pages, {small:.0} ns in 4 KiB pages",
        CHASED >> 20
    );
    Ok(())
}
