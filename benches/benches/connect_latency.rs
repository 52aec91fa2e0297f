//! connect() latency to a service VIP (translated by the socket-level load
//! balancer at connect time) against connecting to the backend directly, on the
//! same lab, interleaved connection by connection. Baseline: the direct connect.
//!
//! The client must live in the lab's cgroup, where the cgroup hooks are
//! attached, so the benchmark re-runs itself as a child process that joins the
//! cgroup and the client's network namespace and does the connects.
//!
//! `cargo bench -p benches --bench connect_latency` as root.
//! `CONNECT_LATENCY_N`: connections per target (default 2000).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use cluster_spec::services::ServicesFile;
use cluster_spec::services::compile;
use flow_probe::kernel::features::KernelFeatures;
use flow_probe::kernel::loader::{LoadedProbe, ProbeConfig};
use flow_probe::kernel::sysfs;
use flow_probe::services::sync::ServiceMaps;
use observe_lab::{Lab, LabOptions, Scenario};

const CHILD: &str = "CONNECT_LATENCY_CHILD";
const SCENARIO: &str = r#"
description: connect_latency benchmark
endpoints:
  - {name: client, namespace: bench, labels: {app: client}}
  - {name: api, namespace: bench, labels: {app: api}}
services:
  - name: api
    namespace: bench
    vip: {ipv4: 198.18.100.10}
    ports: [{port: 80, protocol: TCP, targetPort: 8080}]
    selector: {app: api}
"#;

/// The child: join the cgroup and namespace, connect to both targets in turn,
/// print each connect's duration in ns.
fn child(spec: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = spec.split('|').collect();
    let [cgroup, netns, vip, direct, n] = parts[..] else {
        anyhow::bail!("bad {CHILD}: {spec}")
    };
    std::fs::write(
        format!("{cgroup}/cgroup.procs"),
        std::process::id().to_string(),
    )?;
    sysfs::enter_netns(netns)?;
    let targets: [SocketAddr; 2] = [vip.parse()?, direct.parse()?];
    let mut out = std::io::stdout().lock();
    for _ in 0..n.parse::<usize>()? {
        for (name, addr) in ["vip", "direct"].iter().zip(targets) {
            let start = Instant::now();
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            let took = start.elapsed().as_nanos();
            drop(s);
            writeln!(out, "{name} {took}")?;
        }
    }
    Ok(())
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    if !observe_lab::is_root() {
        println!("connect_latency: skipped: needs root (it builds a lab and loads BPF programs)");
        return Ok(());
    }
    let n: usize = std::env::var("CONNECT_LATENCY_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let scenario = Scenario::parse(SCENARIO, "<connect_latency scenario>")?;
    let state_dir = std::env::temp_dir().join(format!("connect-latency-{}", std::process::id()));
    let lab = Lab::up(&scenario, &LabOptions::with_state_dir(&state_dir))?;
    let file = lab.endpoints_file();
    let interfaces: Vec<String> = file
        .endpoints
        .iter()
        .filter_map(|e| e.interface.clone())
        .collect();
    let cfg = ProbeConfig {
        netns: lab.node_netns("node1").map(str::to_string),
        lb_cgroup: Some(lab.cgroup_path()),
        ..ProbeConfig::default()
    };
    let mut probe = LoadedProbe::start(&cfg, &interfaces, &KernelFeatures::probe())?;
    let maps = probe
        .lb
        .as_mut()
        .and_then(|lb| lb.take_maps())
        .context("socket LB not loaded")?;
    let services = ServicesFile::load(&lab.services_path())?;
    ServiceMaps::new(maps).sync(&compile(&services, &file))?;
    // The ring fills without a reader; events are not what this measures.
    let _ring = probe.take_ring();

    let api = lab.endpoint("api").context("api")?;
    let direct: SocketAddr = (api.ipv4, 8080).into();
    let stop = AtomicBool::new(false);
    let api_ns = api.netns.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let samples = std::thread::scope(|s| -> anyhow::Result<Vec<(String, u128)>> {
        s.spawn(|| {
            sysfs::enter_netns(&api_ns).unwrap();
            let listener = TcpListener::bind(direct).unwrap();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => drop(c),
                    Err(_) => std::thread::sleep(Duration::from_micros(50)),
                }
            }
        });
        ready_rx.recv()?;
        let spec = format!(
            "{}|{}|198.18.100.10:80|{direct}|{n}",
            lab.cgroup_path().display(),
            lab.endpoint("client").context("client")?.netns
        );
        let out = Command::new(std::env::current_exe()?)
            .env(CHILD, spec)
            .output()?;
        stop.store(true, Ordering::Relaxed);
        anyhow::ensure!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?
            .lines()
            .filter_map(|l| {
                l.split_once(' ')
                    .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
            })
            .collect())
    })?;
    println!("connect() latency, {n} connections per target, interleaved (µs)");
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>10}",
        "target", "p50", "p90", "p99", "p50 ratio"
    );
    let mut base = 0.0;
    for (name, label) in [
        ("direct", "direct to backend (baseline)"),
        ("vip", "service VIP (socket LB)"),
    ] {
        let mut v: Vec<u128> = samples
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, ns)| *ns)
            .collect();
        v.sort_unstable();
        let p50 = percentile(&v, 0.5);
        if name == "direct" {
            base = p50;
        }
        println!(
            "{label:<28} {p50:>8.1} {:>8.1} {:>8.1} {:>9.2}x",
            percentile(&v, 0.9),
            percentile(&v, 0.99),
            p50 / base
        );
    }
    drop(probe);
    drop(lab);
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(())
}
