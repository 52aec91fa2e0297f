//! GetFlows with `since` older than the ring (or `until` alone), through the relay's gRPC
//! server: history and ring answer as one in time order, `number` counts
//! both (the last N read history only for what the ring lacks, the first N
//! stop the read), filters and `until` apply to history rows, flows history
//! lost in the range arrive as a `LostEvent` per node, and a history read
//! that fails ends the answer with an error, never the ring alone.

use std::sync::Arc;
use std::time::Duration;

use observer_proto::flow::{Flow, FlowFilter, LostEventSource};
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use observer_runtime::store::FlowStore;
use relay::RelayState;
use relay::history::{History, HistoryConfig};
use relay::peer::Peers;
use relay::sql::{SqlEngine, SqlLimits};
use test_support::history_flows::response;
use test_support::scratch::ScratchDir;
use tokio::sync::oneshot;

/// 2024-05-01T10:00:00Z
const T0: i64 = 1_714_557_600;
const FLOWS: i64 = 100;
const RING: usize = 10;

fn flow(i: i64) -> Flow {
    Flow {
        time: Some(prost_types::Timestamp {
            seconds: T0 + i,
            nanos: 0,
        }),
        uuid: format!("uuid-{i:03}"),
        node_name: format!("node{}", i % 3),
        ..Default::default()
    }
}

/// A relay whose history holds flows 0..100 (0..70 in files of 10, the
/// rest in memory) and whose ring holds the last ten, serving on a port.
struct Served {
    _dir: ScratchDir,
    addr: String,
    history: Arc<History>,
    state: Arc<RelayState>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn serve(name: &str) -> Served {
    let dir = ScratchDir::new(name);
    let history = History::open(HistoryConfig {
        retention_age: Duration::from_secs(100 * 365 * 86_400),
        ..HistoryConfig::new(dir.path())
    })
    .unwrap();
    let state = Arc::new(RelayState::new(FlowStore::new(RING), Peers::new(&[])));
    state.set_sql(SqlEngine::new(Some(history.clone()), SqlLimits::default()));
    for i in 0..FLOWS {
        history.ingest(Arc::new(response(flow(i))));
        if i < 70 && i % 10 == 9 {
            history.flush().unwrap();
        }
        state.store().push(response(flow(i)));
    }
    assert_eq!(history.files().len(), 7);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(relay::server::run(
        tonic::transport::Server::builder(),
        listener,
        state.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    Served {
        _dir: dir,
        addr,
        history,
        state,
        stop: Some(stop),
    }
}

/// What the answer holds: flows as their numbers, lost events as
/// `(node, lost, flows before it, its time in seconds after T0)`, and the
/// error that ended it, if any.
#[derive(Debug, Default, PartialEq)]
struct Answer {
    flows: Vec<i64>,
    lost: Vec<(String, u64, usize, i64)>,
    error: Option<String>,
}

async fn ask(s: &Served, req: GetFlowsRequest) -> Answer {
    let mut client = ObserverClient::connect(format!("http://{}", s.addr))
        .await
        .unwrap();
    let mut stream = client.get_flows(req).await.unwrap().into_inner();
    let mut a = Answer::default();
    loop {
        match stream.message().await {
            Ok(Some(GetFlowsResponse {
                response_types: Some(ResponseTypes::Flow(f)),
                ..
            })) => a.flows.push(f.uuid[5..].parse().unwrap()),
            Ok(Some(GetFlowsResponse {
                node_name,
                time,
                response_types: Some(ResponseTypes::LostEvents(l)),
            })) => {
                assert_eq!(l.source, LostEventSource::HubbleRingBuffer as i32);
                let secs = time.expect("a lost event's time").seconds - T0;
                a.lost
                    .push((node_name, l.num_events_lost, a.flows.len(), secs));
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(status) => {
                a.error = Some(format!("{:?}: {}", status.code(), status.message()));
                break;
            }
        }
    }
    a
}

fn since(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: T0 + secs,
        nanos: 0,
    })
}

fn flows(range: impl IntoIterator<Item = i64>) -> Answer {
    Answer {
        flows: range.into_iter().collect(),
        ..Answer::default()
    }
}

#[tokio::test]
async fn history_and_ring_answer_as_one_with_number_filters_and_until() {
    let s = serve("getflows-number").await;
    let req = |number: u64, first: bool| GetFlowsRequest {
        since: since(0),
        number,
        first,
        ..Default::default()
    };
    assert_eq!(
        ask(&s, req(0, false)).await,
        flows(0..100),
        "all, once each"
    );
    assert_eq!(
        ask(&s, req(5, false)).await,
        flows(95..100),
        "the ring has them"
    );
    assert_eq!(ask(&s, req(15, false)).await, flows(85..100));
    assert_eq!(ask(&s, req(15, true)).await, flows(0..15));
    assert_eq!(ask(&s, req(95, true)).await, flows(0..95));
    let node1 = |number| GetFlowsRequest {
        whitelist: vec![FlowFilter {
            node_name: vec!["node1".into()],
            ..Default::default()
        }],
        ..req(number, false)
    };
    // node1: 1, 4, ..., 97; the ring (90..99) holds 91, 94, 97.
    assert_eq!(ask(&s, node1(3)).await, flows([91, 94, 97]));
    assert_eq!(ask(&s, node1(5)).await, flows([85, 88, 91, 94, 97]));
    let window = GetFlowsRequest {
        since: since(10),
        until: since(20),
        ..Default::default()
    };
    assert_eq!(ask(&s, window).await, flows(10..=20));
    // `until` alone: the last N before it, from history too.
    let until = |number: u64, first: bool| GetFlowsRequest {
        until: since(20),
        number,
        first,
        ..Default::default()
    };
    assert_eq!(ask(&s, until(3, false)).await, flows(18..=20));
    assert_eq!(ask(&s, until(3, true)).await, flows(0..3));
    assert_eq!(ask(&s, until(0, false)).await, flows(0..=20));
    let in_ring = GetFlowsRequest {
        until: since(97),
        number: 12,
        ..Default::default()
    };
    assert_eq!(ask(&s, in_ring).await, flows(86..=97), "ring and history");
    // Not older than the ring: the ring alone.
    assert_eq!(
        ask(
            &s,
            GetFlowsRequest {
                since: since(95),
                ..Default::default()
            }
        )
        .await,
        flows(95..100)
    );
}

/// A flow of number `n` (100 and up) at `secs` and a half: one a node sent
/// late (after a restart, from what it buffered meanwhile).
fn late(n: i64, secs: i64) -> Flow {
    Flow {
        time: Some(prost_types::Timestamp {
            seconds: T0 + secs,
            nanos: 500_000_000,
        }),
        ..flow(n)
    }
}

#[tokio::test]
async fn late_flows_are_answered_in_time_order_and_once() {
    let s = serve("getflows-late").await;
    // Arrived after flow 99, as the relay passes late flows on: at the
    // ring's end, and into history.
    for f in [late(150, 50), late(195, 95)] {
        s.history.ingest(Arc::new(response(f.clone())));
        s.state.store().push(response(f));
    }
    let with = |range: std::ops::Range<i64>| {
        let mut v: Vec<i64> = range.collect();
        for (n, after) in [(150, 50), (195, 95)] {
            if let Some(i) = v.iter().position(|x| *x == after) {
                v.insert(i + 1, n);
            }
        }
        flows(v)
    };
    let since_secs = |secs| GetFlowsRequest {
        since: since(secs),
        ..Default::default()
    };
    // From history and the ring: 150 once, from history, in its place.
    assert_eq!(ask(&s, since_secs(40)).await, with(40..100));
    // From the ring alone (it starts before `since`).
    assert_eq!(ask(&s, since_secs(93)).await, with(93..100));
    assert_eq!(
        ask(
            &s,
            GetFlowsRequest {
                number: 3,
                ..Default::default()
            }
        )
        .await,
        flows([97, 98, 99]),
        "the last three by time"
    );
}

/// A late flow can head the ring once the flows that came before it left:
/// history then answers up to the newest flow the ring let go of, not up
/// to the late flow's time (flows 51..99 were in history and never sent).
#[tokio::test]
async fn a_late_flow_at_the_rings_head_leaves_no_gap() {
    let s = serve("getflows-late-head").await;
    let arrive = |f: Flow| {
        s.history.ingest(Arc::new(response(f.clone())));
        s.state.store().push(response(f));
    };
    arrive(late(150, 50));
    for n in 100..109 {
        arrive(flow(n));
    }
    let head = s.state.store().snapshot()[0].response.clone();
    assert_eq!(
        head.time.unwrap().seconds,
        T0 + 50,
        "the late flow heads the ring"
    );
    let mut want: Vec<i64> = (40..109).collect();
    want.insert(11, 150);
    let req = GetFlowsRequest {
        since: since(40),
        ..Default::default()
    };
    assert_eq!(ask(&s, req).await, flows(want));
}

#[tokio::test]
async fn a_file_removed_by_hand_leaves_the_rest_answering() {
    let s = serve("getflows-removed").await;
    let first = s.history.files()[0].clone();
    std::fs::remove_file(&first.path).unwrap();
    let all = GetFlowsRequest {
        since: since(0),
        ..Default::default()
    };
    // Its flows (0..10) are gone; the others come, and no error.
    assert_eq!(ask(&s, all.clone()).await, flows(10..100));
    // The next retention stops listing it.
    s.history.retain().unwrap();
    assert!(!s.history.files().contains(&first));
    assert_eq!(s.history.files().len(), 6);
    assert_eq!(ask(&s, all).await, flows(10..100));
}

#[tokio::test]
async fn flows_history_lost_in_the_range_come_as_lost_events() {
    let s = serve("getflows-lost").await;
    let at = |secs: i64| (T0 + secs) * 1_000_000_000;
    s.history.losses().record("node2", at(50), 7);
    s.history.losses().record("node0", at(20), 2);
    let a = ask(
        &s,
        GetFlowsRequest {
            since: since(0),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(a.flows, (0..100).collect::<Vec<_>>());
    // Each where its losses begin, stamped with that time: after flow 20,
    // which is at the second of node0's loss, and after flow 50.
    assert_eq!(
        a.lost,
        [("node0".into(), 2, 21, 20), ("node2".into(), 7, 51, 50)]
    );
    let later = ask(
        &s,
        GetFlowsRequest {
            since: since(60),
            ..Default::default()
        },
    )
    .await;
    assert!(later.lost.is_empty(), "{:?}", later.lost);
    assert_eq!(later.flows, (60..100).collect::<Vec<_>>());
    // The first 30: the losses among them, none from after the last.
    let first = ask(
        &s,
        GetFlowsRequest {
            since: since(0),
            number: 30,
            first: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first.flows, (0..30).collect::<Vec<_>>());
    assert_eq!(first.lost, [("node0".into(), 2, 21, 20)]);
    // The last 55 (45..100): node2's loss at 50 among them, not node0's
    // from before their first.
    let last = ask(
        &s,
        GetFlowsRequest {
            since: since(0),
            number: 55,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(last.flows, (45..100).collect::<Vec<_>>());
    assert_eq!(last.lost, [("node2".into(), 7, 6, 50)]);

    // A window inside the loss's second: its times stay within the window
    // (the count is the second's whole, so it never falls short).
    let at_ns = |secs: i64, nanos: i32| prost_types::Timestamp {
        seconds: T0 + secs,
        nanos,
    };
    let mut client = ObserverClient::connect(format!("http://{}", s.addr))
        .await
        .unwrap();
    let mut stream = client
        .get_flows(GetFlowsRequest {
            since: Some(at_ns(20, 500_000_000)),
            until: Some(at_ns(20, 700_000_000)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut lost = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        if let Some(ResponseTypes::LostEvents(l)) = r.response_types {
            lost.push((r.time, l.num_events_lost, l.first, l.last));
        }
    }
    assert_eq!(
        lost,
        [(
            Some(at_ns(20, 500_000_000)),
            2,
            Some(at_ns(20, 500_000_000)),
            Some(at_ns(20, 700_000_000))
        )]
    );
}

#[tokio::test]
async fn a_failed_history_read_is_an_error_not_the_ring_alone() {
    let s = serve("getflows-broken").await;
    let oldest = s.history.files()[0].path.clone();
    std::fs::write(&oldest, b"not parquet").unwrap();
    let a = ask(
        &s,
        GetFlowsRequest {
            since: since(0),
            ..Default::default()
        },
    )
    .await;
    assert!(
        a.flows.is_empty(),
        "nothing after the failure, not the ring: {:?}",
        a.flows
    );
    let error = a.error.expect("an error");
    let want = format!(
        "Internal: reading the flow history failed, the answer is incomplete: reading {}: ",
        oldest.display()
    );
    assert!(error.starts_with(&want), "{error}");
    // The ring alone still answers a request that needs no history.
    assert_eq!(
        ask(
            &s,
            GetFlowsRequest {
                since: since(95),
                ..Default::default()
            }
        )
        .await,
        flows(95..100)
    );
}
