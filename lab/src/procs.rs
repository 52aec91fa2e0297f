//! Processes the lab was told about (flow-probe and the like): recording them and
//! stopping them by pid, only if the pid still names the same process.

use std::process::Child;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde::{Deserialize, Serialize};

use super::sys;

/// How long a process gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// A process the lab stops when it goes down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/<pid>/stat` field 22): tells
    /// the recorded process from a later one that got the same pid.
    pub start_ticks: Option<u64>,
    /// What it is, for messages.
    pub what: String,
}

impl ProcessRecord {
    /// Records a running process.
    pub fn new(pid: u32, what: &str) -> Self {
        ProcessRecord {
            pid,
            start_ticks: start_ticks(pid),
            what: what.to_string(),
        }
    }

    /// Whether the pid still names the recorded process and it has not exited.
    pub fn is_running(&self) -> bool {
        match stat(self.pid) {
            Some((state, ticks)) => state != 'Z' && self.start_ticks.is_none_or(|t| t == ticks),
            None => false,
        }
    }
}

/// State letter and start ticks of a process, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past its end.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); field 22 (starttime) is at index 19.
    let state = fields.first()?.chars().next()?;
    let ticks = fields.get(19)?.parse().ok()?;
    Some((state, ticks))
}

fn start_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, ticks)| ticks)
}

/// Stops a recorded process: SIGTERM, then SIGKILL after [`STOP_GRACE`].
///
/// A pid that no longer names the recorded process is left alone.
pub fn stop(record: &ProcessRecord) {
    if !record.is_running() {
        return;
    }
    log::debug!("stopping {} (pid {})", record.what, record.pid);
    if sys::kill(record.pid, Signal::TERM).is_err() {
        return;
    }
    let deadline = Instant::now() + STOP_GRACE;
    while record.is_running() {
        if Instant::now() >= deadline {
            log::warn!(
                "{} (pid {}) ignored SIGTERM; killing it",
                record.what,
                record.pid
            );
            let _ = sys::kill(record.pid, Signal::KILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a child of this process and reaps it.
pub fn stop_child(child: &mut Child, what: &str) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = sys::kill(child.id(), Signal::TERM);
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                log::warn!("{what} (pid {}) ignored SIGTERM; killing it", child.id());
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
