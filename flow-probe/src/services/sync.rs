//! Writes compiled services into the load balancer's maps without a window in
//! which a connect could pick a slot that holds nothing or a backend that was
//! already removed:
//!
//! 1. backends: every slot of the new state is written (new slots beyond the
//!    current count are unused until step 2; a rewritten slot is valid before
//!    and after);
//! 2. frontends: new frontends and new counts (or ids) are switched on;
//! 3. frontends that are gone are removed;
//! 4. backends that are gone (slots past a lowered count, old ids) are removed.

use std::collections::BTreeMap;

use aya::maps::{IterableMap, MapData};

use crate::kernel::events::{LbBackend, LbBackendKey, LbService, LbServiceKey};
use crate::kernel::sock_lb::LbMaps;

use cluster_spec::services::CompiledServices;

/// What one sync changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub frontends: usize,
    pub backends: usize,
    pub frontends_written: usize,
    pub frontends_removed: usize,
    pub backends_written: usize,
    pub backends_removed: usize,
}

/// Why a sync failed (the maps may then hold part of the new state, never an
/// inconsistent one: see the module's order).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("writing the service maps: {0}")]
    Map(#[from] aya::maps::MapError),
    /// Refused before anything was written.
    #[error(
        "{wanted} {what}, more than the load balancer's table holds ({capacity}); nothing was changed"
    )]
    Full {
        what: &'static str,
        wanted: usize,
        capacity: usize,
    },
}

/// Refuses `wanted` entries of `what` for a table that holds fewer.
fn room(what: &'static str, wanted: usize, map: &MapData) -> Result<(), SyncError> {
    let capacity = crate::kernel::capacity(map)?;
    if wanted > capacity {
        return Err(SyncError::Full {
            what,
            wanted,
            capacity,
        });
    }
    Ok(())
}

/// Owner of the `SERVICES` and `BACKENDS` maps.
pub struct ServiceMaps {
    maps: LbMaps,
}

impl ServiceMaps {
    pub fn new(maps: LbMaps) -> Self {
        ServiceMaps { maps }
    }

    /// Makes the maps hold exactly `compiled`.
    pub fn sync(&mut self, compiled: &CompiledServices) -> Result<SyncReport, SyncError> {
        let (services, backends) = super::entries::entries(compiled);
        let mut report = SyncReport {
            frontends: services.len(),
            backends: backends.len(),
            ..SyncReport::default()
        };
        let have_backends: BTreeMap<LbBackendKey, LbBackend> =
            self.maps.backends.iter().filter_map(Result::ok).collect();
        let have_services: BTreeMap<LbServiceKey, LbService> =
            self.maps.services.iter().filter_map(Result::ok).collect();
        // Before anything is written: a table that fills midway would leave
        // the services half old, half new. Gone entries are removed last
        // (steps 3 and 4), so old and new must fit together too.
        let new_frontends = services.keys().filter(|k| !have_services.contains_key(k));
        let new_backends = backends.keys().filter(|k| !have_backends.contains_key(k));
        let (frontends_map, backends_map) = (self.maps.services.map(), self.maps.backends.map());
        for (what, count, map) in [
            ("service frontends", services.len(), frontends_map),
            ("service backends", backends.len(), backends_map),
            (
                "service frontends, old and new together",
                have_services.len() + new_frontends.count(),
                frontends_map,
            ),
            (
                "service backends, old and new together",
                have_backends.len() + new_backends.count(),
                backends_map,
            ),
        ] {
            room(what, count, map)?;
        }

        for (k, v) in &backends {
            if have_backends.get(k) != Some(v) {
                self.maps.backends.insert(k, v, 0)?;
                report.backends_written += 1;
            }
        }
        for (k, v) in &services {
            if have_services.get(k) != Some(v) {
                self.maps.services.insert(k, v, 0)?;
                report.frontends_written += 1;
            }
        }
        for k in have_services.keys().filter(|k| !services.contains_key(k)) {
            self.maps.services.remove(k)?;
            report.frontends_removed += 1;
        }
        for k in have_backends.keys().filter(|k| !backends.contains_key(k)) {
            self.maps.backends.remove(k)?;
            report.backends_removed += 1;
        }
        Ok(report)
    }

    /// The frontends in the kernel now, with their backends by slot; for tests
    /// and diagnostics.
    pub fn snapshot(&self) -> Vec<(LbServiceKey, LbService, Vec<LbBackend>)> {
        snapshot(&self.maps)
    }
}

/// The frontends in `maps` with their backends by slot (missing slots skipped).
pub fn snapshot(maps: &LbMaps) -> Vec<(LbServiceKey, LbService, Vec<LbBackend>)> {
    let backends: BTreeMap<LbBackendKey, LbBackend> =
        maps.backends.iter().filter_map(Result::ok).collect();
    let mut out: Vec<_> = maps
        .services
        .iter()
        .filter_map(Result::ok)
        .map(|(k, v)| {
            let slots = (0..v.backend_count)
                .filter_map(|slot| {
                    backends
                        .get(&LbBackendKey {
                            service_id: v.service_id,
                            slot,
                            _pad0: [0; 2],
                        })
                        .copied()
                })
                .collect();
            (k, v, slots)
        })
        .collect();
    out.sort_by_key(|e| e.0);
    out
}
