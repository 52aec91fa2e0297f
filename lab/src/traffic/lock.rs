//! One sender of a lab's traffic at a time: two would start the same
//! servers on the same ports in the same namespaces, and each would see
//! the other's items fail as "address in use".

use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use rustix::fs::{FlockOperation, flock};

/// The lock file in a lab's state directory; it holds the sender's pid.
pub const TRAFFIC_LOCK: &str = "traffic.lock";

/// Held while this process sends a lab's traffic (`observe lab traffic`,
/// the demo); let go when dropped or when the process ends.
#[derive(Debug)]
pub struct TrafficLock {
    _file: std::fs::File,
}

impl TrafficLock {
    /// Takes the lock of the lab in `state_dir`, or says which process
    /// holds it.
    pub fn take(state_dir: &Path) -> Result<TrafficLock> {
        let path = state_dir.join(TRAFFIC_LOCK);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // Made 0600 above; one an older version left open is narrowed.
        let mode = file.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("narrowing {}", path.display()))?;
        }
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("process {holder}")
                };
                bail!(
                    "{who} is already sending this lab's traffic (`observe lab traffic` or the \
                     demo): its servers hold the scenario's ports; wait for it to end or stop it"
                );
            }
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("locking {}", path.display()));
            }
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(TrafficLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use test_support::scratch::ScratchDir;

    use super::*;

    #[test]
    fn a_second_sender_is_told_who_holds_the_lab_and_may_go_once_it_ends() {
        let dir = ScratchDir::new("traffic-lock");
        let first = TrafficLock::take(dir.path()).unwrap();
        let err = TrafficLock::take(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "process {} is already sending this lab's traffic (`observe lab traffic` or \
                 the demo): its servers hold the scenario's ports; wait for it to end or stop it",
                std::process::id()
            )
        );
        let mode = std::fs::metadata(dir.path().join(TRAFFIC_LOCK))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(first);
        TrafficLock::take(dir.path()).expect("free once the first is dropped");
    }
}
