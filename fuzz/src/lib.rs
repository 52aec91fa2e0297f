//! Fuzz targets for every parser of outside input, and what they share.
//!
//! # Layout
//! - `tests/targets.rs`: ring-buffer records (decode, enrich, protojson),
//!   GetFlows requests (limits, filters, matching), GetFlows answers as
//!   protojson, policy, services, endpoints and scenario files.
//! - `tests/sql_guard.rs`: the relay's read-only SQL guard, in a test binary
//!   of its own (a stack overflow aborts the whole binary).
//! - `tests/write_corpus.rs`: the seed corpus, built in code, checked against
//!   the committed files in `tests/__fuzz__/<target>/corpus/`.
//!
//! Each target is a `bolero::check!` target. `cargo test -p fuzz` runs it
//! over its corpus and `crashes/` (inputs that once failed, kept as
//! regression inputs) and then random inputs for one second;
//! `cargo bolero test -p fuzz --test targets <target>` runs the same target
//! coverage-guided under libFuzzer or AFL where a nightly toolchain is
//! installed. Why bolero and not `cargo fuzz`: the same targets must run on
//! the stable toolchain in CI.
/// What every refusal must be: an error that says what is wrong.
pub fn clear(error: &dyn std::fmt::Display) {
    let message = error.to_string();
    assert!(!message.trim().is_empty(), "an error without a message");
}
