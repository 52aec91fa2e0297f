//! Byte and packet increases of a connection, from `Flow.volume`: the kernel
//! reports cumulative counts of both directions of a connection at an
//! interface (one entry for both hooks), so each event adds, for each
//! direction, what grew since the last event that carried that direction's
//! count. Both directions count from every event: a periodic report comes
//! from the opener's side and carries the replies' growth too, and after a
//! connection's last reply event (a final ACK, echo replies after the first)
//! only the requests' events and reports carry it.
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

/// What a flow adds to each direction of its connection: its own (source to
/// destination) and the other (destination to source), as (bytes, packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deltas {
    pub own: (u64, u64),
    pub other: (u64, u64),
}

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

    /// What this flow adds to each direction; `None` for a flow without
    /// volume.
    pub fn deltas(&mut self, flow: &Flow) -> Option<Deltas> {
        let v = flow.volume.as_ref()?;
        let (fwd, rev) = ((v.fwd_bytes, v.fwd_packets), (v.rev_bytes, v.rev_packets));
        let (own, other) = if flow.is_reply == Some(true) {
            (rev, fwd)
        } else {
            (fwd, rev)
        };
        // The own counts begin with this packet when it is its direction's
        // first: a new connection on the same addresses and ports (ICMP
        // echoes of one type share a key and often count the same).
        // Only a TCP or UDP key is one connection: ICMP echoes of one type
        // share theirs, and a smaller count there is another echo's.
        let report = v.report
            && matches!(
                flow.l4.as_ref().and_then(|l| l.protocol.as_ref()),
                Some(Protocol::Tcp(_) | Protocol::Udp(_))
            );
        Some(Deltas {
            own: self.grow(key(flow, false), own, v.first_packet, report),
            other: self.grow(key(flow, true), other, false, report),
        })
    }

    /// What `now`, a direction's cumulative count, adds to the last one
    /// remembered under `key`; remembers `now`. A report with a smaller
    /// count is older than the event already counted (its tables were read
    /// before that event's packet): it adds nothing and the larger stays.
    fn grow(&mut self, key: u64, now: (u64, u64), restarted: bool, report: bool) -> (u64, u64) {
        let stale = |last: (u64, u64)| report && (now.0 < last.0 || now.1 < last.1);
        let last = if let Some(slot) = self.current.get_mut(&key) {
            if stale(*slot) {
                return (0, 0);
            }
            std::mem::replace(slot, now)
        } else if let Some(&last) = self.previous.get(&key)
            && stale(last)
        {
            return (0, 0);
        } else {
            let last = self.previous.remove(&key).unwrap_or((0, 0));
            self.current.insert(key, now);
            if self.current.len() >= self.generation {
                self.previous = std::mem::take(&mut self.current);
            }
            last
        };
        // A smaller count: a new connection on the same key.
        let grown = |now: u64, then: u64| {
            if restarted || now < then {
                now
            } else {
                now - then
            }
        };
        (grown(now.0, last.0), grown(now.1, last.1))
    }

    /// Connections remembered.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One direction of a connection at one interface: the flow's own
/// (`reversed` false: source to destination) or the other. ICMP echo
/// requests and replies are one connection (the kernel's entry is keyed by
/// the identifier, which flows do not carry); other ICMP messages between
/// two addresses share one entry, whatever their type.
fn key(flow: &Flow, reversed: bool) -> u64 {
    let mut h = KeyHasher::default();
    if let Some(ip) = &flow.ip {
        let (from, to) = (&ip.source, &ip.destination);
        if reversed { (to, from) } else { (from, to) }.hash(&mut h);
    }
    let echo = |is_echo: bool| if is_echo { 1 } else { 2 };
    let (proto, from, to) = match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => (6, t.source_port, t.destination_port),
        Some(Protocol::Udp(u)) => (17, u.source_port, u.destination_port),
        Some(Protocol::IcmPv4(i)) => (1, echo(matches!(i.r#type, 0 | 8)), 0),
        Some(Protocol::IcmPv6(i)) => (58, echo(matches!(i.r#type, 128 | 129)), 0),
        _ => (0, 0, 0),
    };
    let ports = if reversed && matches!(proto, 6 | 17) {
        (to, from)
    } else {
        (from, to)
    };
    (proto, ports).hash(&mut h);
    flow.interface.as_ref().map(|i| i.index).hash(&mut h);
    flow.node_name.hash(&mut h);
    h.finish()
}
