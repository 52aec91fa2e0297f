//! Policy enforcement cost per packet with 10, 1,000 and 10,000 rules: the tc
//! programs' average run time (BPF run-time statistics) while a client opens
//! new connections to a server whose ingress policy holds N rules (one allows
//! the client; the rest are rules for other identities and ports). The rules
//! are hash-map lookups, so the cost must not grow with N. Baseline, in the same
//! run and interleaved: N = 10.
//!
//! `cargo bench -p benches --bench policy_cost` as root. `POLICY_COST_SECS`:
//! seconds of traffic per round (default 3).

use std::time::Duration;

use anyhow::Context;
use benches::probe_load::{Sample, round};
use flow_probe::kernel::events::{
    EndpointInfo, IpcacheAddr, IpcacheValue, PolicyKey, PolicyValue, enforcement,
};
use flow_probe::kernel::loader::{LoadedProbe, ProbeConfig};
use observe_lab::{Lab, LabOptions, Scenario, run_traffic_once};

const RULES: [u32; 3] = [10, 1_000, 10_000];
const ROUNDS: usize = 2;

/// Short request/response exchanges: every one is a new connection, judged.
const SCENARIO: &str = r#"
description: policy_cost benchmark load
endpoints:
  - {name: client, namespace: bench, labels: {app: client}}
  - {name: server, namespace: bench, labels: {app: server}}
traffic:
  - {from: client, to: server, protocol: tcp, port: 8080, request_bytes: 100, response_bytes: 1000}
  - {from: client, to: server, protocol: tcp, port: 8080, request_bytes: 100, response_bytes: 1000}
  - {from: client, to: server, protocol: tcp, port: 8080, request_bytes: 100, response_bytes: 1000}
  - {from: client, to: server, protocol: tcp, port: 8080, request_bytes: 100, response_bytes: 1000}
"#;

/// Enforces `rules` ingress rules on the server, one of them allowing the client.
fn program(lab: &Lab, probe: &mut LoadedProbe, rules: u32) -> anyhow::Result<()> {
    let file = lab.endpoints_file();
    let ids = file.identities();
    let ep = |name: &str| {
        file.endpoints
            .iter()
            .find(|e| e.name == name)
            .context("endpoint")
    };
    let (client, server) = (ep("client")?, ep("server")?);
    let identity = |e: &cluster_spec::endpoints::Endpoint| ids[&e.identity_labels()];
    let mut maps = probe.take_datapath().context("datapath maps")?;
    for e in [client, server] {
        let mut addr = IpcacheAddr {
            family: 4,
            ..Default::default()
        };
        addr.addr[..4].copy_from_slice(&e.ipv4.context("ipv4")?.octets());
        maps.ipcache.insert(
            &aya::maps::lpm_trie::Key::new(64, addr),
            IpcacheValue {
                identity: identity(e),
            },
            0,
        )?;
    }
    let allow = |remote, dport| {
        (
            PolicyKey {
                endpoint_id: server.id,
                remote_identity: remote,
                dport,
                proto: 6,
                direction: 0,
            },
            PolicyValue {
                deny: 0,
                _pad0: [0; 3],
                policy_id: 1,
            },
        )
    };
    let (k, v) = allow(identity(client), 8080);
    maps.policy.insert(k, v, 0)?;
    for i in 1..rules {
        let (k, v) = allow(1_000_000 + i, 10_000 + (i % 50_000) as u16);
        maps.policy.insert(k, v, 0)?;
    }
    let iface = server.interface.as_deref().context("server interface")?;
    let ifindex = probe
        .attached
        .iter()
        .find(|a| a.ifname == iface)
        .context("server attached")?
        .ifindex;
    let info = EndpointInfo {
        endpoint_id: server.id,
        identity: identity(server),
        ingress: enforcement::ON,
        egress: enforcement::NONE,
        _pad0: [0; 2],
    };
    maps.endpoints.insert(ifindex, info, 0)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if !observe_lab::is_root() {
        println!("policy_cost: skipped: needs root (it builds a lab and loads BPF programs)");
        return Ok(());
    }
    let secs = std::env::var("POLICY_COST_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(Duration::from_secs(3), Duration::from_secs_f64);
    let scenario = Scenario::parse(SCENARIO, "<policy_cost scenario>")?;
    let state_dir = std::env::temp_dir().join(format!("policy-cost-{}", std::process::id()));
    let lab = Lab::up(&scenario, &LabOptions::with_state_dir(&state_dir))?;
    run_traffic_once(&lab, &scenario)?;
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")?;
    println!(
        "policy enforcement cost per packet, lab {} ({ROUNDS} rounds x {secs:.1?} per rule count, interleaved)",
        lab.prefix()
    );
    println!(
        "{:>7} {:>5} {:>10} {:>10} {:>10} {:>9}",
        "rules", "round", "packets", "ns in", "ns eg", "ns/pkt"
    );
    let mut totals = [Sample::default(); RULES.len()];
    for r in 1..=ROUNDS {
        for (i, rules) in RULES.into_iter().enumerate() {
            let s = round(
                &lab,
                &scenario,
                ProbeConfig::default(),
                secs,
                Duration::from_micros(500),
                |p| program(&lab, p, rules),
            )?;
            println!(
                "{rules:>7} {r:>5} {:>10} {:>10.1} {:>10.1} {:>9.1}",
                s.packets,
                Sample::ns(s.ingress),
                Sample::ns(s.egress),
                s.ns_all()
            );
            totals[i].add(&s);
        }
    }
    let base = totals[0].ns_all();
    for (rules, t) in RULES.iter().zip(&totals) {
        println!(
            "{rules:>7} rules: {:>7.1} ns/packet, {:.2}x the 10-rule baseline",
            t.ns_all(),
            t.ns_all() / base
        );
    }
    drop(lab);
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(())
}
