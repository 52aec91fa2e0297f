//! Kernel pseudo-filesystems and namespaces the probes need, through rustix:
//! bpffs and tracefs (mounted when missing), entering a named network
//! namespace, interface indexes and the clocks.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;

use rustix::mount::MountFlags;
use rustix::net::{AddressFamily, SocketType};
use rustix::thread::LinkNameSpaceType;
use rustix::time::ClockId;

/// Where pins live: the BPF filesystem.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Where tracepoint formats are read: the tracing filesystem.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// `statfs` magic numbers (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;
const TRACEFS_MAGIC: u32 = 0x7472_6163;

/// Mounts bpffs at [`BPFFS`] unless it is there already.
pub fn ensure_bpffs() -> io::Result<()> {
    ensure_mounted("bpf", BPFFS, BPF_FS_MAGIC)
}

/// Mounts tracefs at [`TRACEFS`] unless it is there already.
pub fn ensure_tracefs() -> io::Result<()> {
    ensure_mounted("tracefs", TRACEFS, TRACEFS_MAGIC)
}

/// Mounts `fstype` at `target` unless a filesystem with `magic` is there.
fn ensure_mounted(fstype: &str, target: &str, magic: u32) -> io::Result<()> {
    // A second mount would stack on the first and hide its pins: within this
    // process, one caller at a time looks and mounts.
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mounted = |st: rustix::fs::StatFs| u32::try_from(st.f_type).ok() == Some(magic);
    if rustix::fs::statfs(target).is_ok_and(mounted) {
        return Ok(());
    }
    std::fs::create_dir_all(target)?;
    rustix::mount::mount(fstype, target, fstype, MountFlags::empty(), None)
        .map_err(|e| io::Error::new(e.kind(), format!("mounting {fstype} at {target}: {e}")))
}

/// Moves the calling thread into the named network namespace (`ip netns` name).
///
/// Only this thread moves; call it on a thread dedicated to that namespace.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let path = Path::new("/var/run/netns").join(name);
    let file = File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("network namespace {name}: {e}")))?;
    rustix::thread::move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
        .map_err(|e| io::Error::new(e.kind(), format!("entering network namespace {name}: {e}")))
}

/// `SO_NETNS_COOKIE` (include/uapi/asm-generic/socket.h): the cookie of a
/// socket's network namespace, what `bpf_get_netns_cookie` returns.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the calling thread's network namespace.
pub fn own_netns_cookie() -> io::Result<u64> {
    let sock = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)?;
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: the buffer and its length describe `cookie`, which outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// What a network namespace tells of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsFacts {
    /// What `bpf_get_netns_cookie` returns for its sockets.
    pub cookie: u64,
    /// Its interfaces' IPv6 link-local addresses (fe80::/10), loopback aside.
    pub link_local: Vec<std::net::Ipv6Addr>,
}

/// The IPv6 link-local addresses of the calling thread's network namespace,
/// from `/proc/thread-self/net/if_inet6` (address, ifindex, prefix, scope,
/// flags, name; scope 0x20 is link).
fn own_link_local() -> io::Result<Vec<std::net::Ipv6Addr>> {
    let text = match std::fs::read_to_string("/proc/thread-self/net/if_inet6") {
        Ok(t) => t,
        // IPv6 turned off: no addresses.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (hex, scope, name) = (f.first()?, f.get(3)?, f.get(5)?);
            if *scope != "20" || *name == "lo" {
                return None;
            }
            u128::from_str_radix(hex, 16)
                .ok()
                .map(std::net::Ipv6Addr::from)
        })
        .collect())
}

/// The addresses of the calling thread's network namespace, loopback's
/// aside, sorted: IPv4 from its local routes (`/proc/thread-self/net/fib_trie`:
/// an address line `|-- A`, then `/32 host LOCAL`), IPv6 from `if_inet6`.
fn own_addresses() -> io::Result<Vec<std::net::IpAddr>> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut out = Vec::new();
    let trie = std::fs::read_to_string("/proc/thread-self/net/fib_trie")?;
    let mut last: Option<Ipv4Addr> = None;
    for line in trie.lines() {
        let line = line.trim();
        if let Some(a) = line.strip_prefix("|-- ") {
            last = a.parse().ok();
        } else if line == "/32 host LOCAL"
            && let Some(a) = last.take()
            && !a.is_loopback()
        {
            out.push(IpAddr::V4(a));
        }
    }
    match std::fs::read_to_string("/proc/thread-self/net/if_inet6") {
        Ok(text) => out.extend(text.lines().filter_map(|l| {
            let hex = l.split_whitespace().next()?;
            let a = Ipv6Addr::from(u128::from_str_radix(hex, 16).ok()?);
            (!a.is_loopback()).then_some(IpAddr::V6(a))
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The addresses of the network namespace at `path` (the caller's own
/// without one), loopback's aside: the node's own, which flows name
/// `reserved:host`. A thread of its own enters the namespace.
pub fn netns_addresses(path: Option<&Path>) -> io::Result<Vec<std::net::IpAddr>> {
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(path) = path {
                let file = File::open(path)?;
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(LinkNameSpaceType::Network),
                )?;
            }
            own_addresses()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("reading addresses panicked")))
    })
    .map_err(|e| match path {
        Some(p) => io::Error::new(e.kind(), format!("network namespace {}: {e}", p.display())),
        None => e,
    })
}

/// What the network namespaces at `paths` (`/var/run/netns/NAME`,
/// `/proc/PID/ns/net`) tell, each or why not. A thread of its own enters them
/// in turn, so no other thread changes namespace.
pub fn netns_facts(paths: &[&Path]) -> Vec<io::Result<NetnsFacts>> {
    let one = |path: &Path| -> io::Result<NetnsFacts> {
        let file = File::open(path)?;
        rustix::thread::move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))?;
        Ok(NetnsFacts {
            cookie: own_netns_cookie()?,
            link_local: own_link_local()?,
        })
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            paths
                .iter()
                .map(|p| {
                    one(p).map_err(|e| {
                        io::Error::new(e.kind(), format!("network namespace {}: {e}", p.display()))
                    })
                })
                .collect()
        })
        .join()
        .unwrap_or_else(|_| vec![])
    })
}

/// Offset to add to a `CLOCK_MONOTONIC` time (what `bpf_ktime_get_ns` returns) to
/// get Unix time, in nanoseconds.
pub fn monotonic_to_unix_offset_ns() -> i128 {
    let read = |clock| {
        let ts = rustix::time::clock_gettime(clock);
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    let mono = read(ClockId::Monotonic);
    read(ClockId::Realtime) - mono
}

/// Index of an interface in the calling thread's network namespace (asked
/// through a socket, which belongs to the namespace it was made in).
pub fn ifindex(name: &str) -> io::Result<u32> {
    let sock = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)?;
    rustix::net::netdevice::name_to_index(&sock, name).map_err(|e| {
        if e == rustix::io::Errno::NODEV {
            io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}"))
        } else {
            io::Error::new(e.kind(), format!("interface {name}: {e}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::scratch::ScratchDir;

    /// Unmounts what a test mounted, also when it panics.
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            while rustix::mount::unmount(self.0, rustix::mount::UnmountFlags::DETACH).is_ok() {}
        }
    }

    fn mounts_at(target: &Path) -> usize {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        mounts
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == target.to_str())
            .count()
    }

    #[test]
    fn namespace_cookies_are_the_sockets_cookies_of_each_namespace() {
        test_support::require_root("entering network namespaces");
        let own = own_netns_cookie().unwrap();
        assert_ne!(own, 0);
        let ns = test_support::netns::TempNetns::new("cookie");
        // A veth pair inside it, one end with a link-local address of our
        // choosing (and a global one, which is not link-local), the other
        // with none.
        let ip = |line: String| {
            let args: Vec<&str> = line.split_whitespace().collect();
            let status = std::process::Command::new("ip").args(&args).status();
            assert!(status.unwrap().success(), "ip {line}");
        };
        let n = ns.name();
        ip(format!("-n {n} link add v0 type veth peer name v1"));
        for dev in ["v0", "v1"] {
            ip(format!("-n {n} link set {dev} addrgenmode none"));
            ip(format!("-n {n} link set {dev} up"));
        }
        ip(format!("-n {n} addr add fe80::42:1/64 dev v0 nodad"));
        ip(format!("-n {n} addr add fd42:99::1/64 dev v0 nodad"));
        let named = ns.path();
        let missing = Path::new("/var/run/netns/observe-no-such-namespace");
        let got = netns_facts(&[Path::new("/proc/self/ns/net"), &named, missing]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().cookie, own);
        let other = got[1].as_ref().unwrap();
        assert!(
            other.cookie != 0 && other.cookie != own,
            "{other:?} is another namespace's"
        );
        assert_eq!(
            other.link_local,
            ["fe80::42:1".parse::<std::net::Ipv6Addr>().unwrap()]
        );
        assert_eq!(
            got[2].as_ref().unwrap_err().to_string(),
            "network namespace /var/run/netns/observe-no-such-namespace: No such file or directory (os error 2)"
        );
        // The caller stayed where it was.
        assert_eq!(own_netns_cookie().unwrap(), own);
    }

    #[test]
    fn a_namespaces_own_addresses_leave_loopback_out() {
        test_support::require_root("entering network namespaces");
        let ns = test_support::netns::TempNetns::new("addrs");
        let n = ns.name();
        for line in [
            format!("-n {n} link set lo up"),
            format!("-n {n} link add v0 type veth peer name v1"),
            format!("-n {n} link set v0 addrgenmode none"),
            format!("-n {n} link set v0 up"),
            format!("-n {n} addr add 198.18.77.1/24 dev v0"),
            format!("-n {n} addr add 198.18.78.1/32 dev v0"),
            format!("-n {n} addr add fd42:77::1/64 dev v0 nodad"),
            format!("-n {n} addr add fe80::77:1/64 dev v0 nodad"),
        ] {
            let args: Vec<&str> = line.split_whitespace().collect();
            let status = std::process::Command::new("ip").args(&args).status();
            assert!(status.unwrap().success(), "ip {line}");
        }
        let got = netns_addresses(Some(&ns.path())).unwrap();
        let want: Vec<std::net::IpAddr> =
            ["198.18.77.1", "198.18.78.1", "fd42:77::1", "fe80::77:1"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        assert_eq!(got, want);
        let err = netns_addresses(Some(Path::new("/var/run/netns/observe-no-such-namespace")))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "network namespace /var/run/netns/observe-no-such-namespace: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn mounts_once_where_missing_and_never_again() {
        test_support::require_root("mounting bpffs and tracefs");
        let scratch = ScratchDir::new("sysfs-mounts");
        for (fstype, magic) in [("bpf", BPF_FS_MAGIC), ("tracefs", TRACEFS_MAGIC)] {
            let target = scratch.path().join(fstype);
            let _unmount = Unmount(&target);
            let at = target.to_str().unwrap();
            assert_eq!(mounts_at(&target), 0);
            ensure_mounted(fstype, at, magic).unwrap();
            ensure_mounted(fstype, at, magic).unwrap();
            assert_eq!(mounts_at(&target), 1, "{fstype} is mounted once");
            let st = rustix::fs::statfs(&target).unwrap();
            assert_eq!(u32::try_from(st.f_type).unwrap(), magic);
        }
        // The real ones are there already (this machine's set-up or the agent).
        ensure_bpffs().unwrap();
        ensure_tracefs().unwrap();
        assert_eq!(mounts_at(Path::new(BPFFS)), 1);
        assert_eq!(mounts_at(Path::new(TRACEFS)), 1);
    }

    #[test]
    fn interfaces_resolve_in_the_callers_namespace() {
        assert_eq!(ifindex("lo").unwrap(), 1);
        let err = ifindex("no-such-if0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(err.to_string(), "no interface no-such-if0");
    }

    #[test]
    fn entering_a_missing_namespace_names_it() {
        let err = enter_netns("observe-no-such-netns").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string()
                .starts_with("network namespace observe-no-such-netns: "),
            "{err}"
        );
    }
}
