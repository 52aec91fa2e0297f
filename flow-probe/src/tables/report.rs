//! Periodic reports of live flows, made in user space from the flow tables
//! instead of by the kernel on the packet path: each connection whose packet
//! counts changed since the last report becomes one flow event (reason
//! `REPORT`), from the side that opened it, enriched like the kernel's.

use std::collections::HashMap;

use crate::kernel::events::{
    EVENT_FLOW, EVENT_VERSION, EventHeader, FlowEvent, FlowKey, FlowStats, kind, reason, verdict,
};
use crate::kernel::flow_tables::TableKey;

/// FIN, SYN and RST: a report leaves them out of its flags. Their own
/// events told them; in a report they would count again, in
/// `hubble_tcp_flags_total` (a client's SYN and ACK as a SYN-ACK) and in
/// `--tcp-flags` filters, at every report of the connection.
const CONTROL_FLAGS: u8 = 0x01 | 0x02 | 0x04;

/// ICMP echo requests, which open an echo flow.
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMPV6_DEST_UNREACHABLE: u8 = 1;

/// Remembers what each connection's last report (or first-packet events)
/// said.
#[derive(Default)]
pub struct Reporter {
    last: HashMap<TableKey, Told>,
}

/// What was told of one entry: its packet counts, and which connection they
/// were of (the opening SYN's sequence bits: the datapath restarts an
/// entry's counters when a new SYN reopens its 5-tuple).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Told {
    packets: [u64; 2],
    syn_seq: [u8; 3],
}

impl Told {
    fn of(st: &FlowStats) -> Told {
        Told {
            packets: st.packets,
            syn_seq: st.syn_seq,
        }
    }

    /// What `st`'s events told of it when nothing else was: the first packet
    /// of each side.
    fn by_events(st: &FlowStats) -> [u64; 2] {
        st.packets.map(|p| p.min(1))
    }

    /// What was told of `st`'s connection: `self` when it is the same one,
    /// else (reopened since) what its own events told.
    fn of_same(told: Option<Told>, st: &FlowStats) -> [u64; 2] {
        match told {
            Some(t) if t.syn_seq == st.syn_seq => t.packets,
            _ => Told::by_events(st),
        }
    }
}

impl Reporter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `flows` (tables a previous probe left, as just read) as told:
    /// what that probe reported of them went with it, so from here on a
    /// connection is reported when it grows, not again from its start.
    pub fn baseline(&mut self, flows: &[(TableKey, FlowStats)]) {
        self.last = flows.iter().map(|(k, st)| (*k, Told::of(st))).collect();
    }

    /// The reports of `flows` (the tables as just read) at kernel time
    /// `ktime_ns`. A connection seen for the first time is reported when it
    /// has more than the first packet of each side, which its events told;
    /// one closed by a flag in `emitted` told its counts in that event (a
    /// short connection would otherwise get a report after its end).
    pub fn reports(
        &mut self,
        flows: &[(TableKey, FlowStats)],
        emitted: u8,
        ktime_ns: u64,
    ) -> Vec<FlowEvent> {
        let mut next = HashMap::with_capacity(flows.len());
        let mut out = Vec::new();
        for (key, st) in flows {
            if key_is_icmp_not_echo(key) {
                // Every packet of it was an event: nothing left to report,
                // and no type to name.
                continue;
            }
            let told = Told::of_same(self.last.get(key).copied(), st);
            if st.packets != told && !closed_told(key, st, emitted) {
                out.push(report_event(key, st, ktime_ns));
            }
            next.insert(*key, Told::of(st));
        }
        self.last = next;
        out
    }
}

impl Reporter {
    /// The last reports of connections the garbage collection deleted
    /// (`ended`, their counters as last read), at kernel time `ktime_ns`:
    /// what their events and reports did not tell yet. Without it a UDP
    /// stream's volume would stop at its first packet, as nothing else
    /// follows it. A TCP connection closed by a flag in `emitted` (the
    /// probe's `emit_tcp_flags`) told its counts in that event.
    pub fn ended(
        &mut self,
        ended: &[(TableKey, FlowStats)],
        emitted: u8,
        ktime_ns: u64,
    ) -> Vec<FlowEvent> {
        let mut out = Vec::new();
        for (key, st) in ended {
            let told = Told::of_same(self.last.remove(key), st);
            if st.packets != told && !closed_told(key, st, emitted) && !key_is_icmp_not_echo(key) {
                out.push(report_event(key, st, ktime_ns));
            }
        }
        out
    }
}

/// A TCP connection closed by a flag in `emitted`: that flag's event told
/// its counts (all but the last ACK).
fn closed_told(key: &TableKey, st: &FlowStats, emitted: u8) -> bool {
    key.proto() == 6 && super::gc::closed_by(st).is_some_and(|flag| emitted & flag != 0)
}

/// ICMP messages other than echo: no ports (an echo's are its identifier).
fn key_is_icmp_not_echo(key: &TableKey) -> bool {
    matches!(key.proto(), 1 | 58) && key.port(0) == 0
}

/// A report of one connection as an event from its opener's side.
pub fn report_event(key: &TableKey, st: &FlowStats, ktime_ns: u64) -> FlowEvent {
    let side = st.opener & 1;
    let peer = side ^ 1;
    let (s, p) = (usize::from(side), usize::from(peer));
    let proto = key.proto();
    let icmp = matches!(proto, 1 | 58);
    // An echo flow (ports are the identifier) is opened by a request. Other
    // messages between two addresses share one entry, reported only as a
    // restarted probe's baseline (`Reporter::baseline`): named an error, as
    // the events that counted it were.
    let icmp_type = match (icmp, key.port(side), proto) {
        (true, 0, 1) => ICMP_DEST_UNREACHABLE,
        (true, 0, _) => ICMPV6_DEST_UNREACHABLE,
        (true, _, 1) => ICMP_ECHO_REQUEST,
        (true, _, _) => ICMPV6_ECHO_REQUEST,
        _ => 0,
    };
    FlowEvent {
        hdr: EventHeader {
            r#type: EVENT_FLOW,
            version: EVENT_VERSION,
            len: std::mem::size_of::<FlowEvent>() as u16,
            _pad0: 0,
        },
        ktime_ns,
        key: FlowKey {
            saddr: key.addr_bytes(side),
            daddr: key.addr_bytes(peer),
            sport: key.port(side),
            dport: if icmp {
                u16::from(icmp_type) << 8
            } else {
                key.port(peer)
            },
            proto,
            family: key.family(),
            hook: st.opener_hook,
            ifindex: key.ifindex(),
            ..Default::default()
        },
        packets: st.packets[s],
        bytes: st.bytes[s],
        rev_packets: st.packets[p],
        rev_bytes: st.bytes[p],
        tcp_flags: st.flags[s] & !CONTROL_FLAGS,
        reason: reason::REPORT,
        icmp_type,
        verdict: verdict::FORWARDED,
        kind: kind::TRACE,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::events::{Flow4Key, hook};

    /// FIN, SYN and RST: the probe's default `emit_tcp_flags`.
    const EMITTED: u8 = 0x07;

    /// A TCP connection 198.18.0.3:40000 → 198.18.0.2:8080 on ifindex 7: the
    /// server is side 0 (the smaller address), the client opened it.
    fn conn() -> TableKey {
        TableKey::V4(Flow4Key {
            addr: [[198, 18, 0, 2], [198, 18, 0, 3]],
            port: [8080, 40000],
            ifindex: 7,
            proto: 6,
            ..Default::default()
        })
    }

    fn stats(client: u64, server: u64) -> FlowStats {
        FlowStats {
            packets: [server, client],
            bytes: [server * 100, client * 10],
            flags: [0x12, 0x1a],
            opener: 1,
            opener_hook: hook::TC_INGRESS,
            ..Default::default()
        }
    }

    #[test]
    fn a_report_speaks_from_the_opener_with_both_sides_counts() {
        let ev = report_event(&conn(), &stats(5, 4), 99);
        let mut client = [0u8; 16];
        client[..4].copy_from_slice(&[198, 18, 0, 3]);
        assert_eq!(ev.key.saddr, client);
        assert_eq!(
            (ev.key.sport, ev.key.dport, ev.key.hook, ev.key.ifindex),
            (40000, 8080, hook::TC_INGRESS, 7)
        );
        assert_eq!(
            (ev.packets, ev.bytes, ev.rev_packets, ev.rev_bytes),
            (5, 50, 4, 400)
        );
        assert_eq!(
            (ev.reason, ev.is_reply, ev.tcp_flags, ev.ktime_ns),
            // The client's SYN, ACK and PSH so far: ACK and PSH.
            (reason::REPORT, 0, 0x18, 99)
        );
        assert_eq!(
            crate::kernel::events::decode(&crate::kernel::events::encode_flow(&ev)),
            Ok(crate::kernel::events::Event::Flow(ev))
        );
    }

    #[test]
    fn icmp_errors_are_not_reported_their_packets_were_events() {
        let errors = TableKey::V4(Flow4Key {
            addr: [[198, 18, 0, 2], [198, 18, 0, 3]],
            port: [0, 0],
            ifindex: 7,
            proto: 1,
            ..Default::default()
        });
        let echo = TableKey::V4(Flow4Key {
            port: [77, 77],
            ..match errors {
                TableKey::V4(k) => k,
                TableKey::V6(_) => unreachable!(),
            }
        });
        let mut r = Reporter::new();
        let reported = r.reports(&[(errors, stats(3, 0)), (echo, stats(3, 3))], EMITTED, 1);
        assert_eq!(
            reported
                .iter()
                .map(|e| (e.key.sport, e.icmp_type))
                .collect::<Vec<_>>(),
            [(77, ICMP_ECHO_REQUEST)]
        );
    }

    #[test]
    fn only_connections_that_changed_are_reported() {
        let mut r = Reporter::new();
        // First sight: one packet each way is what the first-packet events said.
        assert_eq!(r.reports(&[(conn(), stats(1, 1))], EMITTED, 1), []);
        let grown = r.reports(&[(conn(), stats(3, 1))], EMITTED, 2);
        assert_eq!(grown.iter().map(|e| e.packets).collect::<Vec<_>>(), [3]);
        assert_eq!(r.reports(&[(conn(), stats(3, 1))], EMITTED, 3), []);
        // Seen first with more than that: reported at once.
        let mut r = Reporter::new();
        assert_eq!(r.reports(&[(conn(), stats(4, 2))], EMITTED, 1).len(), 1);
    }

    /// After a restart the tables hold what the previous probe reported:
    /// taken as told, a connection is reported only once it grows.
    #[test]
    fn an_adopted_entry_is_reported_only_when_it_grows() {
        let mut r = Reporter::new();
        r.baseline(&[(conn(), stats(3, 0))]);
        assert_eq!(r.reports(&[(conn(), stats(3, 0))], EMITTED, 1), []);
        let grown = r.reports(&[(conn(), stats(5, 2))], EMITTED, 2);
        assert_eq!(
            grown
                .iter()
                .map(|e| (e.packets, e.rev_packets))
                .collect::<Vec<_>>(),
            [(5, 2)]
        );
        // Without the baseline the same entry is told again from its start.
        let mut fresh = Reporter::new();
        assert_eq!(fresh.reports(&[(conn(), stats(3, 0))], EMITTED, 1).len(), 1);
    }

    #[test]
    fn a_connection_closed_by_an_emitted_flag_is_not_reported_again() {
        // A short request: FIN from each side, whose events told the counts.
        let mut closed = stats(6, 5);
        closed.flags = [0x11, 0x11];
        let mut r = Reporter::new();
        assert_eq!(r.reports(&[(conn(), closed)], EMITTED, 1), []);
        // Half closed: still open, reported.
        let mut r = Reporter::new();
        let mut half = stats(6, 5);
        half.flags = [0x10, 0x11];
        assert_eq!(r.reports(&[(conn(), half)], EMITTED, 2).len(), 1);
        // FIN not emitted: its end told nothing, so the report does.
        let mut r = Reporter::new();
        assert_eq!(r.reports(&[(conn(), closed)], 0x02, 3).len(), 1);
    }

    #[test]
    fn a_reopened_entry_is_another_connection_to_report() {
        // An unanswered connect: its SYN and a retransmission, told by a report.
        let attempt = |seq: [u8; 3], client| {
            let mut st = stats(client, 0);
            st.syn_seq = seq;
            st
        };
        let mut r = Reporter::new();
        assert_eq!(
            r.reports(&[(conn(), attempt([1, 2, 3], 2))], EMITTED, 1)
                .len(),
            1
        );
        // The port used again: the datapath restarted the counters at the new
        // SYN (told by its event) and counted its retransmission. The same
        // count as the last report, of another connection: reported.
        let again = r.reports(&[(conn(), attempt([9, 9, 9], 2))], EMITTED, 2);
        assert_eq!(again.iter().map(|e| e.packets).collect::<Vec<_>>(), [2]);
        // Its SYN alone: what its event told, nothing to report.
        let mut r = Reporter::new();
        r.reports(&[(conn(), attempt([1, 2, 3], 2))], EMITTED, 1);
        assert_eq!(
            r.reports(&[(conn(), attempt([9, 9, 9], 1))], EMITTED, 2),
            []
        );
    }

    #[test]
    fn a_deleted_connection_tells_what_its_events_did_not() {
        const FIN: u8 = 0x01;
        const SYN: u8 = 0x02;
        let udp = match conn() {
            TableKey::V4(k) => TableKey::V4(Flow4Key { proto: 17, ..k }),
            TableKey::V6(_) => unreachable!(),
        };
        let mut udp_stream = stats(300, 300);
        udp_stream.flags = [0, 0];
        let mut one_each = stats(1, 1);
        one_each.flags = [0, 0];
        let mut r = Reporter::new();
        // A UDP stream of 300 datagrams each way: its first packets were
        // events, the rest nothing until now.
        let ended = r.ended(&[(udp, udp_stream), (udp, one_each)], FIN | SYN, 7);
        assert_eq!(
            ended
                .iter()
                .map(|e| (e.packets, e.rev_packets, e.bytes, e.reason, e.ktime_ns))
                .collect::<Vec<_>>(),
            [(300, 300, 3000, reason::REPORT, 7)]
        );
        // TCP closed by FIN from each side: its FINs were events, with their
        // counts, unless FIN is not emitted.
        let mut fin = stats(6, 5);
        fin.flags = [0x11, 0x11];
        assert_eq!(r.ended(&[(conn(), fin)], FIN | SYN, 8), []);
        assert_eq!(r.ended(&[(conn(), fin)], SYN, 8).len(), 1);
        // Periodic reports told 3 packets: nothing more at the end, unless
        // more came.
        assert_eq!(r.reports(&[(conn(), stats(3, 1))], EMITTED, 9).len(), 1);
        assert_eq!(r.ended(&[(conn(), stats(3, 1))], FIN | SYN, 10), []);
        assert_eq!(
            r.reports(&[(conn(), stats(3, 1))], EMITTED, 11).len(),
            1,
            "forgotten"
        );
        assert_eq!(r.ended(&[(conn(), stats(5, 1))], FIN | SYN, 12).len(), 1);
    }
}
