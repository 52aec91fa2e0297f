//! What a row of `flows` says about its connection's first packet, read
//! straight from the batch's columns: the replay needs a handful of them per
//! row, and only the rows the table keeps become whole flows.

use std::net::IpAddr;

use cluster_spec::policy::{Direction, FirstPacket};
use datafusion::arrow::array::PrimitiveArray;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{UInt8Type, UInt32Type};
use datafusion::common::{Result, internal_datafusion_err};

/// The columns of one batch a replay reads.
pub struct Columns<'a> {
    version: &'a StringArray,
    direction: &'a StringArray,
    source: &'a StringArray,
    destination: &'a StringArray,
    protocol: &'a StringArray,
    dport: &'a PrimitiveArray<UInt32Type>,
    icmp_type: &'a PrimitiveArray<UInt8Type>,
}

fn text<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| internal_datafusion_err!("the scan of flows has no text column `{name}`"))
}

fn value(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

impl<'a> Columns<'a> {
    pub fn of(batch: &'a RecordBatch) -> Result<Self> {
        let number = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| internal_datafusion_err!("the scan of flows has no `{name}`"))
        };
        Ok(Columns {
            version: text(batch, "policy_version")?,
            direction: text(batch, "traffic_direction")?,
            source: text(batch, "source_ip")?,
            destination: text(batch, "destination_ip")?,
            protocol: text(batch, "protocol")?,
            dport: number("destination_port")?
                .as_primitive_opt()
                .ok_or_else(|| internal_datafusion_err!("destination_port is not uint32"))?,
            icmp_type: number("icmp_type")?
                .as_primitive_opt()
                .ok_or_else(|| internal_datafusion_err!("icmp_type is not uint8"))?,
        })
    }

    /// The policy version row `i` passed under.
    pub fn version(&self, i: usize) -> Option<&'a str> {
        value(self.version, i)
    }

    /// Row `i`'s first packet, or why it cannot be replayed.
    pub fn packet(&self, i: usize) -> Result<FirstPacket, String> {
        let addr = |a: &StringArray, side: &str| {
            let s = value(a, i).ok_or_else(|| format!("the flow has no {side} address"))?;
            s.parse::<IpAddr>()
                .map_err(|_| format!("{s:?} is not an address"))
        };
        let (source, destination) = (
            addr(self.source, "source")?,
            addr(self.destination, "destination")?,
        );
        // The direction of the endpoint's policy that judges the packet:
        // a verdict's own, a first packet's from where it was seen (a denial
        // has no observation point, as in Hubble, but has its direction).
        let (local, peer, direction) = match value(self.direction, i) {
            Some("EGRESS") => (source, destination, Direction::Egress),
            Some("INGRESS") => (destination, source, Direction::Ingress),
            _ => return Err("its traffic direction is not recorded".into()),
        };
        // A null port or ICMP type reads as 0, as the datapath's key has it.
        let port = || {
            let p = if self.dport.is_valid(i) {
                self.dport.value(i)
            } else {
                0
            };
            u16::try_from(p).map_err(|_| format!("port {p} is out of range"))
        };
        let icmp = || {
            if self.icmp_type.is_valid(i) {
                self.icmp_type.value(i)
            } else {
                0
            }
        };
        let (proto, dport, icmp_type) = match value(self.protocol, i) {
            Some("TCP") => (6, port()?, 0),
            Some("UDP") => (17, port()?, 0),
            Some("SCTP") => (132, port()?, 0),
            Some("ICMPv4") => (1, 0, icmp()),
            Some("ICMPv6") => (58, 0, icmp()),
            _ => return Err("its protocol is not recorded".into()),
        };
        Ok(FirstPacket {
            local,
            peer,
            direction,
            proto,
            dport,
            icmp_type,
        })
    }
}
