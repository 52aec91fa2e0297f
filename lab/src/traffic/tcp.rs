//! TCP items: a one-connection server that reads the request, writes the response
//! and closes; a client that binds first (so its port is known even when the
//! connection is refused), connects, writes, and reads until the server closes.
//! A connect that gets no answer within the job's wait (no SYN-ACK, no RST) is
//! [`Outcome::Dropped`].

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Socket, Type};

use super::{
    Exchange, Job, OP_TIMEOUT, Outcome, ServerCounts, ServerCtl, bind_when_free, client_only,
    payload, with_server,
};
use crate::scenario::Expect;

pub(super) fn run(job: &Job) -> Exchange {
    let (src, dst) = (
        SocketAddr::new(job.src_ip, 0),
        SocketAddr::new(job.dst_ip, job.port),
    );
    let (request, response, wait) = (job.request, job.response, job.wait);
    match job.expect {
        Expect::Refused => client_only(job, move || client(src, dst, request, response, wait)),
        // Dropped: the same server as for ok, so a connection that the datapath
        // wrongly lets through completes (and is reported as unexpected).
        Expect::Ok | Expect::Dropped => with_server(
            job,
            move |addr, ctl| server(addr, request, response, &ctl),
            move || client(src, dst, request, response, wait),
        ),
    }
}

pub(super) fn server(
    addr: SocketAddr,
    request: u32,
    response: u32,
    ctl: &ServerCtl,
) -> Result<ServerCounts> {
    let listener =
        bind_when_free(addr, TcpListener::bind).with_context(|| format!("listening on {addr}"))?;
    listener.set_nonblocking(true)?;
    let _ = ctl.ready.send(());
    let deadline = Instant::now() + OP_TIMEOUT;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            // The client gave up without connecting (e.g. its SYN was dropped).
            Err(e) if e.kind() == ErrorKind::WouldBlock && ctl.client_done() => {
                return Ok(ServerCounts::default());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => bail!("no connection on {addr} in time"),
            Err(e) => return Err(e).with_context(|| format!("accepting on {addr}")),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(OP_TIMEOUT))?;
    stream.set_write_timeout(Some(OP_TIMEOUT))?;
    let received = read_up_to(&mut stream, u64::from(request)).context("reading the request")?;
    stream
        .write_all(&payload(response))
        .context("writing the response")?;
    stream.flush()?;
    // Dropping the stream closes it: the client reads until this FIN.
    Ok(ServerCounts {
        received,
        sent: u64::from(response),
    })
}

pub(super) fn client(
    src: SocketAddr,
    dst: SocketAddr,
    request: u32,
    response: u32,
    wait: Duration,
) -> Exchange {
    let mut ex = Exchange::default();
    let socket = match Socket::new(Domain::for_address(dst), Type::STREAM, None) {
        Ok(s) => s,
        Err(e) => return ex.failed(format!("socket: {e}")),
    };
    if let Err(e) = socket.bind(&src.into()) {
        return ex.failed(format!("binding {src}: {e}"));
    }
    ex.src_port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port());
    match socket.connect_timeout(&dst.into(), wait) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            ex.outcome = Some(Outcome::Refused);
            return ex;
        }
        // Neither SYN-ACK nor RST: what a silently dropped SYN looks like.
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            ex.outcome = Some(Outcome::Dropped);
            return ex;
        }
        Err(e) => return ex.failed(format!("connecting to {dst}: {e}")),
    }
    let mut stream = TcpStream::from(socket);
    if let Err(e) = exchange(&mut stream, &mut ex, request) {
        return ex.failed(format!("{e:#}"));
    }
    if ex.bytes_received != u64::from(response) {
        let got = ex.bytes_received;
        return ex.failed(format!("received {got} of {response} response bytes"));
    }
    ex.outcome = Some(Outcome::Completed);
    ex
}

fn exchange(stream: &mut TcpStream, ex: &mut Exchange, request: u32) -> Result<()> {
    stream.set_read_timeout(Some(OP_TIMEOUT))?;
    stream.set_write_timeout(Some(OP_TIMEOUT))?;
    stream
        .write_all(&payload(request))
        .context("writing the request")?;
    ex.bytes_sent = u64::from(request);
    ex.bytes_received = read_up_to(stream, u64::MAX).context("reading the response")?;
    Ok(())
}

/// Reads until `limit` bytes or end of stream; returns the count.
fn read_up_to(stream: &mut TcpStream, limit: u64) -> Result<u64> {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    while total < limit {
        let want = usize::try_from((limit - total).min(buf.len() as u64)).unwrap_or(buf.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("after {total} bytes")),
        }
    }
    Ok(total)
}
