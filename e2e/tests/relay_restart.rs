//! A relay restarted over its history stores each flow once: the flows a
//! probe still buffers from before the restart come to the relay's ring
//! again, as the probe sent them, but are not written twice; the ones it
//! buffered while the relay was down are written, and those its buffer
//! dropped before the relay came back are counted as lost. The probe here is
//! flow-probe's gRPC service in-process over a store of made-up flows: no
//! kernel needed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::util::pretty::pretty_format_batches;
use e2e::in_process::serve_probe;
use e2e::relay_harness::RelayUnderTest;
use observer_proto::flow::{Flow, LostEvent, LostEventSource, NetworkInterface};
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use observer_proto::time::{now_nanos, timestamp};
use observer_runtime::store::FlowStore;
use relay::RelayConfig;
use relay::history::HistoryConfig;
use test_support::history_flows::response;

const MS: i128 = 1_000_000;

fn flow(i: usize, time: i128) -> Flow {
    Flow {
        uuid: format!("u{i:02}"),
        node_name: "n1".into(),
        time: Some(timestamp(time)),
        // Not a history column: only the probe's own flows carry it.
        interface: Some(NetworkInterface {
            index: 7,
            name: format!("lxc{i}"),
        }),
        ..Default::default()
    }
}

/// flow-probe's service for node `n1` over `store`, on 127.0.0.1:0; up for
/// two minutes as far as ServerStatus says.
async fn probe(store: Arc<FlowStore>) -> (String, tokio::sync::watch::Sender<bool>) {
    serve_probe("n1", store, None).await
}

/// A relay over `peers` with history in `dir`, written every 100 ms.
fn config(dir: &std::path::Path, peers: Vec<String>) -> RelayConfig {
    RelayConfig {
        history: Some(HistoryConfig {
            flush_interval: Duration::from_millis(100),
            ..HistoryConfig::new(dir)
        }),
        ..RelayUnderTest::config(peers, None)
    }
}

/// Rows and distinct UUIDs in history: equal when nothing is stored twice.
const COUNTS: &str = "SELECT count(*) AS rows, count(DISTINCT uuid) AS uuids FROM flows";

/// [`COUNTS`]' answer for `n` flows, each once.
fn counts(n: usize) -> String {
    format!(
        "+------+-------+\n| rows | uuids |\n+------+-------+\n| {n:<4} | {n:<5} |\n+------+-------+"
    )
}

async fn answer(relay: &RelayUnderTest, sql: &str) -> String {
    let r = relay.state().sql().query(sql).await.unwrap();
    pretty_format_batches(&r.batches).unwrap().to_string()
}

/// Polls `sql` until it answers `want`.
async fn wait_answer(relay: &RelayUnderTest, sql: &str, want: &str) {
    let deadline = Instant::now() + e2e::WAIT;
    loop {
        let got = answer(relay, sql).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: still\n{got}\nnot\n{want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_relay_stores_each_buffered_flow_once() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("relay-restart");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(FlowStore::new(1000));
    // 50 flows 100 ms apart: the last ten are within the relay's resume
    // overlap (1 s), so they come again and must be told apart by UUID.
    let base = now_nanos() - 60_000 * MS;
    for i in 0..50 {
        store.push(response(flow(i, base + i as i128 * 100 * MS)));
    }
    let (addr, stop_probe) = probe(store.clone()).await;
    let cfg = config(&dir, vec![addr]);

    let relay = RelayUnderTest::start_config(cfg.clone()).await;
    wait_answer(&relay, COUNTS, &counts(50)).await;
    relay.shutdown().await;

    // While the relay is down the probe sees five more.
    for i in 50..55 {
        store.push(response(flow(i, base + 10_000 * MS + i as i128 * MS)));
    }
    let relay = RelayUnderTest::start_config(cfg).await;
    // The five new ones arrive after what the probe sends again (it sends
    // in time order, and history is written in the merge's time order).
    wait_answer(
        &relay,
        "SELECT count(*) AS new FROM flows WHERE uuid >= 'u50'",
        "+-----+\n| new |\n+-----+\n| 5   |\n+-----+",
    )
    .await;
    assert_eq!(answer(&relay, COUNTS).await, counts(55));

    // GetFlows through the relay: every flow once, in time order, as the
    // probe sent it.
    let got: Vec<(String, String)> = relay
        .get_flows(GetFlowsRequest {
            number: 100,
            ..Default::default()
        })
        .await
        .into_iter()
        .filter_map(|r| match r.response_types {
            Some(ResponseTypes::Flow(f)) => Some((f.uuid, f.interface?.name)),
            _ => None,
        })
        .collect();
    let all: Vec<(String, String)> = (0..55)
        .map(|i| (format!("u{i:02}"), format!("lxc{i}")))
        .collect();
    assert_eq!(got, all);
    relay.shutdown().await;
    let _ = stop_probe.send(true);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_a_full_buffer_dropped_while_the_relay_was_down_are_counted_lost() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("relay-restart-gap");
    let _ = std::fs::remove_dir_all(&dir);
    // A ring of 20 and flow-probe's own UUIDs (a run's prefix and a count).
    let store = Arc::new(FlowStore::new(20));
    let mut ids = flow_probe::flow_builder::FlowIds::with_prefix(0x5eed);
    let base = now_nanos() - 60_000 * MS;
    let mut push = |i: usize, time: i128| {
        let mut f = flow(i, time);
        f.uuid = ids.next_uuid();
        store.push(response(f));
    };
    for i in 1..=20 {
        push(i, base + i as i128 * 100 * MS);
    }
    let (addr, stop_probe) = probe(store.clone()).await;
    let cfg = config(&dir, vec![addr]);
    let relay = RelayUnderTest::start_config(cfg.clone()).await;
    wait_answer(&relay, COUNTS, &counts(20)).await;
    relay.shutdown().await;

    // 30 more while the relay is down: the ring keeps the last 20 (31..=50),
    // 21..=30 are gone before anyone read them.
    for i in 21..=50 {
        push(i, base + 10_000 * MS + i as i128 * MS);
    }
    // The same history again, for a second restart that finds the gap.
    let again = dir.with_extension("again");
    let _ = std::fs::remove_dir_all(&again);
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .args([&dir, &again])
        .status()
        .unwrap();
    assert!(copied.success());

    // A ring of 20: after the restart it holds 31..=50 and the record of
    // the gap, which the relay found; 1..=20 are in history only.
    let relay = RelayUnderTest::start_config(RelayConfig {
        ring_capacity: 20,
        ..cfg.clone()
    })
    .await;
    wait_answer(&relay, COUNTS, &counts(40)).await;
    let history = relay.state().sql().history().unwrap().clone();
    assert_eq!(history.losses().since_start(), [("n1".to_string(), 10)]);
    let (after_20, before_31) = (base + 2_000 * MS, base + 10_031 * MS);
    // A window inside the gap, as `observe query` asks: told of it.
    let inside_gap: Vec<(String, u64)> = history
        .losses()
        .between(
            Some((base + 5_000 * MS) as i64),
            Some((base + 8_000 * MS) as i64),
        )
        .into_iter()
        .map(|m| (m.node, m.flows))
        .collect();
    assert_eq!(inside_gap, [("n1".to_string(), 10)]);
    wait_for_lost_record(&relay).await;
    // From before the ring: 1..=20 from history, then the ring; the loss
    // told once, by history, which keeps losses by the second.
    let all = relay
        .get_flows(GetFlowsRequest {
            since: Some(timestamp(base)),
            ..Default::default()
        })
        .await;
    let second = (after_20 + 1) / 1_000_000_000 * 1_000_000_000;
    assert_eq!(told(&all), (40, vec![(10, second)]));
    relay.shutdown().await;

    // The default ring holds every flow (history's newest first) and the
    // gap's record: a window inside the gap, read from the ring, is told of
    // it.
    let relay = RelayUnderTest::start_config(RelayConfig {
        history: cfg.history.clone().map(|h| HistoryConfig {
            dir: again.clone(),
            ..h
        }),
        ..cfg
    })
    .await;
    wait_answer(&relay, COUNTS, &counts(40)).await;
    wait_for_lost_record(&relay).await;
    let inside = relay
        .get_flows(GetFlowsRequest {
            since: Some(timestamp(base + 5_000 * MS)),
            until: Some(timestamp(base + 8_000 * MS)),
            ..Default::default()
        })
        .await;
    assert_eq!(told(&inside), (0, vec![(10, after_20 + 1)]));
    let lost = inside.iter().find_map(|r| match &r.response_types {
        Some(ResponseTypes::LostEvents(l)) => Some(*l),
        _ => None,
    });
    let last = lost
        .and_then(|l| l.last)
        .map(|t| observer_proto::time::nanos(&t));
    assert_eq!(last, Some(before_31 - 1));
    relay.shutdown().await;
    let _ = stop_probe.send(true);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&again);
}

/// A relay whose disk failed stopped with flows it could not write, and
/// recorded them lost. Restarted on a working disk, it takes again what the
/// probe still buffers of them and writes them: those are no longer
/// missing. The ones the buffer let go meanwhile still are; the flows the
/// probe saw after that stop, in the same second, never were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_taken_again_after_a_failed_disk_are_no_longer_missing() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("relay-restart-retaken");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(FlowStore::new(20));
    // Every flow in one second, numbered as flow-probe does: 0..=19 10 ms
    // apart, 20..=24 (seen after the relay's stop) stamped among 5..=9, as
    // a node's clock may: their times cannot tell them from lost ones.
    let second = (now_nanos() - 60_000 * MS) / 1_000_000_000 * 1_000_000_000;
    let at = |i: usize| {
        let slot = if i < 20 {
            i as i128 * 10
        } else {
            (i as i128 - 15) * 10 + 5
        };
        second + 100 * MS + slot * MS
    };
    let mut ids = flow_probe::flow_builder::FlowIds::with_prefix(0x7e7a);
    let uuids: Vec<String> = (0..25).map(|_| ids.next_uuid()).collect();
    let push = |i: usize| {
        let mut f = flow(i, at(i));
        f.uuid = uuids[i].clone();
        store.push(response(f));
    };
    for i in 0..20 {
        push(i);
    }
    // That hour's folder is a file: every write of its rows fails.
    let hour = relay::history::files::partition_dir(&dir, second as i64);
    std::fs::create_dir_all(hour.parent().unwrap()).unwrap();
    std::fs::write(&hour, b"not a folder").unwrap();
    let (addr, stop_probe) = probe(store.clone()).await;
    let cfg = config(&dir, vec![addr]);
    let relay = RelayUnderTest::start_config(cfg.clone()).await;
    let history = relay.state().sql().history().unwrap().clone();
    let deadline = Instant::now() + e2e::WAIT;
    while history.rows_in_memory() < 20 || history.write_failures() == 0 {
        assert!(Instant::now() < deadline, "the relay took no 20 flows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relay.shutdown().await;
    let missing = |h: &relay::history::History| -> Vec<(String, u64, i64, i64)> {
        h.losses()
            .between(None, None)
            .into_iter()
            .map(|m| (m.node, m.flows, m.first_sec, m.last_sec))
            .collect()
    };
    let sec = (second / 1_000_000_000) as i64;
    assert_eq!(missing(&history), [("n1".to_string(), 20, sec, sec)]);
    drop(history);

    // While the relay is down: five more (the buffer of 20 lets 0..=4 go).
    for i in 20..25 {
        push(i);
    }
    std::fs::remove_file(&hour).unwrap();
    let relay = RelayUnderTest::start_config(cfg).await;
    wait_answer(&relay, COUNTS, &counts(20)).await;
    let history = relay.state().sql().history().unwrap().clone();
    assert_eq!(
        missing(&history),
        [("n1".to_string(), 5, sec, sec)],
        "0..=4 are gone; 5..=19 came again; 20..=24 were never lost"
    );
    relay.shutdown().await;
    let saved = std::fs::read_to_string(dir.join(relay::history::losses::FILE)).unwrap();
    let (run, newest) = relay::flow_numbers::run_and_number(&uuids[19]).unwrap();
    assert_eq!(
        saved,
        format!("n1\tnewest\t{run}\t{newest}\nn1\t{sec}\t5\n")
    );
    let _ = stop_probe.send(true);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A relay that falls behind a probe while following it: the probe's queue
/// to it lets flows go and says how many entries it skipped. The relay counts
/// the flows from the gap in their numbers, as history's loss (so
/// `observe query` tells it) and in one `LostEvent` with their times; the
/// probe's own count is not passed on as a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_a_following_relay_fell_behind_on_are_counted_lost_once() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("relay-follow-gap");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(FlowStore::new(64));
    let mut ids = flow_probe::flow_builder::FlowIds::with_prefix(0xfa11);
    let base = now_nanos() - 60_000 * MS;
    let at = |i: usize| base + i as i128 * 100 * MS;
    let (addr, stop_probe) = probe(store.clone()).await;
    let relay = RelayUnderTest::start_config(config(&dir, vec![addr])).await;
    // Flow `i`, numbered; `sent`: the relay's follow gets it.
    let mut push = |i: usize, sent: bool| {
        let mut f = flow(i, at(i));
        f.uuid = ids.next_uuid();
        if sent {
            store.push(response(f));
        }
    };
    for i in 1..=5 {
        push(i, true);
    }
    wait_answer(&relay, COUNTS, &counts(5)).await;
    // What a probe's follow sends after skipping entries: its count, then
    // the next it holds. 6..=8 never reach the relay.
    for i in 6..=8 {
        push(i, false);
    }
    store.push(GetFlowsResponse {
        node_name: "n1".into(),
        time: Some(timestamp(now_nanos())),
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: LostEventSource::ObserverEventsQueue as i32,
            num_events_lost: 3,
            ..Default::default()
        })),
    });
    push(9, true);
    push(10, true);
    wait_answer(&relay, COUNTS, &counts(7)).await;
    let history = relay.state().sql().history().unwrap().clone();
    assert_eq!(history.losses().since_start(), [("n1".to_string(), 3)]);
    let missing: Vec<(String, u64)> = history
        .losses()
        .between(Some(at(6) as i64), Some(at(8) as i64))
        .into_iter()
        .map(|m| (m.node, m.flows))
        .collect();
    assert_eq!(missing, [("n1".to_string(), 3)]);
    wait_for_lost_record(&relay).await;
    let ring = relay.get_flows(GetFlowsRequest::default()).await;
    let lost: Vec<(i32, u64, i128)> = ring
        .iter()
        .filter_map(|r| match &r.response_types {
            Some(ResponseTypes::LostEvents(l)) => Some((
                l.source,
                l.num_events_lost,
                l.first.as_ref().map_or(0, observer_proto::time::nanos),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        lost,
        [(LostEventSource::HubbleRingBuffer as i32, 3, at(5) + 1)]
    );
    relay.shutdown().await;
    let _ = stop_probe.send(true);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A probe's count of events its kernel ring dropped (a
/// `PERF_EVENT_RING_BUFFER` record): those events never became flows, so
/// history lacks them too. They are in history's losses at the record's
/// time (`observe query` says they are missing) and GetFlows over history
/// tells them once, though the ring holds the probe's record too. A
/// restarted relay, sent the probe's buffer again with the record in it,
/// does not count them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_probes_kernel_ring_dropped_are_missing_from_history_once() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("relay-kernel-lost");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(FlowStore::new(64));
    let base = now_nanos() - 60_000 * MS;
    let at = |i: usize| base + i as i128 * 100 * MS;
    for i in 1..=5 {
        store.push(response(flow(i, at(i))));
    }
    // Stamped when the probe read the kernel's count.
    let lost_at = at(5) + 50 * MS;
    store.push(GetFlowsResponse {
        node_name: "n1".into(),
        time: Some(timestamp(lost_at)),
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: LostEventSource::PerfEventRingBuffer as i32,
            num_events_lost: 9,
            ..Default::default()
        })),
    });
    for i in 6..=7 {
        store.push(response(flow(i, at(i))));
    }
    let (addr, stop_probe) = probe(store.clone()).await;
    // A ring of 3: the probe's record and the last two flows.
    let cfg = RelayConfig {
        ring_capacity: 3,
        ..config(&dir, vec![addr])
    };
    let relay = RelayUnderTest::start_config(cfg.clone()).await;
    wait_answer(&relay, COUNTS, &counts(7)).await;
    let history = relay.state().sql().history().unwrap().clone();
    assert_eq!(history.losses().since_start(), [("n1".to_string(), 9)]);
    let missing = |h: &relay::history::History| -> Vec<(String, u64, i64)> {
        h.losses()
            .between(Some(base as i64), None)
            .into_iter()
            .map(|m| (m.node, m.flows, m.first_sec))
            .collect()
    };
    let second = (lost_at / 1_000_000_000) as i64;
    assert_eq!(missing(&history), [("n1".to_string(), 9, second)]);
    wait_for_lost_record(&relay).await;
    assert_eq!(
        told(&relay.get_flows(GetFlowsRequest::default()).await),
        (2, vec![(9, 0)]),
        "the ring: the probe's record, without a first time"
    );
    let since_base = GetFlowsRequest {
        since: Some(timestamp(base)),
        ..Default::default()
    };
    // History tells its losses by whole seconds, within the range asked.
    let told_once = (7, vec![(9, (i128::from(second) * 1_000_000_000).max(base))]);
    assert_eq!(told(&relay.get_flows(since_base.clone()).await), told_once);
    // Its history holds the folder's lock.
    drop(history);
    relay.shutdown().await;

    // One more flow while the relay is down: when history has it, the
    // restarted relay has read the probe's buffer past the record.
    store.push(response(flow(8, at(8))));
    let relay = RelayUnderTest::start_config(cfg).await;
    wait_answer(&relay, COUNTS, &counts(8)).await;
    let history = relay.state().sql().history().unwrap().clone();
    assert!(history.losses().since_start().is_empty());
    assert_eq!(missing(&history), [("n1".to_string(), 9, second)]);
    let answer = relay.get_flows(since_base).await;
    assert_eq!(told(&answer), (8, told_once.1));
    relay.shutdown().await;
    let _ = stop_probe.send(true);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls until the relay's ring holds a lost-event record (the merge holds
/// it in its reorder window a while: no later flow of its node passes it).
async fn wait_for_lost_record(relay: &RelayUnderTest) {
    let deadline = Instant::now() + e2e::WAIT;
    loop {
        let ring = relay.get_flows(GetFlowsRequest::default()).await;
        if told(&ring).1.len() == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no lost-event record in the ring"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Of a GetFlows answer: its flows, and each lost-event record's count and
/// first time.
fn told(answer: &[GetFlowsResponse]) -> (usize, Vec<(u64, i128)>) {
    let flows = answer
        .iter()
        .filter(|r| matches!(r.response_types, Some(ResponseTypes::Flow(_))))
        .count();
    let lost = answer
        .iter()
        .filter_map(|r| match &r.response_types {
            Some(ResponseTypes::LostEvents(l)) => Some((
                l.num_events_lost,
                l.first.as_ref().map_or(0, observer_proto::time::nanos),
            )),
            _ => None,
        })
        .collect();
    (flows, lost)
}

/// After a restart the relay's ring must hold, for every node, all flows
/// from its first one on: GetFlows reads history only up to the ring's first
/// flow. A quiet node's buffer reaches further back than a busy one's, so a
/// ring refilled from the buffers alone would leave out the busy node's
/// stored flows between the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_ring_after_a_restart_hold_every_nodes_flows_once() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("relay-restart-nodes");
    let _ = std::fs::remove_dir_all(&dir);
    let (busy, quiet) = (Arc::new(FlowStore::new(10)), Arc::new(FlowStore::new(1000)));
    let base = now_nanos() - 60_000 * MS;
    let named = |node: &str, uuid: String, time: i128| {
        let mut f = flow(0, time);
        f.node_name = node.into();
        f.uuid = uuid;
        response(f)
    };
    // The quiet node's one flow comes first; the busy node's ten after it.
    quiet.push(named("n2", "b1".into(), base + 50 * MS));
    for i in 1..=10 {
        busy.push(named("n1", format!("a{i:02}"), base + i as i128 * 100 * MS));
    }
    let (busy_addr, stop_busy) = serve_probe("n1", busy.clone(), None).await;
    let (quiet_addr, stop_quiet) = serve_probe("n2", quiet.clone(), None).await;
    let cfg = config(&dir, vec![busy_addr, quiet_addr]);
    let rows = "SELECT count(*) AS n FROM flows";
    let n = |n: usize| format!("+----+\n| n  |\n+----+\n| {n:<2} |\n+----+");
    let relay = RelayUnderTest::start_config(cfg.clone()).await;
    wait_answer(&relay, rows, &n(11)).await;
    relay.shutdown().await;
    // While the relay is down the busy node's buffer moves on past a10.
    for i in 11..=20 {
        busy.push(named(
            "n1",
            format!("a{i:02}"),
            base + 5_000 * MS + i as i128 * MS,
        ));
    }
    let relay = RelayUnderTest::start_config(cfg).await;
    wait_answer(&relay, rows, &n(21)).await;
    let got: Vec<String> = relay
        .get_flows(GetFlowsRequest {
            since: Some(timestamp(base)),
            ..Default::default()
        })
        .await
        .into_iter()
        .filter_map(|r| match r.response_types {
            Some(ResponseTypes::Flow(f)) => Some(f.uuid),
            _ => None,
        })
        .collect();
    let mut want = vec!["b1".to_string()];
    want.extend((1..=20).map(|i| format!("a{i:02}")));
    assert_eq!(got, want);
    relay.shutdown().await;
    let _ = stop_busy.send(true);
    let _ = stop_quiet.send(true);
    let _ = std::fs::remove_dir_all(&dir);
}
