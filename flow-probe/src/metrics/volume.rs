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
//! generation is forgotten. A report (no packet: the connection's counters,
//! read periodically) of a direction not remembered is its baseline, and
//! counts from there on: counted whole, it added all the connection had
//! carried once more each time a busy node forgot it between two reports.
//! An event's count not remembered counts whole, as a new connection's.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use observer_proto::flow::{Flow, layer4::Protocol};

use super::key::{BuildKeyHasher, KeyHasher};

/// Default number of directions remembered: two for each entry of the
/// kernel's default flow tables (65,536 slots and as many spill entries, for
/// each family), at ~40 bytes each.
pub const DEFAULT_CAPACITY: usize = 524_288;

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
        // first: a new connection on the same addresses and ports (or a
        // new echo of the same identifier).
        Some(Deltas {
            own: self.grow(key(flow, false), own, v.first_packet, v.report),
            other: self.grow(key(flow, true), other, false, v.report),
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
            let last = self.previous.remove(&key);
            self.current.insert(key, now);
            if self.current.len() >= self.generation {
                self.previous = std::mem::take(&mut self.current);
            }
            match last {
                Some(last) => last,
                // Not remembered: a report's count is a baseline.
                None if report && !restarted => return (0, 0),
                None => (0, 0),
            }
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
/// requests and replies of one identifier (`volume.echo_id`, as the
/// kernel's entry is keyed) are one connection; other ICMP messages between
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
        Some(Protocol::IcmPv4(i)) => (1, echo(matches!(i.r#type, 0 | 8)), echo_id(flow)),
        Some(Protocol::IcmPv6(i)) => (58, echo(matches!(i.r#type, 128 | 129)), echo_id(flow)),
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

fn echo_id(flow: &Flow) -> u32 {
    flow.volume.as_ref().map_or(0, |v| v.echo_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::flow::{IcmPv4, Ip, Layer4, NetworkInterface, Tcp};
    use observer_proto::observe::v1::FlowVolume;

    /// A flow of 198.18.1.10 → 198.18.1.11 at interface 7 with this volume.
    fn flow(l4: Protocol, fwd: (u64, u64), first_packet: bool, report: bool, echo_id: u32) -> Flow {
        Flow {
            ip: Some(Ip {
                source: "198.18.1.10".into(),
                destination: "198.18.1.11".into(),
                ..Default::default()
            }),
            l4: Some(Layer4 { protocol: Some(l4) }),
            interface: Some(NetworkInterface {
                index: 7,
                name: "lxc1".into(),
            }),
            volume: Some(FlowVolume {
                fwd_bytes: fwd.0,
                fwd_packets: fwd.1,
                first_packet,
                report,
                echo_id,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn tcp(sport: u32, fwd: (u64, u64), first_packet: bool, report: bool) -> Flow {
        let l4 = Protocol::Tcp(Tcp {
            source_port: sport,
            destination_port: 8080,
            ..Default::default()
        });
        flow(l4, fwd, first_packet, report, 0)
    }

    /// From the metrics review: a tracker that forgot a long connection
    /// (other connections filled it) added its whole count again at its next
    /// report, every report on a busy node. A report not remembered is now
    /// its baseline.
    #[test]
    fn a_report_of_a_forgotten_connection_counts_from_there() {
        let mut t = VolumeTracker::new(4);
        let own = |t: &mut VolumeTracker, f: &Flow| t.deltas(f).unwrap().own;
        assert_eq!(own(&mut t, &tcp(40000, (100, 1), true, false)), (100, 1));
        assert_eq!(own(&mut t, &tcp(40000, (5000, 10), false, true)), (4900, 9));
        // Four other connections' two directions push it out.
        for port in 50000..50004 {
            t.deltas(&tcp(port, (60, 1), true, false));
        }
        assert_eq!(own(&mut t, &tcp(40000, (6000, 12), false, true)), (0, 0));
        assert_eq!(own(&mut t, &tcp(40000, (7000, 14), false, true)), (1000, 2));
        // An event not remembered is a connection's first: counted whole.
        assert_eq!(own(&mut t, &tcp(40009, (300, 3), false, false)), (300, 3));
    }

    /// Two pings between the same addresses at once: the kernel counts each
    /// identifier apart, and so does the tracker (before, their reports,
    /// alternating, each read as a new connection and added in full).
    #[test]
    fn concurrent_echoes_count_apart_by_identifier() {
        let mut t = VolumeTracker::new(64);
        let echo = |id: u32, fwd: (u64, u64), first: bool, report: bool| {
            let l4 = Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 });
            flow(l4, fwd, first, report, id)
        };
        let mut total = (0, 0);
        let mut add = |f: &Flow| {
            let d = t.deltas(f).unwrap().own;
            total = (total.0 + d.0, total.1 + d.1);
        };
        add(&echo(7, (98, 1), true, false));
        add(&echo(9, (98, 1), true, false));
        for n in 2..=5u64 {
            add(&echo(7, (98 * (n + 10), n + 10), false, true));
            add(&echo(9, (98 * n, n), false, true));
        }
        // 7: 1 + 14 packets; 9: 1 + 4.
        assert_eq!(total, (98 * 15 + 98 * 5, 20));
    }
}
