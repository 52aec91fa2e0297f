//! The lab's cgroups: `<cgroup v2 mount>/<prefix>` (on a hybrid layout the v2
//! hierarchy is mounted at `/sys/fs/cgroup/unified`), with one child per node,
//! `<prefix>/<node>`. Each node's flow-probe attaches its socket load balancer
//! to its node's cgroup (`--lb-cgroup`), and the clients of traffic items that
//! go to a service run in child processes that join the cgroup of their
//! endpoint's node first: socket hooks apply per process cgroup, whatever
//! network namespace the socket lives in, so one cgroup for the whole lab had
//! every node's balancer translate (and report) every node's connects.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Where the cgroup v2 hierarchy is mounted, from `/proc/self/mounts`.
pub fn root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
    })
}

/// The cgroup of the lab with this prefix (it may not exist).
pub fn path_for(prefix: &str) -> PathBuf {
    root()
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup/unified"))
        .join(prefix)
}

/// Creates the lab's cgroup and one child per node in `nodes`.
pub fn create<'a>(prefix: &str, nodes: impl IntoIterator<Item = &'a str>) -> Result<PathBuf> {
    let Some(root) = root() else {
        bail!("no cgroup v2 hierarchy is mounted: the lab's service load balancing needs one");
    };
    let path = root.join(prefix);
    for node in nodes {
        let child = path.join(node);
        std::fs::create_dir_all(&child)
            .with_context(|| format!("creating cgroup {}", child.display()))?;
    }
    std::fs::create_dir_all(&path)
        .with_context(|| format!("creating cgroup {}", path.display()))?;
    Ok(path)
}

/// Moves this process into `cgroup` (all its threads).
pub fn join(cgroup: &Path) -> Result<()> {
    let procs = cgroup.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string())
        .with_context(|| format!("joining cgroup {}", cgroup.display()))
}

/// Whether this process is in `cgroup` (its cgroup v2 path, `0::/...`).
pub fn contains_self(cgroup: &Path) -> bool {
    let (Some(root), Ok(own)) = (root(), std::fs::read_to_string("/proc/self/cgroup")) else {
        return false;
    };
    let Ok(rel) = cgroup.strip_prefix(&root) else {
        return false;
    };
    own.lines()
        .filter_map(|l| l.strip_prefix("0::"))
        .any(|p| Path::new(p.trim_start_matches('/')) == rel)
}

/// Removes the lab's cgroup and its nodes' if they exist: processes still
/// in them go to the root cgroup first (a cgroup with tasks cannot be
/// removed).
pub fn remove(prefix: &str) -> Result<(), String> {
    let Some(root) = root() else { return Ok(()) };
    let path = root.join(prefix);
    if !path.exists() {
        return Ok(());
    }
    let children: Vec<PathBuf> = std::fs::read_dir(&path)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    for dir in children.iter().chain(std::iter::once(&path)) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            let _ = std::fs::write(root.join("cgroup.procs"), pid);
        }
    }
    for dir in children.iter().chain(std::iter::once(&path)) {
        remove_dir(dir)?;
    }
    Ok(())
}

/// Removes one empty cgroup, waiting a moment for an exiting task.
fn remove_dir(path: &Path) -> Result<(), String> {
    let mut last = None;
    for _ in 0..50 {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "removing cgroup {}: {}",
        path.display(),
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}
