//! The relay in-process on 127.0.0.1:0 ([`RelayUnderTest`]), with a
//! following client ([`crate::follower`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::observer::{
    GetFlowsRequest, GetFlowsResponse, ServerStatusRequest, ServerStatusResponse,
};
use observer_runtime::tls::ClientTls;
use relay::{PeerOptions, Relay, RelayConfig, RelayState};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::WAIT;
use crate::follower::Follower;

/// The relay in-process, serving on 127.0.0.1:0.
pub struct RelayUnderTest {
    relay: Option<Relay>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), relay::RelayError>>>,
}

impl RelayUnderTest {
    /// A relay over `peers` (flow-probe addresses, plaintext), polling their
    /// status every 300 ms and retrying at least every second.
    pub async fn start(peers: Vec<String>) -> Self {
        Self::start_with(peers, None).await
    }

    /// [`RelayUnderTest::start`], dialling the peers with `peer_tls` (a
    /// lab's: [`observe_cli::connect::lab_tls`]). It serves plaintext itself.
    pub async fn start_with(peers: Vec<String>, peer_tls: Option<ClientTls>) -> Self {
        Self::start_config(Self::config(peers, peer_tls)).await
    }

    /// The configuration [`RelayUnderTest::start_with`] uses, to change
    /// before [`RelayUnderTest::start_config`].
    pub fn config(peers: Vec<String>, peer_tls: Option<ClientTls>) -> RelayConfig {
        RelayConfig {
            peer: PeerOptions {
                status_interval: Duration::from_millis(300),
                backoff_max: Duration::from_secs(1),
                tls: peer_tls,
                ..PeerOptions::default()
            },
            ..RelayConfig::new(peers)
        }
    }

    /// The relay with `cfg`, serving plaintext on 127.0.0.1:0.
    pub async fn start_config(cfg: RelayConfig) -> Self {
        let relay = Relay::start(&cfg).expect("relay starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(relay::server::run(
            tonic::transport::Server::builder(),
            listener,
            relay.state(),
            async {
                let _ = stopped.await;
            },
        ));
        RelayUnderTest {
            relay: Some(relay),
            addr,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Where the relay serves gRPC (for the `observe` binary's `--server`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> Arc<RelayState> {
        self.relay.as_ref().expect("running").state()
    }

    pub async fn client(&self) -> ObserverClient<Channel> {
        ObserverClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect to the relay")
    }

    /// A whole non-following answer.
    pub async fn get_flows(&self, req: GetFlowsRequest) -> Vec<GetFlowsResponse> {
        let mut stream = self
            .client()
            .await
            .get_flows(req)
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        while let Some(r) = stream.message().await.expect("GetFlows stream") {
            out.push(r);
        }
        out
    }

    pub async fn status(&self) -> ServerStatusResponse {
        self.client()
            .await
            .server_status(ServerStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// Polls ServerStatus until `pred` holds.
    pub async fn wait_status(
        &self,
        what: &str,
        pred: impl Fn(&ServerStatusResponse) -> bool,
    ) -> ServerStatusResponse {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.status().await;
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn follow(&self) -> Follower {
        let req = GetFlowsRequest {
            follow: true,
            ..Default::default()
        };
        let mut stream = self
            .client()
            .await
            .get_flows(req)
            .await
            .unwrap()
            .into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(Some(r)) = stream.message().await {
                if tx.send(r).is_err() {
                    return;
                }
            }
        });
        Follower::new(rx, task)
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().expect("server ends cleanly");
        }
        if let Some(relay) = self.relay.take() {
            relay.shutdown().await;
        }
    }
}
