//! One fuzz target per parser of outside input (the SQL guard's is in
//! `sql_guard.rs`, a test binary of its own: a stack overflow aborts the
//! whole binary). Each takes arbitrary bytes
//! and asserts what every input must get: no panic, and on refusal an error
//! that names the problem (a non-empty message, naming the file where there
//! is one). On `cargo test` each runs its corpus and crash inputs
//! (`tests/__fuzz__/<target>/`) and then random inputs for [`BUDGET`]
//! (`BOLERO_RANDOM_TEST_TIME_MS` or `BOLERO_RANDOM_ITERATIONS` change it).

use std::time::Duration;

use bolero::check;
use fuzz::clear;
use prost::Message;

use cluster_spec::endpoints::EndpointsFile;
use cluster_spec::policy;
use cluster_spec::services::ServicesFile;
use flow_probe::enrich::Enricher;
use flow_probe::kernel::events::{self, Event};
use observe_lab::Scenario;
use observe_lab::topology::Topology;
use observer_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use observer_runtime::query::FlowQuery;
use observer_runtime::store::FlowStore;

/// Random inputs per target on `cargo test`, after the corpus.
const BUDGET: Duration = Duration::from_secs(1);

/// The endpoints the parsers compile against and the enricher knows.
const ENDPOINTS: &str = "endpoints:
- {id: 11, name: frontend, namespace: default, labels: {app: frontend}, ipv4: 198.18.0.2, ipv6: 'fd42::2', node: node1}
- {id: 12, name: api, namespace: default, labels: {app: api}, ipv4: 198.18.0.3, node: node1}
- {id: 13, name: db, namespace: data, labels: {app: db, tier: data}, ipv4: 198.18.0.4, node: node2}
";

fn endpoints() -> EndpointsFile {
    EndpointsFile::parse(ENDPOINTS, "endpoints.yaml").expect("the fixture parses")
}

/// Ring-buffer records as flow-probe reads them: decoded, turned into flows
/// (enrichment with endpoints and an endpoint interface) and written as
/// protojson, as `observe flows -o json` would print them.
#[test]
fn event_decoder() {
    let file = endpoints();
    check!(name = "event_decoder")
        .with_test_time(BUDGET)
        .for_each(|bytes: &[u8]| {
            let mut enricher = Enricher::new("node1", &file);
            enricher.add_interface(7, "lxc11", Some([198, 18, 0, 2].into()));
            let t = 1_700_000_000_000_000_000;
            let flows = match events::decode(bytes) {
                Ok(Event::Flow(ev)) => enricher.flows(&ev, t),
                Ok(Event::SockXlate(ev)) => enricher.sock_flows(&ev, t),
                Ok(Event::TcpLifecycle(ev)) => vec![enricher.tcp_lifecycle_flow(&ev, t)],
                Err(e) => return clear(&e),
            };
            for flow in flows {
                let json = observer_proto::json::to_json("flow.Flow", &flow);
                assert!(json.is_ok_and(|j| j.starts_with('{')));
            }
        });
}

/// GetFlows requests (protobuf bytes): decoded as the gRPC server decodes
/// them, compiled (limits, filters), and run over a ring of known flows.
#[test]
fn flow_filter() {
    let store = FlowStore::new(64);
    for flow in test_support::graph_flows::flows() {
        store.push(test_support::history_flows::response(flow));
    }
    let ring = store.snapshot();
    check!(name = "flow_filter")
        .with_test_time(BUDGET)
        .for_each(|bytes: &[u8]| {
            let Ok(request) = GetFlowsRequest::decode(bytes) else {
                return;
            };
            match FlowQuery::parse(&request) {
                Ok(query) => {
                    let picked = query.history(ring.clone());
                    assert!(picked.len() <= ring.len());
                }
                Err(e) => clear(&e),
            }
        });
}

/// Any GetFlows answer a server could send, written as protojson.
#[test]
fn protojson() {
    check!(name = "protojson")
        .with_test_time(BUDGET)
        .for_each(|bytes: &[u8]| {
            let Ok(response) = GetFlowsResponse::decode(bytes) else {
                return;
            };
            match observer_proto::json::response_to_json(&response) {
                Ok(json) => assert!(json.starts_with('{') && json.ends_with('}'), "{json}"),
                Err(e) => clear(&e),
            }
        });
}

/// Policy file text, as `observe policy check` and the probe's watcher read
/// it, compiled against the endpoints when valid.
#[test]
fn policy_file() {
    let file = endpoints();
    check!(name = "policy_file")
        .with_test_time(BUDGET)
        .for_each(|bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            match policy::parse(&text, "fuzz.yaml") {
                Ok(policies) => {
                    let compiled = policy::compile(&policies, &file);
                    assert_eq!(compiled.policies.len(), policies.len());
                }
                Err(e) => {
                    let message = e.to_string();
                    assert!(message.starts_with("policy fuzz.yaml"), "{message}");
                }
            }
        });
}

/// Services and endpoints files, as the probe's watcher reads them.
#[test]
fn services_and_endpoints_files() {
    let file = endpoints();
    check!(name = "services_and_endpoints_files")
        .with_test_time(BUDGET)
        .for_each(|bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            match ServicesFile::parse(&text, "services.yaml") {
                Ok(services) => {
                    cluster_spec::services::compile(&services, &file);
                }
                Err(e) => assert!(e.to_string().contains("services.yaml"), "{e}"),
            }
            match EndpointsFile::parse(&text, "endpoints.yaml") {
                Ok(endpoints) => {
                    endpoints.identities();
                }
                Err(e) => assert!(e.to_string().contains("endpoints.yaml"), "{e}"),
            }
        });
}

/// Scenario file text, as `observe lab up FILE` reads it, planned into a
/// topology (names, addresses) when valid.
#[test]
fn scenario_file() {
    check!(name = "scenario_file")
        .with_test_time(BUDGET)
        .for_each(|bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            match Scenario::parse(&text, "fuzz.yaml") {
                Ok(scenario) => {
                    if let Err(e) = Topology::plan(&scenario, "obsfz") {
                        clear(&format!("{e:#}"));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    assert!(message.starts_with("scenario fuzz.yaml"), "{message}");
                }
            }
        });
}
