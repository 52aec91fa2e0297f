//! Byte and packet increases of a connection, from `Flow.volume`: the kernel
//! reports cumulative counts per connection, so each event adds what grew since
//! the previous event of the same direction at the same observation point.
//!
//! The last values are kept in two generations of at most `capacity / 2`
//! entries each (a bounded, approximate LRU): a connection not seen for a whole
//! generation is forgotten, and its next event counts its full volume again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use observer_proto::flow::{Flow, layer4::Protocol};

use super::key::{BuildKeyHasher, KeyHasher};

/// Default number of connections remembered.
pub const DEFAULT_CAPACITY: usize = 65_536;

pub struct VolumeTracker {
    current: HashMap<u64, (u64, u64), BuildKeyHasher>,
    previous: HashMap<u64, (u64, u64), BuildKeyHasher>,
    generation: usize,
}

impl VolumeTracker {
    pub fn new(capacity: usize) -> Self {
        VolumeTracker {
            current: HashMap::default(),
            previous: HashMap::default(),
            generation: (capacity / 2).max(1),
        }
    }

    /// (bytes, packets) this flow adds; `None` for a flow without volume.
    pub fn delta(&mut self, flow: &Flow) -> Option<(u64, u64)> {
        let v = flow.volume.as_ref()?;
        let own = if flow.is_reply == Some(true) {
            (v.rev_bytes, v.rev_packets)
        } else {
            (v.fwd_bytes, v.fwd_packets)
        };
        let key = key(flow);
        let last = if let Some(slot) = self.current.get_mut(&key) {
            std::mem::replace(slot, own)
        } else {
            let last = self.previous.remove(&key).unwrap_or((0, 0));
            self.current.insert(key, own);
            if self.current.len() >= self.generation {
                self.previous = std::mem::take(&mut self.current);
            }
            last
        };
        // The counts begin with this packet, or a smaller count: a new
        // connection on the same addresses and ports (ICMP echoes of one
        // type share a key and often count the same).
        let grow = |now: u64, then: u64| {
            if v.first_packet || now < then {
                now
            } else {
                now - then
            }
        };
        Some((grow(own.0, last.0), grow(own.1, last.1)))
    }

    /// Connections remembered.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The connection's direction as this event saw it, and where it was seen.
fn key(flow: &Flow) -> u64 {
    let mut h = KeyHasher::default();
    if let Some(ip) = &flow.ip {
        (&ip.source, &ip.destination).hash(&mut h);
    }
    let ports = match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => (6, t.source_port, t.destination_port),
        Some(Protocol::Udp(u)) => (17, u.source_port, u.destination_port),
        Some(Protocol::IcmPv4(i)) => (1, i.r#type, i.code),
        Some(Protocol::IcmPv6(i)) => (58, i.r#type, i.code),
        _ => (0, 0, 0),
    };
    ports.hash(&mut h);
    flow.interface.as_ref().map(|i| i.index).hash(&mut h);
    flow.trace_observation_point.hash(&mut h);
    flow.node_name.hash(&mut h);
    h.finish()
}
