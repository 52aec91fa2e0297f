//! Everything that touches the kernel: the embedded probe objects (`objects`),
//! the Rust mirror of their events and enums (`events`) and its check against
//! their BTF (`btf` reads it, `btf_layout` compares), feature probing
//! (`features`), bpffs, tracefs and namespaces (`sysfs`, `tracefs`), and
//! loading with a `config`: `loader` attaches the tc probe (pins in `pins`,
//! tracepoints in `tracepoints`) and starts `sock_lb`, the socket load
//! balancer; while the probe runs, `attacher` attaches to interfaces that
//! come and go (containers). `flow_tables` reads and deletes the flow tables
//! and connection tracking in batches (`batch`: the raw `bpf(2)` calls).

pub mod attacher;
pub mod batch;
pub mod btf;
pub mod btf_layout;
pub mod config;
pub mod events;
pub mod features;
pub mod flow_tables;
pub mod loader;
pub mod objects;
pub mod pins;
pub mod sock_lb;
pub mod sysfs;
pub mod tracefs;
pub mod tracepoints;

/// How many entries a kernel table holds (its `max_entries`): the policy and
/// service syncs count against it before they write.
pub fn capacity(map: &aya::maps::MapData) -> Result<usize, aya::maps::MapError> {
    Ok(map.info()?.max_entries() as usize)
}
