//! The kernel objects behind a running probe, found by id: a program's maps
//! by name, the program behind a pinned tcx link, and what `EGRESS_JUMP`
//! (ebpf-probes/src/flow.bpf.c) counted.

use std::path::Path;

use aya::maps::{Map, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use flow_probe::kernel::events::EgressJump;

/// The map called `name` among those of the loaded program `program_id`.
pub fn map_of_program(program_id: u32, name: &str) -> Option<MapData> {
    let info = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == program_id)?;
    info.map_ids()
        .ok()??
        .into_iter()
        .filter_map(|id| MapData::from_id(id).ok())
        .find(|m| m.info().is_ok_and(|i| i.name_as_str() == Some(name)))
}

/// The id of the program attached through the link pinned at `pin`.
pub fn program_of_pinned_link(pin: &Path) -> u32 {
    let link = PinnedLink::from_pin(pin).unwrap_or_else(|e| panic!("{}: {e}", pin.display()));
    FdLink::from(link).info().unwrap().program_id()
}

/// Runs of `tc_egress` that found `TC_BODY` empty and ran their own copy of
/// the body, summed over CPUs, from an `EGRESS_JUMP` map.
pub fn own_copy_runs(egress_jump: MapData) -> u64 {
    let jumps: PerCpuArray<MapData, EgressJump> =
        PerCpuArray::try_from(Map::PerCpuArray(egress_jump)).unwrap();
    jumps
        .get(&0, 0)
        .unwrap()
        .iter()
        .map(|j| j.own_copy_runs)
        .sum()
}
