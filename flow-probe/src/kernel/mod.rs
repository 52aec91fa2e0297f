//! Everything that touches the kernel: the embedded probe objects, the Rust
//! mirror of their event layout and its BTF check, feature probing, bpffs/tracefs
//! and namespaces, and loading/attaching ([`loader`]; [`attacher`] while it runs).

pub mod attacher;
pub mod btf_layout;
pub mod events;
pub mod features;
pub mod loader;
pub mod objects;
pub mod pins;
pub mod sock_lb;
pub mod sysfs;
pub mod tracefs;
pub mod tracepoints;
