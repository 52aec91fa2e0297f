//! Open-loop HTTP load at a fixed rate, corrected for coordinated omission.
//!
//! The schedule is fixed before the first request: with rate R over N
//! connections, connection k sends its j-th request at
//! `start + k/R + j·N/R` (so the whole client sends one request every 1/R).
//! Each connection waits for that intended time (sleeping), sends, reads the
//! response, and records `completion − intended`. When a response is late, the
//! next requests of that connection go out late too, and their latency still
//! counts from their intended times: a stall is charged to every request that
//! should have been sent during it, not just to the one that hit it (wrk2 and
//! fortio measure the same way). Requests intended during the warm-up are sent
//! but not recorded.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;

use super::hist;
use super::http::{Conn, request};

/// What to run.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub target: SocketAddr,
    /// Requests per second, all connections together.
    pub qps: f64,
    pub connections: usize,
    /// Measured span (after the warm-up).
    pub duration: Duration,
    pub warmup: Duration,
    /// Request body bytes (the server echoes them back).
    pub body: usize,
}

/// What happened.
pub struct ClientResult {
    /// Latency from intended send time to the full response, µs.
    pub hist: Histogram<u64>,
    /// Failed requests in the measured span (connection errors, bad answers).
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the start of the measured span to its end or to the last completion
    /// of a measured request, whichever is later.
    pub span: Duration,
}

impl ClientResult {
    /// Completed measured requests per second.
    pub fn achieved_qps(&self) -> f64 {
        self.hist.len() as f64 / self.span.as_secs_f64().max(1e-9)
    }
}

/// Per-connection outcome.
struct ConnResult {
    hist: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    last_completion: Option<Instant>,
}

/// Connects (retrying for up to 5 s: a service may not be programmed yet).
fn connect(target: SocketAddr) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                return Ok(s);
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// One request/response on `conn`.
fn exchange(conn: &mut Conn<TcpStream>, req: &[u8], body: usize) -> std::io::Result<()> {
    conn.stream.write_all(req)?;
    let Some(m) = conn.read_message()? else {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    };
    let msg = conn.message(m);
    if !msg.first_line.starts_with("HTTP/1.1 200") || msg.body.len() != body {
        return Err(std::io::Error::other(format!(
            "unexpected answer {:?} with {} bytes",
            msg.first_line,
            msg.body.len()
        )));
    }
    conn.consume(m.2);
    Ok(())
}

/// Runs the load and returns the merged result.
pub fn run(cfg: &ClientConfig) -> Result<ClientResult> {
    if cfg.qps <= 0.0 || cfg.connections == 0 {
        bail!("qps and connections must be positive");
    }
    let req = Arc::new(request(cfg.body));
    // Every connection is open (and has done one untimed exchange) before the
    // schedule starts.
    let barrier = Arc::new(Barrier::new(cfg.connections + 1));
    let start: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let mut threads = Vec::new();
    for k in 0..cfg.connections {
        let (cfg, req, barrier, start) = (cfg.clone(), req.clone(), barrier.clone(), start.clone());
        threads.push(std::thread::spawn(move || -> Result<ConnResult> {
            let first = connect(cfg.target).and_then(|s| {
                let mut c = Conn::new(s);
                exchange(&mut c, &req, cfg.body).map(|()| c)
            });
            barrier.wait();
            let mut conn = Some(first?);
            let start = start.lock().expect("start lock").expect("start set");
            let period = Duration::from_secs_f64(cfg.connections as f64 / cfg.qps);
            let offset = Duration::from_secs_f64(k as f64 / cfg.qps);
            let measure_from = start + cfg.warmup;
            let end = measure_from + cfg.duration;
            let mut out = ConnResult {
                hist: hist::new(),
                errors: 0,
                first_error: None,
                last_completion: None,
            };
            let mut j: u32 = 0;
            loop {
                let intended = start + offset + period * j;
                if intended >= end {
                    break;
                }
                j += 1;
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                let result = match conn.as_mut() {
                    Some(c) => exchange(c, &req, cfg.body),
                    None => connect(cfg.target).and_then(|s| {
                        let c = conn.insert(Conn::new(s));
                        exchange(c, &req, cfg.body)
                    }),
                };
                let done = Instant::now();
                let measured = intended >= measure_from;
                match result {
                    Ok(()) if measured => {
                        let us = (done - intended).as_micros().min(u128::from(hist::MAX_US));
                        out.hist.record(us.max(1) as u64)?;
                        out.last_completion = Some(done);
                    }
                    Ok(()) => {}
                    Err(e) => {
                        conn = None;
                        if measured {
                            out.errors += 1;
                            out.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            }
            Ok(out)
        }));
    }
    // Start a little after everyone is connected, so no connection begins late.
    *start.lock().expect("start lock") = Some(Instant::now() + Duration::from_millis(50));
    barrier.wait();
    let measure_from = start.lock().expect("start lock").expect("set") + cfg.warmup;
    let mut result = ClientResult {
        hist: hist::new(),
        errors: 0,
        first_error: None,
        span: cfg.duration,
    };
    let mut failures = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(r)) => {
                result.hist.add(&r.hist)?;
                result.errors += r.errors;
                if result.first_error.is_none() {
                    result.first_error = r.first_error;
                }
                if let Some(last) = r.last_completion {
                    result.span = result.span.max(last - measure_from);
                }
            }
            Ok(Err(e)) => failures.push(format!("{e:#}")),
            Err(_) => failures.push("a connection thread panicked".into()),
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} connections failed to start: {}",
            failures.len(),
            cfg.connections,
            failures[0]
        );
    }
    Ok(result)
}
