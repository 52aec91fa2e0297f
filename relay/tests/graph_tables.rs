//! The service graph tables over known flows (part in Parquet files, part in
//! memory): `graph_edges` and `graph_nodes` row by row, the window their
//! `time` condition chooses, agreement with the builder's JSON (what
//! `observe graph -o json` prints for the same flows), refusals and the
//! memory limit.

mod common;

use std::sync::Arc;

use common::{engine, ingest, scratch, table};
use datafusion::arrow::array::StringArray;
use datafusion::arrow::json::ArrayWriter;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::ScalarValue;
use observer_proto::flow::Flow;
use observer_proto::flow::layer4::Protocol;
use relay::history::History;
use relay::sql::{SqlEngine, SqlError, SqlLimits};
use serde_json::{Value, json};
use service_graph::GraphBuilder;
use test_support::{graph_flows, history_flows};

/// The scripted graph flows: the first connection's eight in a file, the
/// rest in memory.
fn script(name: &str) -> (Arc<History>, SqlEngine) {
    let h = ingest(&scratch(name), graph_flows::flows(), 11);
    let e = engine(&h);
    (h, e)
}

const EDGE_COLUMNS: &str = "id, mainstat, secondarystat, detail__connections AS conns, \
     detail__packets AS packets, detail__forwarded AS fwd, detail__dropped AS dropped, \
     detail__ports, detail__drop_reasons, detail__hops";

#[tokio::test]
async fn edges_and_nodes_of_the_scripted_flows_row_by_row() {
    let (_h, e) = script("graph-rows");
    let edges = table(
        &e,
        &format!("SELECT {EDGE_COLUMNS} FROM graph_edges ORDER BY id"),
    )
    .await;
    assert_eq!(edges, "\
+-----------------------------------------+----------+---------------+-------+---------+-----+---------+--------------------+----------------------+--------------------------------------+
| id                                      | mainstat | secondarystat | conns | packets | fwd | dropped | detail__ports      | detail__drop_reasons | detail__hops                         |
+-----------------------------------------+----------+---------------+-------+---------+-----+---------+--------------------+----------------------+--------------------------------------+
| default/frontend->default/api           | 8        | 2180          | 2     | 10      | 4   | 0       | TCP/8080, TCP/9999 |                      | from-endpoint (4) -> to-endpoint (4) |
| default/frontend->kube-system/coredns-1 | 2        | 160           | 1     | 2       | 1   | 0       | UDP/53             |                      | from-endpoint (1) -> to-endpoint (1) |
| default/frontend->world                 | 2        | 120           | 2     | 2       | 1   | 1       | TCP/25, TCP/443    | POLICY_DENIED (1)    | from-endpoint (1) -> drop (1)        |
| host->default/api                       | 1        | 60            | 1     | 1       | 1   | 0       | TCP/8080           |                      | to-endpoint (1)                      |
+-----------------------------------------+----------+---------------+-------+---------+-----+---------+--------------------+----------------------+--------------------------------------+");
    let nodes = table(&e, "SELECT * FROM graph_nodes ORDER BY id").await;
    assert_eq!(nodes, "\
+-----------------------------+-----------------------+-----------+-------------+----------+---------------+--------------+
| time                        | id                    | title     | subtitle    | mainstat | secondarystat | detail__kind |
+-----------------------------+-----------------------+-----------+-------------+----------+---------------+--------------+
| 2026-11-26T15:04:05.050Z    | default/api           | api       | default     | 9        | 2240          | workload     |
| 2026-11-26T15:04:05.040Z    | default/frontend      | frontend  | default     | 12       | 2460          | workload     |
| 2026-11-26T15:04:05.050Z    | host                  | host      |             | 1        | 60            | host         |
| 2026-11-26T15:04:05.021100Z | kube-system/coredns-1 | coredns-1 | kube-system | 2        | 160           | workload     |
| 2026-11-26T15:04:05.040Z    | world                 | world     |             | 2        | 120           | world        |
+-----------------------------+-----------------------+-----------+-------------+----------+---------------+--------------+");
    // No column at all still counts the rows; a join pairs edges with nodes.
    assert_eq!(
        table(&e, "SELECT count(*) AS n FROM graph_edges").await,
        "+---+\n| n |\n+---+\n| 4 |\n+---+"
    );
    assert_eq!(
        table(
            &e,
            "SELECT e.id, n.detail__kind AS kind FROM graph_edges e \
             JOIN graph_nodes n ON e.target = n.id WHERE n.detail__kind <> 'workload'"
        )
        .await,
        "\
+-------------------------+-------+
| id                      | kind  |
+-------------------------+-------+
| default/frontend->world | world |
+-------------------------+-------+"
    );
    // Each edge's time is its last flow (a reply counts): connection 2's RST.
    let times = table(&e, "SELECT id, time FROM graph_edges ORDER BY id").await;
    assert_eq!(
        times,
        "\
+-----------------------------------------+-----------------------------+
| id                                      | time                        |
+-----------------------------------------+-----------------------------+
| default/frontend->default/api           | 2026-11-26T15:04:05.011Z    |
| default/frontend->kube-system/coredns-1 | 2026-11-26T15:04:05.021100Z |
| default/frontend->world                 | 2026-11-26T15:04:05.040Z    |
| host->default/api                       | 2026-11-26T15:04:05.050Z    |
+-----------------------------------------+-----------------------------+"
    );
}

#[tokio::test]
async fn the_time_condition_chooses_the_flows_the_graph_is_built_from() {
    let (_h, e) = script("graph-window");
    // Grafana's $__timeFilter(time) with an exclusive end: connection 1 only
    // (its three requests at two points each, and its two replies).
    let first = table(
        &e,
        &format!(
            "SELECT {EDGE_COLUMNS} FROM graph_edges \
             WHERE time >= '2026-11-26T15:04:05Z' AND time < '2026-11-26T15:04:05.010Z'"
        ),
    )
    .await;
    assert_eq!(first, "\
+-------------------------------+----------+---------------+-------+---------+-----+---------+---------------+----------------------+--------------------------------------+
| id                            | mainstat | secondarystat | conns | packets | fwd | dropped | detail__ports | detail__drop_reasons | detail__hops                         |
+-------------------------------+----------+---------------+-------+---------+-----+---------+---------------+----------------------+--------------------------------------+
| default/frontend->default/api | 6        | 2080          | 1     | 8       | 3   | 0       | TCP/8080      |                      | from-endpoint (3) -> to-endpoint (3) |
+-------------------------------+----------+---------------+-------+---------+-----+---------+---------------+----------------------+--------------------------------------+");
    // From the world connection on: world and the host probe.
    let late = table(
        &e,
        &format!(
            "SELECT {EDGE_COLUMNS} FROM graph_edges \
             WHERE '2026-11-26T15:04:05.030Z' <= time ORDER BY id"
        ),
    )
    .await;
    assert_eq!(late, "\
+-------------------------+----------+---------------+-------+---------+-----+---------+-----------------+----------------------+-------------------------------+
| id                      | mainstat | secondarystat | conns | packets | fwd | dropped | detail__ports   | detail__drop_reasons | detail__hops                  |
+-------------------------+----------+---------------+-------+---------+-----+---------+-----------------+----------------------+-------------------------------+
| default/frontend->world | 2        | 120           | 2     | 2       | 1   | 1       | TCP/25, TCP/443 | POLICY_DENIED (1)    | from-endpoint (1) -> drop (1) |
| host->default/api       | 1        | 60            | 1     | 1       | 1   | 0       | TCP/8080        |                      | to-endpoint (1)               |
+-------------------------+----------+---------------+-------+---------+-----+---------+-----------------+----------------------+-------------------------------+");
    let nodes = table(
        &e,
        "SELECT id, mainstat, secondarystat FROM graph_nodes \
         WHERE time BETWEEN '2026-11-26T15:04:05.020Z' AND '2026-11-26T15:04:05.040Z' \
         ORDER BY id",
    )
    .await;
    assert_eq!(
        nodes,
        "\
+-----------------------+----------+---------------+
| id                    | mainstat | secondarystat |
+-----------------------+----------+---------------+
| default/frontend      | 4        | 280           |
| kube-system/coredns-1 | 2        | 160           |
| world                 | 2        | 120           |
+-----------------------+----------+---------------+"
    );
    let none = e
        .query("SELECT * FROM graph_edges WHERE time > '2026-11-27T00:00:00Z'")
        .await
        .unwrap();
    assert_eq!(none.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    // A condition on another column filters the built graph's rows.
    let dropped = table(
        &e,
        "SELECT id, detail__dropped FROM graph_edges WHERE detail__dropped > 0",
    )
    .await;
    assert_eq!(
        dropped,
        "\
+-------------------------+-----------------+
| id                      | detail__dropped |
+-------------------------+-----------------+
| default/frontend->world | 1               |
+-------------------------+-----------------+"
    );
}

/// A prepared statement's `time >= ? AND time < ?` (Grafana's Flight SQL
/// data source sends such): described before its values are bound, then run
/// with them, it reads the same window as the values written in.
#[tokio::test]
async fn a_prepared_time_window_is_described_then_bound() {
    let (_h, e) = script("graph-prepared");
    let sql = "SELECT id, mainstat FROM graph_edges WHERE time >= ? AND time < ? ORDER BY id";
    let described = e.describe(sql, None).await.unwrap();
    assert_eq!(described.parameters.len(), 2);
    assert_eq!(
        described
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["id", "mainstat"]
    );
    let values = vec![
        ScalarValue::Utf8(Some("2026-11-26T15:04:05Z".into())),
        ScalarValue::Utf8(Some("2026-11-26T15:04:05.010Z".into())),
    ];
    let bound = e
        .stream(sql, values)
        .await
        .unwrap()
        .into_result()
        .await
        .unwrap();
    let written = table(
        &e,
        "SELECT id, mainstat FROM graph_edges \
         WHERE time >= '2026-11-26T15:04:05Z' AND time < '2026-11-26T15:04:05.010Z' ORDER BY id",
    )
    .await;
    assert_eq!(
        pretty_format_batches(&bound.batches).unwrap().to_string(),
        written
    );
    assert_eq!(
        written,
        "+-------------------------------+----------+\n\
         | id                            | mainstat |\n\
         +-------------------------------+----------+\n\
         | default/frontend->default/api | 6        |\n\
         +-------------------------------+----------+"
    );
}

/// Rows of `sql` as JSON objects.
async fn json_rows(e: &SqlEngine, sql: &str) -> Vec<Value> {
    let r = e
        .query(sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
    let mut w = ArrayWriter::new(Vec::new());
    for b in &r.batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    let text = String::from_utf8(w.into_inner()).unwrap();
    if text.is_empty() {
        return Vec::new();
    }
    match serde_json::from_str(&text).unwrap() {
        Value::Array(rows) => rows,
        other => panic!("not rows: {other}"),
    }
}

/// The builder's JSON of `flows`, in the tables' columns.
fn expected(flows: &[Flow]) -> (Vec<Value>, Vec<Value>) {
    let g = GraphBuilder::build(flows).to_json_value();
    let nodes = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            json!({
                "id": n["id"], "title": n["title"], "subtitle": n["subtitle"],
                "mainstat": n["mainstat"], "secondarystat": n["secondarystat"],
                "detail__kind": n["kind"],
            })
        })
        .collect();
    let edges = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let drops: Vec<String> = e["drops"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(reason, n)| format!("{reason} ({n})"))
                .collect();
            json!({
                "id": e["id"], "source": e["source"], "target": e["target"],
                "mainstat": e["mainstat"], "secondarystat": e["secondarystat"],
                "detail__connections": e["connections"], "detail__packets": e["packets"],
                "detail__forwarded": e["verdicts"]["forwarded"],
                "detail__dropped": e["verdicts"]["dropped"],
                "detail__audit": e["verdicts"]["audit"],
                "detail__other": e["verdicts"]["other"],
                "detail__ports": e["detail__ports"],
                "detail__drop_reasons": drops.join(", "),
                "detail__hops": e["detail__hops"],
            })
        })
        .collect();
    (nodes, edges)
}

#[tokio::test]
async fn the_tables_say_what_the_builders_json_says() {
    // The same 5-tuple's first packet three times, 2 s apart: three
    // connections (the builder reads the trace reason).
    let again: Vec<Flow> = (0..3)
        .map(|i| {
            let mut f = graph_flows::host_probe();
            f.uuid = format!("again-{i}");
            f.time.as_mut().unwrap().seconds += 2 * i;
            f.trace_reason = observer_proto::flow::TraceReason::New as i32;
            f
        })
        .collect();
    let fixtures = [
        ("graph-json-script", graph_flows::flows()),
        ("graph-json-history", history_flows::golden()),
        ("graph-json-again", again),
    ];
    for (name, flows) in fixtures {
        let h = ingest(&scratch(name), flows.clone(), 3);
        let e = engine(&h);
        let (nodes, edges) = expected(&flows);
        assert!(!edges.is_empty(), "{name}");
        if name == "graph-json-again" {
            assert_eq!(edges[0]["detail__connections"], 3);
        }
        let node_rows = json_rows(
            &e,
            "SELECT id, title, subtitle, mainstat, secondarystat, detail__kind \
             FROM graph_nodes ORDER BY id",
        )
        .await;
        assert_eq!(node_rows, nodes, "{name}");
        let edge_rows = json_rows(&e, "SELECT * EXCEPT (time) FROM graph_edges ORDER BY id").await;
        assert_eq!(edge_rows, edges, "{name}");
    }
}

#[tokio::test]
async fn other_conditions_on_time_and_other_tables_are_refused() {
    let (_h, e) = script("graph-refused");
    for sql in [
        "SELECT id FROM graph_edges WHERE time <> '2026-11-26T15:04:05Z'",
        "SELECT id FROM graph_nodes WHERE time < '2026-11-26T15:04:05Z' OR mainstat > 1",
    ] {
        let err = e.query(sql).await.unwrap_err();
        assert!(matches!(err, SqlError::Query(_)), "{sql}: {err:?}");
        assert!(
            err.to_string()
                .contains("so it must compare `time` with a constant"),
            "{sql}: {err}"
        );
    }
    let err = e.query("SELECT * FROM graph_links").await.unwrap_err();
    assert!(matches!(err, SqlError::Refused(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("`schemata` can be read, not `graph_links`"),
        "{err}"
    );
    for sql in [
        "INSERT INTO graph_edges SELECT * FROM graph_edges",
        "DROP TABLE graph_nodes",
    ] {
        let err = e.query(sql).await.unwrap_err();
        assert!(err.to_string().contains("read-only"), "{sql}: {err}");
    }
    let err = e.query("SELECT bytes FROM graph_edges").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown column `bytes`; the columns of `graph_edges` are: time, id, source, target, \
         mainstat, secondarystat, detail__connections, detail__packets, detail__forwarded, \
         detail__dropped, detail__audit, detail__other, detail__ports, detail__drop_reasons, \
         detail__hops"
    );
}

#[tokio::test]
async fn the_plan_builds_the_graph_over_the_windowed_scan_of_flows() {
    let (_h, e) = script("graph-explain");
    let r = e
        .query("EXPLAIN SELECT id FROM graph_edges WHERE time >= '2026-11-26T15:04:05.030Z'")
        .await
        .unwrap();
    let column = |name: &str| -> Vec<String> {
        let c = r.batches[0].column_by_name(name).unwrap();
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        c.iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect()
    };
    let physical = column("plan_type")
        .iter()
        .position(|t| t == "physical_plan")
        .expect("a physical plan");
    let plan = column("plan")[physical].clone();
    let lines: Vec<&str> = plan.lines().map(str::trim).collect();
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{plan}"))
    };
    // The graph reads history itself, in time order, with the window (the
    // files' row groups pruned by it): no scan of `flows` below it.
    let graph = lines[at("GraphExec: graph_edges")];
    assert_eq!(
        graph, "GraphExec: graph_edges, flows from 1795705445030000000 ns",
        "{plan}"
    );
    assert!(!plan.contains("DataSourceExec"), "{plan}");
}

/// The host's probe from one source port, its first packet (`NEW`) at
/// `seconds` after T0: each is another connection on the same 5-tuple.
fn probe_again(seconds: i64) -> Flow {
    let mut f = graph_flows::host_probe();
    f.time = Some(prost_types::Timestamp {
        seconds: graph_flows::T0 + seconds,
        nanos: 0,
    });
    f.trace_reason = observer_proto::flow::TraceReason::New as i32;
    f
}

#[tokio::test]
async fn a_window_over_several_files_and_memory_is_read_in_time_order() {
    // Three rounds of the same 5-tuple, 18 s apart: two in files, the newest
    // in memory. Read out of order (memory first, as the union of the two
    // scans did), the later rounds' first packets came before the earlier
    // ones and the three connections counted as one or two.
    let dir = scratch("graph-order");
    let h = History::open(common::config(&dir)).unwrap();
    for (round, seconds) in [0, 18, 36].into_iter().enumerate() {
        h.ingest(Arc::new(history_flows::response(probe_again(seconds))));
        if round < 2 {
            h.flush().unwrap();
        }
    }
    let e = engine(&h);
    assert_eq!(
        table(
            &e,
            "SELECT id, mainstat, secondarystat, detail__connections AS conns, \
             detail__packets AS packets FROM graph_edges"
        )
        .await,
        "\
+-------------------+----------+---------------+-------+---------+
| id                | mainstat | secondarystat | conns | packets |
+-------------------+----------+---------------+-------+---------+
| host->default/api | 3        | 180           | 3     | 3       |
+-------------------+----------+---------------+-------+---------+"
    );
    // The builder over the same flows in time order says the same.
    let g = GraphBuilder::build(&[probe_again(0), probe_again(18), probe_again(36)]);
    let edge = g.find("host", "default/api").unwrap();
    assert_eq!((edge.flows, edge.connections, edge.bytes), (3, 3, 180));
}

/// The host probe from `n` source ports: `n` connections on one edge.
fn probes(n: u32) -> Vec<Flow> {
    (0..n)
        .map(|i| {
            let mut f = graph_flows::host_probe();
            match f.l4.as_mut().and_then(|l| l.protocol.as_mut()) {
                Some(Protocol::Tcp(t)) => t.source_port = 20_000 + i,
                other => panic!("the host probe is TCP, got {other:?}"),
            }
            f
        })
        .collect()
}

#[tokio::test]
async fn a_graph_over_its_memory_limit_fails_and_the_next_query_runs() {
    let h = ingest(&scratch("graph-memory"), probes(2000), 2000);
    let e = SqlEngine::new(
        Some(h.clone()),
        SqlLimits {
            memory_bytes: 64 << 10,
            ..SqlLimits::default()
        },
    );
    let err = e.query("SELECT * FROM graph_edges").await.unwrap_err();
    match &err {
        SqlError::Memory { limit, detail } => {
            assert_eq!(*limit, 64 << 10);
            assert!(detail.contains("for graph_edges"), "{detail}");
        }
        other => panic!("not a memory error: {other:?}"),
    }
    let enough = engine(&h);
    assert_eq!(
        table(&enough, "SELECT detail__connections AS n FROM graph_edges").await,
        "+------+\n| n    |\n+------+\n| 2000 |\n+------+"
    );
    assert_eq!(
        table(&e, "SELECT count(*) AS n FROM flows").await,
        "+------+\n| n    |\n+------+\n| 2000 |\n+------+"
    );
}
