//! The relay's `observer.Observer` service, the same API flow-probe serves,
//! answered for every peer at once.
//!
//! - `flows`: GetFlows: node-status events first, then the merged history,
//!   then (with follow) live flows interleaved with node-status changes.
//! - `status`: ServerStatus (the connected peers asked now) and GetNodes
//!   (their last polls).
//! - `namespaces`: GetNamespaces, the union over peers and the merged ring.
//! - `agent_events`: GetAgentEvents, the connected peers' merged in time.
//! - `older`: the flow history before the ring, for a `since` older than it.
//!
//! Arrow Flight SQL ([`crate::sql::flight`]), `peer.Peer` (the connected
//! peers, [`crate::peer::Peers::directory`], for a stock hubble-relay's
//! `--peer-service`) and the gRPC health service (serving while at least one
//! node is followed, as Hubble Relay's; `hubble status` checks it) are
//! served on the same address.

mod agent_events;
mod flows;
mod namespaces;
mod older;
mod status;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use observer_proto::observer::observer_server::{Observer, ObserverServer};
use observer_proto::observer::{
    GetAgentEventsRequest, GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest,
    GetNamespacesResponse, GetNodesRequest, GetNodesResponse, ServerStatusRequest,
    ServerStatusResponse,
};
use observer_runtime::health::HealthService;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::error::RelayError;
use crate::state::RelayState;

/// The stream GetFlows answers with.
pub type FlowStream = Pin<Box<dyn Stream<Item = Result<GetFlowsResponse, Status>> + Send>>;

/// The gRPC service over a [`RelayState`].
pub struct RelayService {
    state: Arc<RelayState>,
    /// Turns true when the server shuts down: ends following streams, which
    /// graceful shutdown waits for.
    stopping: watch::Receiver<bool>,
    /// The namespaces GetNamespaces answered within the hour.
    namespaces: observer_runtime::namespaces::NamespaceMemory,
    /// ServerStatus's calls to the peers in flight.
    status_asks: Arc<status::Asks>,
}

/// Serves `observer.Observer` and Flight SQL on `listener` through `grpc`
/// (plaintext or TLS, from [`observer_runtime::tls::server::builder`]) until
/// `shutdown` resolves (and its answers are sent, for at most
/// [`observer_runtime::shutdown::STOP_GRACE`]); a plain `TcpListener` serves
/// [`observer_runtime::accept::DEFAULT_MAX_CONNECTIONS`] connections at once.
/// The gRPC services the relay serves, as the health service names them.
const SERVICES: &[&str] = &[
    "observer.Observer",
    "peer.Peer",
    "arrow.flight.protocol.FlightService",
];

pub async fn run(
    mut grpc: tonic::transport::Server,
    listener: impl Into<observer_runtime::accept::ServerListener>,
    state: Arc<RelayState>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RelayError> {
    let (stop, stopping) = watch::channel(false);
    let sql = state.sql();
    let queries = sql.clone();
    let peers = state.peers().directory().service(stopping.clone());
    // As Hubble Relay: serving while it follows at least one node.
    let health = {
        let (state, stopping) = (state.clone(), stopping.clone());
        HealthService::new(
            SERVICES,
            Arc::new(move || {
                !*stopping.borrow()
                    && (state.peers().views())
                        .iter()
                        .any(|p| p.connected_since.is_some())
            }),
        )
    };
    let service = RelayService {
        state,
        stopping,
        namespaces: Default::default(),
        status_asks: Default::default(),
    };
    // Backs off at the file-descriptor limit instead of spinning.
    let incoming = observer_runtime::accept::incoming(
        listener.into(),
        "gRPC listener",
        observer_runtime::accept::OPENING_WITHIN,
    );
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
        // Running queries end now: graceful shutdown waits for their streams.
        queries.shutdown();
    };
    let grace = observer_runtime::shutdown::Grace::new();
    let serve = grpc
        .add_service(ObserverServer::new(service))
        .add_service(crate::sql::flight::service(sql))
        .add_service(peers)
        .add_service(health.into_server())
        .serve_with_incoming_shutdown(incoming, grace.signal(shutdown));
    grace.run(serve).await.transpose()?;
    Ok(())
}

#[tonic::async_trait]
impl Observer for RelayService {
    type GetFlowsStream = FlowStream;
    type GetAgentEventsStream = agent_events::AgentEventStream;

    async fn get_agent_events(
        &self,
        request: Request<GetAgentEventsRequest>,
    ) -> Result<Response<agent_events::AgentEventStream>, Status> {
        let query = observer_runtime::agent_events::AgentEventQuery::parse(request.get_ref())?;
        Ok(Response::new(
            agent_events::open(self.state.clone(), query, self.stopping.clone()).await,
        ))
    }

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<FlowStream>, Status> {
        // Compiled on the blocking pool: a filter of many thousand entries
        // never holds a worker ServerStatus and the peers need.
        let query =
            observer_runtime::query::FlowQuery::parse_off_workers(request.into_inner()).await?;
        let stream = flows::open(&self.state, query, self.stopping.clone());
        Ok(Response::new(stream))
    }

    async fn server_status(
        &self,
        _: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        Ok(Response::new(
            status::server_status(&self.state, &self.status_asks).await,
        ))
    }

    async fn get_nodes(
        &self,
        _: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        Ok(Response::new(GetNodesResponse {
            nodes: status::nodes(&self.state),
        }))
    }

    async fn get_namespaces(
        &self,
        _: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        Ok(Response::new(GetNamespacesResponse {
            namespaces: namespaces::union(&self.state, &self.namespaces).await,
        }))
    }
}
