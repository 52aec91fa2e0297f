//! Garbage collection of connection tracking (`CT4`, `CT6`), which the kernel
//! never evicts: a flood of new connections must not push an established one
//! out (it would be judged again). Every `GcConfig::interval` flow-probe reads
//! both tables in batches and deletes, with their counters (slots and LRU tables):
//! - closed connections (a RST, or a FIN from each side, in the counters'
//!   flags) once closed for `close_grace`, left for their last packets;
//! - idle connections, whose packet counts did not move for `tcp_idle` (TCP
//!   both sides have spoken in) or `other_idle` (the rest). The tc programs
//!   keep no clock: idleness is measured here, between reads.
//!
//! Connections of interfaces without policy (counters only, no tracking) go
//! by the same rules, so their slots (`FLOW_SLOTS4`/`FLOW_SLOTS6`, which
//! nothing else frees) and the LRU tables keep room for live ones.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::kernel::config::{GcConfig, tcp_flag};
use crate::kernel::events::{CtEntry, FlowStats};
use crate::kernel::flow_tables::TableKey;
// A multiply hash, not SipHash: a sweep hashes every entry of full tables
// (hundreds of thousands) several times.
use crate::metrics::key::BuildKeyHasher;

const TCP: u8 = 6;

/// What one connection looked like at the last reads.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Packets of both sides and the opening SYN's sequence bits (a SYN
    /// that reopens the 5-tuple restarts the counters: another connection);
    /// `None` while its counters are not in the table.
    packets: Option<(u64, [u8; 3])>,
    /// When `packets` last changed (or the connection was first seen).
    changed: Instant,
    /// When it was first seen closed.
    closed: Option<Instant>,
}

/// What to delete after one read of the tables.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Counters to delete from the flow tables.
    pub flows: Vec<TableKey>,
    /// Connections to forget in connection tracking.
    pub tracked: Vec<TableKey>,
}

pub struct Collector {
    cfg: GcConfig,
    seen: HashMap<TableKey, Seen, BuildKeyHasher>,
}

fn closed(st: &FlowStats) -> bool {
    closed_by(st).is_some()
}

/// The flag that closed a TCP connection: RST (from either side), or FIN
/// (from each side); `None` while it is open (or not TCP).
pub fn closed_by(st: &FlowStats) -> Option<u8> {
    let both = st.flags[0] | st.flags[1];
    if both & tcp_flag::RST != 0 {
        Some(tcp_flag::RST)
    } else if st.flags[0] & st.flags[1] & tcp_flag::FIN != 0 {
        Some(tcp_flag::FIN)
    } else {
        None
    }
}

impl Collector {
    pub fn new(cfg: GcConfig) -> Self {
        Collector {
            cfg,
            seen: HashMap::default(),
        }
    }

    /// Connections remembered between reads.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Decides, from the tables as read at `now`, what goes.
    pub fn sweep(
        &mut self,
        flows: &[(TableKey, FlowStats)],
        tracked: &[(TableKey, CtEntry)],
        now: Instant,
    ) -> Sweep {
        let counters: HashMap<&TableKey, &FlowStats, BuildKeyHasher> =
            flows.iter().map(|(k, v)| (k, v)).collect();
        let mut next = HashMap::with_capacity_and_hasher(flows.len(), BuildKeyHasher::default());
        let mut forgotten = HashSet::with_hasher(BuildKeyHasher::default());
        let mut sweep = Sweep::default();
        for (key, _) in tracked {
            let st = counters.get(key).copied();
            match self.judge(key, st, now) {
                Ok(seen) => {
                    next.insert(*key, seen);
                }
                Err(()) => {
                    sweep.tracked.push(*key);
                    forgotten.insert(key);
                    if st.is_some() {
                        sweep.flows.push(*key);
                    }
                }
            }
        }
        // Connections without tracking: counters only.
        for (key, st) in flows {
            if next.contains_key(key) || forgotten.contains(key) {
                continue;
            }
            match self.judge(key, Some(st), now) {
                Ok(seen) => {
                    next.insert(*key, seen);
                }
                Err(()) => sweep.flows.push(*key),
            }
        }
        self.seen = next;
        sweep
    }

    /// What is known of `key` after this read (`Ok`), or `Err` when it goes:
    /// closed for `close_grace`, or its packet count unchanged for its idle
    /// time. `st`: its counters, `None` when they are not in the tables.
    fn judge(&self, key: &TableKey, st: Option<&FlowStats>, now: Instant) -> Result<Seen, ()> {
        let packets = st.map(|s| (s.packets[0] + s.packets[1], s.syn_seq));
        let mut seen = self.seen.get(key).copied().unwrap_or(Seen {
            packets,
            changed: now,
            closed: None,
        });
        if seen.packets != packets {
            seen.packets = packets;
            seen.changed = now;
        }
        seen.closed = match st {
            Some(s) if closed(s) => Some(seen.closed.unwrap_or(now)),
            _ => None,
        };
        // Answered TCP may idle long; a SYN nobody answered, UDP and ICMP not.
        let answered = st.is_none_or(|s| s.packets[0] > 0 && s.packets[1] > 0);
        let idle = if key.proto() == TCP && answered {
            self.cfg.tcp_idle
        } else {
            self.cfg.other_idle
        };
        let gone = seen.closed.is_some_and(|t| now >= t + self.cfg.close_grace)
            || now >= seen.changed + idle;
        if gone { Err(()) } else { Ok(seen) }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::kernel::events::Flow4Key;

    const S: Duration = Duration::from_secs(1);

    fn cfg() -> GcConfig {
        GcConfig {
            interval: S,
            close_grace: 10 * S,
            tcp_idle: 100 * S,
            other_idle: 30 * S,
        }
    }

    fn key(port: u16, proto: u8) -> TableKey {
        TableKey::V4(Flow4Key {
            addr: [[198, 18, 0, 2], [198, 18, 0, 3]],
            port: [port, 40000],
            ifindex: 7,
            proto,
            ..Default::default()
        })
    }

    fn stats(packets: [u64; 2], flags: [u8; 2]) -> FlowStats {
        FlowStats {
            packets,
            flags,
            ..Default::default()
        }
    }

    const ACK: u8 = 0x10;
    const FIN_ACK: u8 = 0x11;

    #[test]
    fn a_closed_connection_goes_after_the_grace_with_its_counters() {
        let mut c = Collector::new(cfg());
        let t0 = Instant::now();
        let k = key(8080, TCP);
        let open = [(k, stats([5, 5], [ACK, ACK]))];
        let ct = [(k, CtEntry::default())];
        assert_eq!(c.sweep(&open, &ct, t0), Sweep::default());
        // One FIN is not closed yet.
        let half = [(k, stats([6, 5], [FIN_ACK, ACK]))];
        assert_eq!(c.sweep(&half, &ct, t0 + 20 * S), Sweep::default());
        let fin = [(k, stats([6, 7], [FIN_ACK, FIN_ACK]))];
        assert_eq!(c.sweep(&fin, &ct, t0 + 21 * S), Sweep::default());
        assert_eq!(c.sweep(&fin, &ct, t0 + 30 * S), Sweep::default());
        assert_eq!(
            c.sweep(&fin, &ct, t0 + 31 * S),
            Sweep {
                flows: vec![k],
                tracked: vec![k]
            }
        );
        assert!(c.is_empty());
    }

    #[test]
    fn a_reset_closes_and_idleness_is_measured_between_reads() {
        let mut c = Collector::new(cfg());
        let t0 = Instant::now();
        let (tcp, udp, syn) = (key(1, TCP), key(2, 17), key(3, TCP));
        let ct: Vec<_> = [tcp, udp, syn]
            .into_iter()
            .map(|k| (k, CtEntry::default()))
            .collect();
        let flows = |tcp_packets| {
            vec![
                (tcp, stats([tcp_packets, 1], [ACK, ACK])),
                (udp, stats([1, 1], [0, 0])),
                (syn, stats([0, 2], [0, 0x02])),
            ]
        };
        assert_eq!(c.sweep(&flows(1), &ct, t0), Sweep::default());
        // UDP and the unanswered SYN idle out at 30 s; the TCP connection moves.
        let swept = c.sweep(&flows(2), &ct, t0 + 30 * S);
        assert_eq!(swept.tracked, [udp, syn]);
        assert_eq!(c.len(), 1);
        // Idle since 30 s: gone at 130 s, not before.
        let ct = &ct[..1];
        let flows = &flows(2)[..1];
        assert_eq!(c.sweep(flows, ct, t0 + 129 * S), Sweep::default());
        assert_eq!(c.sweep(flows, ct, t0 + 130 * S).tracked, [tcp]);
        // A reset: closed at once, gone after the grace.
        let mut c = Collector::new(cfg());
        let rst = [(tcp, stats([3, 2], [ACK, 0x14]))];
        assert_eq!(c.sweep(&rst, ct, t0), Sweep::default());
        assert_eq!(c.sweep(&rst, ct, t0 + 10 * S).tracked, [tcp]);
    }

    #[test]
    fn a_reopened_syn_entry_is_idle_from_its_new_connection() {
        let mut c = Collector::new(cfg());
        let t0 = Instant::now();
        let syn = key(3, TCP);
        // An unanswered SYN and its retransmission, then at 20 s the port
        // used again: the datapath restarted the counters at the new SYN,
        // whose retransmission brings them back to the same total.
        let attempt = |seq| FlowStats {
            syn_seq: seq,
            ..stats([2, 0], [0x02, 0])
        };
        assert_eq!(
            c.sweep(&[(syn, attempt([1, 2, 3]))], &[], t0),
            Sweep::default()
        );
        let again = [(syn, attempt([7, 8, 9]))];
        assert_eq!(c.sweep(&again, &[], t0 + 20 * S), Sweep::default());
        // Idle 30 s from the new connection (50 s), not from the first (30 s).
        assert_eq!(c.sweep(&again, &[], t0 + 49 * S), Sweep::default());
        assert_eq!(c.sweep(&again, &[], t0 + 50 * S).flows, [syn]);
    }

    #[test]
    fn counters_alone_go_when_idle_so_their_slots_are_freed() {
        let mut c = Collector::new(cfg());
        let t0 = Instant::now();
        let (tcp, udp) = (key(1, TCP), key(2, 17));
        let flows = |tcp_packets| {
            vec![
                (tcp, stats([tcp_packets, 1], [ACK, ACK])),
                (udp, stats([1, 0], [0, 0])),
            ]
        };
        assert_eq!(c.sweep(&flows(1), &[], t0), Sweep::default());
        assert_eq!(c.sweep(&flows(2), &[], t0 + 29 * S), Sweep::default());
        // UDP unchanged for 30 s goes; the TCP connection moved at 29 s.
        assert_eq!(
            c.sweep(&flows(2), &[], t0 + 30 * S),
            Sweep {
                flows: vec![udp],
                tracked: vec![]
            }
        );
        let tcp_only = &flows(2)[..1];
        assert_eq!(c.sweep(tcp_only, &[], t0 + 128 * S), Sweep::default());
        assert_eq!(c.sweep(tcp_only, &[], t0 + 129 * S).flows, [tcp]);
        assert!(c.is_empty());
    }

    #[test]
    fn counters_alone_go_when_closed_and_tracking_survives_their_eviction() {
        let mut c = Collector::new(cfg());
        let t0 = Instant::now();
        let (tracked, untracked) = (key(1, TCP), key(2, TCP));
        let ct = [(tracked, CtEntry::default())];
        let closed = [(untracked, stats([4, 4], [FIN_ACK, FIN_ACK]))];
        // The tracked connection's counters were evicted: it stays.
        assert_eq!(c.sweep(&closed, &ct, t0), Sweep::default());
        assert_eq!(
            c.sweep(&closed, &ct, t0 + 10 * S),
            Sweep {
                flows: vec![untracked],
                tracked: vec![]
            }
        );
        assert_eq!(c.sweep(&[], &ct, t0 + 99 * S), Sweep::default());
        // Without counters for its whole idle time, it goes (without them).
        assert_eq!(
            c.sweep(&[], &ct, t0 + 100 * S),
            Sweep {
                flows: vec![],
                tracked: vec![tracked]
            }
        );
    }
}
