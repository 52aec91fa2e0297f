//! For tests that load the probe in-process (no flow-probe binary): an
//! enricher that knows the probe's interfaces, as the agent's does, and the
//! namespaces whose drops it reports; and flow-probe's gRPC service over a
//! store of made-up flows ([`serve_probe`]), for tests of the relay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flow_probe::enrich::Enricher;
use flow_probe::kernel::loader::LoadedProbe;
use flow_probe::server::{NodeInfo, ObserverService};
use observe_lab::Lab;
use observer_runtime::agent_events::AgentEventLog;
use observer_runtime::store::FlowStore;

/// An enricher that knows the probe's interfaces and the endpoints behind them.
pub fn enricher_for(probe: &LoadedProbe, lab: &Lab) -> Enricher {
    let file = lab.endpoints_file();
    let mut enricher = Enricher::new("node1", &file);
    for a in &probe.attached {
        let ep = file
            .endpoints
            .iter()
            .find(|e| e.interface.as_deref() == Some(a.ifname.as_str()));
        enricher.add_interface(
            a.ifindex,
            &a.ifname,
            ep.and_then(|e| e.ipv4).map(std::net::IpAddr::V4),
        );
    }
    enricher
}

/// The namespaces of `lab`'s endpoints and of node1, for `ProbeConfig::drop_netns`:
/// left empty, the drop and TCP tracepoints report every namespace, parallel
/// tests' labs (with the same addresses) included.
pub fn watched_netns(lab: &Lab) -> Vec<String> {
    let endpoints = lab
        .endpoints_file()
        .endpoints
        .into_iter()
        .filter_map(|e| e.netns);
    endpoints
        .chain(lab.node_netns("node1").map(str::to_string))
        .collect()
}

/// flow-probe's service for node `name` over `store` (and the agent events
/// of `events`, when given), in this process on 127.0.0.1:0, up for two
/// minutes as far as ServerStatus says; it stops when `true` is sent on the
/// returned sender. Returns its address.
pub async fn serve_probe(
    name: &str,
    store: Arc<FlowStore>,
    events: Option<Arc<AgentEventLog>>,
) -> (String, tokio::sync::watch::Sender<bool>) {
    serve_probe_at("127.0.0.1:0", name, store, events).await
}

/// [`serve_probe`] on `addr` (a probe started again where it served: tried
/// until the address is free, for 10 s).
pub async fn serve_probe_at(
    addr: &str,
    name: &str,
    store: Arc<FlowStore>,
    events: Option<Arc<AgentEventLog>>,
) -> (String, tokio::sync::watch::Sender<bool>) {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let node = NodeInfo {
        name: name.into(),
        address: "127.0.0.1".into(),
        version: "test".into(),
        started: Instant::now() - Duration::from_secs(120),
        kernel_features: Vec::new(),
    };
    let mut service = ObserverService::new(store, node, stopping.clone());
    if let Some(log) = events {
        service = service.with_agent_events(log);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("binding {addr}: {e}"),
        }
    };
    let addr = listener.local_addr().unwrap().to_string();
    let mut until = stopping;
    tokio::spawn(flow_probe::server::run(
        tonic::transport::Server::builder(),
        listener,
        service,
        false,
        async move {
            let _ = until.wait_for(|s| *s).await;
        },
    ));
    (addr, stop)
}
