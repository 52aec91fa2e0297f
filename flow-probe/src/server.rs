//! The `observer.Observer` gRPC service over the flow store: GetFlows (history,
//! follow, filters, time window), GetAgentEvents (over the node's
//! [`AgentEventLog`]), ServerStatus, GetNodes, GetNamespaces; and
//! `peer.Peer`, listing this node alone (as a Cilium agent lists its cluster),
//! so a stock hubble-relay given this probe as `--peer-service` follows it.
//! Beside them `observe.v1.PolicyStates` ([`crate::policy_log`]).

use observer_runtime::namespaces::NamespaceMemory;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use observer_proto::flow::{LostEvent, LostEventSource};
use observer_proto::observe::v1::KernelFeature;
use observer_proto::observer::observer_server::{Observer, ObserverServer};
use observer_proto::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetFlowsRequest, GetFlowsResponse,
    GetNamespacesRequest, GetNamespacesResponse, GetNodesRequest, GetNodesResponse, Node,
    ServerStatusRequest, ServerStatusResponse, get_flows_response::ResponseTypes,
};
use observer_proto::peer::peer_server::PeerServer;
use observer_proto::relay::NodeState;
use observer_proto::time::nanos;
use observer_runtime::agent_events::{AgentEventLog, AgentEventQuery};
use observer_runtime::peer_service::{Address, Listing, PeerDirectory, PeerService, PeerTls};
use observer_runtime::query::{FlowQuery, UNTIL_GRACE};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::config_status::ConfigStates;
use crate::metrics::Metrics;
use crate::policy_log::{PolicyLog, PolicyStatesService};
use crate::sources::status::StatusBoard;
use observer_runtime::store::{Entry, FlowStore};

/// What a follow cut short by the probe's shutdown ends with.
pub const SHUTTING_DOWN: &str = "flow-probe is shutting down; the answer ends here";

/// What the service knows about the node it runs on.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub address: String,
    pub version: String,
    pub started: Instant,
    pub kernel_features: Vec<KernelFeature>,
}

pub struct ObserverService {
    store: Arc<FlowStore>,
    node: NodeInfo,
    /// This node's endpoints and their sources, for ServerStatus.
    endpoints: Option<StatusBoard>,
    /// The policies put in force, served as `observe.v1.PolicyStates`.
    policy_log: Option<Arc<PolicyLog>>,
    /// The policy directory's and services file's state, for ServerStatus.
    config: ConfigStates,
    /// Turns true at shutdown; following streams end then, so the server can stop.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The namespaces GetNamespaces answered within the hour.
    namespaces: NamespaceMemory,
    /// Counts what followers that fell behind missed.
    metrics: Option<Arc<Metrics>>,
    /// What changed in the agent, for GetAgentEvents.
    agent_events: Arc<AgentEventLog>,
}

/// How a follow that fell behind tells it: a lost-events record to its
/// client, and, as Hubble counts a reader that its ring left behind, in
/// `hubble_lost_events_total` ([`Metrics::follower_lagged`]).
struct Lag {
    node_name: String,
    metrics: Option<Arc<Metrics>>,
}

impl Lag {
    fn missed(&self, n: u64) -> GetFlowsResponse {
        if let Some(m) = &self.metrics {
            m.follower_lagged(n);
        }
        GetFlowsResponse {
            node_name: self.node_name.clone(),
            // When the loss was found: a time window then leaves it out.
            time: Some(observer_proto::time::timestamp(
                observer_proto::time::now_nanos(),
            )),
            response_types: Some(ResponseTypes::LostEvents(LostEvent {
                source: LostEventSource::ObserverEventsQueue as i32,
                num_events_lost: n,
                ..Default::default()
            })),
        }
    }
}

impl ObserverService {
    pub fn new(
        store: Arc<FlowStore>,
        node: NodeInfo,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        ObserverService {
            store,
            agent_events: AgentEventLog::new(&node.name, observer_runtime::agent_events::CAPACITY),
            node,
            endpoints: None,
            policy_log: None,
            config: ConfigStates::default(),
            stopping,
            namespaces: NamespaceMemory::default(),
            metrics: None,
        }
    }

    /// Serves these agent events (without: an empty log).
    pub fn with_agent_events(mut self, log: Arc<AgentEventLog>) -> Self {
        self.agent_events = log;
        self
    }

    /// Counts followers' losses in these metrics.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Reports this node's endpoints and their sources in ServerStatus.
    pub fn with_endpoints(mut self, board: StatusBoard) -> Self {
        self.endpoints = Some(board);
        self
    }

    /// Reports whether the policy directory and services file are in force.
    pub fn with_config_states(mut self, config: ConfigStates) -> Self {
        self.config = config;
        self
    }

    /// Serves the policies put in force (`observe.v1.PolicyStates`) too.
    pub fn with_policy_log(mut self, log: Arc<PolicyLog>) -> Self {
        self.policy_log = Some(log);
        self
    }

    pub fn into_server(self) -> ObserverServer<Self> {
        ObserverServer::new(self)
    }

    /// `peer.Peer` listing this node under the name GetNodes reports, at the
    /// address each client reached it at; with `tls`, its certificate is to
    /// be checked against that address's host.
    pub fn peer_service(&self, tls: bool) -> PeerServer<PeerService> {
        let peers = PeerDirectory::new();
        peers.set(
            &self.node.name,
            Listing {
                address: Address::WhereReached,
                tls: if tls {
                    PeerTls::HostOfAddress
                } else {
                    PeerTls::Off
                },
            },
        );
        peers.service(self.stopping.clone())
    }
}

/// Serves `observer.Observer`, `peer.Peer` and the gRPC health service on
/// `server` (plaintext or TLS, from
/// [`observer_runtime::tls::server::builder`]; `tls` says which) until
/// `shutdown` resolves (and its answers are sent, for at most
/// [`observer_runtime::shutdown::STOP_GRACE`]); a plain `TcpListener` serves
/// [`observer_runtime::accept::DEFAULT_MAX_CONNECTIONS`] connections at once.
pub async fn run(
    mut server: tonic::transport::Server,
    listener: impl Into<observer_runtime::accept::ServerListener>,
    service: ObserverService,
    tls: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // Backs off at the file-descriptor limit instead of spinning.
    let incoming = observer_runtime::accept::incoming(
        listener.into(),
        "gRPC listener",
        observer_runtime::accept::OPENING_WITHIN,
    );
    let peers = service.peer_service(tls);
    let policy_states = service
        .policy_log
        .clone()
        .map(|log| PolicyStatesService::new(log, &service.node.name).into_server());
    // Serving while it runs, as a Cilium agent's Hubble server.
    let health = observer_runtime::health::HealthService::new(
        &["observer.Observer", "peer.Peer"],
        std::sync::Arc::new(|| true),
    );
    let grace = observer_runtime::shutdown::Grace::new();
    let serve = server
        .add_service(service.into_server())
        .add_service(peers)
        .add_service(health.into_server())
        .add_optional_service(policy_states)
        .serve_with_incoming_shutdown(incoming, grace.signal(shutdown));
    grace.run(serve).await.transpose()?;
    Ok(())
}

/// Flows a second over the last minute (or the uptime, if shorter), from
/// the times of the flows in the ring. A full ring whose oldest flow is
/// younger than that covers less: its rate is over its own span, as Hubble
/// computes it (otherwise a busy node's rate stops at capacity / 60).
pub fn flow_rate(times: &[i128], now_ns: i128, uptime: Duration, full: bool) -> f64 {
    const MINUTE_NS: i128 = 60_000_000_000;
    let recent = times.iter().filter(|t| **t >= now_ns - MINUTE_NS).count();
    let mut span = uptime.as_secs_f64().clamp(1.0, 60.0);
    if full
        && let Some(oldest) = times.iter().min()
        && now_ns - oldest < MINUTE_NS
    {
        span = span.min(((now_ns - oldest) as f64 / 1e9).max(0.001));
    }
    recent as f64 / span
}

type FlowStream = Pin<Box<dyn Stream<Item = Result<GetFlowsResponse, Status>> + Send>>;
type AgentEventStream = Pin<Box<dyn Stream<Item = Result<GetAgentEventsResponse, Status>> + Send>>;

/// Answers a GetAgentEvents request from `log`: the past events it asks for,
/// then, with `follow`, each new one until `until` passes, the client goes
/// or `stopping` turns true. A follower that falls behind by more than the
/// log's queue misses events (logged).
fn agent_events_stream(
    log: &AgentEventLog,
    query: AgentEventQuery,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> AgentEventStream {
    let (past, live) = if query.follow {
        let (past, rx) = log.snapshot_and_follow();
        (past, Some(rx))
    } else {
        (log.snapshot(), None)
    };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        for r in query.history(past) {
            if tx.send(Ok((*r).clone())).await.is_err() {
                return;
            }
        }
        let Some(mut live) = live else { return };
        loop {
            let next = tokio::select! {
                next = live.recv() => Some(next),
                _ = stopping.wait_for(|s| *s) => None,
                // Events are rare: a client gone is noticed here, not at
                // the next send.
                () = tx.closed() => return,
                () = query.until_passed(Duration::ZERO) => return,
            };
            let Some(next) = next else {
                let _ = tx.send(Err(Status::unavailable(SHUTTING_DOWN))).await;
                return;
            };
            match next {
                Ok(r) if query.is_past_until(&r) => return,
                Ok(r) if query.selects(&r) => {
                    if tx.send(Ok((*r).clone())).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    log::warn!("an agent-events follower fell behind and missed {n} event(s)");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl Observer for ObserverService {
    type GetFlowsStream = FlowStream;
    type GetAgentEventsStream = AgentEventStream;

    async fn get_agent_events(
        &self,
        request: Request<GetAgentEventsRequest>,
    ) -> Result<Response<AgentEventStream>, Status> {
        let query = AgentEventQuery::parse(request.get_ref())?;
        Ok(Response::new(agent_events_stream(
            &self.agent_events,
            query,
            self.stopping.clone(),
        )))
    }

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<FlowStream>, Status> {
        // Filters are compiled and matched on the blocking pool: a large one
        // must not hold the async workers that ServerStatus needs.
        let query = FlowQuery::parse_off_workers(request.into_inner()).await?;
        let (ring, follow_rx) = if query.follow {
            let (ring, rx) = self.store.snapshot_and_follow();
            (ring, Some(rx))
        } else {
            (self.store.snapshot(), None)
        };
        let last_seq = ring.last().map(|e| e.seq);
        let (tx, rx) = mpsc::channel(256);
        let lag = Lag {
            node_name: self.node.name.clone(),
            metrics: self.metrics.clone(),
        };
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let (query, history) = match query.history_off_workers(ring).await {
                Ok(picked) => picked,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            for entry in history {
                // History is already masked by the query.
                if tx.send(Ok((*entry.response).clone())).await.is_err() {
                    return;
                }
            }
            if let Some(mut follow_rx) = follow_rx {
                let mut unsent = None;
                let end = tokio::select! {
                    () = follow(&query, &mut follow_rx, last_seq, &tx, &lag, &mut unsent) => {
                        FollowEnd::Done
                    }
                    // Quiet past `until`: nothing later comes to end it.
                    () = query.until_passed(UNTIL_GRACE) => FollowEnd::Until,
                    _ = stopping.wait_for(|s| *s) => FollowEnd::Stop,
                };
                match end {
                    FollowEnd::Done => {}
                    FollowEnd::Until => {
                        // What a slow reader has not taken yet is still from
                        // before `until` (forward stops at the first after).
                        let rest = send_stored(&query, follow_rx, last_seq, &tx, &lag, unsent);
                        let _ = tokio::time::timeout(UNTIL_QUEUE_GRACE, rest).await;
                    }
                    FollowEnd::Stop => {
                        // The capture has stopped: what it stored last (the
                        // connections' last reports) still goes out, then the
                        // end, unless the client reads too slowly for that.
                        let rest = async {
                            send_stored(&query, follow_rx, last_seq, &tx, &lag, unsent).await;
                            // Not a clean end: a follower must tell it from one.
                            let _ = tx.send(Err(Status::unavailable(SHUTTING_DOWN))).await;
                        };
                        let _ = tokio::time::timeout(LAST_FLOWS_GRACE, rest).await;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn server_status(
        &self,
        _: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let ring = self.store.snapshot();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let uptime = self.node.started.elapsed();
        // The rate of flows, as Hubble's (lost-events records left out).
        let times: Vec<i128> = ring
            .iter()
            .filter(|e| matches!(e.response.response_types, Some(ResponseTypes::Flow(_))))
            .filter_map(|e| e.response.time.as_ref().map(nanos))
            .collect();
        let full = ring.len() >= self.store.capacity();
        let flows_rate = flow_rate(&times, now.as_nanos() as i128, uptime, full);
        Ok(Response::new(ServerStatusResponse {
            num_flows: ring.len() as u64,
            max_flows: self.store.capacity() as u64,
            seen_flows: self.store.flows_seen(),
            uptime_ns: uptime.as_nanos() as u64,
            num_connected_nodes: Some(1),
            num_unavailable_nodes: Some(0),
            version: self.node.version.clone(),
            flows_rate,
            kernel_features: self.node.kernel_features.clone(),
            endpoints: self
                .endpoints
                .as_ref()
                .map(StatusBoard::endpoints)
                .unwrap_or_default(),
            endpoint_sources: self
                .endpoints
                .as_ref()
                .map(StatusBoard::sources)
                .unwrap_or_default(),
            config_files: self.config.rows(),
            ..Default::default()
        }))
    }

    async fn get_nodes(
        &self,
        _: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        let node = Node {
            name: self.node.name.clone(),
            version: self.node.version.clone(),
            address: self.node.address.clone(),
            state: NodeState::NodeConnected as i32,
            uptime_ns: self.node.started.elapsed().as_nanos() as u64,
            num_flows: self.store.len() as u64,
            max_flows: self.store.capacity() as u64,
            seen_flows: self.store.flows_seen(),
            // Itself, not a node it dials: no TLS to tell.
            tls: None,
        };
        Ok(Response::new(GetNodesResponse { nodes: vec![node] }))
    }

    async fn get_namespaces(
        &self,
        _: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        let namespaces = self
            .namespaces
            .note_and_list(&self.store.snapshot(), Instant::now());
        Ok(Response::new(GetNamespacesResponse { namespaces }))
    }
}

async fn follow(
    query: &FlowQuery,
    rx: &mut broadcast::Receiver<Entry>,
    after: Option<u64>,
    tx: &mpsc::Sender<Result<GetFlowsResponse, Status>>,
    lag: &Lag,
    unsent: &mut Option<Arc<GetFlowsResponse>>,
) {
    loop {
        let entry = match rx.recv().await {
            Ok(entry) => entry,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // This client fell behind; say how much it missed and go on.
                if tx.send(Ok(lag.missed(n))).await.is_err() {
                    return;
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !forward(query, &entry, after, tx, unsent).await {
            return;
        }
    }
}

/// Sends `entry` to a follow if its query selects it. False once the follow
/// is over: past its `until`, or the client gone. The response is kept in
/// `unsent` while it waits for room, so a stop that cuts the wait does not
/// lose it.
async fn forward(
    query: &FlowQuery,
    entry: &Entry,
    after: Option<u64>,
    tx: &mpsc::Sender<Result<GetFlowsResponse, Status>>,
    unsent: &mut Option<Arc<GetFlowsResponse>>,
) -> bool {
    if after.is_some_and(|a| entry.seq <= a) {
        return true;
    }
    if query.is_past_until(&entry.response) {
        return false;
    }
    if !query.selects(&entry.response) {
        return true;
    }
    let response = unsent.insert(query.respond(&entry.response));
    let sent = tx.send(Ok((**response).clone())).await.is_ok();
    *unsent = None;
    sent
}

/// How a follow ended: by itself (the client went, a flow past `until`),
/// quiet past `until`, or cut by the stop.
enum FollowEnd {
    Done,
    Until,
    Stop,
}

/// How long a follow quiet past its `until` may take to send what is queued
/// for it (a slow reader's backlog) before it ends.
const UNTIL_QUEUE_GRACE: Duration = Duration::from_secs(30);

/// How long a follow cut by the stop may take to send what the store holds
/// already and its end: a client that reads slower than that is cut.
const LAST_FLOWS_GRACE: Duration = Duration::from_secs(2);

/// Sends a follow's `unsent` entry and then every selected entry already
/// queued for it, without waiting for more; a lag is told as in a follow
/// (the capture's last reports come all at once).
async fn send_stored(
    query: &FlowQuery,
    mut rx: broadcast::Receiver<Entry>,
    after: Option<u64>,
    tx: &mpsc::Sender<Result<GetFlowsResponse, Status>>,
    lag: &Lag,
    unsent: Option<Arc<GetFlowsResponse>>,
) {
    if let Some(response) = unsent
        && tx.send(Ok((*response).clone())).await.is_err()
    {
        return;
    }
    loop {
        let sent = match rx.try_recv() {
            Ok(entry) => forward(query, &entry, after, tx, &mut None).await,
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                tx.send(Ok(lag.missed(n))).await.is_ok()
            }
            Err(_) => return,
        };
        if !sent {
            return;
        }
    }
}

/// The address the probe listens on by default, as Hubble's agent.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4244";

pub fn parse_listen(s: &str) -> anyhow::Result<SocketAddr> {
    s.parse()
        .map_err(|e| anyhow::anyhow!("invalid listen address {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn the_rate_is_over_the_minute_or_over_a_full_rings_span() {
        let now = 1_000 * S;
        let up = Duration::from_secs(600);
        // 30 flows in the last 30 s, the ring not full: over the minute.
        let sparse: Vec<i128> = (0..30).map(|i| now - i * S).collect();
        assert_eq!(flow_rate(&sparse, now, up, false), 0.5);
        // A full ring of 4,000 flows from the last 8 s: 500 a second, not
        // 4,000 / 60.
        let busy: Vec<i128> = (0..4_000).map(|i| now - i * 2_000_000).collect();
        assert_eq!(flow_rate(&busy, now, up, true), 4_000.0 / 7.998);
        // Not full: the same flows are all there were in the minute.
        assert_eq!(flow_rate(&busy, now, up, false), 4_000.0 / 60.0);
        // Up for 10 s: over the uptime.
        assert_eq!(
            flow_rate(&sparse[..10], now, Duration::from_secs(10), false),
            1.0
        );
    }
}
