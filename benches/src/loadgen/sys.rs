//! Small system helpers: CPU time of a process, of this process, joining a
//! cgroup, signals.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal};
use rustix::thread::LinkNameSpaceType;
use rustix::time::ClockId;

/// User + system CPU time of process `pid` so far, from `/proc/<pid>/stat`
/// (fields 14 and 15, `utime` and `stime`, in clock ticks). Includes the time of
/// all its threads.
pub fn process_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces; fields restart after its closing ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/pid/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    if f.len() < 13 {
        bail!("short /proc/{pid}/stat");
    }
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// User + system CPU time of this process (all threads, also those that ended),
/// from `CLOCK_PROCESS_CPUTIME_ID`: the sum `getrusage(RUSAGE_SELF)` splits into
/// user and system time.
pub fn self_cpu() -> Duration {
    let t = rustix::time::clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Moves this process into the cgroup v2 folder `cgroup`.
pub fn join_cgroup(cgroup: &Path) -> Result<()> {
    std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string())
        .with_context(|| format!("joining cgroup {}", cgroup.display()))
}

/// Moves the calling thread into the named network namespace (`ip netns`);
/// threads it starts later inherit it. Call before starting any.
pub fn enter_netns(name: &str) -> Result<()> {
    let path = observe_lab::netns_path(name);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("network namespace {}", path.display()))?;
    rustix::thread::move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
        .map_err(std::io::Error::from)
        .with_context(|| format!("entering {name}"))
}

/// Sends `signal` to `pid` (nothing for pid 0 or one out of range: never a
/// process group).
pub fn kill(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into a flag ([`interrupted`]), so the orchestrator
/// can stop between steps and clean up instead of dying.
pub fn catch_interrupts() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

/// Whether SIGINT or SIGTERM arrived since [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
