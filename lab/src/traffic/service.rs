//! Traffic items to a service (`to_service`): the client connects to the VIP and
//! the socket load balancer picks the backend.
//!
//! A node's load balancer hooks apply to the processes of the node's cgroup,
//! so the client must run in a process there, as a pod's runs on its node:
//! the item runs in a child process, `observe lab client --state-dir D --item
//! N --spec JSON`, which joins the cgroup of its `from` endpoint's node first,
//! runs the item and prints its [`ItemReport`] as JSON. A process that is in
//! that cgroup already runs the item itself.
//!
//! Servers run on every backend of the service as flow-probe compiles it now
//! (the lab's services and endpoints files, which may have been edited since
//! `Lab::up`), each for one connection or datagram; those that get nothing stop
//! once the client is done. With `expect: refused` no server runs (a service
//! without backends refuses the connect at once).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use anyhow::{Context, Result, anyhow, bail};

use super::{
    Exchange, ItemReport, Job, OP_TIMEOUT, Outcome, ServerCounts, ServerCtl, not_ready,
    run_traffic_once, tcp, udp, wait_for,
};
use crate::cgroup;
use crate::instance::Lab;
use crate::lb;
use crate::netns;
use crate::scenario::{Expect, Family, Protocol, TrafficSpec};
use crate::topology::EndpointPlan;

/// The job of a service item: from the client to the VIP (servers are found
/// when the item runs).
/// The item's job; a service that cannot be read (its file being edited,
/// or broken) leaves the job with that problem, and the item fails alone.
pub(super) fn job(lab: &Lab, index: usize, t: &TrafficSpec, src: &EndpointPlan) -> Job {
    let frontend = lb::frontend_of(lab, t).with_context(|| format!("traffic[{index}].to_service"));
    let (dst_ip, port, problem) = match frontend {
        Ok(f) => (f.vip, f.port, None),
        Err(e) => {
            let nowhere = match t.family {
                Family::Ipv6 => IpAddr::from(Ipv6Addr::UNSPECIFIED),
                _ => IpAddr::from(Ipv4Addr::UNSPECIFIED),
            };
            (nowhere, t.port.unwrap_or(0), Some(format!("{e:#}")))
        }
    };
    let (request, response) = t.exchange_bytes();
    Job {
        src_netns: src.netns.clone(),
        dst_netns: String::new(),
        src_ip: src.ip(t.family),
        dst_ip,
        port,
        request,
        response,
        expect: t.expect,
        wait: wait_for(t.expect),
        problem,
    }
}

/// The cgroup the client of `spec` runs in: its endpoint's node's.
fn client_cgroup(lab: &Lab, spec: &TrafficSpec) -> Result<std::path::PathBuf> {
    let from = lab
        .endpoint(&spec.from)
        .ok_or_else(|| anyhow!("no endpoint {:?} in the lab", spec.from))?;
    Ok(lab.node_cgroup_path(&from.node))
}

/// Runs a service item: in a child process in its node's cgroup, or here
/// when this process is in it.
pub(super) fn run(lab: &Lab, index: usize, spec: &TrafficSpec, job: &Job) -> Exchange {
    match client_cgroup(lab, spec) {
        Ok(cgroup) if cgroup::contains_self(&cgroup) => return run_here(lab, spec, job),
        Ok(_) => {}
        Err(e) => return Exchange::default().failed(format!("{e:#}")),
    }
    match spawn_client(lab, index, spec) {
        Ok(r) => Exchange {
            src_port: r.src_port,
            icmp_id: None,
            icmp_seq: None,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
            server_bytes_received: r.server_bytes_received,
            server_bytes_sent: r.server_bytes_sent,
            outcome: Some(r.outcome),
        },
        Err(e) => Exchange::default().failed(format!("{e:#}")),
    }
}

fn spawn_client(lab: &Lab, index: usize, spec: &TrafficSpec) -> Result<ItemReport> {
    let exe = crate::binaries::binary("observe")?;
    let out = Command::new(&exe)
        .args(["lab", "client", "--state-dir"])
        .arg(lab.state_dir())
        .args(["--item", &index.to_string(), "--spec"])
        .arg(serde_json::to_string(spec)?)
        .stdin(Stdio::null())
        // A group of its own: Ctrl-C at the terminal reaches `traffic
        // --duration`, which ends after its round, and not the clients
        // running that round.
        .process_group(0)
        .output()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "lab client for traffic[{index}] failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = stdout
        .lines()
        .last()
        .ok_or_else(|| anyhow!("lab client for traffic[{index}] printed nothing"))?;
    serde_json::from_str(line).with_context(|| format!("lab client report {line:?}"))
}

/// `observe lab client`: joins the cgroup of the item's node, runs the item
/// and returns its report (with `index` as given).
pub fn run_client(state_dir: &Path, index: usize, spec: &str) -> Result<ItemReport> {
    let lab = Lab::attach(state_dir)?;
    let spec: TrafficSpec = serde_json::from_str(spec).context("--spec")?;
    cgroup::join(&client_cgroup(&lab, &spec)?)?;
    let mut scenario = lab.scenario().clone();
    scenario.traffic = vec![spec];
    let mut report = run_traffic_once(&lab, &scenario)?;
    let mut item = report.items.remove(0);
    item.index = index;
    Ok(item)
}

/// Runs the item in this process: servers on the backends, then the client.
fn run_here(lab: &Lab, spec: &TrafficSpec, job: &Job) -> Exchange {
    let frontend = match lb::frontend_of(lab, spec) {
        Ok(f) => f,
        Err(e) => return Exchange::default().failed(format!("{e:#}")),
    };
    let client_done = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();
    if job.expect != Expect::Refused {
        for b in &frontend.backends {
            let Some(ep) = lab.endpoint(&b.endpoint.name) else {
                return Exchange::default().failed(format!(
                    "backend {} is not an endpoint of lab {}",
                    b.endpoint,
                    lab.prefix()
                ));
            };
            let (ready, ready_rx) = mpsc::channel();
            let ctl = ServerCtl {
                ready,
                client_done: Arc::clone(&client_done),
            };
            let addr = SocketAddr::new(b.addr, b.port);
            let (request, response) = (job.request, job.response);
            let protocol = spec.protocol;
            let spawned = netns::spawn_in(&ep.netns, move || match protocol {
                Protocol::Tcp => tcp::server(addr, request, response, &ctl),
                Protocol::Udp => udp::server(addr, &ctl),
                Protocol::Icmp => Ok(ServerCounts::default()),
            });
            match spawned {
                Ok(handle) => servers.push((handle, ready_rx, b.endpoint.to_string())),
                Err(e) => {
                    client_done.store(true, Ordering::Relaxed);
                    return Exchange::default().failed(format!("server on {}: {e:#}", b.endpoint));
                }
            }
        }
        let late = servers
            .iter()
            .position(|(_, ready_rx, _)| ready_rx.recv_timeout(OP_TIMEOUT).is_err());
        if let Some(late) = late {
            client_done.store(true, Ordering::Relaxed);
            let (handle, _, name) = servers.swap_remove(late);
            return Exchange::default().failed(format!("server on {name}: {}", not_ready(handle)));
        }
    }
    let src = SocketAddr::new(job.src_ip, 0);
    let dst = SocketAddr::new(frontend.vip, frontend.port);
    let (request, response, wait) = (job.request, job.response, job.wait);
    let protocol = spec.protocol;
    let client = netns::run_in(&job.src_netns, move || {
        Ok(match protocol {
            Protocol::Tcp => tcp::client(src, dst, request, response, wait),
            Protocol::Udp => udp::client(src, dst, request, wait),
            Protocol::Icmp => Exchange::default().failed("icmp cannot go to a service"),
        })
    });
    let mut exchange =
        client.unwrap_or_else(|e| Exchange::default().failed(format!("client: {e:#}")));
    client_done.store(true, Ordering::Relaxed);
    for (handle, _, name) in servers {
        match netns::join(handle) {
            Ok(counts) => {
                exchange.server_bytes_received += counts.received;
                exchange.server_bytes_sent += counts.sent;
            }
            Err(e) if exchange.outcome == Some(Outcome::Completed) => {
                exchange = exchange.failed(format!("server on {name}: {e:#}"));
            }
            Err(e) => log::debug!("server on {name} after a failed client: {e:#}"),
        }
    }
    exchange
}
