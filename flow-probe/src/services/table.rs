//! The services in force, as enrichment sees them: frontends by kernel id and
//! by address, and the endpoint behind each backend address. Shared between
//! the watcher, which replaces it on every change, and the pipeline, which
//! reads it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;

use cluster_spec::services::{CompiledServices, Frontend, ServiceRef};

/// (address, port, IP protocol) of a frontend.
pub type FrontendAddr = (IpAddr, u16, u8);

#[derive(Debug, Default)]
struct Index {
    compiled: CompiledServices,
    by_id: HashMap<u32, usize>,
    /// Frontends by their address.
    by_addr: HashMap<FrontendAddr, usize>,
    /// The endpoint behind each backend address.
    endpoint: HashMap<IpAddr, ServiceRef>,
}

/// The services in force; cheap to share (`Arc`) and to read.
#[derive(Debug, Default)]
pub struct ServiceTable {
    index: RwLock<Index>,
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
            index
                .by_addr
                .insert((f.vip, f.port, f.protocol.number()), i);
            for b in &f.backends {
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

    /// The service whose frontend is this address:port, as Cilium names the
    /// service of a flow (never for a backend's address).
    pub fn service_at(&self, frontend: FrontendAddr) -> Option<ServiceRef> {
        self.read(|i| {
            i.by_addr
                .get(&frontend)
                .map(|&n| i.compiled.frontends[n].service.clone())
        })
    }
}
