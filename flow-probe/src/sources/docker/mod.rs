//! The containers of a Docker Engine API over its unix socket: Docker's, or
//! Podman's (`podman system service`), which serves the same API.
//!
//! A session subscribes to the event stream, lists the running containers
//! (sent whole: what was known and is not running any more is gone), then
//! follows `start`, `rename` and `die` events and the network `connect` and
//! `disconnect` events of the containers it knows. An event for a container the runtime or
//! the source does not know, and any failure, gets a log line and a fresh
//! list after a [`Backoff`]; an unreachable or restarted runtime is tried
//! again the same way. What the source sent stays in force meanwhile, so the
//! probe keeps serving and enforcing for the containers it knows.
//!
//! - [`container`]: one inspected container → the endpoint model.
//! - [`events`]: what an event asks of the source.
//! - [`veth`]: the host side of a container's veth.

pub mod container;
pub mod events;
pub mod veth;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures::StreamExt;

use super::{Discovered, EndpointSource, Sink, SourceState, Update};
use events::{Wanted, short};
use observer_runtime::backoff::Backoff;

/// Where Docker and Podman (rootful) serve their API, tried in this order.
pub const DEFAULT_SOCKETS: [&str; 2] = ["/run/docker.sock", "/run/podman/podman.sock"];

/// First wait before trying the runtime again, and the longest.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// Seconds a request may take.
const REQUEST_TIMEOUT: u64 = 30;

/// The containers of one runtime, as endpoints of `node`.
#[derive(Debug, Clone)]
pub struct DockerSource {
    /// Sockets to try, in order; the first that answers is used.
    sockets: Vec<PathBuf>,
    node: String,
    /// Only containers with all of these labels (`key=value` or `key`).
    labels: Vec<String>,
}

/// Why a session ended.
enum Ended {
    /// The probe stops.
    Stopped,
    /// The runtime went away or failed; try again.
    Failed(anyhow::Error),
}

impl DockerSource {
    /// `socket`: the API's unix socket; `None` tries [`DEFAULT_SOCKETS`].
    pub fn new(socket: Option<PathBuf>, node: &str) -> Self {
        DockerSource {
            sockets: match socket {
                Some(s) => vec![s],
                None => DEFAULT_SOCKETS.iter().map(PathBuf::from).collect(),
            },
            node: node.to_string(),
            labels: Vec::new(),
        }
    }

    /// Follows only the containers with all of these labels (`key=value`,
    /// or `key` for any value), as the runtime's own `label` filter.
    pub fn with_labels(mut self, labels: Vec<String>) -> Self {
        self.labels = labels;
        self
    }

    /// The API's filters for network events: all of them (a label filter
    /// would apply to the network's labels); the source keeps those of the
    /// containers it knows.
    fn network_filters() -> HashMap<String, Vec<String>> {
        HashMap::from([("type".to_string(), vec!["network".to_string()])])
    }

    /// The API's filters: containers (events only), with our labels.
    fn filters(&self, events: bool) -> HashMap<String, Vec<String>> {
        let mut f = HashMap::new();
        if events {
            f.insert("type".to_string(), vec!["container".to_string()]);
        }
        if !self.labels.is_empty() {
            f.insert("label".to_string(), self.labels.clone());
        }
        f
    }

    fn shown_sockets(&self) -> String {
        let all: Vec<String> = self
            .sockets
            .iter()
            .map(|s| s.display().to_string())
            .collect();
        all.join(" or ")
    }

    /// The first socket whose runtime answers, connected.
    async fn connect(&self) -> anyhow::Result<(Docker, PathBuf, String)> {
        let mut problems = Vec::new();
        for socket in &self.sockets {
            match connect(socket).await {
                Ok((docker, version)) => return Ok((docker, socket.clone(), version)),
                Err(e) => problems.push(format!("{}: {e:#}", socket.display())),
            }
        }
        anyhow::bail!("{}", problems.join("; "))
    }

    /// Every running container, inspected.
    async fn list(&self, docker: &Docker) -> anyhow::Result<Vec<Discovered>> {
        let running = docker
            .list_containers(Some(ListContainersOptions {
                filters: Some(self.filters(false)),
                ..Default::default()
            }))
            .await
            .context("listing containers")?;
        let mut out = Vec::new();
        for summary in running {
            let Some(id) = summary.id else { continue };
            match self.inspect(docker, &id).await {
                Ok(Some(d)) => out.push(d),
                Ok(None) => {} // stopped meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The endpoint of a running container; `None` when it no longer runs.
    async fn inspect(&self, docker: &Docker, id: &str) -> anyhow::Result<Option<Discovered>> {
        let c = docker
            .inspect_container(id, None)
            .await
            .with_context(|| format!("inspecting container {}", short(id)))?;
        if !c.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Ok(None);
        }
        let d = container::discovered(&c, &self.node, &veth::host_side);
        if let Some(problem) = &d.problem {
            log::warn!(
                "docker: container {} ({}/{}) {problem}: its traffic is not observed",
                short(&d.key),
                d.endpoint.namespace,
                d.endpoint.name
            );
        }
        Ok(Some(d))
    }

    /// One connection: list, then follow events until the runtime fails or
    /// `stop` resolves.
    async fn session(
        &self,
        sink: &Sink,
        backoff: &mut Backoff,
        stop: &mut (impl Future<Output = ()> + Unpin),
    ) -> Ended {
        let (docker, socket, version) = match self.connect().await {
            Ok(c) => c,
            Err(e) => return Ended::Failed(e),
        };
        let address = socket.display().to_string();
        // Subscribed before listing, so no start between the two is missed.
        let containers = docker.events(Some(EventsOptions {
            filters: Some(self.filters(true)),
            ..Default::default()
        }));
        let networks = docker.events(Some(EventsOptions {
            filters: Some(Self::network_filters()),
            ..Default::default()
        }));
        let mut events = Box::pin(futures::stream::select(containers, networks));
        let mut known: BTreeSet<String> = BTreeSet::new();
        // Of those, this node's (where nodes share a runtime, as in the lab,
        // the others' are known for their addresses): what status counts.
        let mut local: BTreeSet<String> = BTreeSet::new();
        let mut resync = Some(tokio::time::Instant::now());
        loop {
            let at = resync;
            let wait = async move {
                match at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut *stop => return Ended::Stopped,
                () = wait => {
                    resync = None;
                    match self.list(&docker).await {
                        Ok(all) => {
                            known = all.iter().map(|d| d.key.clone()).collect();
                            local = all
                                .iter()
                                .filter(|d| d.endpoint.node == self.node)
                                .map(|d| d.key.clone())
                                .collect();
                            log::info!(
                                "docker: {address} ({version}): {} running containers",
                                all.len()
                            );
                            sink.report(SourceState {
                                address: address.clone(),
                                connected: true,
                                detail: version.clone(),
                                endpoints: local.len(),
                            });
                            if !sink.send(Update::Replace(all)).await {
                                return Ended::Stopped;
                            }
                            backoff.reset();
                        }
                        Err(e) => return Ended::Failed(e),
                    }
                }
                event = events.next() => {
                    let event = match event {
                        Some(Ok(ev)) => ev,
                        Some(Err(e)) => return Ended::Failed(anyhow::Error::new(e).context("following events")),
                        None => return Ended::Failed(anyhow::anyhow!("the event stream ended")),
                    };
                    match self.on_event(&docker, &event, &mut known).await {
                        Ok(Some(update)) => {
                            match &update {
                                Update::Upsert(d) if d.endpoint.node == self.node => {
                                    local.insert(d.key.clone());
                                }
                                Update::Upsert(d) => {
                                    local.remove(&d.key);
                                }
                                Update::Remove(key) => {
                                    local.remove(key);
                                }
                                Update::Replace(_) => {}
                            }
                            sink.report(SourceState {
                                address: address.clone(),
                                connected: true,
                                detail: version.clone(),
                                endpoints: local.len(),
                            });
                            if !sink.send(update).await {
                                return Ended::Stopped;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let wait = backoff.next_delay();
                            log::warn!("docker: {e:#}; listing the containers again in {wait:?}");
                            resync.get_or_insert(tokio::time::Instant::now() + wait);
                        }
                    }
                }
            }
        }
    }

    /// What a container event changes; an error asks for a fresh list.
    async fn on_event(
        &self,
        docker: &Docker,
        event: &EventMessage,
        known: &mut BTreeSet<String>,
    ) -> anyhow::Result<Option<Update>> {
        match events::wanted(event, known) {
            Wanted::Inspect(id) => match self.inspect(docker, &id).await {
                Ok(Some(d)) => {
                    log::info!(
                        "docker: container {} started: {}/{} on {}",
                        short(&id),
                        d.endpoint.namespace,
                        d.endpoint.name,
                        d.endpoint.interface.as_deref().unwrap_or("no interface")
                    );
                    known.insert(id);
                    Ok(Some(Update::Upsert(Box::new(d))))
                }
                Ok(None) => Ok(None), // stopped already; its die follows
                Err(e) => Err(e.context(format!(
                    "start of container {} that the runtime cannot inspect",
                    short(&id)
                ))),
            },
            Wanted::Reinspect(id, why) => match self.inspect(docker, &id).await {
                Ok(Some(d)) => {
                    log::info!(
                        "docker: container {} changed ({why}): {}/{} on {}",
                        short(&id),
                        d.endpoint.namespace,
                        d.endpoint.name,
                        d.endpoint.interface.as_deref().unwrap_or("no interface")
                    );
                    Ok(Some(Update::Upsert(Box::new(d))))
                }
                Ok(None) => Ok(None), // stopped meanwhile; its die follows
                Err(e) => Err(e.context(format!(
                    "{why} of container {} that the runtime cannot inspect",
                    short(&id)
                ))),
            },
            Wanted::Remove(id) => {
                known.remove(&id);
                log::info!("docker: container {} stopped", short(&id));
                Ok(Some(Update::Remove(id)))
            }
            Wanted::Relist(why) => anyhow::bail!("{why}"),
            Wanted::Ignore => Ok(None),
        }
    }
}

/// Connects to the API at `socket` and agrees on a version; returns the
/// runtime's name and version for logs.
async fn connect(socket: &Path) -> anyhow::Result<(Docker, String)> {
    let path = socket.to_str().context("socket path is not UTF-8")?;
    let docker = Docker::connect_with_unix(path, REQUEST_TIMEOUT, bollard::API_DEFAULT_VERSION)?
        .negotiate_version()
        .await?;
    let v = docker.version().await?;
    let name = v
        .components
        .as_ref()
        .and_then(|c| c.first())
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "Docker Engine".to_string());
    let version = format!(
        "{name} {}, API {}",
        v.version.unwrap_or_default(),
        v.api_version.unwrap_or_default()
    );
    Ok((docker, version))
}

impl EndpointSource for DockerSource {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn run(self, sink: Sink, stop: impl Future<Output = ()> + Send + 'static) {
        let mut stop = Box::pin(stop);
        let mut backoff = Backoff::new(FIRST_RETRY, MAX_RETRY);
        loop {
            let e = match self.session(&sink, &mut backoff, &mut stop).await {
                Ended::Stopped => return,
                Ended::Failed(e) => e,
            };
            let wait = backoff.next_delay();
            let known = sink.last_state().map_or(0, |s| s.endpoints);
            log::warn!(
                "docker: container runtime at {} unreachable: {e:#}; keeping the {known} containers known, trying again in {wait:?}",
                self.shown_sockets()
            );
            sink.report(SourceState {
                address: self.shown_sockets(),
                connected: false,
                detail: format!("{e:#}"),
                endpoints: known,
            });
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
