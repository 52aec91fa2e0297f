//! UDP items: a server that echoes one datagram; a client that sends one and
//! waits for the echo (or, when refused, for the ICMP port unreachable that
//! surfaces as ECONNREFUSED on its connected socket).

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;

use anyhow::{Context, Result};

use super::{Exchange, Job, OP_TIMEOUT, Outcome, ServerCounts, client_only, payload, with_server};
use crate::lab::scenario::Expect;

pub(super) fn run(job: &Job) -> Exchange {
    let (src, dst) = (
        SocketAddr::new(job.src_ip, 0),
        SocketAddr::new(job.dst_ip, job.port),
    );
    let request = job.request;
    match job.expect {
        Expect::Refused => client_only(job, move || client(src, dst, request)),
        Expect::Ok => with_server(job, server, move || client(src, dst, request)),
    }
}

fn server(addr: SocketAddr, ready: mpsc::Sender<()>) -> Result<ServerCounts> {
    let socket = UdpSocket::bind(addr).with_context(|| format!("binding {addr}"))?;
    socket.set_read_timeout(Some(OP_TIMEOUT))?;
    socket.set_write_timeout(Some(OP_TIMEOUT))?;
    let _ = ready.send(());
    let mut buf = vec![0u8; 65_536];
    let (n, peer) = socket
        .recv_from(&mut buf)
        .with_context(|| format!("waiting for a datagram on {addr}"))?;
    let sent = socket
        .send_to(&buf[..n], peer)
        .with_context(|| format!("echoing to {peer}"))?;
    Ok(ServerCounts {
        received: n as u64,
        sent: sent as u64,
    })
}

fn client(src: SocketAddr, dst: SocketAddr, request: u32) -> Exchange {
    let mut ex = Exchange::default();
    let socket = match UdpSocket::bind(src) {
        Ok(s) => s,
        Err(e) => return ex.failed(format!("binding {src}: {e}")),
    };
    ex.src_port = socket.local_addr().ok().map(|a| a.port());
    let setup = socket
        .connect(dst)
        .and_then(|()| socket.set_read_timeout(Some(OP_TIMEOUT)))
        .and_then(|()| socket.set_write_timeout(Some(OP_TIMEOUT)));
    if let Err(e) = setup {
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
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            return ex.failed(format!("no reply from {dst} within {OP_TIMEOUT:?}"));
        }
        Err(e) => return ex.failed(format!("receiving from {dst}: {e}")),
    }
    ex
}
