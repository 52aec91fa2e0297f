//! Graphviz as the judge of DOT output: renders it to SVG with `dot -Tsvg`
//! and fails the test when Graphviz refuses it or warns.

use std::io::Write;
use std::process::{Command, Stdio};

/// The SVG Graphviz makes of `dot`; panics with Graphviz's complaint (and
/// the input) when it fails or warns.
pub fn svg(dot: &str) -> String {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Graphviz `dot` runs (scripts/setup.sh installs graphviz)");
    child
        .stdin
        .take()
        .expect("dot's stdin")
        .write_all(dot.as_bytes())
        .expect("writing to dot");
    let out = child.wait_with_output().expect("dot finishes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dot failed: {stderr}\n{dot}");
    assert!(stderr.is_empty(), "dot warned: {stderr}\n{dot}");
    let svg = String::from_utf8(out.stdout).expect("SVG is UTF-8");
    assert!(svg.contains("<svg"), "{svg}");
    svg
}
