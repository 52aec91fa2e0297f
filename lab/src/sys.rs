//! The lab's only `unsafe` code: thin wrappers over three libc calls.
//!
//! Safety, for all of them: each call takes plain integers (a file descriptor we
//! borrow for the duration of the call, a pid, a signal number), touches no memory
//! of ours, and reports failure through its return value and `errno`, which we turn
//! into `io::Error`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Moves the calling thread into the network namespace `fd` refers to.
///
/// Only the calling thread changes namespace, so callers run this on a thread of
/// their own (see [`super::netns`]).
pub fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a valid open descriptor for the whole call (borrowed);
    // setns only reads it and changes this thread's network namespace.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `signal` to process `pid` (which must be > 0: never a process group).
pub fn kill(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill takes two integers and touches no memory; pid > 0 addresses
    // exactly one process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the process runs as root (the lab needs it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no arguments, cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}
