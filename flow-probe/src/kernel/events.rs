//! Rust mirror of `ebpf-probes/include/events.h`, and the decoder of ring-buffer
//! records.
//!
//! Plain-data `#[repr(C)]` structs with explicit padding and no `bool`. Their
//! layout is checked against the compiled object's BTF (see `btf_layout`) before
//! anything loads. This is the only module that reinterprets bytes; decoding is
//! length, then header, then fields, with typed errors.

use std::mem::{offset_of, size_of};

pub const EVENT_VERSION: u8 = 4;
pub const EVENT_FLOW: u8 = 1;
pub const EVENT_SOCK_XLATE: u8 = 2;
pub const EVENT_TCP_LIFECYCLE: u8 = 3;

/// `enum emit_reason`.
pub mod reason {
    pub const NEW_FLOW: u8 = 1;
    pub const NEW_FLAGS: u8 = 2;
    pub const REPORT: u8 = 3;
    pub const PACKET: u8 = 4;
}

/// `enum event_kind`: Cilium's monitor message numbers (Hubble's event_type).
pub mod kind {
    pub const DROP: u8 = 1;
    pub const TRACE: u8 = 4;
    pub const POLICY_VERDICT: u8 = 5;
}

/// `enum verdict`: Hubble's numbers.
pub mod verdict {
    pub const FORWARDED: u8 = 1;
    pub const DROPPED: u8 = 2;
    pub const AUDIT: u8 = 4;
}

/// `enum enforcement` in `EndpointInfo`.
pub mod enforcement {
    pub const NONE: u8 = 0;
    pub const ON: u8 = 1;
    pub const AUDIT: u8 = 2;
}

/// `enum hook_point`.
pub mod hook {
    pub const TC_INGRESS: u8 = 1;
    pub const TC_EGRESS: u8 = 2;
    pub const KFREE_SKB: u8 = 3;
}

/// `enum stat_index`: per-CPU counters in the `STATS` map.
pub mod stat {
    pub const EVENTS_TRIED: u32 = 0;
    pub const EVENTS_LOST: u32 = 1;
    pub const PACKETS: u32 = 2;
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub r#type: u8,
    pub version: u8,
    pub len: u16,
    pub _pad0: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub hook: u8,
    pub _pad0: u8,
    pub ifindex: u32,
    pub _pad1: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowEvent {
    pub hdr: EventHeader,
    pub ktime_ns: u64,
    pub key: FlowKey,
    pub first_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub rev_packets: u64,
    pub rev_bytes: u64,
    pub pkt_len: u32,
    pub tcp_flags: u8,
    pub tcp_flags_seen: u8,
    pub reason: u8,
    pub is_reply: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub verdict: u8,
    pub kind: u8,
    pub drop_reason: u16,
    pub policy_match: u8,
    pub policy_dir: u8,
    pub policy_id: u32,
    pub remote_identity: u32,
}

/// `ENDPOINTS` value, keyed by host-side ifindex.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    pub endpoint_id: u32,
    pub identity: u32,
    pub ingress: u8,
    pub egress: u8,
    pub _pad0: [u8; 2],
}

/// `IPCACHE` key (LPM trie): `prefixlen` counts family, padding and address bits.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpcacheKey {
    pub prefixlen: u32,
    pub family: u8,
    pub _pad0: [u8; 3],
    pub addr: [u8; 16],
}

/// The part of `IpcacheKey` after `prefixlen`: aya's `LpmTrie` adds the length.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpcacheAddr {
    pub family: u8,
    pub _pad0: [u8; 3],
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpcacheValue {
    pub identity: u32,
}

/// `POLICY` key: 0 is the wildcard for identity, port and protocol.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    pub endpoint_id: u32,
    pub remote_identity: u32,
    pub dport: u16,
    pub proto: u8,
    pub direction: u8,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyValue {
    pub deny: u8,
    pub _pad0: [u8; 3],
    pub policy_id: u32,
}

/// `enum sock_xlate_point`: Hubble's SocketTranslationPoint numbers.
pub mod xlate_point {
    pub const PRE_DIRECTION_FWD: u8 = 1;
    pub const POST_DIRECTION_FWD: u8 = 2;
    pub const PRE_DIRECTION_REV: u8 = 3;
    pub const POST_DIRECTION_REV: u8 = 4;
}

/// `enum sock_hook`: the socket call that was translated.
pub mod sock_hook {
    pub const CONNECT: u8 = 1;
    pub const SENDMSG: u8 = 2;
    pub const RECVMSG: u8 = 3;
}

/// A socket-level service translation (`struct sock_xlate_event`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SockXlateEvent {
    pub hdr: EventHeader,
    pub ktime_ns: u64,
    pub socket_cookie: u64,
    pub cgroup_id: u64,
    pub vip: [u8; 16],
    pub backend: [u8; 16],
    pub vip_port: u16,
    pub backend_port: u16,
    pub family: u8,
    pub proto: u8,
    pub xlate_point: u8,
    pub no_backend: u8,
    pub service_id: u32,
    pub src: [u8; 16],
    pub src_port: u16,
    pub hook: u8,
    pub _pad0: u8,
}

/// `SERVICES` key: one frontend (VIP, port, protocol).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LbServiceKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u8,
    pub proto: u8,
}

/// `SERVICES` value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LbService {
    pub service_id: u32,
    pub backend_count: u16,
    pub _pad0: [u8; 2],
}

/// `BACKENDS` key: a slot of a frontend.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LbBackendKey {
    pub service_id: u32,
    pub slot: u16,
    pub _pad0: [u8; 2],
}

/// `BACKENDS` value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LbBackend {
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u8,
    pub _pad0: u8,
}

/// `REVNAT` key (written by the kernel only).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LbRevnatKey {
    pub cookie: u64,
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u8,
    pub _pad0: [u8; 5],
}

/// `REVNAT` value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LbRevnat {
    pub vip: [u8; 16],
    pub vip_port: u16,
    pub family: u8,
    pub reported: u8,
    pub service_id: u32,
}

// SAFETY: plain data, integers and byte arrays only, no padding the compiler adds.
unsafe impl aya::Pod for LbServiceKey {}
// SAFETY: as above.
unsafe impl aya::Pod for LbService {}
// SAFETY: as above.
unsafe impl aya::Pod for LbBackendKey {}
// SAFETY: as above.
unsafe impl aya::Pod for LbBackend {}

const _: () = assert!(size_of::<SockXlateEvent>() == 96);
const _: () = assert!(size_of::<LbServiceKey>() == 20);
const _: () = assert!(size_of::<LbService>() == 8);
const _: () = assert!(size_of::<LbBackendKey>() == 8);
const _: () = assert!(size_of::<LbBackend>() == 20);
const _: () = assert!(size_of::<LbRevnatKey>() == 32);
const _: () = assert!(size_of::<LbRevnat>() == 24);

// SAFETY: plain data, integers and byte arrays only, no padding the compiler adds.
unsafe impl aya::Pod for EndpointInfo {}
// SAFETY: as above.
unsafe impl aya::Pod for IpcacheAddr {}
// SAFETY: as above.
unsafe impl aya::Pod for IpcacheValue {}
// SAFETY: as above.
unsafe impl aya::Pod for PolicyKey {}
// SAFETY: as above.
unsafe impl aya::Pod for PolicyValue {}

const _: () = assert!(size_of::<EventHeader>() == 8);
const _: () = assert!(size_of::<FlowKey>() == 48);
const _: () = assert!(size_of::<FlowEvent>() == 128);
const _: () = assert!(size_of::<EndpointInfo>() == 12);
const _: () = assert!(size_of::<IpcacheKey>() == 24);
const _: () = assert!(size_of::<IpcacheAddr>() == size_of::<IpcacheKey>() - 4);
const _: () = assert!(size_of::<PolicyKey>() == 12);
const _: () = assert!(size_of::<PolicyValue>() == 8);

/// One C struct as the Rust side sees it: its name, size and field offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub name: &'static str,
    pub size: usize,
    pub fields: Vec<(&'static str, usize)>,
}

macro_rules! layout {
    ($c_name:literal, $ty:ty, [$($field:ident => $c_field:literal),* $(,)?]) => {
        Layout {
            name: $c_name,
            size: size_of::<$ty>(),
            fields: vec![$(($c_field, offset_of!($ty, $field))),*],
        }
    };
}

/// The layouts flow-probe relies on, for the BTF check.
pub fn mirrored_layouts() -> Vec<Layout> {
    vec![
        layout!("event_header", EventHeader, [r#type => "type", version => "version", len => "len", _pad0 => "_pad0"]),
        layout!("flow_key", FlowKey, [
            saddr => "saddr", daddr => "daddr", sport => "sport", dport => "dport",
            proto => "proto", family => "family", hook => "hook", _pad0 => "_pad0",
            ifindex => "ifindex", _pad1 => "_pad1",
        ]),
        layout!("flow_event", FlowEvent, [
            hdr => "hdr", ktime_ns => "ktime_ns", key => "key", first_seen_ns => "first_seen_ns",
            packets => "packets", bytes => "bytes", rev_packets => "rev_packets",
            rev_bytes => "rev_bytes", pkt_len => "pkt_len", tcp_flags => "tcp_flags",
            tcp_flags_seen => "tcp_flags_seen", reason => "reason", is_reply => "is_reply",
            icmp_type => "icmp_type", icmp_code => "icmp_code", verdict => "verdict", kind => "kind",
            drop_reason => "drop_reason", policy_match => "policy_match", policy_dir => "policy_dir",
            policy_id => "policy_id", remote_identity => "remote_identity",
        ]),
        layout!("endpoint_info", EndpointInfo, [
            endpoint_id => "endpoint_id", identity => "identity", ingress => "ingress", egress => "egress", _pad0 => "_pad0",
        ]),
        layout!("ipcache_key", IpcacheKey, [prefixlen => "prefixlen", family => "family", _pad0 => "_pad0", addr => "addr"]),
        layout!("ipcache_value", IpcacheValue, [identity => "identity"]),
        layout!("policy_key", PolicyKey, [
            endpoint_id => "endpoint_id", remote_identity => "remote_identity", dport => "dport", proto => "proto",
            direction => "direction",
        ]),
        layout!("policy_value", PolicyValue, [deny => "deny", _pad0 => "_pad0", policy_id => "policy_id"]),
        layout!("sock_xlate_event", SockXlateEvent, [
            hdr => "hdr", ktime_ns => "ktime_ns", socket_cookie => "socket_cookie", cgroup_id => "cgroup_id",
            vip => "vip", backend => "backend", vip_port => "vip_port", backend_port => "backend_port",
            family => "family", proto => "proto", xlate_point => "xlate_point", no_backend => "no_backend",
            service_id => "service_id", src => "src", src_port => "src_port", hook => "hook", _pad0 => "_pad0",
        ]),
        layout!("lb_service_key", LbServiceKey, [addr => "addr", port => "port", family => "family", proto => "proto"]),
        layout!("lb_service", LbService, [service_id => "service_id", backend_count => "backend_count", _pad0 => "_pad0"]),
        layout!("lb_backend_key", LbBackendKey, [service_id => "service_id", slot => "slot", _pad0 => "_pad0"]),
        layout!("lb_backend", LbBackend, [addr => "addr", port => "port", family => "family", _pad0 => "_pad0"]),
        layout!("lb_revnat_key", LbRevnatKey, [
            cookie => "cookie", addr => "addr", port => "port", family => "family", _pad0 => "_pad0",
        ]),
        layout!("lb_revnat", LbRevnat, [
            vip => "vip", vip_port => "vip_port", family => "family", reported => "reported", service_id => "service_id",
        ]),
        lifecycle_layout(),
    ]
}

/// `enum tcp_lifecycle_kind`.
pub mod lifecycle {
    pub const ESTABLISHED: u8 = 1;
    pub const CLOSED: u8 = 2;
    pub const RETRANSMIT: u8 = 3;
}

/// `struct tcp_lifecycle_event`: a TCP socket established, closed or
/// retransmitting; addresses are the socket's view, local first.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpLifecycleEvent {
    pub hdr: EventHeader,
    pub ktime_ns: u64,
    pub duration_ns: u64,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u8,
    pub kind: u8,
    pub old_state: u8,
    pub new_state: u8,
    pub retransmits: u32,
    pub _pad0: u32,
}

const _: () = assert!(size_of::<TcpLifecycleEvent>() == 72);

/// The lifecycle event's layout, for the BTF check.
pub fn lifecycle_layout() -> Layout {
    layout!("tcp_lifecycle_event", TcpLifecycleEvent, [
        hdr => "hdr", ktime_ns => "ktime_ns", duration_ns => "duration_ns", saddr => "saddr",
        daddr => "daddr", sport => "sport", dport => "dport", family => "family", kind => "kind",
        old_state => "old_state", new_state => "new_state", retransmits => "retransmits", _pad0 => "_pad0",
    ])
}

/// A decoded ring-buffer record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Flow(FlowEvent),
    SockXlate(SockXlateEvent),
    TcpLifecycle(TcpLifecycleEvent),
}

/// Why a ring-buffer record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record is shorter than the header or than its type's struct.
    #[error("record of {got} bytes is shorter than the {need} bytes of {what}")]
    Short {
        what: &'static str,
        got: usize,
        need: usize,
    },
    /// The record's version is not the one this build understands.
    #[error("event version {got}, expected {EVENT_VERSION}: probe and flow-probe were built apart")]
    Version { got: u8 },
    /// The record's type is unknown.
    #[error("unknown event type {0}")]
    UnknownType(u8),
}

/// Decodes one record: length, then version, then type, then fields.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let hdr: EventHeader = read_pod(bytes, "event_header")?;
    if hdr.version != EVENT_VERSION {
        return Err(DecodeError::Version { got: hdr.version });
    }
    match hdr.r#type {
        EVENT_FLOW => Ok(Event::Flow(read_pod(bytes, "flow_event")?)),
        EVENT_SOCK_XLATE => Ok(Event::SockXlate(read_pod(bytes, "sock_xlate_event")?)),
        EVENT_TCP_LIFECYCLE => Ok(Event::TcpLifecycle(read_pod(bytes, "tcp_lifecycle_event")?)),
        other => Err(DecodeError::UnknownType(other)),
    }
}

/// Marker for the plain-data structs above: every bit pattern is a valid value.
trait Pod: Copy {}
impl Pod for EventHeader {}
impl Pod for FlowEvent {}
impl Pod for SockXlateEvent {}
impl Pod for TcpLifecycleEvent {}

fn read_pod<T: Pod>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            what,
            got: bytes.len(),
            need,
        });
    }
    // SAFETY: the length was checked above, `T` is plain data (integers and byte
    // arrays only, so any bit pattern is valid) and the read is unaligned-safe.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Encodes an event as the kernel would; for tests and benchmarks.
pub fn encode_flow(ev: &FlowEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_of::<FlowEvent>());
    let h = &ev.hdr;
    out.extend([h.r#type, h.version]);
    out.extend(h.len.to_ne_bytes());
    out.extend(h._pad0.to_ne_bytes());
    out.extend(ev.ktime_ns.to_ne_bytes());
    let k = &ev.key;
    out.extend(k.saddr);
    out.extend(k.daddr);
    out.extend(k.sport.to_ne_bytes());
    out.extend(k.dport.to_ne_bytes());
    out.extend([k.proto, k.family, k.hook, k._pad0]);
    out.extend(k.ifindex.to_ne_bytes());
    out.extend(k._pad1.to_ne_bytes());
    for v in [
        ev.first_seen_ns,
        ev.packets,
        ev.bytes,
        ev.rev_packets,
        ev.rev_bytes,
    ] {
        out.extend(v.to_ne_bytes());
    }
    out.extend(ev.pkt_len.to_ne_bytes());
    out.extend([
        ev.tcp_flags,
        ev.tcp_flags_seen,
        ev.reason,
        ev.is_reply,
        ev.icmp_type,
        ev.icmp_code,
        ev.verdict,
        ev.kind,
    ]);
    out.extend(ev.drop_reason.to_ne_bytes());
    out.extend([ev.policy_match, ev.policy_dir]);
    out.extend(ev.policy_id.to_ne_bytes());
    out.extend(ev.remote_identity.to_ne_bytes());
    out
}

/// Encodes a translation event as the kernel would; for tests.
pub fn encode_sock_xlate(ev: &SockXlateEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_of::<SockXlateEvent>());
    let h = &ev.hdr;
    out.extend([h.r#type, h.version]);
    out.extend(h.len.to_ne_bytes());
    out.extend(h._pad0.to_ne_bytes());
    for v in [ev.ktime_ns, ev.socket_cookie, ev.cgroup_id] {
        out.extend(v.to_ne_bytes());
    }
    out.extend(ev.vip);
    out.extend(ev.backend);
    out.extend(ev.vip_port.to_ne_bytes());
    out.extend(ev.backend_port.to_ne_bytes());
    out.extend([ev.family, ev.proto, ev.xlate_point, ev.no_backend]);
    out.extend(ev.service_id.to_ne_bytes());
    out.extend(ev.src);
    out.extend(ev.src_port.to_ne_bytes());
    out.extend([ev.hook, ev._pad0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_translation_events() {
        let ev = SockXlateEvent {
            hdr: EventHeader {
                r#type: EVENT_SOCK_XLATE,
                version: EVENT_VERSION,
                len: 96,
                _pad0: 0,
            },
            ktime_ns: 7,
            socket_cookie: 0x1234,
            cgroup_id: 99,
            vip: [198, 18, 100, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            backend: [198, 18, 1, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vip_port: 80,
            backend_port: 8080,
            family: 4,
            proto: 6,
            xlate_point: xlate_point::POST_DIRECTION_FWD,
            service_id: 5,
            src_port: 40000,
            hook: sock_hook::CONNECT,
            ..Default::default()
        };
        let bytes = encode_sock_xlate(&ev);
        assert_eq!(decode(&bytes), Ok(Event::SockXlate(ev)));
        assert_eq!(
            decode(&bytes[..95]),
            Err(DecodeError::Short {
                what: "sock_xlate_event",
                got: 95,
                need: 96
            })
        );
    }

    fn sample() -> FlowEvent {
        FlowEvent {
            hdr: EventHeader {
                r#type: EVENT_FLOW,
                version: EVENT_VERSION,
                len: 128,
                _pad0: 0,
            },
            ktime_ns: 42,
            key: FlowKey {
                sport: 40000,
                dport: 8080,
                proto: 6,
                family: 4,
                hook: hook::TC_INGRESS,
                ifindex: 7,
                ..Default::default()
            },
            packets: 3,
            bytes: 300,
            tcp_flags: 0x02,
            reason: reason::NEW_FLOW,
            verdict: verdict::DROPPED,
            kind: kind::DROP,
            drop_reason: 133,
            policy_id: 7,
            remote_identity: 300,
            ..Default::default()
        }
    }

    #[test]
    fn decodes_what_encode_wrote() {
        let ev = sample();
        assert_eq!(decode(&encode_flow(&ev)), Ok(Event::Flow(ev)));
    }

    #[test]
    fn rejects_short_records_wrong_versions_and_unknown_types() {
        let bytes = encode_flow(&sample());
        assert_eq!(
            decode(&bytes[..100]),
            Err(DecodeError::Short {
                what: "flow_event",
                got: 100,
                need: 128
            })
        );
        assert_eq!(
            decode(&bytes[..3]),
            Err(DecodeError::Short {
                what: "event_header",
                got: 3,
                need: 8
            })
        );
        let mut v1 = bytes.clone();
        v1[1] = 1;
        assert_eq!(decode(&v1), Err(DecodeError::Version { got: 1 }));
        let mut t9 = bytes;
        t9[0] = 9;
        assert_eq!(decode(&t9), Err(DecodeError::UnknownType(9)));
    }
}
