//! How the probes are loaded: ring and table sizes, aggregation, the namespaces
//! to attach in and watch, the load balancer's cgroup, and whether pins outlive
//! the process. Read by `loader` and `sock_lb`.

use std::time::Duration;

/// How the tc flow probe is loaded.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Aggregate in the kernel (events on new flows and new TCP flags only); false
    /// sends an event per packet, for debugging.
    pub aggregate: bool,
    /// Periodic report of live flows; zero disables it.
    pub report_interval: Duration,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ringbuf_bytes: u32,
    /// The kernel wakes the reader once this many bytes are pending; below that,
    /// the reader's timer drains the ring (see `pipeline::DRAIN_INTERVAL`).
    pub wakeup_bytes: u64,
    /// Capacity of the in-kernel flow table.
    pub flow_table_entries: u32,
    /// Network namespace (an `ip netns` name) whose interfaces to attach to.
    pub netns: Option<String>,
    /// Network namespaces (`ip netns` names) whose kernel drops are reported: the
    /// node's endpoints'. Empty reports drops from every namespace.
    pub drop_netns: Vec<String>,
    /// Keep the pinned links and maps at exit, so policy stays enforced while no
    /// probe runs. Without it a clean exit removes every pin (a killed probe
    /// leaves them, and the next start re-adopts them).
    pub persist: bool,
    /// Cgroup (v2 folder) whose sockets get service load balancing (the socket
    /// programs of `sock_lb.bpf.c`); `None` leaves them unloaded.
    pub lb_cgroup: Option<std::path::PathBuf>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            aggregate: true,
            report_interval: Duration::from_secs(0),
            ringbuf_bytes: 4 << 20,
            wakeup_bytes: 32 << 10,
            flow_table_entries: 65_536,
            netns: None,
            drop_netns: Vec::new(),
            persist: false,
            lb_cgroup: None,
        }
    }
}
