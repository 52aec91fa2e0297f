//! The tc probe's flow tables (`FLOWS4`, `FLOWS6`: counters of each
//! connection on each interface) and connection tracking (`CT4`, `CT6`), as
//! flow-probe reads them: whole tables in batches ([`super::batch`]), and
//! deletes. Periodic reports and garbage collection (`crate::tables`) work
//! on what this hands them.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;

use anyhow::Context;
use aya::Ebpf;
use aya::maps::{Map, MapData};

use super::batch;
use super::events::{CtEntry, Flow4Key, Flow6Key, FlowStats};

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

/// The four maps, taken from the loaded object.
pub struct FlowTables {
    flows4: MapData,
    flows6: MapData,
    ct4: MapData,
    ct6: MapData,
}

/// The names of the maps, as in `ebpf-probes/src/lib/maps.h`.
pub const FLOW_MAPS: [&str; 2] = ["FLOWS4", "FLOWS6"];
pub const CT_MAPS: [&str; 2] = ["CT4", "CT6"];

fn take(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<MapData> {
    match ebpf.take_map(name).with_context(|| format!("map {name}"))? {
        Map::HashMap(m) | Map::LruHashMap(m) => Ok(m),
        other => anyhow::bail!("map {name} is not a hash map: {other:?}"),
    }
}

impl FlowTables {
    pub fn take_from(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        Ok(FlowTables {
            flows4: take(ebpf, FLOW_MAPS[0])?,
            flows6: take(ebpf, FLOW_MAPS[1])?,
            ct4: take(ebpf, CT_MAPS[0])?,
            ct6: take(ebpf, CT_MAPS[1])?,
        })
    }

    /// Every connection's counters, both families.
    pub fn flows(&self) -> io::Result<Vec<(TableKey, FlowStats)>> {
        read_both(&self.flows4, &self.flows6)
    }

    /// Every tracked connection, both families.
    pub fn tracked(&self) -> io::Result<Vec<(TableKey, CtEntry)>> {
        read_both(&self.ct4, &self.ct6)
    }

    /// Deletes the counters of `keys`; returns how many were there.
    pub fn delete_flows(&self, keys: &[TableKey]) -> io::Result<usize> {
        delete_split(&self.flows4, &self.flows6, keys)
    }

    /// Deletes the tracking of `keys`; returns how many were there.
    pub fn delete_tracked(&self, keys: &[TableKey]) -> io::Result<usize> {
        delete_split(&self.ct4, &self.ct6, keys)
    }
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
