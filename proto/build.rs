//! Generates the Rust types and gRPC stubs from `proto/`.
//!
//! The .proto files are compiled by `protox`, a protobuf compiler in Rust that
//! carries Google's well-known types, so the build needs no `protoc` and no
//! system headers. The same descriptor set drives protojson (`src/json.rs`).

use std::io;

use prost::Message;

const PROTO_DIR: &str = "proto";

const PROTOS: &[&str] = &[
    "proto/observe/ext.proto",
    "proto/observe/policy.proto",
    "proto/relay/relay.proto",
    "proto/flow/flow.proto",
    "proto/observer/observer.proto",
    "proto/peer/peer.proto",
    "proto/grpc/health/v1/health.proto",
];

fn main() -> io::Result<()> {
    // The directory line catches added files; the per-file lines catch edits,
    // since a directory's mtime does not change when a file inside is edited.
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out =
        std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let descriptors = protox::compile(PROTOS, [PROTO_DIR]).map_err(io::Error::other)?;
    std::fs::write(out.join("descriptors.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .emit_rerun_if_changed(false)
        .compile_fds(descriptors)
}
