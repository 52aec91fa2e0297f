//! The lab's system calls, through rustix: entering a network namespace,
//! signalling a process, and whether we run as root.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::process::{Pid, Signal};
use rustix::thread::LinkNameSpaceType;

/// Moves the calling thread into the network namespace `fd` refers to.
///
/// Only the calling thread changes namespace, so callers run this on a thread of
/// their own (see [`super::netns`]).
pub fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::thread::move_into_link_name_space(fd, Some(LinkNameSpaceType::Network))?;
    Ok(())
}

/// Sends `signal` to process `pid` (which must be > 0: never a process group).
pub fn kill(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    rustix::process::kill_process(pid, signal)?;
    Ok(())
}

/// Whether the process runs as root (the lab needs it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
