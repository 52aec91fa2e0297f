//! History end to end: a relay with history records what its store receives,
//! and `observe query` asks it over Arrow Flight SQL on the relay's own port;
//! refusals and unknown columns arrive as clean messages.

use test_support::history_flows as flows;

use std::path::PathBuf;
use std::time::Duration;

use arrow::util::pretty::pretty_format_batches;
use observe_cli::query_command::query;
use observer_proto::flow::Flow;
use observer_proto::observer::GetFlowsRequest;
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::observer::observer_client::ObserverClient;
use relay::history::HistoryConfig;
use relay::{Relay, RelayConfig};
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_query_answers_over_flight_sql_on_the_relay_port() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flight");
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = RelayConfig {
        history: Some(HistoryConfig {
            flush_interval: Duration::from_millis(100),
            retention_age: Duration::from_secs(100 * 365 * 86_400),
            ..HistoryConfig::new(&dir)
        }),
        // The ring keeps only the last 3 flows: older ones come from history.
        ring_capacity: 3,
        // No flow-probe answers here: flows are pushed into the store below.
        ..RelayConfig::new(vec!["127.0.0.1:1".into()])
    };
    let relay = Relay::start(&cfg).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(relay::server::run(listener, relay.state(), async {
        let _ = stopped.await;
    }));
    // `Relay::start` subscribed the history to the store before returning.
    for f in flows::golden() {
        relay.state().publish(flows::response(f));
    }
    let sql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../relay/tests/golden/top_talkers.sql"
    ))
    .unwrap();
    let want = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../relay/tests/golden/top_talkers.out"
    ))
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, batches) = query(&addr, &sql).await.unwrap();
        let got = pretty_format_batches(&batches).unwrap().to_string() + "\n";
        if got == want {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "got {got}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Written to files by the flush interval.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while relay::history::files::list(&dir).unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no files written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = query(&addr, "DROP TABLE flows").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "refused: DROP is not allowed: history is read-only, only SELECT, WITH and EXPLAIN queries run"
    );
    let err = query(&addr, "SELECT nope FROM flows").await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unknown column `nope`; the columns of `flows` are: time, node"),
        "{err}"
    );
    // GetFlows since 10:00 gets all nine: six from history, three from the ring.
    let mut client = ObserverClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut stream = client
        .get_flows(GetFlowsRequest {
            since: Some(prost_types::Timestamp {
                seconds: flows::T0,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        if let Some(ResponseTypes::Flow(f)) = r.response_types {
            got.push(f);
        }
    }
    let mut want = flows::golden();
    want.sort_by_key(|f| f.time.map(|t| t.seconds));
    let uuids = |fs: &[Flow]| fs.iter().map(|f| f.uuid.clone()).collect::<Vec<_>>();
    assert_eq!(uuids(&got), uuids(&want));
    // What a row keeps comes back: the first flow is whole but for its
    // workload kind (not kept).
    let mut first = want[0].clone();
    for ep in [first.source.as_mut(), first.destination.as_mut()] {
        ep.unwrap().workloads[0].kind.clear();
    }
    assert_eq!(got[0], first);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    relay.shutdown().await;
}
