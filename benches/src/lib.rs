//! Benchmarks live in `benches/`; this library holds what they share: timing a
//! loop and printing a result next to the baseline measured in the same run
//! ([`rate`], [`report`]), and a measured round of the tc probe under lab
//! traffic ([`probe_load`]).

pub mod probe_load;

use std::time::{Duration, Instant};

/// HTTP load generator, echo server and sidecar proxy of the latency benchmark.
pub mod loadgen;

/// Runs `f` for `n` iterations and returns the rate per second.
pub fn rate(n: u64, mut f: impl FnMut(u64)) -> (f64, Duration) {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    let took = start.elapsed();
    (n as f64 / took.as_secs_f64(), took)
}

/// One line of a comparison table.
pub fn report(name: &str, per_sec: f64, baseline: f64) {
    println!(
        "{name:<44} {per_sec:>14.0}/s   {:>6.2}x baseline",
        per_sec / baseline
    );
}
