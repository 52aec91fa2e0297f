//! Keeps the datapath in step with the policy directory and the endpoints:
//! the directory is applied once at start ([`PolicyWatcher::start`], before
//! the probe reports ready), then on every change [`crate::file_watch`]
//! reports and on every endpoint set the sources publish
//! ([`crate::sources`]), so a change is enforced at once. A file that does not parse is reported (naming the file,
//! the field and the problem) and the policy in force stays as it was. Each
//! distinct policy put in force advances the policy
//! [`Generation`] and is recorded, with the files and endpoints it came
//! from, in the [`PolicyLog`]. What changed (policies, ipcache entries) is
//! told as agent events ([`crate::agent_events`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cluster_spec::endpoints::EndpointsFile;
use cluster_spec::policy::{self, CompiledPolicy, IpcacheEntry, Policy, PolicyState};
use observer_runtime::agent_events::AgentEventLog;
use tokio::sync::watch;

use crate::agent_events;
use crate::config_status::ConfigStates;
use crate::datapath::Datapath;
use crate::file_watch::FileWatch;
use crate::generation::{Generation, InForce};
use crate::policy_log::PolicyLog;
use crate::sources::EndpointWatch;

/// Names, sizes and modification times of the policy files: changes when any
/// file is added, removed or written. Only the slow re-check reads it.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x == "yaml" || x == "yml")
        })
        .map(|e| {
            // Through a symlink: its target's size and time (a file linked
            // from elsewhere changes there, where no event of the folder's
            // tells; the re-check does).
            let meta = std::fs::metadata(e.path()).ok();
            (
                e.path(),
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            )
        })
        .collect();
    out.sort();
    out
}

/// Applies the policy directory to the datapath, now and on every change.
pub struct PolicyWatcher {
    datapath: Datapath,
    dir: Option<PathBuf>,
    endpoints: EndpointWatch,
    /// The endpoint set version the policy in force was compiled from.
    applied: watch::Sender<u64>,
    in_force: InForce<CompiledPolicy>,
    log: Arc<PolicyLog>,
    seen: Fingerprint,
    /// `None` without a directory.
    watch: Option<FileWatch>,
    /// Where `observe status` learns whether the directory is in force.
    states: ConfigStates,
    /// The directory's files that hold no policy, as last read (warned
    /// about when this changes).
    without_policies: Vec<String>,
    /// Where changes are told, and what was in force when last told.
    events: Option<Told>,
}

/// What the agent events last told was in force.
struct Told {
    log: Arc<AgentEventLog>,
    policies: Vec<Policy>,
    ipcache: Vec<IpcacheEntry>,
    endpoints: EndpointsFile,
}

impl PolicyWatcher {
    /// Watches the directory and applies it (none: no policy) to the
    /// current endpoint set once, now, so a change from here on is seen; a
    /// failure is logged and the pinned policy stays in force; what each
    /// apply changes is told to `events`. Needs a tokio runtime.
    pub fn start(
        datapath: Datapath,
        dir: Option<PathBuf>,
        endpoints: EndpointWatch,
        generation: Generation,
        log: Arc<PolicyLog>,
        states: ConfigStates,
        events: Option<Arc<AgentEventLog>>,
    ) -> Self {
        let every_file = Arc::new(|_: &Path| true);
        let mut w = PolicyWatcher {
            watch: dir.clone().map(|d| FileWatch::new(vec![d], every_file)),
            seen: dir.as_deref().map(fingerprint).unwrap_or_default(),
            datapath,
            dir,
            endpoints,
            applied: watch::Sender::new(0),
            in_force: InForce::new(generation),
            log,
            states,
            without_policies: Vec::new(),
            events: events.map(|log| Told {
                log,
                policies: Vec::new(),
                ipcache: Vec::new(),
                endpoints: EndpointsFile::default(),
            }),
        };
        w.apply_and_tell("the pinned policy stays in force");
        w
    }

    /// Which endpoint set the policy in force was compiled from (its version).
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// [`Self::apply`], with its outcome logged and told to `observe
    /// status`; `kept` says what stays in force after a failure.
    fn apply_and_tell(&mut self, kept: &str) {
        let dir = self.dir.clone().unwrap_or_default();
        match self.apply() {
            Ok(Some(in_force)) => self.states.in_force("policy", &dir, in_force),
            Ok(None) => {}
            Err(e) => {
                log::error!("{e:#}; {kept}");
                self.states
                    .refused("policy", &dir, format!("{e:#}; {kept}"));
            }
        }
    }

    /// Loads, compiles and syncs once against the latest endpoint set, and
    /// says what is in force (`None`: it waits for the endpoints); errors
    /// leave the datapath untouched.
    fn apply(&mut self) -> anyhow::Result<Option<String>> {
        let endpoints = self.endpoints.borrow_and_update().clone();
        if !endpoints.complete {
            // Compiled now, the policy would leave out endpoints not listed
            // yet: a restarted probe would open their pinned policy.
            log::info!(
                "policy waits for every endpoint source's first list; the policy in the maps stays in force"
            );
            return Ok(None);
        }
        let (state, loaded) = PolicyState::read(self.dir.as_deref(), endpoints.file.clone())?;
        let policies = loaded.policies;
        let dir = self.dir.clone().unwrap_or_default();
        if loaded.without_policies != self.without_policies {
            let new =
                (loaded.without_policies.iter()).filter(|n| !self.without_policies.contains(n));
            for name in new {
                log::warn!(
                    "policy file {}: holds no policy (empty, or only comments), so it enforces nothing",
                    dir.join(name).display()
                );
            }
            self.without_policies = loaded.without_policies;
        }
        self.datapath.set_ifindex_of(endpoints.ifindex_of.clone());
        let compiled = policy::compile(&policies, &endpoints.file);
        let report = self.datapath.sync(&compiled, &endpoints.file)?;
        self.applied.send_replace(endpoints.version);
        let ipcache =
            (self.events.as_ref()).map(|_| policy::ipcache::entries(&compiled, &endpoints.file));
        let (policy_count, rules) = (compiled.policies.len(), compiled.entries.len());
        let before = self.in_force.generation().get();
        let generation = self.in_force.put(compiled);
        if generation != before {
            self.log.record(generation, &state)?;
        }
        if let (Some(told), Some(ipcache)) = (self.events.as_mut(), ipcache) {
            let mut events = agent_events::policy_changes(&told.policies, &policies, generation);
            events.extend(agent_events::ipcache_changes(
                &told.ipcache,
                &ipcache,
                &told.endpoints,
                &endpoints.file,
            ));
            told.log.push(events);
            (told.policies, told.ipcache) = (policies, ipcache);
            told.endpoints = endpoints.file.clone();
        }
        log::info!(
            "policy in force: {policy_count} policies, {rules} rules ({} written, {} removed), {} endpoints; generation {generation}",
            report.rules_written,
            report.rules_removed,
            report.endpoints
        );
        let mut in_force =
            format!("{policy_count} policies, {rules} rules in force; generation {generation}");
        if !self.without_policies.is_empty() {
            let _ = write!(
                in_force,
                "; no policy in {}",
                self.without_policies.join(", ")
            );
        }
        Ok(Some(in_force))
    }

    /// Re-applies on every change of the directory or the endpoints until
    /// `stop` resolves.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        let mut watch = self.watch.take();
        let dir = self.dir.clone().unwrap_or_default();
        let mut endpoints_open = true;
        tokio::pin!(stop);
        loop {
            let (seen, sets) = (&mut self.seen, &mut self.endpoints);
            let files = async {
                match watch.as_mut() {
                    Some(w) => w.changed(seen, || fingerprint(&dir)).await,
                    None => std::future::pending().await,
                }
            };
            let endpoints = async {
                if !endpoints_open || sets.changed().await.is_err() {
                    endpoints_open = false; // no more sets: the probe stops
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = &mut stop => return,
                () = files => {}
                () = endpoints => {}
            }
            self.apply_and_tell("the previous policy stays in force");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn a_change_to_a_linked_files_target_elsewhere_is_seen() {
        let dir = test_support::scratch::ScratchDir::new("policy-fingerprint");
        let (folder, elsewhere) = (dir.path().join("policies"), dir.path().join("ext.yaml"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(&elsewhere, "one: 1\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, folder.join("link.yaml")).unwrap();
        let before = fingerprint(&folder);
        // Replaced as editors and config tools do: a new file renamed over it.
        let next = dir.path().join("ext.yaml.new");
        std::fs::write(&next, "one: 1\ntwo: 2\n").unwrap();
        std::fs::rename(&next, &elsewhere).unwrap();
        let after = fingerprint(&folder);
        assert_eq!(
            (before[0].1, after[0].1),
            (7, 14),
            "the target's size, not the link's"
        );
    }
}
