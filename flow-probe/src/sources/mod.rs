//! Where endpoints come from. Every source turns what it knows into the one
//! endpoint model, [`cluster_spec::endpoints::Endpoint`], so that everything
//! downstream (identities, policy, services, enrichment, attaching the tc
//! programs) never asks which source an endpoint came from.
//!
//! # Layout
//! Data moves top to bottom:
//! - [`file`]: the endpoints file (the lab writes it), sent whole at start and
//!   again on every change.
//! - [`docker`]: the containers of a Docker Engine API (Docker, or Podman's
//!   `podman system service`): the running ones, then the event stream;
//!   reconnects with backoff and keeps what it sent meanwhile.
//! - [`catalog`]: merges what every source sent into one endpoint list with
//!   unique ids; a conflict (an address or id two endpoints claim) is kept
//!   out and reported.
//! - [`attach`]: keeps the tc programs on exactly the host-side interfaces of
//!   this node's endpoints and publishes the [`EndpointSet`] that policy,
//!   services and enrichment follow.
//! - [`status`]: each source and each of this node's endpoints as
//!   `observe status` shows them.
//!
//! A source implements [`EndpointSource`]: it sends [`Update`]s through a
//! [`Sink`] until told to stop, and deals with its own failures (log, retry);
//! what it sent before stays in force meanwhile. A Kubernetes source (pods
//! through kube-rs) fits the same shape; ARCHITECTURE.md has the plan.

pub mod attach;
pub mod catalog;
pub mod docker;
pub mod file;
pub mod status;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use cluster_spec::endpoints::{Endpoint, EndpointsFile};
use tokio::sync::{mpsc, watch};

pub use attach::EndpointSet;
pub use status::{SourceState, SourceStates};

/// One endpoint as its source knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Unique in its source and stable for the endpoint's life (a container
    /// id, a file endpoint's id).
    pub key: String,
    /// The endpoint. A source without ids of its own leaves `id` at 0 and
    /// the catalog gives it one; `interface` is the host side of its veth.
    pub endpoint: Endpoint,
    /// The index of `interface`, when the source knows it: an interface of
    /// the same name with another index is a new one (a restarted container).
    pub ifindex: Option<u32>,
    /// The image a container runs (empty for other endpoints).
    pub image: String,
    /// Its network namespace as people see it (`net:[4026532…]`, an
    /// `ip netns` name), when known.
    pub netns: String,
    /// Where its network namespace can be opened (`/var/run/netns/NAME`,
    /// `/proc/PID/ns/net`), to learn the namespace's cookie: SOCK flows name
    /// the client of a socket not bound yet by it.
    pub netns_path: Option<PathBuf>,
    /// Why the endpoint cannot be attached (no veth found, host network);
    /// it still names its addresses in flows.
    pub problem: Option<String>,
}

impl Discovered {
    /// An endpoint without image, namespace or problem.
    pub fn new(key: impl Into<String>, endpoint: Endpoint) -> Self {
        Discovered {
            key: key.into(),
            endpoint,
            ifindex: None,
            image: String::new(),
            netns: String::new(),
            netns_path: None,
            problem: None,
        }
    }
}

/// What a source tells the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Everything the source knows now (at start, after reconnecting): what
    /// it sent before and is not here is gone.
    Replace(Vec<Discovered>),
    /// One endpoint appeared or changed.
    Upsert(Box<Discovered>),
    /// The endpoint with this key is gone.
    Remove(String),
}

/// Where a source sends its updates; tagged with the source's name.
#[derive(Debug, Clone)]
pub struct Sink {
    source: &'static str,
    tx: mpsc::Sender<(&'static str, Update)>,
    states: SourceStates,
}

impl Sink {
    /// A sink for `source` into `tx`, reporting its state to `states`.
    pub fn new(
        source: &'static str,
        tx: mpsc::Sender<(&'static str, Update)>,
        states: SourceStates,
    ) -> Self {
        Sink { source, tx, states }
    }

    /// Sends one update; false once nobody listens (the probe stops).
    pub async fn send(&self, update: Update) -> bool {
        self.tx.send((self.source, update)).await.is_ok()
    }

    /// What the source last reported.
    pub fn last_state(&self) -> Option<SourceState> {
        self.states.get(self.source)
    }

    /// Records how the source is doing, for `observe status`.
    pub fn report(&self, state: SourceState) {
        self.states.set(self.source, state);
    }
}

/// A source of endpoints.
pub trait EndpointSource: Send + 'static {
    /// Short name in logs and in `observe status` (`file`, `docker`).
    fn name(&self) -> &'static str;

    /// Sends what the source knows, then every change, until `stop`
    /// resolves. Failures are the source's own to log and retry; it never
    /// gives up while the probe runs.
    fn run(
        self,
        sink: Sink,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send;
}

/// Where the sources' updates meet: the catalog merges them, the
/// attachments follow, and the endpoint set is published.
pub struct Hub {
    tx: mpsc::Sender<(&'static str, Update)>,
    rx: mpsc::Receiver<(&'static str, Update)>,
    catalog: catalog::Catalog,
    attachments: attach::Attachments,
    states: SourceStates,
}

impl Hub {
    pub fn new(attachments: attach::Attachments) -> Self {
        let (tx, rx) = mpsc::channel(256);
        Hub {
            tx,
            rx,
            catalog: catalog::Catalog::new(),
            attachments,
            states: SourceStates::default(),
        }
    }

    /// Counts the endpoints incomplete until `source` has sent its first
    /// whole list (see [`EndpointSet::complete`]).
    pub fn await_first(&mut self, source: &'static str) {
        self.catalog.await_first(source);
    }

    /// Takes what a source read before the probe reports ready, attaches
    /// and publishes at once.
    pub async fn first(&mut self, source: &'static str, update: Update) {
        self.catalog.apply(source, update);
        self.attachments.reconcile(self.catalog.merged()).await;
    }

    /// Where the source named `source` sends its updates.
    pub fn sink(&self, source: &'static str) -> Sink {
        Sink::new(source, self.tx.clone(), self.states.clone())
    }

    /// Follows the published endpoint sets.
    pub fn subscribe(&self) -> EndpointWatch {
        self.attachments.subscribe()
    }

    /// Every source's state, for `observe status`.
    pub fn states(&self) -> SourceStates {
        self.states.clone()
    }

    /// Applies the sources' updates until `stop` resolves.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let Hub {
            tx,
            rx,
            catalog,
            attachments,
            ..
        } = self;
        drop(tx); // the sources hold theirs
        attach::run(rx, catalog, attachments, stop).await;
    }
}

/// The endpoint set in force, for whoever follows it.
pub type EndpointWatch = watch::Receiver<Arc<EndpointSet>>;

/// An [`EndpointWatch`] that holds `file` forever (tests and tools that read
/// one file and attach nothing).
pub fn fixed(file: &EndpointsFile) -> EndpointWatch {
    let set = EndpointSet {
        version: 1,
        file: file.clone(),
        ifindex_of: HashMap::new(),
        netns_cookies: HashMap::new(),
        link_local: HashMap::new(),
        host_addresses: Vec::new(),
        interfaces: Vec::new(),
        endpoints: Vec::new(),
        complete: true,
    };
    watch::Sender::new(Arc::new(set)).subscribe()
}
