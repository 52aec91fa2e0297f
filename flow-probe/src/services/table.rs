//! The services in force, as enrichment sees them: frontends by kernel id, and
//! which frontends a backend address:port serves. Shared between the watcher,
//! which replaces it on every change, and the pipeline, which reads it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};

use cluster_spec::services::{CompiledServices, Frontend, ServiceRef};

/// (address, port, IP protocol) of a backend.
pub type BackendAddr = (IpAddr, u16, u8);

/// How many recent translations are remembered (to name the service a backend
/// was reached through when it serves several).
const RECENT: usize = 4096;

#[derive(Debug, Default)]
struct Index {
    compiled: CompiledServices,
    by_id: HashMap<u32, usize>,
    /// Frontend ids served by each backend, in service order.
    by_backend: HashMap<BackendAddr, Vec<u32>>,
    /// The endpoint behind each backend address.
    endpoint: HashMap<IpAddr, ServiceRef>,
}

#[derive(Debug, Default)]
struct Recent {
    map: HashMap<BackendAddr, u32>,
    order: VecDeque<BackendAddr>,
}

/// The services in force; cheap to share (`Arc`) and to read.
#[derive(Debug, Default)]
pub struct ServiceTable {
    index: RwLock<Index>,
    recent: Mutex<Recent>,
}

impl ServiceTable {
    pub fn new() -> Self {
        ServiceTable::default()
    }

    /// Replaces the services in force.
    pub fn set(&self, compiled: CompiledServices) {
        let mut index = Index::default();
        for (i, f) in compiled.frontends.iter().enumerate() {
            index.by_id.insert(f.id, i);
            for b in &f.backends {
                index
                    .by_backend
                    .entry((b.addr, b.port, f.protocol.number()))
                    .or_default()
                    .push(f.id);
                index.endpoint.insert(b.addr, b.endpoint.clone());
            }
        }
        index.compiled = compiled;
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
    }

    /// Whether no service is defined.
    pub fn is_empty(&self) -> bool {
        self.read(|i| i.compiled.frontends.is_empty())
    }

    fn read<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        f(&self.index.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The frontend with this kernel id.
    pub fn frontend(&self, id: u32) -> Option<Frontend> {
        self.read(|i| i.by_id.get(&id).map(|&n| i.compiled.frontends[n].clone()))
    }

    /// The frontends of a service.
    pub fn frontends_of(&self, service: &ServiceRef) -> Vec<Frontend> {
        self.read(|i| {
            i.compiled
                .frontends
                .iter()
                .filter(|f| &f.service == service)
                .cloned()
                .collect()
        })
    }

    /// The endpoint (namespace/name) behind a backend address.
    pub fn backend_endpoint(&self, addr: IpAddr) -> Option<ServiceRef> {
        self.read(|i| i.endpoint.get(&addr).cloned())
    }

    /// Remembers that a socket was sent to `backend` through frontend `id`.
    pub fn note_translation(&self, backend: BackendAddr, id: u32) {
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if r.map.insert(backend, id).is_none() {
            r.order.push_back(backend);
            if r.order.len() > RECENT
                && let Some(old) = r.order.pop_front()
            {
                r.map.remove(&old);
            }
        }
    }

    /// The service a backend address:port serves: the one it was last reached
    /// through if that still holds, else the first service (by namespace/name)
    /// that has it as a backend.
    pub fn service_of_backend(&self, backend: BackendAddr) -> Option<ServiceRef> {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .get(&backend)
            .copied();
        self.read(|i| {
            let ids = i.by_backend.get(&backend)?;
            let id = recent.filter(|r| ids.contains(r)).unwrap_or(ids[0]);
            i.by_id
                .get(&id)
                .map(|&n| i.compiled.frontends[n].service.clone())
        })
    }
}
