//! Rust mirror of `ebpf-probes/include/events.h`, and the decoder of ring-buffer
//! records.
//!
//! Here: plain-data `#[repr(C)]` structs with explicit padding and no `bool`,
//! and their [`Layout`]s. `enums`: the C enums' constants (event types, kinds,
//! hooks, verdicts, the event version, ...) with the [`EnumMirror`] of each.
//! `decode`: the only code that reinterprets bytes; length, then version, then
//! fields, with typed errors. Layouts and enum values are checked against the
//! compiled object's BTF (see `btf_layout`) before anything loads.

use std::mem::{offset_of, size_of};

mod decode;
mod enums;

pub use decode::{DecodeError, Event, decode, encode_flow, encode_sock_xlate};
pub use enums::*;

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
    pub packets: u64,
    pub bytes: u64,
    pub rev_packets: u64,
    pub rev_bytes: u64,
    pub pkt_len: u32,
    pub tcp_flags: u8,
    pub reason: u8,
    pub is_reply: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub verdict: u8,
    pub kind: u8,
    pub policy_match: u8,
    pub drop_reason: u16,
    pub policy_dir: u8,
    pub _pad0: u8,
    pub policy_id: u32,
    pub remote_identity: u32,
    /// The packet's Ethernet destination and source MACs; zero when unknown.
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub _pad1: [u8; 4],
}

/// `FLOW_SLOTS4` / `FLOWS4` / `CT4` key: a connection on one interface, its ends in a fixed
/// order (side 0, side 1); addresses in network byte order.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flow4Key {
    pub addr: [[u8; 4]; 2],
    pub port: [u16; 2],
    pub ifindex: u32,
    pub proto: u8,
    pub _pad0: [u8; 3],
}

/// `FLOWS6` / `CT6` key.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flow6Key {
    pub addr: [[u8; 16]; 2],
    pub port: [u16; 2],
    pub ifindex: u32,
    pub proto: u8,
    pub _pad0: [u8; 3],
}

/// Counters of a connection, both sides (`FLOWS4` / `FLOWS6` value, and in
/// every slot).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub flags: [u8; 2],
    pub opener: u8,
    pub opener_hook: u8,
    pub resumed: u8,
    /// Low 24 bits of the opening SYN's sequence number (a SYN with other
    /// ones opens a new connection on the same 5-tuple).
    pub syn_seq: [u8; 3],
}

/// `PATH_TIMES` value: runs of one `tc_path` and their time, on one CPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathTime {
    pub runs: u64,
    pub ns: u64,
}

/// `EGRESS_JUMP` value, on one CPU: whether `tc_egress` just jumped into
/// `tc_ingress`, and how often `tc_egress` found `TC_BODY` empty and ran its
/// own copy of the body.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressJump {
    pub egress: u32,
    pub cb0: u32,
    pub own_copy_runs: u64,
}

impl std::ops::AddAssign for PathTime {
    fn add_assign(&mut self, other: PathTime) {
        self.runs += other.runs;
        self.ns += other.ns;
    }
}

/// `FLOW_SLOTS4` value: a flow in the direct-mapped table.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowSlot4 {
    /// `slot_state`.
    pub state: u32,
    pub key: Flow4Key,
    pub st: FlowStats,
}

/// `FLOW_SLOTS6` value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowSlot6 {
    pub state: u32,
    pub key: Flow6Key,
    pub st: FlowStats,
}

/// `CT4` / `CT6` value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtEntry {
    pub opener: u8,
    pub opener_hook: u8,
    pub _pad0: [u8; 6],
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct IpcacheAddr {
    pub family: u8,
    pub _pad0: [u8; 3],
    pub addr: [u8; 16],
}

/// `ENDPOINT_ADDRS` key (`struct endpoint_addr`): an endpoint's address, laid
/// out as the ipcache's after its prefix length.
pub type EndpointAddr = IpcacheAddr;

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
    /// The caller's network namespace (`bpf_get_netns_cookie`): who the
    /// client is when its socket is not bound yet.
    pub netns_cookie: u64,
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

// SAFETY: plain data, integers and byte arrays only, no padding the compiler adds.
unsafe impl aya::Pod for LbServiceKey {}
// SAFETY: as above.
unsafe impl aya::Pod for LbService {}
// SAFETY: as above.
unsafe impl aya::Pod for LbBackendKey {}
// SAFETY: as above.
unsafe impl aya::Pod for LbBackend {}

const _: () = assert!(size_of::<SockXlateEvent>() == 104);
const _: () = assert!(size_of::<LbServiceKey>() == 20);
const _: () = assert!(size_of::<LbService>() == 8);
const _: () = assert!(size_of::<LbBackendKey>() == 8);
const _: () = assert!(size_of::<LbBackend>() == 20);
const _: () = assert!(size_of::<LbRevnatKey>() == 32);
const _: () = assert!(size_of::<LbRevnat>() == 24);

// SAFETY: plain data, integers and byte arrays only, no padding the compiler adds.
unsafe impl aya::Pod for EndpointInfo {}
// SAFETY: as above.
unsafe impl aya::Pod for Flow4Key {}
// SAFETY: as above.
unsafe impl aya::Pod for Flow6Key {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowStats {}
// SAFETY: as above.
unsafe impl aya::Pod for CtEntry {}
// SAFETY: as above.
unsafe impl aya::Pod for PathTime {}
// SAFETY: as above.
unsafe impl aya::Pod for EgressJump {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowSlot4 {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowSlot6 {}
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
const _: () = assert!(size_of::<FlowEvent>() == 136);
const _: () = assert!(size_of::<Flow4Key>() == 20);
const _: () = assert!(size_of::<Flow6Key>() == 44);
const _: () = assert!(size_of::<FlowStats>() == 40);
const _: () = assert!(size_of::<CtEntry>() == 8);
const _: () = assert!(size_of::<PathTime>() == 16);
const _: () = assert!(size_of::<EgressJump>() == 16);
const _: () = assert!(size_of::<FlowSlot4>() == 64);
const _: () = assert!(size_of::<FlowSlot6>() == 88);
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
            hdr => "hdr", ktime_ns => "ktime_ns", key => "key", packets => "packets",
            bytes => "bytes", rev_packets => "rev_packets", rev_bytes => "rev_bytes",
            pkt_len => "pkt_len", tcp_flags => "tcp_flags", reason => "reason",
            is_reply => "is_reply", icmp_type => "icmp_type", icmp_code => "icmp_code",
            verdict => "verdict", kind => "kind", policy_match => "policy_match",
            drop_reason => "drop_reason", policy_dir => "policy_dir", _pad0 => "_pad0",
            policy_id => "policy_id", remote_identity => "remote_identity",
            dmac => "dmac", smac => "smac", _pad1 => "_pad1",
        ]),
        layout!("flow4_key", Flow4Key, [
            addr => "addr", port => "port", ifindex => "ifindex", proto => "proto", _pad0 => "_pad0",
        ]),
        layout!("flow6_key", Flow6Key, [
            addr => "addr", port => "port", ifindex => "ifindex", proto => "proto", _pad0 => "_pad0",
        ]),
        layout!("flow_stats", FlowStats, [
            packets => "packets", bytes => "bytes", flags => "flags", opener => "opener",
            opener_hook => "opener_hook", resumed => "resumed", syn_seq => "syn_seq",
        ]),
        layout!("path_time", PathTime, [runs => "runs", ns => "ns"]),
        layout!("egress_jump", EgressJump, [egress => "egress", cb0 => "cb0", own_copy_runs => "own_copy_runs"]),
        layout!("flow4_slot", FlowSlot4, [state => "state", key => "key", st => "st"]),
        layout!("flow6_slot", FlowSlot6, [state => "state", key => "key", st => "st"]),
        layout!("ct_entry", CtEntry, [opener => "opener", opener_hook => "opener_hook", _pad0 => "_pad0"]),
        layout!("endpoint_info", EndpointInfo, [
            endpoint_id => "endpoint_id", identity => "identity", ingress => "ingress", egress => "egress", _pad0 => "_pad0",
        ]),
        layout!("ipcache_key", IpcacheKey, [prefixlen => "prefixlen", family => "family", _pad0 => "_pad0", addr => "addr"]),
        layout!("ipcache_value", IpcacheValue, [identity => "identity"]),
        layout!("endpoint_addr", EndpointAddr, [family => "family", _pad0 => "_pad0", addr => "addr"]),
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
            netns_cookie => "netns_cookie",
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
        layout!("tcp_lifecycle_event", TcpLifecycleEvent, [
            hdr => "hdr", ktime_ns => "ktime_ns", duration_ns => "duration_ns", saddr => "saddr",
            daddr => "daddr", sport => "sport", dport => "dport", family => "family", kind => "kind",
            old_state => "old_state", new_state => "new_state", retransmits => "retransmits", _pad0 => "_pad0",
        ]),
    ]
}
