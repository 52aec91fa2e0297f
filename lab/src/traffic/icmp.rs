//! ICMP items: one echo request from a raw socket in the `from` namespace; the
//! kernel of the `to` namespace answers it.
//!
//! IPv4 uses ICMP types 8/0 (we compute the checksum; received packets start with
//! the IP header). IPv6 uses ICMPv6 types 128/129 (the kernel fills the checksum;
//! no IP header on receive). The socket is bound to the client address and
//! connected to the server, so the kernel only hands it packets from there.
//! No matching reply within the job's wait is [`Outcome::Dropped`].

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};

use super::{Exchange, Job, OP_TIMEOUT, Outcome, client_only, payload, remaining};

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
const HEADER_LEN: usize = 8;

/// The identifier and sequence number of the next echo request. Each request
/// gets its own identifier, as each run of `ping` does: the datapath keys an
/// echo exchange by it, so a later round's ping is a new flow, not a repeat of
/// the first round's (a per-process identifier made every round one flow).
fn next_id_seq() -> (u16, u16) {
    static SENT: AtomicU32 = AtomicU32::new(0);
    let n = SENT.fetch_add(1, Ordering::Relaxed);
    let base = (std::process::id() & 0xffff) as u16 ^ 0x4c42;
    (base.wrapping_add(n as u16), 1)
}

pub(super) fn run(job: &Job) -> Exchange {
    let (src, dst, len, wait) = (job.src_ip, job.dst_ip, job.request, job.wait);
    let (id, seq) = next_id_seq();
    let mut ex = client_only(job, move || {
        let mut ex = Exchange {
            icmp_id: Some(id),
            icmp_seq: Some(seq),
            ..Exchange::default()
        };
        match ping(src, dst, (id, seq), len, wait, &mut ex) {
            Ok(outcome) => ex.outcome = Some(outcome),
            Err(e) => ex = ex.failed(format!("{e:#}")),
        }
        ex
    });
    ex.icmp_id = Some(id);
    ex.icmp_seq = Some(seq);
    ex
}

/// Sends one echo request and waits up to `wait` for its reply: `Completed` when
/// it came back with the payload, `Dropped` when nothing came.
fn ping(
    src: IpAddr,
    dst: IpAddr,
    (id, seq): (u16, u16),
    len: u32,
    wait: Duration,
    ex: &mut Exchange,
) -> Result<Outcome> {
    let v4 = dst.is_ipv4();
    let (domain, proto, request_type) = if v4 {
        (Domain::IPV4, Protocol::ICMPV4, ECHO_REQUEST_V4)
    } else {
        (Domain::IPV6, Protocol::ICMPV6, ECHO_REQUEST_V6)
    };
    let socket =
        Socket::new(domain, Type::RAW, Some(proto)).context("raw ICMP socket (needs root)")?;
    socket
        .bind(&SocketAddr::new(src, 0).into())
        .with_context(|| format!("binding {src}"))?;
    socket
        .connect(&SocketAddr::new(dst, 0).into())
        .with_context(|| format!("connecting to {dst}"))?;
    socket.set_write_timeout(Some(OP_TIMEOUT))?;

    let data = payload(len);
    let mut packet = vec![request_type, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&data);
    if v4 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    socket
        .send(&packet)
        .with_context(|| format!("sending an echo request to {dst}"))?;
    ex.bytes_sent = data.len() as u64;

    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65_536];
    loop {
        let Some(left) = remaining(deadline) else {
            return Ok(Outcome::Dropped);
        };
        socket.set_read_timeout(Some(left))?;
        let n = match (&socket).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e).context("receiving"),
        };
        let icmp = if v4 {
            strip_ipv4_header(&buf[..n])
        } else {
            Some(&buf[..n])
        };
        let Some(reply) = icmp.and_then(|p| echo_reply(p, v4, id, seq)) else {
            continue;
        };
        ex.bytes_received = reply.len() as u64;
        if reply != data.as_slice() {
            bail!(
                "echo reply carries {} bytes that differ from the request's {}",
                reply.len(),
                data.len()
            );
        }
        return Ok(Outcome::Completed);
    }
}

/// The ICMP part of an IPv4 packet.
fn strip_ipv4_header(packet: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    packet.get(ihl..)
}

/// The data of an echo reply with this id and sequence number.
fn echo_reply(icmp: &[u8], v4: bool, id: u16, seq: u16) -> Option<&[u8]> {
    let reply_type = if v4 { ECHO_REPLY_V4 } else { ECHO_REPLY_V6 };
    if icmp.len() < HEADER_LEN || icmp[0] != reply_type || icmp[1] != 0 {
        return None;
    }
    let got_id = u16::from_be_bytes([icmp[4], icmp[5]]);
    let got_seq = u16::from_be_bytes([icmp[6], icmp[7]]);
    (got_id == id && got_seq == seq).then(|| &icmp[HEADER_LEN..])
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_verifies_to_zero() {
        let mut packet = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, b'a', b'b', b'c'];
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&packet), 0);
    }

    #[test]
    fn echo_replies_are_matched_by_id_and_seq() {
        let reply = [0, 0, 0, 0, 0x12, 0x34, 0, 7, 1, 2];
        assert_eq!(echo_reply(&reply, true, 0x1234, 7), Some(&[1u8, 2][..]));
        assert_eq!(echo_reply(&reply, true, 0x1234, 8), None);
        assert_eq!(echo_reply(&reply, false, 0x1234, 7), None);
    }
}
