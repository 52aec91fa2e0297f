//! Network namespaces for tests: a named one that goes away with the test,
//! and a child process that starts inside one.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A named network namespace (`ip netns add`), deleted on drop, also when
/// the test panics. Its name carries `tag` and the process id, so parallel
/// tests never share one.
pub struct TempNetns {
    name: String,
}

impl TempNetns {
    pub fn new(tag: &str) -> Self {
        let name = format!("obs-{tag}-{}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(status.is_ok_and(|s| s.success()), "ip netns add {name}");
        TempNetns { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/var/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }
}

impl Drop for TempNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Makes `cmd`'s child enter the network namespace at `netns` before it
/// runs: unlike `ip netns exec`, which mounts a sysfs of its own, the
/// child still sees the host's mounts (a cgroup to join, for one).
pub fn start_in(cmd: &mut Command, netns: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(netns)?;
    // SAFETY: between fork and exec the child only calls setns, which takes
    // no lock and allocates nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(std::io::Error::from)
        });
    }
    Ok(())
}
