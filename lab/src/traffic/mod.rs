//! The traffic generator: runs a scenario's traffic items with real sockets inside
//! the endpoint namespaces (no external tools).
//!
//! Items run one after another. For each, a server thread enters the `to`
//! namespace (TCP listener or UDP echo socket; nothing when `expect: refused`,
//! nothing for ICMP, which the kernel answers), then a client thread enters the
//! `from` namespace and makes the exchange. Every socket operation has a timeout
//! of [`OP_TIMEOUT`], so nothing hangs; items that expect `dropped` wait only
//! [`DROP_WAIT`] for the first answer (the connect, the echo, the echo reply),
//! and their server (which runs as for `ok`, so traffic that is wrongly let
//! through completes and shows) stops as soon as the client is done. The
//! functions block: call them from `spawn_blocking` in async code.
//!
//! The packets each item puts on the wire (what flow-probe should see on the
//! `lxc` interfaces of the two endpoints):
//! - `tcp`, ok: handshake from `src_port` to `port`, the request, the response,
//!   then the server closes first (its FIN), the client closes after reading.
//! - `tcp`, refused: a SYN answered by RST.
//! - `udp`, ok: one datagram of `request_bytes` each way.
//! - `udp`, refused: one datagram, answered by ICMP port unreachable (type 3
//!   code 3) or ICMPv6 destination unreachable (type 1 code 4).
//! - `icmp`: one echo request and its reply (types 8/0 or 128/129), with the
//!   reported identifier and sequence number.
//! - `dropped`: what the client sends before it gives up: one TCP SYN (the
//!   connect times out before the first retransmission), the UDP datagram, the
//!   echo request; nothing comes back.
//!
//! A client that gets no answer at all within its wait reports
//! [`Outcome::Dropped`], whatever the item expects.
//!
//! Address resolution (ARP, IPv6 neighbour discovery) precedes the first packet
//! between two endpoints whose neighbour entries are not fresh.

mod icmp;
mod lock;
mod report;
mod service;
mod tcp;
mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};

pub use lock::{TRAFFIC_LOCK, TrafficLock};
pub use report::{ItemReport, Outcome, TrafficReport, TrafficSummary};
pub use service::run_client;

use super::instance::Lab;
use super::ip::netns_exists;
use super::netns;
use super::scenario::{Expect, Protocol, Scenario};

/// Timeout of every socket operation.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the client of an item that expects `dropped` waits for an answer
/// (TCP connect, UDP echo, ICMP echo reply) before it reports
/// [`Outcome::Dropped`]: short, so rounds with dropped items stay quick, and
/// under the 1 s of the first SYN retransmission, so a dropped TCP connect puts
/// exactly one SYN on the wire.
pub const DROP_WAIT: Duration = Duration::from_millis(500);
/// Pause between rounds of [`run_traffic`].
pub const ROUND_PAUSE: Duration = Duration::from_millis(1000);

/// One traffic item with names resolved to namespaces and addresses.
#[derive(Debug, Clone)]
struct Job {
    src_netns: String,
    dst_netns: String,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    port: u16,
    /// Request size of the exchange if it happens (servers run with these).
    request: u32,
    /// Response size of the exchange if it happens.
    response: u32,
    expect: Expect,
    /// How long the client waits for the first answer: [`DROP_WAIT`] when the
    /// item expects `dropped`, else [`OP_TIMEOUT`].
    wait: Duration,
    /// Why the item cannot run this round (its service could not be read):
    /// it fails alone, and the next round tries again.
    problem: Option<String>,
}

/// What one exchange produced (filled into an [`ItemReport`]).
#[derive(Debug, Clone, Default)]
struct Exchange {
    src_port: Option<u16>,
    icmp_id: Option<u16>,
    icmp_seq: Option<u16>,
    bytes_sent: u64,
    bytes_received: u64,
    server_bytes_received: u64,
    server_bytes_sent: u64,
    outcome: Option<Outcome>,
}

impl Exchange {
    fn failed(mut self, error: impl std::fmt::Display) -> Self {
        self.outcome = Some(Outcome::Failed {
            error: error.to_string(),
        });
        self
    }
}

/// Byte counts of a server thread.
#[derive(Debug, Clone, Copy, Default)]
struct ServerCounts {
    received: u64,
    sent: u64,
}

/// Runs every traffic item of `scenario` once, in order, against `lab`.
///
/// Fails only when the lab does not fit the scenario (unknown endpoint, missing
/// namespace); how each item went is in the report.
pub fn run_traffic_once(lab: &Lab, scenario: &Scenario) -> Result<TrafficReport> {
    refresh_restarted_containers(lab)?;
    run_round(lab, scenario)
}

/// A container of a container lab restarted (`podman restart`) has a new
/// network namespace: set up again before traffic enters it. Asks podman
/// for every container, so once per run, not per round.
fn refresh_restarted_containers(lab: &Lab) -> Result<()> {
    if lab.containers().is_some() {
        for name in crate::containers::refresh_restarted(lab.topology())? {
            log::info!(
                "lab {}: {name}'s container restarted: its namespace is set up again",
                lab.prefix()
            );
        }
    }
    Ok(())
}

fn run_round(lab: &Lab, scenario: &Scenario) -> Result<TrafficReport> {
    let jobs = resolve(lab, scenario)?;
    let mut items = Vec::with_capacity(jobs.len());
    for (index, job) in jobs.iter().enumerate() {
        let spec = &scenario.traffic[index];
        let started_unix_ns = unix_ns();
        let exchange = match spec.protocol {
            _ if job.problem.is_some() => {
                Exchange::default().failed(job.problem.as_deref().unwrap_or_default())
            }
            _ if spec.to_service.is_some() => service::run(lab, index, spec, job),
            Protocol::Tcp => tcp::run(job),
            Protocol::Udp => udp::run(job),
            Protocol::Icmp => icmp::run(job),
        };
        let finished_unix_ns = unix_ns();
        let has_port = spec.protocol != Protocol::Icmp;
        items.push(ItemReport {
            index,
            from: spec.from.clone(),
            to: spec.to_service.clone().unwrap_or_else(|| spec.to.clone()),
            protocol: spec.protocol,
            family: spec.family,
            expect: spec.expect,
            src_ip: job.src_ip,
            dst_ip: job.dst_ip,
            src_port: exchange.src_port,
            dst_port: has_port.then_some(job.port),
            icmp_id: exchange.icmp_id,
            icmp_seq: exchange.icmp_seq,
            outcome: exchange.outcome.unwrap_or(Outcome::Failed {
                error: "no outcome".into(),
            }),
            bytes_sent: exchange.bytes_sent,
            bytes_received: exchange.bytes_received,
            server_bytes_received: exchange.server_bytes_received,
            server_bytes_sent: exchange.server_bytes_sent,
            started_unix_ns,
            finished_unix_ns,
        });
    }
    Ok(TrafficReport {
        prefix: lab.prefix().to_string(),
        items,
    })
}

/// Runs rounds of [`run_traffic_once`] with [`ROUND_PAUSE`] between them until
/// `duration` has passed or `stop` is set (checked after every round and during
/// the pause; a round that started runs to its end).
pub fn run_traffic(
    lab: &Lab,
    scenario: &Scenario,
    duration: Duration,
    stop: &AtomicBool,
) -> Result<TrafficSummary> {
    run_traffic_with(lab, scenario, duration, ROUND_PAUSE, stop, |_, _| {})
}

/// [`run_traffic`] with a chosen pause, calling `on_round(round, report)` after
/// every round (round numbers start at 1).
pub fn run_traffic_with(
    lab: &Lab,
    scenario: &Scenario,
    duration: Duration,
    pause: Duration,
    stop: &AtomicBool,
    mut on_round: impl FnMut(u64, &TrafficReport),
) -> Result<TrafficSummary> {
    let end = Instant::now() + duration;
    let mut summary = TrafficSummary::default();
    refresh_restarted_containers(lab)?;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let report = run_round(lab, scenario)?;
        summary.add(&report);
        on_round(summary.rounds, &report);
        let pause_end = Instant::now() + pause;
        while !stop.load(Ordering::Relaxed) && Instant::now() < pause_end.min(end) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(summary)
}

fn resolve(lab: &Lab, scenario: &Scenario) -> Result<Vec<Job>> {
    let mut jobs = Vec::with_capacity(scenario.traffic.len());
    for (i, t) in scenario.traffic.iter().enumerate() {
        let find = |key: &str, name: &str| {
            lab.endpoint(name).ok_or_else(|| {
                anyhow!(
                    "traffic[{i}].{key}: endpoint {name:?} is not in lab {}",
                    lab.prefix()
                )
            })
        };
        let src = find("from", &t.from)?;
        if t.to_service.is_some() {
            if !netns_exists(&src.netns) {
                bail!(
                    "lab {}: network namespace {} does not exist (is the lab up?)",
                    lab.prefix(),
                    src.netns
                );
            }
            jobs.push(service::job(lab, i, t, src));
            continue;
        }
        let dst = find("to", &t.to)?;
        for ns in [&src.netns, &dst.netns] {
            if !netns_exists(ns) {
                bail!(
                    "lab {}: network namespace {ns} does not exist (is the lab up?)",
                    lab.prefix()
                );
            }
        }
        let (request, response) = t.exchange_bytes();
        jobs.push(Job {
            src_netns: src.netns.clone(),
            dst_netns: dst.netns.clone(),
            src_ip: src.ip(t.family),
            dst_ip: dst.ip(t.family),
            port: t.port.unwrap_or(0),
            request,
            response,
            expect: t.expect,
            wait: wait_for(t.expect),
            problem: None,
        });
    }
    Ok(jobs)
}

/// How long a client waits for the first answer.
fn wait_for(expect: Expect) -> Duration {
    match expect {
        Expect::Dropped => DROP_WAIT,
        Expect::Ok | Expect::Refused => OP_TIMEOUT,
    }
}

/// What a server thread gets besides its address.
struct ServerCtl {
    /// Signal readiness (after binding) by sending on it.
    ready: mpsc::Sender<()>,
    /// Set once the client is done: a server still waiting for its first packet
    /// stops then (with zero counts) instead of waiting out [`OP_TIMEOUT`].
    client_done: Arc<AtomicBool>,
}

impl ServerCtl {
    fn client_done(&self) -> bool {
        self.client_done.load(Ordering::Relaxed)
    }
}

/// Runs a server in `job.dst_netns` and, once it is ready, a client in
/// `job.src_netns`; merges what both saw.
///
/// `server` gets a [`ServerCtl`] to signal readiness after binding and to learn
/// that the client is done; `client` returns its half of the exchange.
fn with_server<S, C>(job: &Job, server: S, client: C) -> Exchange
where
    S: FnOnce(SocketAddr, ServerCtl) -> Result<ServerCounts> + Send + 'static,
    C: FnOnce() -> Exchange + Send + 'static,
{
    let (ready_tx, ready_rx) = mpsc::channel();
    let client_done = Arc::new(AtomicBool::new(false));
    let ctl = ServerCtl {
        ready: ready_tx,
        client_done: Arc::clone(&client_done),
    };
    let addr = SocketAddr::new(job.dst_ip, job.port);
    let server = match netns::spawn_in(&job.dst_netns, move || server(addr, ctl)) {
        Ok(handle) => handle,
        Err(e) => return Exchange::default().failed(format!("server: {e:#}")),
    };
    if ready_rx.recv_timeout(OP_TIMEOUT).is_err() {
        client_done.store(true, Ordering::Relaxed);
        return Exchange::default().failed(format!("server: {}", not_ready(server)));
    }
    let mut exchange = match netns::spawn_in(&job.src_netns, move || Ok(client())) {
        Ok(handle) => {
            netns::join(handle).unwrap_or_else(|e| Exchange::default().failed(format!("{e:#}")))
        }
        Err(e) => Exchange::default().failed(format!("client: {e:#}")),
    };
    client_done.store(true, Ordering::Relaxed);
    match netns::join(server) {
        Ok(counts) => {
            exchange.server_bytes_received = counts.received;
            exchange.server_bytes_sent = counts.sent;
        }
        Err(e) if exchange.outcome == Some(Outcome::Completed) => {
            exchange = exchange.failed(format!("server: {e:#}"));
        }
        Err(e) => log::debug!("server after a failed client: {e:#}"),
    }
    exchange
}

/// Why a server never said it was ready: the error its thread ended with
/// (a port that stayed taken, say), else that it was too slow.
fn not_ready(server: JoinHandle<Result<ServerCounts>>) -> String {
    match netns::join(server) {
        Err(e) => format!("{e:#}"),
        Ok(_) => "not ready in time".to_string(),
    }
}

/// Runs a client alone in `job.src_netns`.
fn client_only<C>(job: &Job, client: C) -> Exchange
where
    C: FnOnce() -> Exchange + Send + 'static,
{
    netns::run_in(&job.src_netns, move || Ok(client()))
        .unwrap_or_else(|e| Exchange::default().failed(format!("client: {e:#}")))
}

/// `len` bytes of recognizable payload.
fn payload(len: u32) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How long [`bind_when_free`] waits for its address: under [`OP_TIMEOUT`],
/// which the item's client waits for its server to be ready.
pub const BIND_WAIT: Duration = Duration::from_millis(1500);

/// Binds `addr` with `bind`, waiting up to [`BIND_WAIT`] while it is in use.
/// A server of the previous item or round may have held the port a moment
/// ago, and a child any thread of this process spawns meanwhile holds a copy
/// of every open descriptor until its exec closes them: the socket outlives
/// its drop by that long.
pub fn bind_when_free<T>(
    addr: SocketAddr,
    bind: impl Fn(SocketAddr) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let deadline = Instant::now() + BIND_WAIT;
    loop {
        match bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            bound => return bound,
        }
    }
}

/// Keeps the remaining time of a deadline as a socket timeout (never zero,
/// which would mean "no timeout").
fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.checked_duration_since(Instant::now())?;
    (!left.is_zero()).then_some(left)
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    #[test]
    fn bind_when_free_waits_for_a_socket_that_lets_go_of_its_port() {
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        assert_eq!(
            UdpSocket::bind(addr).unwrap_err().kind(),
            std::io::ErrorKind::AddrInUse
        );
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        let bound = bind_when_free(addr, UdpSocket::bind).unwrap();
        assert_eq!(bound.local_addr().unwrap(), addr);
        holder.join().unwrap();
    }

    #[test]
    fn bind_when_free_gives_up_on_a_port_that_stays_taken() {
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let err = bind_when_free(addr, UdpSocket::bind).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        drop(held);
    }
}
