//! Keeps the load balancer in step with the services file and the endpoints
//! file: both are read every [`POLL`], and any change is compiled and synced at
//! once, so new connections see added or removed backends within a poll. A file
//! that does not parse is reported (naming the file, the field and the problem)
//! and the services in force stay as they were. Write the files atomically
//! (temporary file, then rename) so a half-written file is never read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cluster_spec::endpoints::EndpointsFile;

use super::sync::{ServiceMaps, SyncReport};
use super::table::ServiceTable;
use cluster_spec::services::ServicesFile;
use cluster_spec::services::{CompiledServices, compile};

/// How often the files are checked for changes.
pub const POLL: Duration = Duration::from_millis(200);

/// Reads and compiles the two files.
pub fn load(services: &Path, endpoints: Option<&Path>) -> anyhow::Result<CompiledServices> {
    let file = ServicesFile::load(services)?;
    let eps = match endpoints {
        Some(p) => EndpointsFile::load(p)?,
        None => EndpointsFile::default(),
    };
    Ok(compile(&file, &eps))
}

/// Loads, compiles and syncs once; on error nothing changes.
pub fn apply(
    maps: Option<&mut ServiceMaps>,
    table: &ServiceTable,
    services: &Path,
    endpoints: Option<&Path>,
) -> anyhow::Result<Option<SyncReport>> {
    let compiled = load(services, endpoints)?;
    let report = match maps {
        Some(m) => Some(m.sync(&compiled).context("programming the load balancer")?),
        None => None,
    };
    let backends: usize = compiled.frontends.iter().map(|f| f.backends.len()).sum();
    match report {
        Some(r) => log::info!(
            "services in force: {} frontends, {backends} backends ({} frontends and {} backends written, {} and {} removed)",
            compiled.frontends.len(),
            r.frontends_written,
            r.backends_written,
            r.frontends_removed,
            r.backends_removed
        ),
        None => log::info!(
            "services known (no load balancer attached): {} frontends, {backends} backends",
            compiled.frontends.len()
        ),
    }
    table.set(compiled);
    Ok(report)
}

/// The bytes of both files (`None` for a missing one): any change shows.
fn snapshot(services: &Path, endpoints: Option<&Path>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        std::fs::read(services).ok(),
        endpoints.and_then(|p| std::fs::read(p).ok()),
    )
}

/// Applies the files now (see [`Watcher::start`]) and on every change after.
pub struct Watcher {
    maps: Option<ServiceMaps>,
    table: Arc<ServiceTable>,
    services: PathBuf,
    endpoints: Option<PathBuf>,
    seen: (Option<Vec<u8>>, Option<Vec<u8>>),
}

impl Watcher {
    /// Applies the files once, now (so the services are in force before the
    /// probe reports ready); a failure is logged and the pinned services stay.
    pub fn start(
        mut maps: Option<ServiceMaps>,
        table: Arc<ServiceTable>,
        services: PathBuf,
        endpoints: Option<PathBuf>,
    ) -> Self {
        let seen = snapshot(&services, endpoints.as_deref());
        if let Err(e) = apply(maps.as_mut(), &table, &services, endpoints.as_deref()) {
            log::error!("{e:#}; the pinned services stay in force");
        }
        Watcher {
            maps,
            table,
            services,
            endpoints,
            seen,
        }
    }

    /// Re-applies on every change of either file until `stop` resolves.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
            }
            let now = snapshot(&self.services, self.endpoints.as_deref());
            if now == self.seen {
                continue;
            }
            self.seen = now;
            let endpoints = self.endpoints.as_deref();
            if let Err(e) = apply(self.maps.as_mut(), &self.table, &self.services, endpoints) {
                log::error!("{e:#}; the previous services stay in force");
            }
        }
    }

    /// The maps, for tests and diagnostics.
    pub fn maps(&self) -> Option<&ServiceMaps> {
        self.maps.as_ref()
    }
}
