//! Sidecar emulation: a user-space TCP proxy as a service mesh puts next to each
//! workload. nftables in the workload's namespace redirects outbound connections
//! to the outbound port and inbound ones to the inbound port (see
//! [`nft_rules`]); the proxy reads the original destination of each accepted
//! connection (`SO_ORIGINAL_DST`, from conntrack's NAT record), connects there
//! with its own socket mark (which the rules let through, as Istio exempts its
//! proxy's uid), and copies bytes both ways, one thread per direction.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

use anyhow::{Context, Result, bail};

/// The nftables table the sidecar installs in a namespace.
pub const NFT_TABLE: &str = "loadgen_sidecar";

/// Rules for one namespace: TCP to `port` from local processes (except the
/// proxy's own marked sockets) goes to `outbound`, TCP to `port` arriving on
/// `eth0` goes to `inbound`.
pub fn nft_rules(port: u16, outbound: u16, inbound: u16, mark: u32) -> String {
    format!(
        "table ip {NFT_TABLE} {{\n\
         \tchain out {{\n\t\ttype nat hook output priority -100; policy accept;\n\
         \t\tmeta mark {mark} return\n\t\toifname \"lo\" return\n\
         \t\ttcp dport {port} redirect to :{outbound}\n\t}}\n\
         \tchain in {{\n\t\ttype nat hook prerouting priority -100; policy accept;\n\
         \t\tiifname \"eth0\" tcp dport {port} redirect to :{inbound}\n\t}}\n}}\n"
    )
}

/// Runs the proxy until killed; prints `ready` once both ports listen.
pub fn run(outbound: u16, inbound: u16, mark: u32) -> Result<()> {
    let mut accept_threads = Vec::new();
    for port in [outbound, inbound] {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
            .with_context(|| format!("binding port {port}"))?;
        accept_threads.push(std::thread::spawn(move || {
            for downstream in listener.incoming() {
                let Ok(downstream) = downstream else { continue };
                std::thread::spawn(move || {
                    if let Err(e) = handle(downstream, mark) {
                        eprintln!("proxy: {e:#}");
                    }
                });
            }
        }));
    }
    println!("ready");
    for t in accept_threads {
        let _ = t.join();
    }
    Ok(())
}

/// One intercepted connection: connect to where it was going, then copy.
fn handle(downstream: TcpStream, mark: u32) -> Result<()> {
    let dst = original_dst(&downstream)?;
    let upstream = connect_marked(dst, mark)?;
    downstream.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let (down2, up2) = (downstream.try_clone()?, upstream.try_clone()?);
    let back = std::thread::spawn(move || pump(up2, down2));
    pump(downstream, upstream);
    let _ = back.join();
    Ok(())
}

/// Copies `from` to `to` until end of stream, then half-closes `to`.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The destination the connection had before nftables redirected it.
fn original_dst(s: &TcpStream) -> Result<SocketAddr> {
    // SAFETY: zeroed sockaddr_in is valid; getsockopt writes at most `len` bytes.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: valid fd, pointer and length.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_IP,
            libc::SO_ORIGINAL_DST,
            (&raw mut addr).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        bail!("SO_ORIGINAL_DST: {}", std::io::Error::last_os_error());
    }
    Ok(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    )))
}

/// A TCP connection to `dst` from a socket with `SO_MARK` = `mark`.
fn connect_marked(dst: SocketAddr, mark: u32) -> Result<TcpStream> {
    let SocketAddr::V4(v4) = dst else {
        bail!("only IPv4 is intercepted");
    };
    // SAFETY: plain socket creation; the fd is owned by the TcpStream below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket that nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    // SAFETY: valid fd, pointer to a u32 and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&raw const mark).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("SO_MARK: {}", std::io::Error::last_os_error());
    }
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: valid fd and sockaddr_in of the given size.
    let rc = unsafe {
        libc::connect(
            fd,
            (&raw const sa).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("connecting to {dst}: {}", std::io::Error::last_os_error());
    }
    Ok(stream)
}
