//! How the probes are loaded: ring and table sizes, aggregation and the events
//! it keeps, periodic reports and the garbage collection of connection
//! tracking, the namespaces to attach in and watch, the load balancer's cgroup,
//! and whether pins outlive the process. Read by `loader`, `sock_lb` and the
//! pipeline (reports and collection run there).

use std::time::Duration;

use super::events;

/// How often flow-probe reports a live connection's volume that no event
/// told (a long download, a UDP stream), unless told otherwise: the volume
/// metrics, history and graph see a long connection's bytes at this pace,
/// not only when it ends.
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// How the tc flow probe is loaded.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Aggregate in the kernel (events on a flow's first packet per direction,
    /// verdicts, drops and the TCP flags of `emit_tcp_flags`); false sends an
    /// event per packet, for debugging.
    pub aggregate: bool,
    /// TCP flags whose first appearance in a direction is an event (bits as
    /// in the TCP header: FIN 0x01, SYN 0x02, RST 0x04, ...).
    pub emit_tcp_flags: u8,
    /// Periodic report of live flows, read from the flow tables by
    /// flow-probe; zero disables it. The binary's default is
    /// [`DEFAULT_REPORT_INTERVAL`]; this struct's is off, for tests that
    /// want only the kernel's events.
    pub report_interval: Duration,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ringbuf_bytes: u32,
    /// The kernel wakes the reader each time this many more bytes are pending
    /// (once per multiple, never once per event past it); in between,
    /// the reader's timer drains the ring (see `pipeline::DRAIN_INTERVAL`).
    pub wakeup_bytes: u64,
    /// Capacity of each in-kernel flow table: the slots of `FLOW_SLOTS4` and
    /// `FLOW_SLOTS6` (rounded up to a power of two), and as many entries in
    /// `FLOWS4` and `FLOWS6` for flows whose slots are taken (LRU with a list
    /// per CPU, each evicting from its own share).
    pub flow_table_entries: u32,
    /// Capacity of each connection-tracking table (`CT4`, `CT6`; never
    /// evicted, garbage-collected by flow-probe).
    pub ct_entries: u32,
    /// When tracked connections are forgotten.
    pub gc: GcConfig,
    /// Where the tc programs stop short of their whole path, one of
    /// `events::cost_stop`, for the cost benchmark: its floor (`PARSED`) and
    /// rungs above it. `PARSED` and `LOOKED_UP` observe and enforce nothing;
    /// `BEFORE_EVENTS` drops denied packets without reporting them. `NOWHERE`
    /// for real use; anything else is refused.
    pub cost_stop: u32,
    /// Time each tc run by the path it took (`LoadedProbe::path_times`): the
    /// cost benchmark's breakdown. Adds two clock reads to every packet.
    pub time_paths: bool,
    /// Network namespace (an `ip netns` name) whose interfaces to attach to.
    pub netns: Option<String>,
    /// Network namespaces (`ip netns` names) whose kernel drops and TCP
    /// lifecycle are reported: the node's and its endpoints'. Empty (and
    /// `follow_endpoint_netns` off) reports them from every namespace.
    pub drop_netns: Vec<String>,
    /// Also report from the probe's own namespace and from the namespaces of
    /// the endpoints as they come and go (`LoadedProbe::take_netns_filter`):
    /// containers, not known when the probe loads.
    pub follow_endpoint_netns: bool,
    /// Report TCP lifecycle only for sockets whose own address is one of
    /// this node's endpoints' (`ENDPOINT_ADDRS`): set when the probe attaches
    /// to endpoints, so the host's own sockets and, where nodes share a
    /// kernel, other nodes' endpoints' stay out.
    pub lifecycle_endpoints_only: bool,
    /// Keep the pinned links and maps at exit, so policy stays enforced while no
    /// probe runs. Without it a clean exit removes every pin (a killed probe
    /// leaves them, and the next start re-adopts them).
    pub persist: bool,
    /// Cgroup (v2 folder) whose sockets get service load balancing (the socket
    /// programs of `sock_lb.bpf.c`); `None` leaves them unloaded.
    pub lb_cgroup: Option<std::path::PathBuf>,
}

/// TCP flag bits.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
}

/// Garbage collection of connection tracking (see `crate::tables::gc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcConfig {
    /// How often the tables are read.
    pub interval: Duration,
    /// How long a closed connection (a RST, or a FIN from each side) stays,
    /// for its last packets.
    pub close_grace: Duration,
    /// How long a TCP connection both sides have spoken in may stay idle.
    pub tcp_idle: Duration,
    /// How long anything else (UDP, ICMP, a TCP connection never answered)
    /// may stay idle.
    pub other_idle: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval: Duration::from_secs(2),
            close_grace: Duration::from_secs(10),
            tcp_idle: Duration::from_secs(6 * 3600),
            other_idle: Duration::from_secs(60),
        }
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            aggregate: true,
            emit_tcp_flags: tcp_flag::FIN | tcp_flag::SYN | tcp_flag::RST,
            report_interval: Duration::from_secs(0),
            ringbuf_bytes: 4 << 20,
            wakeup_bytes: 32 << 10,
            flow_table_entries: 65_536,
            ct_entries: 262_144,
            gc: GcConfig::default(),
            cost_stop: events::cost_stop::NOWHERE,
            time_paths: false,
            netns: None,
            drop_netns: Vec::new(),
            follow_endpoint_netns: false,
            lifecycle_endpoints_only: false,
            persist: false,
            lb_cgroup: None,
        }
    }
}
