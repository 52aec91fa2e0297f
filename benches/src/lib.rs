//! Benchmarks live in `benches/`; this library holds what they share: timing a
//! loop and printing a result next to the baseline measured in the same run
//! ([`rate`], [`report`]), the machine it ran on ([`machine`]), memory of
//! this process ([`memory_mb`]), synthetic
//! endpoints ([`workload_endpoint`]), a measured round of the tc probe
//! under lab traffic ([`probe_load`]), and the history benchmarks' settings
//! and history ([`history`]); [`loadgen`] is the latency benchmark's load
//! generator, echo server and sidecar proxy.

pub mod history;
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

/// The CPU's model name (`/proc/cpuinfo`), empty when unknown.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default()
}

/// One line naming the machine: CPU, count, kernel, and the two speculation
/// mitigations that set what an indirect call and a return cost (every BPF
/// program run and helper call pays them): a kernel cost measured on
/// another CPU or with other mitigations is not comparable.
pub fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mitigation = |name: &str| {
        std::fs::read_to_string(format!("/sys/devices/system/cpu/vulnerabilities/{name}"))
            .map_or_else(|_| "unknown".to_string(), |s| s.trim().to_string())
    };
    format!(
        "{nproc} x {}, kernel {}; spectre_v2: {}; spec_rstack_overflow: {}",
        cpu_model(),
        kernel.trim(),
        mitigation("spectre_v2"),
        mitigation("spec_rstack_overflow")
    )
}

/// A field of `/proc/self/status` in MB: `"VmRSS:"` (now) or `"VmHWM:"` (peak).
pub fn memory_mb(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1e3
}

/// Endpoint `i` of a synthetic cluster: 20 workloads `app-0..19` (a
/// Deployment each) over 4 namespaces, identity 10,000 + workload.
pub fn workload_endpoint(i: u64) -> observer_proto::flow::Endpoint {
    let w = i % 20;
    observer_proto::flow::Endpoint {
        id: i as u32,
        identity: 10_000 + w as u32,
        namespace: format!("ns-{}", w % 4),
        labels: vec![format!("k8s:app=app-{w}")],
        pod_name: format!("app-{w}-{i}"),
        workloads: vec![observer_proto::flow::Workload {
            name: format!("app-{w}"),
            kind: "Deployment".into(),
        }],
        ..Default::default()
    }
}

/// One line of a comparison table.
pub fn report(name: &str, per_sec: f64, baseline: f64) {
    println!(
        "{name:<44} {per_sec:>14.0}/s   {:>6.2}x baseline",
        per_sec / baseline
    );
}
