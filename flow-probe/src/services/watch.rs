//! Keeps the load balancer in step with the services file and the
//! endpoints: both are applied at start ([`Watcher::start`]), then on every
//! change of the file [`crate::file_watch`] reports and on every endpoint set
//! the sources publish ([`crate::sources`]), so new connections see added or
//! removed backends at once. A file that does not parse is reported (naming
//! the file, the field and the problem) and the services in force stay as
//! they were. Each distinct set of services put in force advances the
//! services [`Generation`], and tells its changed frontends as agent events
//! ([`crate::agent_events::service_changes`]). Write the file atomically
//! (temporary file, then rename) or in one write: a change is read when the
//! file is closed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cluster_spec::endpoints::EndpointsFile;
use observer_runtime::agent_events::AgentEventLog;

use super::sync::{ServiceMaps, SyncReport};
use super::table::ServiceTable;
use crate::config_status::ConfigStates;
use crate::file_watch::FileWatch;
use crate::generation::{Generation, InForce};
use crate::sources::EndpointWatch;
use cluster_spec::services::ServicesFile;
use cluster_spec::services::{CompiledServices, compile};

/// Reads the services file and compiles it against `endpoints`.
pub fn load(services: &Path, endpoints: &EndpointsFile) -> anyhow::Result<CompiledServices> {
    let file = ServicesFile::load(services)?;
    Ok(compile(&file, endpoints))
}

/// Loads, compiles and syncs once; on error nothing changes. Returns the
/// services now in force, with what the sync changed.
pub fn apply(
    maps: Option<&mut ServiceMaps>,
    table: &ServiceTable,
    services: &Path,
    endpoints: &EndpointsFile,
) -> anyhow::Result<(CompiledServices, Option<SyncReport>)> {
    let compiled = load(services, endpoints)?;
    let report = match maps {
        Some(m) => Some(m.sync(&compiled).context("programming the load balancer")?),
        None => None,
    };
    table.set(compiled.clone());
    Ok((compiled, report))
}

/// The file's bytes (`None` when missing or unreadable): any change shows.
fn snapshot(services: &Path) -> Option<Vec<u8>> {
    cluster_spec::input::read_bytes(services).ok()
}

/// Applies the file now (see [`Watcher::start`]) and on every change after.
pub struct Watcher {
    maps: Option<ServiceMaps>,
    table: Arc<ServiceTable>,
    services: PathBuf,
    endpoints: EndpointWatch,
    seen: Option<Vec<u8>>,
    in_force: InForce<CompiledServices>,
    watch: FileWatch,
    /// Where `observe status` learns whether the file is in force.
    states: ConfigStates,
    /// Where changed frontends are told.
    events: Option<Arc<AgentEventLog>>,
}

impl Watcher {
    /// Watches the file and applies it to the current endpoint set once,
    /// now (so the services are in force before the probe reports ready; a
    /// change from here on is seen); a failure is logged and the pinned
    /// services stay; what each apply changes is told to `events`. Needs a
    /// tokio runtime.
    pub fn start(
        maps: Option<ServiceMaps>,
        table: Arc<ServiceTable>,
        services: PathBuf,
        endpoints: EndpointWatch,
        generation: Generation,
        states: ConfigStates,
        events: Option<Arc<AgentEventLog>>,
    ) -> Self {
        let file = services.clone();
        let relevant = move |p: &Path| {
            p.file_name() == file.file_name()
                && FileWatch::folder_of(p) == FileWatch::folder_of(&file)
        };
        let watch = FileWatch::new(vec![FileWatch::folder_of(&services)], Arc::new(relevant));
        let mut w = Watcher {
            watch,
            seen: snapshot(&services),
            maps,
            table,
            services,
            endpoints,
            in_force: InForce::new(generation),
            states,
            events,
        };
        w.apply_and_tell("the pinned services stay in force");
        w
    }

    /// [`Self::apply`], with its outcome logged and told to `observe
    /// status`; `kept` says what stays in force after a failure.
    fn apply_and_tell(&mut self, kept: &str) {
        match self.apply() {
            Ok(Some(in_force)) => self.states.in_force("services", &self.services, in_force),
            Ok(None) => {}
            Err(e) => {
                log::error!("{e:#}; {kept}");
                let why = format!("{e:#}; {kept}");
                self.states.refused("services", &self.services, why);
            }
        }
    }

    /// Compiles the file against the latest endpoint set into the maps, and
    /// says what is in force (`None`: it waits for the endpoints).
    fn apply(&mut self) -> anyhow::Result<Option<String>> {
        let endpoints = self.endpoints.borrow_and_update().clone();
        if !endpoints.complete {
            log::info!(
                "services wait for every endpoint source's first list; those in the maps stay in force"
            );
            return Ok(None);
        }
        let (compiled, report) = apply(
            self.maps.as_mut(),
            &self.table,
            &self.services,
            &endpoints.file,
        )?;
        for why in &compiled.refused {
            log::error!("{}: {why}", self.services.display());
        }
        let frontends = compiled.frontends.len();
        let backends: usize = compiled.frontends.iter().map(|f| f.backends.len()).sum();
        let mut summary = format!("{frontends} frontends, {backends} backends in force");
        if let Some(first) = compiled.refused.first() {
            let more = compiled.refused.len() - 1;
            summary += &format!("; {} refused: {first}", compiled.refused.len());
            if more > 0 {
                summary += &format!(" (and {more} more in the log)");
            }
        }
        if let Some(log) = &self.events {
            let before = self.in_force.state().map_or(&[][..], |c| &c.frontends[..]);
            log.push(crate::agent_events::service_changes(
                before,
                &compiled.frontends,
            ));
        }
        let generation = self.in_force.put(compiled);
        summary += &format!("; generation {generation}");
        match report {
            Some(r) => log::info!(
                "services in force: {frontends} frontends, {backends} backends ({} frontends and {} backends written, {} and {} removed); generation {generation}",
                r.frontends_written,
                r.backends_written,
                r.frontends_removed,
                r.backends_removed
            ),
            None => log::info!(
                "services known (no load balancer attached): {frontends} frontends, {backends} backends; generation {generation}"
            ),
        }
        Ok(Some(summary))
    }

    /// Re-applies on every change of the file or the endpoints until `stop`
    /// resolves; returns the watcher (for tests and diagnostics).
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) -> Self {
        tokio::pin!(stop);
        let mut endpoints_open = true;
        loop {
            let services = &self.services;
            let (watch, seen, sets) = (&mut self.watch, &mut self.seen, &mut self.endpoints);
            let endpoints = async {
                if !endpoints_open || sets.changed().await.is_err() {
                    endpoints_open = false; // no more sets: the probe stops
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = &mut stop => return self,
                () = watch.changed(seen, || snapshot(services)) => {}
                () = endpoints => {}
            }
            self.apply_and_tell("the previous services stay in force");
        }
    }

    /// The maps, for tests and diagnostics.
    pub fn maps(&self) -> Option<&ServiceMaps> {
        self.maps.as_ref()
    }

    /// The services in force.
    pub fn in_force(&self) -> Option<&CompiledServices> {
        self.in_force.state()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_spec::services::ServiceRef;

    const ENDPOINTS: &str = "endpoints:\n\
- {id: 1, name: api-1, namespace: default, labels: {app: api}, ipv4: 198.18.1.11, node: n}\n\
- {id: 2, name: api-2, namespace: default, labels: {app: api}, ipv4: 198.18.1.12, node: n}\n";
    const SERVICES: &str = "services:\n\
- {name: api, namespace: default, vip: {ipv4: 198.18.100.10}, ports: [{port: 80, targetPort: 8080}], selector: {app: api}}\n";

    /// Backend addresses of the `api` service in `table`.
    fn backends(table: &ServiceTable) -> Vec<String> {
        let api = ServiceRef {
            namespace: "default".into(),
            name: "api".into(),
        };
        table
            .frontends_of(&api)
            .iter()
            .flat_map(|f| f.backends.iter().map(|b| format!("{}:{}", b.addr, b.port)))
            .collect()
    }

    #[tokio::test]
    async fn a_change_of_the_file_or_the_endpoints_is_in_force_when_the_generation_advances() {
        use crate::sources::file::{FileSource, discovered};
        use crate::sources::{EndpointSource, Hub, Update, attach::Attachments};

        let scratch = test_support::scratch::ScratchDir::new("services-watch");
        let dir = scratch.path();
        let (services, endpoints) = (dir.join("services.yaml"), dir.join("endpoints.yaml"));
        std::fs::write(&services, SERVICES).unwrap();
        std::fs::write(&endpoints, ENDPOINTS).unwrap();
        // The endpoints come from the endpoints file as a source, as in the probe.
        let mut hub = Hub::new(Attachments::new("n", Err("off".into()), Vec::new()));
        let file = FileSource::new(endpoints.clone());
        hub.first("file", Update::Replace(discovered(&file.load().unwrap())))
            .await;
        let table = Arc::new(ServiceTable::new());
        let generation = Generation::new();
        let mut applied = generation.subscribe();
        let states = ConfigStates::default();
        let events = AgentEventLog::new("n", 100);
        let w = Watcher::start(
            None,
            table.clone(),
            services.clone(),
            hub.subscribe(),
            generation,
            states.clone(),
            Some(events.clone()),
        );
        assert_eq!(*applied.borrow_and_update(), 1, "in force at start");
        assert_eq!(backends(&table), ["198.18.1.11:8080", "198.18.1.12:8080"]);
        // Each frontend put in force or changed, as agent events.
        let told_events = |log: &AgentEventLog| -> Vec<String> {
            use observer_proto::flow::agent_event::Notification;
            log.snapshot()
                .iter()
                .map(|r| match &r.agent_event.as_ref().unwrap().notification {
                    Some(Notification::ServiceUpsert(u)) => {
                        let at = |a: &observer_proto::flow::ServiceUpsertNotificationAddr| {
                            format!("{}:{}", a.ip, a.port)
                        };
                        format!(
                            "upsert {}/{} {} -> {:?}",
                            u.namespace,
                            u.name,
                            at(u.frontend_address.as_ref().unwrap()),
                            u.backend_addresses.iter().map(at).collect::<Vec<_>>()
                        )
                    }
                    other => format!("{other:?}"),
                })
                .collect()
        };
        let upsert =
            |backends: &str| format!("upsert default/api 198.18.100.10:80 -> [{backends}]");
        assert_eq!(
            told_events(&events),
            [upsert(r#""198.18.1.11:8080", "198.18.1.12:8080""#)]
        );
        let told = |states: &ConfigStates| {
            let rows = states.rows();
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!(rows[0].name, "services");
            assert_eq!(rows[0].path, services.display().to_string());
            (rows[0].in_force, rows[0].detail.clone())
        };
        assert_eq!(
            told(&states),
            (
                true,
                "1 frontends, 2 backends in force; generation 1".to_string()
            )
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let sink = hub.sink("file");
        let source = tokio::spawn(file.run(sink, stop(stop_rx.clone())));
        let hub = tokio::spawn(hub.run(stop(stop_rx.clone())));
        let running = tokio::spawn(w.run(stop(stop_rx.clone())));
        // Sooner than the re-check: the watch saw it.
        let mut next = async |n: u64| {
            let wait = applied.wait_for(|g| *g >= n);
            let seen = tokio::time::timeout(crate::file_watch::RECHECK / 2, wait).await;
            *seen.expect("applied before the re-check").unwrap()
        };

        // The endpoints file replaced atomically, without api-2.
        let tmp = dir.join("endpoints.yaml.tmp");
        std::fs::write(
            &tmp,
            ENDPOINTS.lines().take(2).collect::<Vec<_>>().join("\n"),
        )
        .unwrap();
        std::fs::rename(&tmp, &endpoints).unwrap();
        assert_eq!(next(2).await, 2);
        assert_eq!(backends(&table), ["198.18.1.11:8080"]);
        assert_eq!(told_events(&events)[1..], [upsert(r#""198.18.1.11:8080""#)]);

        // The services file written in place: its selector matches nothing.
        std::fs::write(&services, SERVICES.replace("app: api", "app: gone")).unwrap();
        assert_eq!(next(3).await, 3);
        assert_eq!(backends(&table), Vec::<String>::new());
        assert_eq!(told_events(&events)[2..], [upsert("")]);

        // A file that does not parse: refused, and `observe status` says why.
        std::fs::write(&services, "services: [{name: api, vip: }\n").unwrap();
        let refused = async {
            while told(&states).0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(crate::file_watch::RECHECK / 2, refused)
            .await
            .expect("refused before the re-check");
        let (_, why) = told(&states);
        assert!(
            why.starts_with(&format!("services file {}", services.display()))
                && why.ends_with("; the previous services stay in force"),
            "{why}"
        );
        assert_eq!(*applied.borrow(), 3, "nothing new in force");
        assert_eq!(told_events(&events).len(), 3, "nothing new to tell");

        stop_tx.send(true).unwrap();
        let w = running.await.unwrap();
        source.await.unwrap();
        hub.await.unwrap();
        assert_eq!(w.in_force().map(|c| c.frontends.len()), Some(1));
        assert_eq!(w.in_force().unwrap().frontends[0].backends, []);
    }
}
