//! Cilium's own .proto files, kept as test data, for tests that talk to our
//! servers exactly as a Cilium/Hubble client would, not through this
//! project's `proto/` (compiled by protox: no `protoc` needed):
//! - `tests/data/cilium-api` (see its NOTICE.md) → a descriptor set for
//!   `tests/hubble_wire.rs`, which decodes our answers through it;
//! - `tests/cilium` (peer.proto, unchanged) → a generated gRPC client for
//!   `tests/peer_service.rs`.

use std::io;

use prost::Message;

const API_DIR: &str = "tests/data/cilium-api";
const API_PROTOS: &[&str] = &[
    "tests/data/cilium-api/flow/flow.proto",
    "tests/data/cilium-api/relay/relay.proto",
    "tests/data/cilium-api/observer/observer.proto",
];

const PEER_DIR: &str = "tests/cilium";
const PEER_PROTOS: &[&str] = &["tests/cilium/peer/peer.proto"];

fn main() -> io::Result<()> {
    for path in [API_DIR, PEER_DIR]
        .iter()
        .chain(API_PROTOS)
        .chain(PEER_PROTOS)
    {
        println!("cargo:rerun-if-changed={path}");
    }
    let out =
        std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let api = protox::compile(API_PROTOS, [API_DIR]).map_err(io::Error::other)?;
    std::fs::write(out.join("cilium_api.bin"), api.encode_to_vec())?;
    let peer = protox::compile(PEER_PROTOS, [PEER_DIR]).map_err(io::Error::other)?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .emit_rerun_if_changed(false)
        .compile_fds(peer)
}
