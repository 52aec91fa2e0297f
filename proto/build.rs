//! Generates the Rust types and gRPC stubs from `proto/`.

use std::io;

const PROTO_DIR: &str = "proto";

const PROTOS: &[&str] = &[
    "proto/observe/ext.proto",
    "proto/relay/relay.proto",
    "proto/flow/flow.proto",
    "proto/observer/observer.proto",
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
    tonic_prost_build::configure()
        // The descriptor set drives protojson output (see src/json.rs).
        .file_descriptor_set_path(out.join("descriptors.bin"))
        .build_server(true)
        .build_client(true)
        .emit_rerun_if_changed(false)
        .compile_protos(PROTOS, &[PROTO_DIR])
}
