//! The policies the nodes had in force, kept with the flows: every policy
//! state by version (its files and the endpoints it was compiled against,
//! `cluster_spec::policy::PolicyState`) and every time a node put one in
//! force (node, flow-probe run, generation, version, time). Flows name the
//! state they passed under (`policy_version`); a what-if
//! ([`crate::sql::whatif`]) compiles it again and replays them against it.
//! The relay learns them from the probes ([`crate::policy_record`]).
//!
//! Kept under `<dir>/policies/`: `<version>.json` per state (written once)
//! and `in-force.tsv` (node, run, generation, version, applied ns; one line
//! each, rewritten on every change), each written under a hidden temporary
//! name, fsynced and renamed, owner-only like the rest of history. A state
//! whose content does not hash to its version is refused.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use cluster_spec::policy::{PolicyFile, PolicyState};
use serde::{Deserialize, Serialize};

use observer_proto::tsv;

use super::files;

/// The folder in the history directory.
pub const DIR: &str = "policies";
/// The list of times a state was put in force.
pub const IN_FORCE: &str = "in-force.tsv";

/// One time a node put a state in force.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InForce {
    pub node: String,
    /// The flow-probe run (its start, Unix ns): generations restart with it.
    pub run: u64,
    pub generation: u64,
    pub version: String,
    /// When it was put in force, Unix ns.
    pub applied_ns: i64,
}

/// A state as its file holds it.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    version: String,
    files: Vec<PolicyFile>,
    /// The endpoints file's text.
    endpoints: String,
}

/// Why a state was not kept.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("policy state {version}: {error}")]
    Invalid {
        version: String,
        error: Box<cluster_spec::policy::StateError>,
    },
    #[error("policy state {claimed}: its content is version {actual}")]
    Mismatch { claimed: String, actual: String },
    #[error("policy state {version}: {error}")]
    Io { version: String, error: io::Error },
}

#[derive(Default)]
struct Inner {
    states: HashMap<String, Arc<PolicyState>>,
    in_force: BTreeSet<InForce>,
}

/// The policy states of one history.
pub struct PolicyStates {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// One record at a time: two peers with the same state write its file
    /// once (and never under the same temporary name at once).
    writing: Mutex<()>,
}

/// A version is hex digits only, so it is a safe file name.
fn valid_version(v: &str) -> bool {
    !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

impl std::fmt::Debug for PolicyStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PolicyStates({})", self.dir.display())
    }
}

impl PolicyStates {
    /// The states kept under `history_dir` (created if missing). A file
    /// that does not read back is skipped with a warning: its flows are
    /// reported as not replayable, the rest of history is not held back.
    pub fn open(history_dir: &Path) -> io::Result<PolicyStates> {
        let dir = history_dir.join(DIR);
        files::create_dir(&dir)?;
        let mut inner = Inner::default();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(version) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|v| valid_version(v))
            else {
                continue;
            };
            match read_state(&path, version) {
                Ok(state) => {
                    inner.states.insert(version.to_string(), Arc::new(state));
                }
                Err(e) => log::warn!("skipping policy state {}: {e}", path.display()),
            }
        }
        let in_force = dir.join(IN_FORCE);
        match std::fs::read(&in_force) {
            Ok(bytes) => inner.in_force = parse_in_force(&String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", in_force.display()),
                ));
            }
        }
        Ok(PolicyStates {
            dir,
            inner: Mutex::new(inner),
            writing: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state named `version`, if it was recorded.
    pub fn state(&self, version: &str) -> Option<Arc<PolicyState>> {
        self.lock().states.get(version).cloned()
    }

    /// Every time a state was put in force, by node, run and generation.
    pub fn in_force(&self) -> Vec<InForce> {
        self.lock().in_force.iter().cloned().collect()
    }

    /// The highest generation recorded for `node`'s run `run`.
    pub fn last_generation(&self, node: &str, run: u64) -> Option<u64> {
        self.lock()
            .in_force
            .iter()
            .filter(|f| f.node == node && f.run == run)
            .map(|f| f.generation)
            .max()
    }

    /// Keeps `state` as `version` (checked against its content) and records
    /// that `at` put it in force. Returns whether anything was new.
    pub fn record(&self, at: InForce, state: PolicyState) -> Result<bool, RecordError> {
        let version = at.version.clone();
        let invalid = |error| RecordError::Invalid {
            version: version.clone(),
            error: Box::new(error),
        };
        let actual = state.version().map_err(invalid)?;
        if actual != version {
            return Err(RecordError::Mismatch {
                claimed: version,
                actual,
            });
        }
        let io = |error| RecordError::Io {
            version: version.clone(),
            error,
        };
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let known = self.lock().states.contains_key(&version);
        if !known {
            let stored = Stored {
                version: version.clone(),
                files: state.files.clone(),
                endpoints: state.endpoints_yaml().map_err(invalid)?,
            };
            let json = serde_json::to_vec(&stored).map_err(|e| io(io::Error::other(e)))?;
            files::write_atomically(&self.dir, &format!("{version}.json"), &json).map_err(io)?;
            self.lock().states.insert(version.clone(), Arc::new(state));
        }
        let text = {
            let mut inner = self.lock();
            if !inner.in_force.insert(at) {
                return Ok(!known);
            }
            inner
                .in_force
                .iter()
                .map(|f| {
                    format!(
                        "{}\t{}\t{}\t{}\t{}\n",
                        tsv::field(&f.node),
                        f.run,
                        f.generation,
                        f.version,
                        f.applied_ns
                    )
                })
                .collect::<String>()
        };
        files::write_atomically(&self.dir, IN_FORCE, text.as_bytes()).map_err(io)?;
        Ok(true)
    }
}

fn read_state(path: &Path, version: &str) -> io::Result<PolicyState> {
    let stored: Stored = serde_json::from_slice(&std::fs::read(path)?).map_err(io::Error::other)?;
    let state =
        PolicyState::from_parts(stored.files, &stored.endpoints).map_err(io::Error::other)?;
    let actual = state.version().map_err(io::Error::other)?;
    if stored.version != version || actual != version {
        return Err(io::Error::other(format!(
            "its content is version {actual}, not {version}"
        )));
    }
    Ok(state)
}

/// The lines that parse (node, run, generation, version, applied ns).
fn parse_in_force(text: &str) -> BTreeSet<InForce> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let parsed = (|| match f[..] {
            [node, run, generation, version, applied] if valid_version(version) => Some(InForce {
                node: tsv::unfield(node),
                run: run.parse().ok()?,
                generation: generation.parse().ok()?,
                version: version.to_string(),
                applied_ns: applied.parse().ok()?,
            }),
            _ => None,
        })();
        match parsed {
            Some(p) => {
                out.insert(p);
            }
            None => log::warn!("skipping a line of {IN_FORCE} that does not parse: {line:?}"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn state(text: &str) -> PolicyState {
        PolicyState {
            files: vec![PolicyFile {
                name: "p.yaml".into(),
                text: text.into(),
            }],
            ..Default::default()
        }
    }

    fn at(node: &str, generation: u64, state: &PolicyState) -> InForce {
        InForce {
            node: node.into(),
            run: 7,
            generation,
            version: state.version().unwrap(),
            applied_ns: generation as i64 * 1000,
        }
    }

    #[test]
    fn states_and_their_times_in_force_survive_a_restart() {
        let dir = test_support::scratch::ScratchDir::new("history-policies");
        let p = PolicyStates::open(dir.path()).unwrap();
        let (a, b) = (state("a"), state("b"));
        assert!(p.record(at("n1", 1, &a), a.clone()).unwrap());
        assert!(p.record(at("n1", 2, &b), b.clone()).unwrap());
        // The same state on another node: a new time in force, one file.
        assert!(p.record(at("n2", 1, &a), a.clone()).unwrap());
        assert!(!p.record(at("n2", 1, &a), a.clone()).unwrap(), "known");
        assert_eq!(p.last_generation("n1", 7), Some(2));
        assert_eq!(p.last_generation("n1", 8), None);
        let version_a = a.version().unwrap();
        let file = dir.path().join(DIR).join(format!("{version_a}.json"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let again = PolicyStates::open(dir.path()).unwrap();
        assert_eq!(again.state(&version_a).as_deref(), Some(&a));
        assert_eq!(again.in_force(), p.in_force());
        assert_eq!(
            nodes_and_generations(&again),
            [
                ("n1".to_string(), 1),
                ("n1".to_string(), 2),
                ("n2".to_string(), 1)
            ]
        );
    }

    /// (node, generation) of each time in force, as read back.
    fn nodes_and_generations(p: &PolicyStates) -> Vec<(String, u64)> {
        p.in_force()
            .iter()
            .map(|f| (f.node.clone(), f.generation))
            .collect()
    }

    /// A peer names itself: a name holding a tab and a line break (which,
    /// written as is, read back as another node's record) is one record.
    #[test]
    fn a_node_name_with_a_line_break_is_one_record() {
        let dir = test_support::scratch::ScratchDir::new("history-policies-names");
        let p = PolicyStates::open(dir.path()).unwrap();
        let a = state("a");
        let name = format!("n1\nn2\t7\t9\t{}\t0\\", a.version().unwrap());
        assert!(p.record(at(&name, 1, &a), a.clone()).unwrap());
        let again = PolicyStates::open(dir.path()).unwrap();
        assert_eq!(nodes_and_generations(&again), [(name, 1)]);
    }

    #[test]
    fn peers_recording_one_state_at_once_all_count() {
        let dir = test_support::scratch::ScratchDir::new("history-policies-race");
        let p = Arc::new(PolicyStates::open(dir.path()).unwrap());
        let a = state("a");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (p, a) = (p.clone(), a.clone());
                std::thread::spawn(move || p.record(at(&format!("n{i}"), 1, &a), a))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(p.in_force().len(), 8);
        let again = PolicyStates::open(dir.path()).unwrap();
        assert_eq!(again.state(&a.version().unwrap()).as_deref(), Some(&a));
    }

    #[test]
    fn a_state_that_is_not_its_version_is_refused_and_a_damaged_file_skipped() {
        let dir = test_support::scratch::ScratchDir::new("history-policies-bad");
        let p = PolicyStates::open(dir.path()).unwrap();
        let (a, b) = (state("a"), state("b"));
        let err = p.record(at("n1", 1, &a), b).unwrap_err().to_string();
        assert!(err.contains("its content is version"), "{err}");
        assert!(p.in_force().is_empty());
        p.record(at("n1", 1, &a), a.clone()).unwrap();
        let version = a.version().unwrap();
        let file = dir.path().join(DIR).join(format!("{version}.json"));
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("\"a\"", "\"x\"")).unwrap();
        let again = PolicyStates::open(dir.path()).unwrap();
        assert_eq!(again.state(&version), None);
        assert_eq!(again.in_force().len(), 1, "the time in force stays");
    }
}
