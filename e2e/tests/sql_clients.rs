//! Flight SQL with a client that is not ours: the ADBC Flight SQL driver
//! from PyPI (`scripts/setup.sh` installs it into a virtual environment,
//! `/var/cache/observe-ci/venv` or `$OBSERVE_VENV`) runs
//! `e2e/clients/adbc_check.py` against a relay holding the golden history
//! flows: it lists the tables and the `flows` schema, prepares a statement
//! with a `?` parameter and runs it, and gets the rows `observe query`
//! prints for the same query.

use std::process::Output;
use std::time::Duration;

use observe_cli::connect::ConnectArgs;
use observe_cli::query_command::query;
use relay::RelayConfig;
use relay::history::HistoryConfig;
use serde_json::Value;
use test_support::history_flows as flows;
use test_support::scratch::ScratchDir;

async fn run(cmd: &mut tokio::process::Command) -> Output {
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.kill_on_drop(true).output())
        .await
        .expect("the client finished")
        .expect("the client started");
    assert!(
        out.status.success(),
        "{:?}: {}\n{}",
        cmd.as_std(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adbc_driver_lists_the_tables_and_runs_a_prepared_statement() {
    let python = e2e::venv_python();
    let dir = ScratchDir::new("sql-clients");
    let cfg = RelayConfig {
        history: Some(HistoryConfig {
            retention_age: Duration::from_secs(100 * 365 * 86_400),
            ..HistoryConfig::new(dir.path())
        }),
        // No flow-probe answers here: flows are pushed into the store below.
        ..RelayConfig::new(vec![e2e::REFUSING_PEER.into()])
    };
    let relay = e2e::relay_harness::RelayUnderTest::start_config(cfg).await;
    let addr = relay.addr().to_string();
    // The relay in-process serves plaintext.
    let target = ConnectArgs::server(&addr).target(&[]).unwrap();
    // Published as the merge publishes: to the history writer and the store.
    for f in flows::golden() {
        relay.state().publish(flows::response(f));
    }
    let deadline = tokio::time::Instant::now() + e2e::WAIT;
    loop {
        let (_, b) = query(&target, "SELECT uuid FROM flows").await.unwrap();
        if b.iter().map(|b| b.num_rows()).sum::<usize>() == 9 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history has not all 9 flows"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/adbc_check.py");
    let out = run(tokio::process::Command::new(&python)
        .arg(script)
        .arg(format!("grpc://{addr}"))
        .arg("8080"))
    .await;
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(got["vendor_name"], "observe relay");
    assert_eq!(
        got["tables"],
        serde_json::json!([
            ["observe", "public", "flows", "TABLE"],
            ["observe", "public", "graph_edges", "VIEW"],
            ["observe", "public", "graph_nodes", "VIEW"],
            ["observe", "public", "policy_states", "TABLE"],
        ])
    );
    let columns: Vec<&str> = got["flows_columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap())
        .collect();
    let schema = relay::history::schema::schema();
    let want: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(columns, want);
    assert_eq!(
        got["flows_columns"][0],
        serde_json::json!(["time", "timestamp[ns, tz=UTC]"])
    );
    assert_eq!(got["parameters"], serde_json::json!([["$1", "uint32"]]));
    // GetSchema (arrow-flight's dispatch answered UNIMPLEMENTED).
    assert_eq!(
        got["execute_schema"][0],
        serde_json::json!(["port", "uint32"])
    );
    assert_eq!(got["execute_schema"][1][0], "uuid");

    // The same rows as `observe query` prints for the query with the value in.
    let observe = run(tokio::process::Command::new(e2e::observe_binary()).args([
        "query",
        "-o",
        "json",
        "--server",
        &addr,
        "SELECT uuid, destination_port FROM flows WHERE destination_port = 8080 ORDER BY uuid",
    ]))
    .await;
    let lines: Vec<Value> = String::from_utf8(observe.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(got["rows"], Value::Array(lines));

    relay.shutdown().await;
}
