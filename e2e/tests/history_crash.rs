//! A real relay process killed with SIGKILL in the middle of a compaction
//! (at each of its steps: the compacted file written, renamed, one input
//! removed), then started again: every row of history is there exactly
//! once, by count and by UUID, and the files on disk are what the commit
//! rule says (the inputs before the rename, the compacted file after).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};

use arrow::array::{Array, Int64Array, StringArray};
use e2e::KilledOnDrop;
use observer_proto::flow::Flow;
use relay::history::{History, HistoryConfig, files};
use test_support::history_flows::{T0, response};
use test_support::scratch::ScratchDir;

const FILES: usize = 12;
const ROWS: usize = 200;

/// Twelve small files of one hour, as a quiet relay writes them.
fn small_files(dir: &Path) -> BTreeSet<String> {
    let h = History::open(HistoryConfig {
        retention_age: std::time::Duration::from_secs(100 * 365 * 86_400),
        compaction: None,
        ..HistoryConfig::new(dir)
    })
    .unwrap();
    let mut uuids = BTreeSet::new();
    for f in 0..FILES {
        for r in 0..ROWS {
            let n = f * ROWS + r;
            let uuid = format!("5b1e0c2a-9d4f-8a11-8000-{n:012}");
            h.ingest(Arc::new(response(Flow {
                time: Some(prost_types::Timestamp {
                    seconds: T0 + n as i64,
                    nanos: 0,
                }),
                uuid: uuid.clone(),
                node_name: "node1".into(),
                ..Default::default()
            })));
            uuids.insert(uuid);
        }
        h.flush().unwrap();
    }
    assert_eq!(h.files().len(), FILES);
    uuids
}

/// A relay over `dir` (its peer never answers), killed when dropped, and
/// its stderr lines.
fn relay(dir: &Path, extra: &[&str]) -> (KilledOnDrop, Receiver<String>) {
    let bin = observe_lab::binaries::binary("relay").expect("the relay binary");
    let mut child = Command::new(bin)
        .args(["--peer", e2e::REFUSING_PEER, "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "off", "--retention-age", "36500d"])
        .arg("--history-dir")
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the relay");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (KilledOnDrop(child), rx)
}

/// Waits for a line containing `text`; the lines read meanwhile go to `seen`.
fn wait_for(lines: &Receiver<String>, text: &str, seen: &mut Vec<String>) -> String {
    loop {
        match lines.recv_timeout(e2e::WAIT) {
            Ok(line) if line.contains(text) => return line,
            Ok(line) => seen.push(line),
            Err(e) => panic!(
                "no line with {text:?} ({e}); the relay said:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// The address in "serving observer.Observer on ADDR over ...".
fn address(lines: &Receiver<String>, seen: &mut Vec<String>) -> String {
    let line = wait_for(lines, "serving observer.Observer on ", seen);
    let rest = line.split("serving observer.Observer on ").nth(1).unwrap();
    rest.split_whitespace().next().unwrap().to_string()
}

/// Every UUID of history, and `count(*)`, asked over Flight SQL.
async fn rows(addr: &str) -> (i64, Vec<String>) {
    let q = observe_cli::query_command::query;
    // The relay here serves plaintext.
    let target = observe_cli::connect::ConnectArgs::server(addr)
        .target(&[])
        .unwrap();
    let (_, count) = q(&target, "SELECT count(*) AS n FROM flows").await.unwrap();
    let n = count[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    let (_, batches) = q(&target, "SELECT uuid FROM flows ORDER BY uuid")
        .await
        .unwrap();
    let uuids = batches
        .iter()
        .flat_map(|b| {
            let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            (0..a.len())
                .map(|i| a.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    (n, uuids)
}

async fn kill_during_compaction_then_restart(point: &str) {
    let scratch = ScratchDir::new(&format!("history-crash-{point}"));
    let dir = scratch.path().join("history");
    let uuids = small_files(&dir);
    let inputs = files::list(&dir).unwrap();

    let (child, lines) = relay(
        &dir,
        &["--compaction-interval", "1s", "--history-pause-at", point],
    );
    let mut seen = Vec::new();
    wait_for(&lines, "compaction paused at", &mut seen);
    // SIGKILL, to the relay's pid.
    drop(child);

    let on_disk = files::list(&dir).unwrap();
    let compacted: Vec<_> = on_disk.iter().filter(|f| f.is_compacted()).collect();
    let inputs_left = inputs.iter().filter(|f| on_disk.contains(f)).count();
    let hidden = std::fs::read_dir(inputs[0].path.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    match point {
        "written" => assert_eq!((compacted.len(), inputs_left, hidden), (0, FILES, 1)),
        "renamed" => assert_eq!((compacted.len(), inputs_left, hidden), (1, FILES, 0)),
        _ => assert_eq!((compacted.len(), inputs_left, hidden), (1, FILES - 1, 0)),
    }

    // Started again (without compaction): each row once.
    let (again, lines) = relay(&dir, &["--compaction-interval", "0s"]);
    let addr = address(&lines, &mut seen);
    let (n, got) = rows(&addr).await;
    assert_eq!(n, uuids.len() as i64, "{point}: count");
    assert_eq!(got.len(), uuids.len(), "{point}: no row twice");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), uuids, "{point}");
    let after = files::list(&dir).unwrap();
    if point == "written" {
        assert_eq!(
            after, inputs,
            "{point}: the inputs, the temporary file removed"
        );
    } else {
        assert_eq!(after.len(), 1, "{point}: the inputs removed at start");
        assert!(after[0].is_compacted());
    }
    drop(again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_when_the_compacted_file_is_written() {
    kill_during_compaction_then_restart("written").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_when_the_compacted_file_is_renamed() {
    kill_during_compaction_then_restart("renamed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_when_one_input_is_removed() {
    kill_during_compaction_then_restart("removed-one").await;
}
