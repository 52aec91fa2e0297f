//! Generates gRPC clients from Cilium's own .proto files (`tests/cilium/`,
//! kept there unchanged as test data), so tests talk to our servers exactly
//! as a Cilium/Hubble client would, not through this project's `proto/`.
//! Compiled by protox: no `protoc` needed.

use std::io;

const DIR: &str = "tests/cilium";
const PROTOS: &[&str] = &["tests/cilium/peer/peer.proto"];

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed={DIR}");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, [DIR]).map_err(io::Error::other)?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .emit_rerun_if_changed(false)
        .compile_fds(descriptors)
}
