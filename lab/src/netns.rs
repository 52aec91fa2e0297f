//! Running code inside a named network namespace.
//!
//! A thread of its own enters the namespace (`setns`), so sockets it creates and
//! `/proc/sys/net` files it opens belong to that namespace; the thread ends with
//! the work, and no other thread of the process ever changes namespace.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow};

use super::sys;

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

/// The file of a named network namespace.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Starts `work` on a new thread inside the network namespace `netns`.
///
/// The namespace file is opened before the thread starts, so a missing namespace
/// is reported here.
pub fn spawn_in<T, F>(netns: &str, work: F) -> Result<JoinHandle<Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let path = netns_path(netns);
    let file = File::open(&path).with_context(|| format!("network namespace {netns}"))?;
    let name = netns.to_string();
    std::thread::Builder::new()
        .name(format!("ns:{netns}"))
        .spawn(move || {
            sys::setns_net(file.as_fd())
                .with_context(|| format!("entering network namespace {name}"))?;
            drop(file);
            work()
        })
        .context("starting a thread")
}

/// Waits for a thread started by [`spawn_in`], turning a panic into an error.
pub fn join<T>(handle: JoinHandle<Result<T>>) -> Result<T> {
    handle
        .join()
        .map_err(|_| anyhow!("a lab thread panicked"))?
}

/// Runs `work` inside `netns` and waits for it.
pub fn run_in<T, F>(netns: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    join(spawn_in(netns, work)?)
}

/// Writes network sysctls (paths relative to `/proc/sys/net/`) inside `netns`.
pub fn write_sysctls(netns: &str, settings: &[(&str, &str)]) -> Result<()> {
    let owned: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ns = netns.to_string();
    run_in(netns, move || {
        for (key, value) in owned {
            let path = format!("/proc/sys/net/{key}");
            std::fs::write(&path, &value)
                .with_context(|| format!("setting {key}={value} in network namespace {ns}"))?;
        }
        Ok(())
    })
}
