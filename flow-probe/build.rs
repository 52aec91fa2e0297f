//! Compiles the C probes in `ebpf-probes/` with clang into `$OUT_DIR`.
//!
//! Without clang (plain `cargo check`/`clippy` on a machine without the set-up), it
//! writes empty objects instead; flow-probe then refuses to start with a message
//! that says how to build it properly.

use std::path::{Path, PathBuf};
use std::process::Command;

const PROBES: &[&str] = &["flow", "sock_lb"];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    // Read at run time: a build script compiled in another checkout sharing this
    // target dir would otherwise carry that checkout's path.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo");
    let src = Path::new(&manifest_dir).join("../ebpf-probes");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-env-changed=CLANG");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang-19".to_string());
    let have_clang = Command::new(&clang)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    for probe in PROBES {
        let obj = out.join(format!("{probe}.bpf.o"));
        if !have_clang {
            println!("cargo:warning={clang} not found: building flow-probe without eBPF objects");
            std::fs::write(&obj, b"").expect("write stub object");
            continue;
        }
        let status = Command::new(&clang)
            .args([
                "-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-mcpu=v3",
            ])
            .arg(format!("-I{}", src.join("include").display()))
            .arg(format!("-I{}", src.join("src").display()))
            .arg(format!("-I/usr/include/{}-linux-gnu", multiarch()))
            .arg("-c")
            .arg(src.join("src").join(format!("{probe}.bpf.c")))
            .arg("-o")
            .arg(&obj)
            .status()
            .expect("run clang");
        assert!(status.success(), "clang failed to build {probe}.bpf.c");
    }
}

fn multiarch() -> &'static str {
    match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64",
        _ => "x86_64",
    }
}
