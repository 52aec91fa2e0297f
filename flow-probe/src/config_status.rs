//! What `observe status` shows of the configuration files a probe follows
//! (the policy directory, the services file): whether what each holds now
//! is in force or was refused, and why. The watchers write it after each
//! attempt; without it a refused file showed only in the probe's log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use observer_proto::observe::v1::ConfigFileStatus;

/// Each file's last outcome, shared by the watchers and the status answer.
#[derive(Debug, Clone, Default)]
pub struct ConfigStates(Arc<Mutex<BTreeMap<&'static str, ConfigFileStatus>>>);

impl ConfigStates {
    /// `name`'s content at `path` is in force; `detail` says what that is.
    pub fn in_force(&self, name: &'static str, path: &Path, detail: String) {
        self.set(name, path, true, detail);
    }

    /// `name`'s content at `path` was refused (`why`); the previous stays.
    pub fn refused(&self, name: &'static str, path: &Path, why: String) {
        self.set(name, path, false, why);
    }

    fn set(&self, name: &'static str, path: &Path, in_force: bool, detail: String) {
        let status = ConfigFileStatus {
            name: name.to_string(),
            path: path.display().to_string(),
            in_force,
            detail,
        };
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, status);
    }

    /// Every file, by name.
    pub fn rows(&self) -> Vec<ConfigFileStatus> {
        let states = self.0.lock().unwrap_or_else(|p| p.into_inner());
        states.values().cloned().collect()
    }
}
