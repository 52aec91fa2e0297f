//! The `ip` command (iproute2): creating, listing and deleting named network
//! namespaces and configuring links inside them.
//!
//! Every configuration command runs with `-n <netns>`, so the lab never changes
//! the root network namespace.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

use super::netns::NETNS_DIR;

/// Serializes `ip netns add` in this process: the first one also sets up the
/// shared mount of `/var/run/netns`, which should not race with itself.
static NETNS_ADD: Mutex<()> = Mutex::new(());

/// The `ip` binary: `/usr/sbin/ip` when present, else `ip` from `PATH`.
pub fn ip_binary() -> &'static str {
    if Path::new("/usr/sbin/ip").exists() {
        "/usr/sbin/ip"
    } else {
        "ip"
    }
}

/// Runs `ip <args>`; the error carries the command line and ip's stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new(ip_binary())
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", ip_binary(), args.join(" ")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("ip {}: {} ({})", args.join(" "), stderr.trim(), out.status);
    }
    Ok(())
}

/// Runs `ip -n <netns> <args>`.
pub fn ip_in(netns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    ip(&all)
}

/// Creates the named network namespace.
pub fn netns_add(name: &str) -> Result<()> {
    let _guard = NETNS_ADD.lock().unwrap_or_else(|e| e.into_inner());
    ip(&["netns", "add", name]).context("creating a network namespace (the lab needs root)")
}

/// Names the network namespace of process `pid` (`ip netns attach`), so
/// that what takes `ip netns` names (the traffic generator, flow-probe's
/// `--netns`) reaches it; deleting the name leaves the namespace alone.
pub fn netns_attach(name: &str, pid: u32) -> Result<()> {
    let _guard = NETNS_ADD.lock().unwrap_or_else(|e| e.into_inner());
    ip(&["netns", "attach", name, &pid.to_string()])
}

/// Deletes the named network namespace (and with it every interface inside).
pub fn netns_del(name: &str) -> Result<()> {
    ip(&["netns", "del", name])
}

/// Names of all named network namespaces (the files of `/var/run/netns`).
pub fn netns_list() -> Result<Vec<String>> {
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context(NETNS_DIR),
    };
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry.context(NETNS_DIR)?;
        names.extend(entry.file_name().to_str().map(str::to_string));
    }
    names.sort();
    Ok(names)
}

/// Whether the named network namespace exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// A command that runs `program` inside the network namespace `netns`
/// (`ip netns exec <netns> <program>`; add the program's arguments to it).
///
/// `ip netns exec` replaces itself with the program, so the child's pid is the
/// program's. Note that it also gives the program a fresh mount namespace with
/// `/sys` remounted for that network namespace.
pub fn netns_command(netns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(ip_binary());
    cmd.args(["netns", "exec", netns]).arg(program);
    cmd
}
