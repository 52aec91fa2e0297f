//! Wiring of the flow-probe binary: configuration, start-up checks, and the
//! tasks that run until shutdown.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cluster_spec::endpoints::EndpointsFile;
use observer_proto::observe::v1::KernelFeature;

use crate::config_status::ConfigStates;
use crate::datapath::{Datapath, PolicyNames};
use crate::enrich::Enricher;
use crate::generation::Generation;
use crate::kernel::features::{FLOW_CAPTURE_NEEDS, KernelFeatures};
use crate::kernel::loader::{LoadedProbe, ProbeConfig};
use crate::kernel::tracepoints::NetnsFilter;
use crate::pipeline::{self, Pipeline};
use crate::policy_log::PolicyLog;
use crate::policy_watch::PolicyWatcher;
use crate::server::{self, NodeInfo, ObserverService};
use crate::sources::attach::{Attach, Attachments};
use crate::sources::docker::{DockerSource, veth};
use crate::sources::file::{self, FileSource};
use crate::sources::status::StatusBoard;
use crate::sources::{EndpointSource, Hub, Update};
use observer_runtime::agent_events::AgentEventLog;
use observer_runtime::store::FlowStore;
use observer_runtime::tls::ServerTls;

/// Everything the agent needs, validated.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    /// The cluster named in flows' endpoints (empty: none).
    pub cluster_name: String,
    /// This node's labels (`key=value`), in flows' `node_labels`.
    pub node_labels: Vec<String>,
    pub listen: std::net::SocketAddr,
    /// TLS (mTLS with client CAs) on the gRPC port; plaintext without.
    pub tls: Option<ServerTls>,
    /// gRPC connections served at once; past it new ones are closed.
    pub max_connections: usize,
    pub interfaces: Vec<String>,
    pub endpoints: Option<PathBuf>,
    /// Attach to the host-side interface of every endpoint of this node.
    pub attach_endpoints: bool,
    /// Written with the bound gRPC address once the probe is attached and serving.
    pub ready_file: Option<PathBuf>,
    /// Policy files (CiliumNetworkPolicy subset) to enforce, watched for changes.
    pub policy_dir: Option<PathBuf>,
    /// Services file (VIPs, ports, selectors) for the socket load balancer
    /// (attached to `probe.lb_cgroup`), watched for changes; its selectors
    /// follow the endpoints of every source.
    pub services: Option<PathBuf>,
    /// Follow the containers of a Docker Engine API (Docker or Podman):
    /// `Some(Some(socket))` at that socket, `Some(None)` at the first of
    /// [`crate::sources::docker::DEFAULT_SOCKETS`] that answers.
    pub containers: Option<Option<PathBuf>>,
    /// Only the containers with all of these labels (`key=value` or `key`).
    pub container_labels: Vec<String>,
    pub ring_capacity: usize,
    pub probe: ProbeConfig,
    /// Where `/metrics` is served (`None`: no metrics).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Written with the bound metrics address once serving.
    pub metrics_ready_file: Option<PathBuf>,
    pub metrics: crate::metrics::MetricsConfig,
}

/// How long flow capture waits for every endpoint source's first list before
/// it reads the ring anyway: a ring that fills meanwhile loses events, worse
/// than flows without names.
const FIRST_LISTS_WAIT: Duration = Duration::from_secs(30);

/// Returns once every endpoint source has sent its first whole list, or
/// after [`FIRST_LISTS_WAIT`] (saying so).
async fn every_source_listed(mut sets: crate::sources::EndpointWatch) {
    let listed = sets.wait_for(|s| s.complete);
    if tokio::time::timeout(FIRST_LISTS_WAIT, listed)
        .await
        .is_err()
    {
        log::warn!(
            "the container runtime has not listed its containers after {FIRST_LISTS_WAIT:?}: flows name no container until it does"
        );
    }
}

/// Keeps the tracepoint programs reporting from this node's endpoints'
/// network namespaces as endpoints come and go, until `stop` resolves.
async fn follow_endpoint_netns(
    mut filter: NetnsFilter,
    mut sets: crate::sources::EndpointWatch,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let paths: Vec<PathBuf> = sets
            .borrow_and_update()
            .endpoints
            .iter()
            .filter_map(|e| e.found.netns_path.clone())
            .collect();
        let (added, removed) = filter.follow(&paths);
        if added + removed > 0 {
            log::info!(
                "kernel drops and TCP lifecycle from {} network namespaces ({added} added, {removed} removed)",
                filter.watched().len()
            );
        }
        tokio::select! {
            () = &mut stop => return,
            changed = sets.changed() => if changed.is_err() { return },
        }
    }
}

/// Runs until `shutdown` resolves, then detaches everything.
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let features = KernelFeatures::probe();
    for f in &features.features {
        log::info!(
            "kernel feature {:<28} {}{}",
            f.name,
            if f.available { "yes" } else { "NO" },
            if f.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.detail)
            }
        );
    }
    let file_source = cfg.endpoints.clone().map(FileSource::new);
    let endpoints = match &file_source {
        Some(f) => f.load()?,
        None => EndpointsFile::default(),
    };
    let docker = match &cfg.containers {
        Some(socket) => {
            if let Some(ns) = &cfg.probe.netns {
                veth::check_own_netns(ns)?;
            }
            Some(
                DockerSource::new(socket.clone(), &cfg.node_name)
                    .with_labels(cfg.container_labels.clone()),
            )
        }
        None => None,
    };

    // Kernel drops and TCP lifecycle are this node's when they happen in
    // its endpoints' namespaces (or its own). Containers come later than
    // this list is read: their namespaces are followed as they come and go.
    let mut probe_cfg = cfg.probe.clone();
    probe_cfg.follow_endpoint_netns = docker.is_some();
    probe_cfg.drop_netns = match docker {
        Some(_) => cfg.probe.netns.clone().into_iter().collect(),
        None => endpoints
            .endpoints
            .iter()
            .filter(|e| e.node == cfg.node_name)
            .filter_map(|e| e.netns.clone())
            .chain(cfg.probe.netns.clone())
            .collect(),
    };

    let store = Arc::new(FlowStore::new(cfg.ring_capacity));
    let attaching = cfg.attach_endpoints || docker.is_some();
    // TCP lifecycle of the endpoints' own sockets, not the host's.
    probe_cfg.lifecycle_endpoints_only = attaching;
    let mut probe = match features.missing(FLOW_CAPTURE_NEEDS) {
        Some(missing) => {
            log::error!("flow capture disabled: the kernel lacks {missing}");
            None
        }
        None if cfg.interfaces.is_empty() && !attaching => {
            log::warn!(
                "no interface to attach to: give --interface, --attach-endpoints or --containers"
            );
            None
        }
        None => Some(
            LoadedProbe::start(&probe_cfg, &cfg.interfaces, &features)
                .context("starting the flow probe")?,
        ),
    };
    let metrics = Arc::new(crate::metrics::Metrics::new(&cfg.metrics));
    let attacher: Result<Arc<dyn Attach>, String> = match &probe {
        Some(p) if attaching => Ok(Arc::new(p.attacher())),
        Some(_) => Err("flow-probe attaches to endpoints only with --attach-endpoints".into()),
        None => Err("flow capture is off on this node".into()),
    };
    let fixed = probe
        .as_ref()
        .map(|p| p.attached.clone())
        .unwrap_or_default();
    for a in &fixed {
        log::info!(
            "attached to {} (ifindex {}, {:?})",
            a.ifname,
            a.ifindex,
            a.mode
        );
    }
    let gauge = metrics.clone();
    // The node's own addresses are where the programs attach: the
    // `--netns` namespace, or the probe's own.
    let host_netns = cfg
        .probe
        .netns
        .as_ref()
        .map(|n| std::path::Path::new("/var/run/netns").join(n));
    let attachments = Attachments::new(&cfg.node_name, attacher, fixed)
        .on_change(move |n| gauge.set_attached_programs(2 * n))
        .host_netns(host_netns);
    // The endpoints file's endpoints are attached before the probe reports
    // ready; containers come when the runtime has listed them.
    let mut hub = Hub::new(attachments);
    if docker.is_some() {
        hub.await_first("docker");
    }
    hub.first("file", Update::Replace(file::discovered(&endpoints)))
        .await;
    let names = Arc::new(PolicyNames::default());
    let mut enricher = Enricher::following(&cfg.node_name, hub.subscribe())
        .with_policy_names(names.clone())
        .with_cluster(&cfg.cluster_name, cfg.node_labels.clone());
    let mut datapath = None;
    let mut netns_filter = None;
    if let Some(p) = probe.as_mut() {
        if !p.adopted_maps.is_empty() {
            log::info!(
                "re-adopted pinned maps {:?}: their policy stayed in force",
                p.adopted_maps
            );
        }
        enricher.set_kernel_drop_reasons(p.kernel_drop_reasons.clone());
        netns_filter = p.take_netns_filter();
        datapath = p
            .take_datapath()
            .map(|maps| Datapath::new(maps, HashMap::new(), names.clone()));
    }

    // Told from here on: the start, then each change in force.
    let node_name = crate::flow_builder::absolute_node_name(&cfg.cluster_name, &cfg.node_name);
    let agent_events = AgentEventLog::new(&node_name, observer_runtime::agent_events::CAPACITY);
    agent_events.push([crate::agent_events::started(
        observer_proto::time::now_nanos(),
    )]);
    // Policy and services are in force before the probe reports ready.
    let policy_log = PolicyLog::new();
    enricher = enricher.with_policy_stamp(policy_log.stamp());
    let config_states = ConfigStates::default();
    let policies = datapath.map(|dp| {
        let generation = Generation::new().with_gauge(metrics.policy_generation());
        let (log, states) = (policy_log.clone(), config_states.clone());
        let dir = cfg.policy_dir.clone();
        let events = Some(agent_events.clone());
        PolicyWatcher::start(dp, dir, hub.subscribe(), generation, log, states, events)
    });
    let board = StatusBoard::new(
        hub.subscribe(),
        hub.states(),
        policies.as_ref().map(PolicyWatcher::applied),
    );
    let lb_maps = probe
        .as_mut()
        .and_then(|p| p.lb.as_mut())
        .and_then(|lb| lb.take_maps());
    let mut services = None;
    if let Some(path) = cfg.services.clone() {
        let table = Arc::new(crate::services::ServiceTable::new());
        enricher = enricher.with_services(table.clone());
        let maps = lb_maps.map(crate::services::ServiceMaps::new);
        services = Some(crate::services::watch::Watcher::start(
            maps,
            table,
            path,
            hub.subscribe(),
            Generation::new().with_gauge(metrics.services_generation()),
            config_states.clone(),
            Some(agent_events.clone()),
        ));
    } else if lb_maps.is_some() {
        log::warn!("the socket load balancer is attached but no --services file names any service");
    }

    let metrics_listener = match cfg.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("serving metrics on {addr}"))?;
            let bound = l.local_addr()?;
            log::info!("serving Prometheus metrics on http://{bound}/metrics");
            if let Some(path) = &cfg.metrics_ready_file {
                observer_runtime::ready_file::write(path, bound)?;
            }
            Some(l)
        }
        None => None,
    };
    // Checked before anything listens: a bad file is named at start-up.
    let grpc = observer_runtime::tls::server::builder(cfg.tls.as_ref())?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let bound = listener.local_addr()?;
    if let Some(warning) =
        observer_runtime::tls::server::exposed_plaintext(bound, cfg.tls.is_some())
    {
        log::warn!("{warning}");
    }
    log::info!(
        "serving observer.Observer on {bound} over {}",
        cfg.tls.as_ref().map_or("plaintext", ServerTls::describe)
    );
    if let Some(path) = &cfg.ready_file {
        observer_runtime::ready_file::write(path, bound)?;
    }
    let node = NodeInfo {
        // As in flows: `cluster/node` in a named cluster.
        name: node_name,
        address: bound.to_string(),
        version: concat!("flow-probe ", env!("CARGO_PKG_VERSION")).to_string(),
        started: Instant::now(),
        kernel_features: features
            .features
            .iter()
            .map(|f| KernelFeature {
                name: f.name.to_string(),
                available: f.available,
                detail: f.detail.clone(),
            })
            .collect(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The server stops after the capture, so that followers (the relay) get
    // what the capture stores last.
    let (serve_stop_tx, serve_stop_rx) = tokio::sync::watch::channel(false);
    let (captured_tx, captured_rx) = tokio::sync::watch::channel(false);
    let service = ObserverService::new(store.clone(), node, serve_stop_rx.clone())
        .with_endpoints(board)
        .with_config_states(config_states)
        .with_policy_log(policy_log)
        .with_metrics(metrics.clone())
        .with_agent_events(agent_events.clone());
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let serve = server::run(
        grpc,
        observer_runtime::accept::ServerListener {
            listener,
            max_connections: cfg.max_connections,
        },
        service,
        cfg.tls.is_some(),
        stopped(serve_stop_rx),
    );
    let sets = hub.subscribe();
    let capture = async {
        let captured = async {
            match probe.as_mut() {
                Some(p) => {
                    // Events wait in the ring meanwhile (a restarted probe's
                    // backlog among them), to be named after their endpoints.
                    tokio::select! {
                        () = every_source_listed(sets) => {}
                        () = stopped(stop_rx.clone()) => return Ok(()),
                    }
                    let mut pipeline = Pipeline::new(enricher, store.clone());
                    pipeline.metrics = Some(metrics.clone());
                    pipeline::run(
                        p,
                        pipeline,
                        Duration::from_secs(1),
                        stopped(stop_rx.clone()),
                    )
                    .await
                    .map(|_| ())
                }
                None => Ok(()),
            }
        }
        .await;
        if *stop_rx.borrow() {
            // Detached now (unless it persists), not after the server's
            // grace: a packet meanwhile would go uncounted and untold.
            drop(probe.take());
        }
        let _ = captured_tx.send(true);
        captured
    };
    let policies = async {
        if let Some(w) = policies {
            w.run(stopped(stop_rx.clone())).await;
        }
    };
    let services = async {
        if let Some(w) = services {
            w.run(stopped(stop_rx.clone())).await;
        }
    };
    let endpoint_events = crate::agent_events::follow_endpoints(
        hub.subscribe(),
        agent_events,
        stopped(stop_rx.clone()),
    );
    let netns_sets = hub.subscribe();
    let netns = async {
        if let Some(f) = netns_filter {
            follow_endpoint_netns(f, netns_sets, stopped(stop_rx.clone())).await;
        }
    };
    let file_sink = hub.sink("file");
    let docker_sink = hub.sink("docker");
    let sources = async {
        let file = async {
            if let Some(f) = file_source {
                f.run(file_sink, stopped(stop_rx.clone())).await;
            }
        };
        let docker = async {
            if let Some(d) = docker {
                d.run(docker_sink, stopped(stop_rx.clone())).await;
            }
        };
        tokio::join!(file, docker, hub.run(stopped(stop_rx.clone())));
    };
    let serve_metrics = async {
        if let Some(l) = metrics_listener {
            let m = metrics.clone();
            // A HEAD looks: it takes no new series' first 0 from a scraper.
            let render = Arc::new(move |ask| match ask {
                observer_runtime::metrics_http::Ask::Scrape => m.render(),
                observer_runtime::metrics_http::Ask::Look => m.encode(),
            });
            observer_runtime::metrics_http::serve(l, render, stopped(stop_rx.clone())).await;
        }
    };
    let trigger = async {
        shutdown.await;
        log::info!("shutting down");
        let _ = stop_tx.send(true);
        stopped(captured_rx).await;
        let _ = serve_stop_tx.send(true);
    };
    let (served, captured, (), (), (), (), (), (), ()) = tokio::join!(
        serve,
        capture,
        policies,
        services,
        endpoint_events,
        netns,
        serve_metrics,
        trigger,
        sources
    );
    drop(probe); // detaches every program, if the capture did not
    served?;
    captured
}
