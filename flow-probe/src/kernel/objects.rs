//! The compiled probe objects, embedded at build time (see `build.rs`).

/// tc flow probe (`ebpf-probes/src/flow.bpf.c`); empty when built without clang.
pub static FLOW_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flow.bpf.o"));
