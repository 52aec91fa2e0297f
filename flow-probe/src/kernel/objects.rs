//! The compiled probe objects, embedded at build time (see `build.rs`).

/// tc flow probe (`ebpf-probes/src/flow.bpf.c`); empty when built without clang.
pub static FLOW_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flow.bpf.o"));

/// Socket-level service load balancer (`ebpf-probes/src/sock_lb.bpf.c`); empty
/// when built without clang.
pub static SOCK_LB_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_lb.bpf.o"));

/// Every object, by name, for checks that span them (see `btf_layout::check_objects`).
pub fn all() -> [(&'static str, &'static [u8]); 2] {
    [("flow", FLOW_OBJECT), ("sock_lb", SOCK_LB_OBJECT)]
}
