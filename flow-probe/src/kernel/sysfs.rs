//! Kernel pseudo-filesystems and namespaces the probes need: bpffs, tracefs and
//! entering a named network namespace. The only `libc` calls of flow-probe.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Mounts `fstype` at `target` unless something is mounted there already.
pub fn ensure_mounted(fstype: &str, target: &str) -> std::io::Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(target))
    {
        return Ok(());
    }
    std::fs::create_dir_all(target)?;
    let c = |s: &str| CString::new(s).map_err(std::io::Error::other);
    let (src, tgt, ty) = (c(fstype)?, c(target)?, c(fstype)?);
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Moves the calling thread into the named network namespace (`ip netns` name).
///
/// Only this thread moves; call it on a thread dedicated to that namespace.
pub fn enter_netns(name: &str) -> std::io::Result<()> {
    let path = Path::new("/var/run/netns").join(name);
    let file = File::open(&path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("network namespace {name}: {e}")))?;
    // SAFETY: the fd is open for the duration of the call; setns only reads it.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Offset to add to a `CLOCK_MONOTONIC` time (what `bpf_ktime_get_ns` returns) to
/// get Unix time, in nanoseconds.
pub fn monotonic_to_unix_offset_ns() -> i128 {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    let mono = read(libc::CLOCK_MONOTONIC);
    read(libc::CLOCK_REALTIME) - mono
}

/// Index of an interface in the calling thread's network namespace.
pub fn ifindex(name: &str) -> std::io::Result<u32> {
    let c = CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no interface {name}"),
        ))
    } else {
        Ok(idx)
    }
}
