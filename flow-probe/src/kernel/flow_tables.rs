//! The tc probe's flow tables (counters of each connection on each
//! interface: the direct-mapped `FLOW_SLOTS4`/`FLOW_SLOTS6`, and the LRU
//! `FLOWS4`/`FLOWS6` for flows whose slots were taken) and connection tracking
//! (`CT4`, `CT6`), as flow-probe reads them: whole tables in batches
//! ([`super::batch`]), and deletes. Periodic reports and garbage collection
//! (`crate::tables`) work on what this hands them.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use aya::Ebpf;
use aya::maps::{Array, IterableMap, Map, MapData};

use super::batch;
use super::events::slot_state;
use super::events::{CtEntry, Flow4Key, Flow6Key, FlowSlot4, FlowSlot6, FlowStats};
use crate::metrics::key::BuildKeyHasher;

/// A key of either family's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKey {
    V4(Flow4Key),
    V6(Flow6Key),
}

impl TableKey {
    /// 4 or 6.
    pub fn family(&self) -> u8 {
        match self {
            TableKey::V4(_) => 4,
            TableKey::V6(_) => 6,
        }
    }

    /// 0 for IPv4, 1 for IPv6: the index of per-family arrays.
    pub fn family_index(&self) -> usize {
        usize::from(matches!(self, TableKey::V6(_)))
    }

    pub fn proto(&self) -> u8 {
        match self {
            TableKey::V4(k) => k.proto,
            TableKey::V6(k) => k.proto,
        }
    }

    pub fn ifindex(&self) -> u32 {
        match self {
            TableKey::V4(k) => k.ifindex,
            TableKey::V6(k) => k.ifindex,
        }
    }

    /// The address of side 0 or 1, as events carry it (IPv4 in the first 4
    /// of 16 bytes).
    pub fn addr_bytes(&self, side: u8) -> [u8; 16] {
        let side = usize::from(side & 1);
        let mut out = [0u8; 16];
        match self {
            TableKey::V4(k) => out[..4].copy_from_slice(&k.addr[side]),
            TableKey::V6(k) => out = k.addr[side],
        }
        out
    }

    pub fn addr(&self, side: u8) -> IpAddr {
        crate::flow_builder::addr(self.family(), &self.addr_bytes(side))
    }

    pub fn port(&self, side: u8) -> u16 {
        let side = usize::from(side & 1);
        match self {
            TableKey::V4(k) => k.port[side],
            TableKey::V6(k) => k.port[side],
        }
    }
}

/// The maps, taken from the loaded object.
pub struct FlowTables {
    /// For deletes, behind a lock (aya's `Array::set` takes `&mut`).
    slots4: Mutex<Array<MapData, FlowSlot4>>,
    slots6: Mutex<Array<MapData, FlowSlot6>>,
    /// For reads: the same arrays mapped into memory.
    view4: SlotsView<FlowSlot4>,
    view6: SlotsView<FlowSlot6>,
    flows4: MapData,
    flows6: MapData,
    /// `SLOT_SPILLS`: per family, a bit for each pair of slots whose flows
    /// may be in the LRU table. Behind a lock: one clearing at a time.
    spills: Mutex<SpillBits>,
    ct4: MapData,
    ct6: MapData,
}

/// The names of the maps, as in `ebpf-probes/src/lib/maps.h`.
pub const SLOT_MAPS: [&str; 2] = ["FLOW_SLOTS4", "FLOW_SLOTS6"];
pub const FLOW_MAPS: [&str; 2] = ["FLOWS4", "FLOWS6"];
pub const CT_MAPS: [&str; 2] = ["CT4", "CT6"];
pub const SPILL_BITS: &str = "SLOT_SPILLS";

/// Slots per family for a flow table of `entries`: the next power of two,
/// at least two pairs (a pair's flows may go to its neighbour).
pub fn slot_count(entries: u32) -> u32 {
    entries
        .max(4)
        .checked_next_power_of_two()
        .unwrap_or(1 << 31)
}

/// 64-bit words of `SLOT_SPILLS` per family for `slots` slots: a bit for
/// each pair, at least one word.
pub fn spill_words(slots: u32) -> u32 {
    (slots / 128).max(1)
}

/// The hash that places a key in its slots (index `hash & mask` and its
/// neighbour `^ 1`), as `slot_hash` in `ebpf-probes/src/lib/track.h`
/// computes it: the key's 32-bit words in memory order but its ifindex (the
/// last but one), each mixed in with a multiply and a rotate, then a
/// finalizer. A connection's entries on different interfaces share a pair.
pub fn slot_hash(key_bytes: &[u8]) -> u32 {
    let ifindex_word = (key_bytes.len() / 4).saturating_sub(2);
    let mut h: u32 = 0;
    for (i, w) in key_bytes.chunks_exact(4).enumerate() {
        if i == ifindex_word {
            continue;
        }
        let w = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
        h = (h ^ w).wrapping_mul(0x9E37_79B1).rotate_left(13);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^ (h >> 13)
}

// `slot_hash` skips the last word but one: the ifindex, in both families.
const _: () = assert!(
    std::mem::offset_of!(Flow4Key, ifindex) == size_of::<Flow4Key>() - 8
        && std::mem::offset_of!(Flow6Key, ifindex) == size_of::<Flow6Key>() - 8
);

/// The first of the two slots (it and its neighbour `^ 1`) of the key whose
/// bytes are `key_bytes`, in tables of `slots` slots (a power of two).
fn first_slot(key_bytes: &[u8], slots: u32) -> u32 {
    slot_hash(key_bytes) & (slots - 1)
}

fn take(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<MapData> {
    match ebpf.take_map(name).with_context(|| format!("map {name}"))? {
        Map::HashMap(m) | Map::LruHashMap(m) => Ok(m),
        other => anyhow::bail!("map {name} is not a hash map: {other:?}"),
    }
}

fn take_spill_bits(ebpf: &mut Ebpf, words: u32) -> anyhow::Result<SpillBits> {
    let map = ebpf.take_map(SPILL_BITS).context("map SLOT_SPILLS")?;
    let array: Array<MapData, u64> =
        Array::try_from(map).context("map SLOT_SPILLS is not an array")?;
    anyhow::ensure!(
        array.len() == 2 * words,
        "map SLOT_SPILLS has {} words, expected {} for the slot tables",
        array.len(),
        2 * words
    );
    SpillBits::map(array.map().fd().as_fd(), words).context("mapping SLOT_SPILLS into memory")
}

/// A slot array and its read-only mapping.
type Slots<V> = (Mutex<Array<MapData, V>>, SlotsView<V>);

fn take_slots<V: aya::Pod>(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<Slots<V>> {
    let map = ebpf.take_map(name).with_context(|| format!("map {name}"))?;
    let array: Array<MapData, V> =
        Array::try_from(map).with_context(|| format!("map {name} is not an array of slots"))?;
    let view = SlotsView::map(array.map().fd().as_fd(), array.len())
        .with_context(|| format!("mapping {name} into memory"))?;
    Ok((Mutex::new(array), view))
}

/// The data of a `BPF_F_MMAPABLE` array mapped into memory, shared with the
/// kernel; unmapped on drop.
struct Mapping {
    base: *mut libc::c_void,
    bytes: usize,
}

// SAFETY: a shared mapping valid until drop; its users read it with volatile
// reads or atomics (the kernel writes it meanwhile), from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `bytes` (rounded up to pages) of the array `fd`,
    /// read-only unless `writable`.
    fn new(fd: BorrowedFd<'_>, bytes: usize, writable: bool) -> io::Result<Self> {
        let page = rustix::param::page_size();
        let bytes = bytes.div_ceil(page) * page;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new shared mapping of the map's fd from offset 0 for no
        // more than its data (the kernel rounds it up to pages); the result is
        // checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { base, bytes })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.base, self.bytes);
        }
    }
}

/// A slot array mapped read-only into memory (it is `BPF_F_MMAPABLE`): a
/// read scans memory instead of copying every slot out through `bpf(2)`
/// (about 14 ms for the default tables, every collection).
struct SlotsView<V> {
    mapping: Mapping,
    slots: usize,
    _slot: std::marker::PhantomData<V>,
}

impl<V: aya::Pod> SlotsView<V> {
    fn map(fd: BorrowedFd<'_>, slots: u32) -> io::Result<Self> {
        // The kernel's elements are the value rounded up to 8 bytes: the
        // slots are multiples of 8 already (asserted in events.rs).
        Ok(SlotsView {
            mapping: Mapping::new(fd, size_of::<V>() * slots as usize, false)?,
            slots: slots as usize,
            _slot: std::marker::PhantomData,
        })
    }

    /// Calls `f` with every used slot and its index. A slot the kernel
    /// writes meanwhile may be seen half-written, as a copying read could
    /// see it too.
    fn each_used(&self, mut f: impl FnMut(u32, V)) {
        for i in 0..self.slots {
            // SAFETY: `i < slots`: inside the mapping; every slot type starts
            // with its 32-bit state (`#[repr(C)]`), and any bytes are a valid
            // value of these plain-data types.
            unsafe {
                let slot = self.mapping.base.cast::<V>().add(i);
                if std::ptr::read_volatile(slot.cast::<u32>()) == slot_state::USED {
                    // `slots` came from a u32 (`map`).
                    f(i as u32, std::ptr::read_volatile(slot));
                }
            }
        }
    }
}

/// `SLOT_SPILLS` mapped read-write: IPv4's words, then IPv6's, a bit per
/// pair of slots. Cleared with atomic ands, so a bit a program sets meanwhile
/// in the same word stays set.
struct SpillBits {
    mapping: Mapping,
    /// Words per family.
    words: usize,
}

impl SpillBits {
    fn map(fd: BorrowedFd<'_>, words: u32) -> io::Result<Self> {
        Ok(SpillBits {
            mapping: Mapping::new(fd, 2 * words as usize * size_of::<u64>(), true)?,
            words: words as usize,
        })
    }

    /// The word of `pair`'s bit in family 0 (IPv4) or 1 (IPv6), and the bit.
    fn word(&self, family: usize, pair: u32) -> (&AtomicU64, u64) {
        // Pairs are below 64 * words; the bound only keeps the pointer inside.
        let index = (family * self.words + pair as usize / 64).min(2 * self.words - 1);
        // SAFETY: `index < 2 * words`, inside the mapping, which is aligned
        // to a page and lives as long as `self`; the programs change these
        // words only with atomic instructions (a map update through bpf(2)
        // would copy them whole: only a test does that).
        let word = unsafe { &*self.mapping.base.cast::<AtomicU64>().add(index) };
        (word, 1 << (pair % 64))
    }

    /// The pairs of `family` whose bit is set, in order.
    fn marked(&self, family: usize) -> Vec<u32> {
        let mut pairs = Vec::new();
        for w in 0..self.words {
            let first = (w * 64) as u32;
            let bits = self.word(family, first).0.load(Ordering::SeqCst);
            pairs.extend((0..64).filter(|b| bits & (1 << b) != 0).map(|b| first + b));
        }
        pairs
    }

    fn clear(&self, family: usize, pair: u32) {
        let (word, bit) = self.word(family, pair);
        word.fetch_and(!bit, Ordering::SeqCst);
    }

    fn set(&self, family: usize, pair: u32) {
        let (word, bit) = self.word(family, pair);
        word.fetch_or(bit, Ordering::SeqCst);
    }
}

impl FlowTables {
    pub fn take_from(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let (slots4, view4) = take_slots(ebpf, SLOT_MAPS[0])?;
        let (slots6, view6) = take_slots(ebpf, SLOT_MAPS[1])?;
        let spills = take_spill_bits(ebpf, spill_words(view4.slots as u32))?;
        let tables = FlowTables {
            slots4,
            slots6,
            view4,
            view6,
            flows4: take(ebpf, FLOW_MAPS[0])?,
            flows6: take(ebpf, FLOW_MAPS[1])?,
            spills: Mutex::new(spills),
            ct4: take(ebpf, CT_MAPS[0])?,
            ct6: take(ebpf, CT_MAPS[1])?,
        };
        // Re-adopted slot tables may hold flows placed by another hash (a
        // build that hashed the ifindex too left them): the programs would
        // not find them there.
        let moved = tables
            .rehome_misplaced()
            .context("moving flows out of slots their keys do not hash to")?;
        if moved > 0 {
            log::info!(
                "flow tables: moved {moved} flows placed by an earlier build to the LRU tables"
            );
        }
        // Re-adopted LRU tables may hold flows whose pairs carry no mark (a
        // build with one mark per family left them): without it their next
        // packets would look new.
        tables
            .mark_spilled()
            .context("marking the pairs of flows already in the LRU tables")?;
        Ok(tables)
    }

    /// Moves the flows found in slots outside their key's pair and its
    /// neighbour to the LRU tables, marking their pairs first so the programs
    /// look there, then frees those slots; returns how many it moved. Called
    /// once the new programs run: no program writes such a slot any more (a
    /// lookup only reads its key's own pairs, a claim only takes free slots).
    /// A flow with a packet in between got a new entry too; the two are added
    /// up like any key found twice (see `flows`).
    fn rehome_misplaced(&self) -> anyhow::Result<usize> {
        let mut misplaced: Vec<(u32, TableKey, FlowStats)> = Vec::new();
        self.each_used_slot(|i, key, st| {
            // A flow's place is its pair or the neighbouring one (`^ 1`).
            if self.pair_of(&key) >> 1 != i >> 2 {
                misplaced.push((i, key, st));
            }
        });
        if misplaced.is_empty() {
            return Ok(0);
        }
        {
            let spills = lock(&self.spills);
            for (_, key, _) in &misplaced {
                spills.set(key.family_index(), self.pair_of(key));
            }
        }
        let mut lru4 = lru_table::<Flow4Key>(&self.flows4)?;
        let mut lru6 = lru_table::<Flow6Key>(&self.flows6)?;
        for (_, key, st) in &misplaced {
            match key {
                TableKey::V4(k) => add_to_lru(&mut lru4, k, st)?,
                TableKey::V6(k) => add_to_lru(&mut lru6, k, st)?,
            }
        }
        let mut slots4 = lock(&self.slots4);
        let mut slots6 = lock(&self.slots6);
        for (index, key, _) in &misplaced {
            match key {
                TableKey::V4(_) => slots4.set(*index, FlowSlot4::default(), 0)?,
                TableKey::V6(_) => slots6.set(*index, FlowSlot6::default(), 0)?,
            }
        }
        Ok(misplaced.len())
    }

    /// Calls `f` with every used slot of both families: its index, key and
    /// counters.
    fn each_used_slot(&self, mut f: impl FnMut(u32, TableKey, FlowStats)) {
        self.view4.each_used(|i, s| f(i, TableKey::V4(s.key), s.st));
        self.view6.each_used(|i, s| f(i, TableKey::V6(s.key), s.st));
    }

    /// Sets the spill bit of the pair of every flow beyond its pair (in the
    /// neighbouring pair or the LRU tables).
    fn mark_spilled(&self) -> io::Result<()> {
        let pairs = self.spilled_pairs()?;
        let spills = lock(&self.spills);
        for (family, pairs) in pairs.iter().enumerate() {
            for &pair in pairs {
                spills.set(family, pair);
            }
        }
        Ok(())
    }

    /// Every connection's counters, both families, one entry per key. A key
    /// found twice (two CPUs made its first entry at once, or its slots were
    /// taken and it went to the LRU table) has its counters added up.
    pub fn flows(&self) -> io::Result<Vec<(TableKey, FlowStats)>> {
        let mut out: Vec<(TableKey, FlowStats)> = Vec::new();
        // Every entry of full tables goes through it: a multiply hash.
        let mut at: HashMap<TableKey, usize, BuildKeyHasher> = HashMap::default();
        let mut add = |key: TableKey, st: FlowStats| match at.get(&key) {
            Some(&i) => merge(&mut out[i].1, &st),
            None => {
                at.insert(key, out.len());
                out.push((key, st));
            }
        };
        self.each_used_slot(|_, key, st| add(key, st));
        for (key, st) in read_both::<FlowStats>(&self.flows4, &self.flows6)? {
            add(key, st);
        }
        Ok(out)
    }

    /// Every tracked connection, both families.
    pub fn tracked(&self) -> io::Result<Vec<(TableKey, CtEntry)>> {
        read_both(&self.ct4, &self.ct6)
    }

    /// Deletes the counters of `keys` (their slots are freed); returns how
    /// many entries it deleted (a key found in two places, two slots or a
    /// slot and the LRU table, counts twice, see `flows`). When it deleted a
    /// flow from beyond its pair (the neighbouring pair or the LRU tables),
    /// pairs with no flow left beyond them lose their spill bit (see
    /// `clear_spill_marks`).
    pub fn delete_flows(&self, keys: &[TableKey]) -> io::Result<usize> {
        let (mut freed, mut beyond) = (0, false);
        {
            let mut slots4 = lock(&self.slots4);
            let mut slots6 = lock(&self.slots6);
            for key in keys {
                let gone = match key {
                    TableKey::V4(k) => free_slot(&mut slots4, bytes_of(k), |s| {
                        s.state == slot_state::USED && s.key == *k
                    })?,
                    TableKey::V6(k) => free_slot(&mut slots6, bytes_of(k), |s| {
                        s.state == slot_state::USED && s.key == *k
                    })?,
                };
                freed += gone.slots;
                beyond |= gone.beyond_its_pair;
            }
        }
        let from_lru = delete_split(&self.flows4, &self.flows6, keys)?;
        // Only a flow gone from beyond its pair frees a pair's mark (or the
        // kernel evicting one from the LRU table: that mark waits for the
        // next such delete), and clearing reads the LRU tables whole.
        if (from_lru > 0 || beyond)
            && let Err(e) = self.clear_spill_marks()
        {
            // Only costs new flows an LRU lookup until the next try.
            log::warn!("flow tables: clearing the spill marks: {e}");
        }
        Ok(freed + from_lru)
    }

    /// Per family (IPv4, IPv6), the pairs of slots (a slot's index / 2)
    /// whose new flows the programs look for beyond them (in the
    /// neighbouring pair, then the LRU table), in order.
    pub fn spill_marks(&self) -> [Vec<u32>; 2] {
        let spills = lock(&self.spills);
        [spills.marked(0), spills.marked(1)]
    }

    /// Per family, the pairs of slots with flows beyond them: in the
    /// neighbouring pair or in the LRU table; in order, without repeats.
    pub fn spilled_pairs(&self) -> io::Result<[Vec<u32>; 2]> {
        let mut out = [Vec::new(), Vec::new()];
        self.each_used_slot(|i, key, _| {
            let pair = self.pair_of(&key);
            if pair != i >> 1 {
                out[key.family_index()].push(pair);
            }
        });
        for (key, _) in read_both::<FlowStats>(&self.flows4, &self.flows6)? {
            out[key.family_index()].push(self.pair_of(&key));
        }
        for pairs in &mut out {
            pairs.sort_unstable();
            pairs.dedup();
        }
        Ok(out)
    }

    /// The pair of slots `key` lives at or would (or, once that pair is
    /// full, its neighbour `^ 1`).
    pub fn pair_of(&self, key: &TableKey) -> u32 {
        let (bytes, slots) = match key {
            TableKey::V4(k) => (bytes_of(k), self.view4.slots),
            TableKey::V6(k) => (bytes_of(k), self.view6.slots),
        };
        first_slot(bytes, slots as u32) >> 1
    }

    /// Clears the spill bits of pairs with no flow left beyond them, so
    /// their new flows stop looking there. A program sets its pair's bit
    /// before it claims a neighbouring slot or inserts, and again after with
    /// a full barrier (track.h, `flows_insert`); here the bits are cleared,
    /// then, after a fence, the slots and the LRU table read again and a bit
    /// put back if a flow of its pair went beyond it meanwhile: either this
    /// second read sees the flow, or the program's second mark comes after
    /// the clear. (A slot still being filled is not seen as used; its
    /// program's second mark comes after it is.)
    pub fn clear_spill_marks(&self) -> io::Result<()> {
        let spills = lock(&self.spills);
        let marked = [spills.marked(0), spills.marked(1)];
        if marked.iter().all(Vec::is_empty) {
            return Ok(());
        }
        let before = self.spilled_pairs()?;
        let mut cleared = [Vec::new(), Vec::new()];
        for family in 0..2 {
            for &pair in &marked[family] {
                if before[family].binary_search(&pair).is_err() {
                    spills.clear(family, pair);
                    cleared[family].push(pair);
                }
            }
        }
        if cleared.iter().all(Vec::is_empty) {
            return Ok(());
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        let after = self.spilled_pairs()?;
        for family in 0..2 {
            for &pair in &after[family] {
                if cleared[family].binary_search(&pair).is_ok() {
                    spills.set(family, pair);
                }
            }
        }
        Ok(())
    }

    /// Deletes the tracking of `keys`; returns how many were there.
    pub fn delete_tracked(&self, keys: &[TableKey]) -> io::Result<usize> {
        delete_split(&self.ct4, &self.ct6, keys)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bytes_of<K: aya::Pod>(k: &K) -> &[u8] {
    // SAFETY: `K` is plain data without padding the compiler adds (aya::Pod).
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(k).cast::<u8>(), size_of::<K>()) }
}

/// Adds the counters of a second entry of the same connection.
fn merge(into: &mut FlowStats, other: &FlowStats) {
    for side in 0..2 {
        into.packets[side] += other.packets[side];
        into.bytes[side] += other.bytes[side];
        into.flags[side] |= other.flags[side];
    }
    into.resumed &= other.resumed;
}

/// An LRU flow table for single updates (a second handle on the same map).
fn lru_table<K: aya::Pod>(
    map: &MapData,
) -> anyhow::Result<aya::maps::HashMap<MapData, K, FlowStats>> {
    let fd = map.fd().as_fd().try_clone_to_owned()?;
    let data = MapData::from_fd(fd)?;
    Ok(aya::maps::HashMap::try_from(Map::LruHashMap(data))?)
}

/// Puts `st` in the LRU table under `key`, added to the counters there if a
/// program made the entry first.
fn add_to_lru<K: aya::Pod>(
    table: &mut aya::maps::HashMap<MapData, K, FlowStats>,
    key: &K,
    st: &FlowStats,
) -> anyhow::Result<()> {
    const BPF_NOEXIST: u64 = 1;
    const BPF_EXIST: u64 = 2;
    match table.insert(key, st, BPF_NOEXIST) {
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::EEXIST) =>
        {
            let mut there = table.get(key, 0)?;
            merge(&mut there, st);
            table.insert(key, there, BPF_EXIST)?;
            Ok(())
        }
        other => Ok(other?),
    }
}

/// What `free_slot` freed of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Freed {
    /// Slots freed: more than one when two CPUs made the key's first entry
    /// at once, each in a slot of its own (a lookup finds only the first).
    slots: usize,
    /// Whether one of them was in the neighbouring pair, where a key goes
    /// when its own pair is full.
    beyond_its_pair: bool,
}

/// Frees every slot of the key whose bytes are `key` and that `is_key`
/// knows, in its four places (its pair, then the neighbouring pair). Only
/// used slots: one a program is filling (busy) stays, and a used slot never
/// turns busy again, so between this read and the write only its counters
/// move.
fn free_slot<V: aya::Pod + Default>(
    slots: &mut Array<MapData, V>,
    key: &[u8],
    is_key: impl Fn(&V) -> bool,
) -> io::Result<Freed> {
    let first = first_slot(key, slots.len());
    let mut freed = Freed::default();
    for index in [first, first ^ 1, first ^ 2, first ^ 3] {
        let slot = slots.get(&index, 0).map_err(io::Error::other)?;
        if is_key(&slot) {
            slots
                .set(index, V::default(), 0)
                .map_err(io::Error::other)?;
            freed.slots += 1;
            freed.beyond_its_pair |= index >> 1 != first >> 1;
        }
    }
    Ok(freed)
}

/// Every entry of an IPv4 and an IPv6 table with values `V`.
fn read_both<V: aya::Pod + Default>(v4: &MapData, v6: &MapData) -> io::Result<Vec<(TableKey, V)>> {
    let k4 = batch::lookup_all::<Flow4Key, V>(v4.fd().as_fd())?;
    let k6 = batch::lookup_all::<Flow6Key, V>(v6.fd().as_fd())?;
    Ok(k4
        .into_iter()
        .map(|(k, v)| (TableKey::V4(k), v))
        .chain(k6.into_iter().map(|(k, v)| (TableKey::V6(k), v)))
        .collect())
}

fn delete_split(v4: &MapData, v6: &MapData, keys: &[TableKey]) -> io::Result<usize> {
    let mut k4 = Vec::new();
    let mut k6 = Vec::new();
    for k in keys {
        match k {
            TableKey::V4(k) => k4.push(*k),
            TableKey::V6(k) => k6.push(*k),
        }
    }
    Ok(batch::delete(v4.fd().as_fd(), &k4)? + batch::delete(v6.fd().as_fd(), &k6)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_counts_are_powers_of_two_at_least_the_entries() {
        assert_eq!(slot_count(0), 4);
        assert_eq!(slot_count(256), 256);
        assert_eq!(slot_count(1000), 1024);
        assert_eq!(slot_count(65_536), 65_536);
        assert_eq!(slot_count(u32::MAX), 1 << 31);
    }

    #[test]
    fn spill_words_give_a_bit_per_pair_in_whole_words() {
        // 2 slots: 1 pair, one 64-bit word; 128 slots: 64 pairs, one word.
        assert_eq!(spill_words(2), 1);
        assert_eq!(spill_words(128), 1);
        assert_eq!(spill_words(256), 2);
        assert_eq!(spill_words(65_536), 512);
        assert_eq!(spill_words(1 << 31), 1 << 24);
    }

    #[test]
    fn a_connections_entries_on_two_interfaces_share_a_pair_of_slots() {
        let on = |ifindex| Flow4Key {
            addr: [[198, 18, 0, 1], [198, 18, 0, 2]],
            port: [40_000, 8080],
            ifindex,
            proto: 6,
            ..Flow4Key::default()
        };
        let v6 = |ifindex| Flow6Key {
            addr: [[0xfd; 16], [0xfe; 16]],
            port: [40_000, 8080],
            ifindex,
            proto: 17,
            ..Flow6Key::default()
        };
        let slots = 1 << 16;
        assert_eq!(
            first_slot(bytes_of(&on(7)), slots),
            first_slot(bytes_of(&on(9)), slots)
        );
        assert_eq!(
            first_slot(bytes_of(&v6(7)), slots),
            first_slot(bytes_of(&v6(9)), slots)
        );
        // Every other word counts: another port, protocol or address moves it.
        let other_port = Flow4Key {
            port: [40_001, 8080],
            ..on(7)
        };
        let other_proto = Flow4Key { proto: 17, ..on(7) };
        let other_addr = Flow4Key {
            addr: [[198, 18, 0, 1], [198, 18, 0, 3]],
            ..on(7)
        };
        for other in [other_port, other_proto, other_addr] {
            assert_ne!(slot_hash(bytes_of(&other)), slot_hash(bytes_of(&on(7))));
        }
    }

    #[test]
    fn merged_entries_add_counters_and_flags() {
        let mut a = FlowStats {
            packets: [2, 1],
            bytes: [200, 100],
            flags: [0x02, 0x12],
            resumed: 0,
            ..FlowStats::default()
        };
        let b = FlowStats {
            packets: [1, 0],
            bytes: [60, 0],
            flags: [0x10, 0],
            resumed: 1,
            ..FlowStats::default()
        };
        merge(&mut a, &b);
        assert_eq!(
            (a.packets, a.bytes, a.flags),
            ([3, 1], [260, 100], [0x12, 0x12])
        );
        assert_eq!(
            a.resumed, 0,
            "a first-seen entry keeps its first-packet events"
        );
    }
}
