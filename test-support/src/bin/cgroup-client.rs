//! A client that first joins a cgroup, for tests of programs attached to a
//! cgroup (the socket load balancer): `cgroup-client CGROUP ACTION ADDRESS`
//! moves itself into the cgroup v2 folder CGROUP, does one client ACTION
//! against ADDRESS and prints one result line:
//!
//! - `tcp`: connect, send `hello`, read the echo → `peer=<getpeername>`
//! - `udp`: send `ping` from an unconnected socket, read the echo →
//!   `from=<sender> bytes=<n>`
//! - `refused`: connect, which must fail → `errno=<errno>` (`connected` if
//!   it did not fail)
//!
//! Anything else, or a failing step, is an error on stderr and exit status 1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: cgroup-client CGROUP tcp|udp|refused ADDRESS";
/// How long a step may wait for the peer.
const WAIT: Duration = Duration::from_secs(2);

fn join_cgroup(cgroup: &Path) -> Result<(), String> {
    std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string())
        .map_err(|e| format!("joining cgroup {}: {e}", cgroup.display()))
}

fn tcp(target: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&target, WAIT)?;
    s.set_read_timeout(Some(WAIT))?;
    s.write_all(b"hello")?;
    let mut echo = [0u8; 5];
    s.read_exact(&mut echo)?;
    Ok(format!("peer={}", s.peer_addr()?))
}

fn udp(target: SocketAddr) -> std::io::Result<String> {
    // A dual-stack socket for an IPv4-mapped target (::ffff:a.b.c.d).
    let mapped = matches!(target, SocketAddr::V6(t) if t.ip().to_ipv4_mapped().is_some());
    let local: SocketAddr = if mapped {
        "[::]:0"
    } else if target.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    }
    .parse()
    .expect("a literal address");
    let s = UdpSocket::bind(local)?;
    s.set_read_timeout(Some(WAIT))?;
    s.send_to(b"ping", target)?;
    let mut buf = [0u8; 16];
    let (n, from) = s.recv_from(&mut buf)?;
    Ok(format!("from={from} bytes={n}"))
}

fn refused(target: SocketAddr) -> String {
    match TcpStream::connect_timeout(&target, WAIT) {
        Ok(_) => "connected".to_string(),
        Err(e) => format!("errno={}", e.raw_os_error().unwrap_or(0)),
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let [cgroup, action, target] = args else {
        return Err(USAGE.to_string());
    };
    let target: SocketAddr = target
        .parse()
        .map_err(|e| format!("address {target:?}: {e}"))?;
    join_cgroup(Path::new(cgroup))?;
    let io = |e: std::io::Error| format!("{action} {target}: {e}");
    match action.as_str() {
        "tcp" => tcp(target).map_err(io),
        "udp" => udp(target).map_err(io),
        "refused" => Ok(refused(target)),
        other => Err(format!("unknown action {other:?}; {USAGE}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cgroup-client: {e}");
            ExitCode::FAILURE
        }
    }
}
