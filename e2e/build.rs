//! Compiles Cilium's own Hubble .proto files (`tests/data/cilium-api`, see its
//! NOTICE.md) into a descriptor set for `tests/hubble_wire.rs`, which decodes
//! our answers through it instead of through our generated types.

use std::io;

use prost::Message;

const DIR: &str = "tests/data/cilium-api";

const PROTOS: &[&str] = &[
    "tests/data/cilium-api/flow/flow.proto",
    "tests/data/cilium-api/relay/relay.proto",
    "tests/data/cilium-api/observer/observer.proto",
];

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed={DIR}");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out =
        std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let descriptors = protox::compile(PROTOS, [DIR]).map_err(io::Error::other)?;
    std::fs::write(out.join("cilium_api.bin"), descriptors.encode_to_vec())
}
