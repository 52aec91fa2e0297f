//! UDP items: a server that echoes one datagram; a client that sends one and
//! waits for the echo (or, when refused, for the ICMP port unreachable that
//! surfaces as ECONNREFUSED on its connected socket). No answer within the job's
//! wait is [`Outcome::Dropped`].

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{
    Exchange, Job, OP_TIMEOUT, Outcome, ServerCounts, ServerCtl, bind_when_free, client_only,
    payload, remaining, with_server,
};
use crate::scenario::Expect;

pub(super) fn run(job: &Job) -> Exchange {
    let (src, dst) = (
        SocketAddr::new(job.src_ip, 0),
        SocketAddr::new(job.dst_ip, job.port),
    );
    let (request, wait) = (job.request, job.wait);
    match job.expect {
        Expect::Refused => client_only(job, move || client(src, dst, request, wait)),
        // Dropped: the same echo server as for ok, so a datagram that the datapath
        // wrongly lets through is echoed (and reported as unexpected).
        Expect::Ok | Expect::Dropped => with_server(
            job,
            |addr, ctl| server(addr, &ctl),
            move || client(src, dst, request, wait),
        ),
    }
}

/// How often a waiting server checks whether the client is done.
const SERVER_POLL: Duration = Duration::from_millis(20);

pub(super) fn server(addr: SocketAddr, ctl: &ServerCtl) -> Result<ServerCounts> {
    let socket =
        bind_when_free(addr, UdpSocket::bind).with_context(|| format!("binding {addr}"))?;
    socket.set_write_timeout(Some(OP_TIMEOUT))?;
    let _ = ctl.ready.send(());
    let deadline = Instant::now() + OP_TIMEOUT;
    let mut buf = vec![0u8; 65_536];
    let (n, peer) = loop {
        let Some(left) = remaining(deadline) else {
            bail!("waiting for a datagram on {addr}: none within {OP_TIMEOUT:?}");
        };
        socket.set_read_timeout(Some(left.min(SERVER_POLL)))?;
        match socket.recv_from(&mut buf) {
            Ok(got) => break got,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                // The client gave up without an echo (e.g. its datagram was dropped).
                if ctl.client_done() {
                    return Ok(ServerCounts::default());
                }
            }
            Err(e) => {
                return Err(e).with_context(|| format!("waiting for a datagram on {addr}"));
            }
        }
    };
    let sent = socket
        .send_to(&buf[..n], peer)
        .with_context(|| format!("echoing to {peer}"))?;
    Ok(ServerCounts {
        received: n as u64,
        sent: sent as u64,
    })
}

pub(super) fn client(src: SocketAddr, dst: SocketAddr, request: u32, wait: Duration) -> Exchange {
    let mut ex = Exchange::default();
    let socket = match UdpSocket::bind(src) {
        Ok(s) => s,
        Err(e) => return ex.failed(format!("binding {src}: {e}")),
    };
    ex.src_port = socket.local_addr().ok().map(|a| a.port());
    let setup = socket
        .connect(dst)
        .and_then(|()| socket.set_read_timeout(Some(wait)))
        .and_then(|()| socket.set_write_timeout(Some(OP_TIMEOUT)));
    if let Err(e) = setup {
        // A service VIP without backends: the socket load balancer refuses the
        // connect itself (ECONNREFUSED).
        if e.kind() == ErrorKind::ConnectionRefused {
            ex.outcome = Some(Outcome::Refused);
            return ex;
        }
        return ex.failed(format!("connecting to {dst}: {e}"));
    }
    match socket.send(&payload(request)) {
        Ok(n) => ex.bytes_sent = n as u64,
        Err(e) => return ex.failed(format!("sending to {dst}: {e}")),
    }
    let mut buf = vec![0u8; 65_536];
    match socket.recv(&mut buf) {
        Ok(n) => {
            ex.bytes_received = n as u64;
            if n as u64 != u64::from(request) {
                return ex.failed(format!("echo of {n} bytes for a {request}-byte request"));
            }
            ex.outcome = Some(Outcome::Completed);
        }
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => ex.outcome = Some(Outcome::Refused),
        // No echo and no port unreachable: what a silently dropped datagram
        // looks like.
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            ex.outcome = Some(Outcome::Dropped);
        }
        Err(e) => return ex.failed(format!("receiving from {dst}: {e}")),
    }
    ex
}
