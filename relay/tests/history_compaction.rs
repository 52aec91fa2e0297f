//! Compaction under readers: queries running while small files are merged
//! see every row exactly once, every time; a reader's files stay on disk
//! until it is done; the compacted files answer like the small ones.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use common::{config, engine, scratch};
use datafusion::arrow::array::{Array, Int64Array};
use observer_proto::flow::Flow;
use relay::history::compact::CompactionConfig;
use relay::history::scan::{self, Merge, Range};
use relay::history::{History, files, read};
use relay::sql::SqlEngine;
use test_support::history_flows::response;

/// 2024-05-01T10:00:00Z
const T0: i64 = 1_714_557_600;

/// `files` files of `rows` flows each, over two hours, flushed one by one.
fn small_files(dir: &Path, files: usize, rows: usize) -> (Arc<History>, BTreeSet<String>) {
    let h = History::open(config(dir)).unwrap();
    let mut uuids = BTreeSet::new();
    for f in 0..files {
        for r in 0..rows {
            let n = f * rows + r;
            let uuid = format!("3f2a9c41-07d5-8e1b-8000-{n:012}");
            let secs = T0 + (n as i64 * 7200) / (files * rows) as i64;
            h.ingest(Arc::new(response(Flow {
                time: Some(prost_types::Timestamp {
                    seconds: secs,
                    nanos: (n % 1000) as i32,
                }),
                uuid: uuid.clone(),
                node_name: format!("node{}", n % 3),
                summary: format!("flow {n}"),
                ..Default::default()
            })));
            uuids.insert(uuid);
        }
        h.flush().unwrap();
    }
    (h, uuids)
}

async fn count(e: &SqlEngine) -> (i64, i64) {
    let r = e
        .query("SELECT count(*) AS n, count(DISTINCT uuid) AS d FROM flows")
        .await
        .unwrap();
    let col = |i: usize| {
        r.batches[0]
            .column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0)
    };
    (col(0), col(1))
}

fn everything() -> CompactionConfig {
    CompactionConfig {
        small_bytes: u64::MAX,
        target_bytes: u64::MAX,
        ..CompactionConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_compaction_see_each_row_exactly_once() {
    let dir = scratch("compact-queries");
    let (h, uuids) = small_files(&dir, 60, 40);
    let want = uuids.len() as i64;
    assert_eq!(h.files().len(), 60, "one file per flush");
    let e = engine(&h);
    // Runs of two or three files: twenty or more compactions in one pass.
    let three: u64 = h.files()[..3].iter().map(|f| f.bytes).sum();
    let cfg = CompactionConfig {
        small_bytes: u64::MAX,
        target_bytes: three,
        ..CompactionConfig::default()
    };
    let runs = relay::history::compact::plan(&h.files(), &cfg);
    let merged: usize = runs.iter().map(Vec::len).sum();
    assert!(runs.len() >= 20, "{} runs", runs.len());
    // Each compaction waits for a query between two of its batches; the
    // rest of it (finish, rename, manifest, deletion) runs while the next
    // query does.
    let (turn, take_turn) = std::sync::mpsc::sync_channel::<()>(0);
    let compacting = {
        let h = h.clone();
        std::thread::spawn(move || {
            h.compact_now(&cfg, &mut || {
                let _ = take_turn.recv();
                true
            })
        })
    };
    let mut queries = 0;
    loop {
        let done = compacting.is_finished();
        assert_eq!(count(&e).await, (want, want), "query {queries}");
        // GetFlows reads the same snapshot in time order.
        let snap = h.snapshot().unwrap();
        let mut seen = Vec::new();
        for b in Merge::new(scan::sources(snap.files, snap.recent), Range::ALL, 1000) {
            seen.extend(read::flows(&b.unwrap()).into_iter().map(|f| f.uuid));
        }
        assert_eq!(seen.len(), uuids.len(), "scan {queries}");
        assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), uuids);
        queries += 1;
        let _ = turn.try_send(());
        if done {
            break;
        }
    }
    drop(turn);
    assert_eq!(compacting.join().unwrap().unwrap(), runs.len());
    assert!(queries > runs.len(), "{queries} queries");
    let left = h.files();
    assert_eq!(left.len(), 60 - merged + runs.len());
    assert_eq!(left.iter().filter(|f| f.is_compacted()).count(), runs.len());
    assert_eq!(files::list(&dir).unwrap(), left, "the inputs are gone");
    assert_eq!(count(&e).await, (want, want));
    assert_eq!(h.compactions(), runs.len() as u64);
}

#[tokio::test]
async fn a_readers_files_stay_until_it_is_done() {
    let dir = scratch("compact-lease");
    let (h, uuids) = small_files(&dir, 4, 10);
    let before = h.files();
    let snap = h.snapshot().unwrap();
    assert_eq!(h.compact_now(&everything(), &mut || true).unwrap(), 2);
    // The snapshot's files are still there and read whole.
    assert!(before.iter().all(|f| f.path.exists()));
    let mut n = 0;
    for b in Merge::new(scan::sources(snap.files, snap.recent), Range::ALL, 7) {
        n += b.unwrap().num_rows();
    }
    assert_eq!(n, uuids.len());
    drop(snap.lease);
    assert!(
        before.iter().all(|f| !f.path.exists()),
        "deleted after the last reader"
    );
    assert_eq!(files::list(&dir).unwrap(), h.files());
}

#[tokio::test]
async fn compacted_files_answer_like_the_small_ones_and_survive_a_restart() {
    let dir = scratch("compact-same");
    let (h, _) = small_files(&dir, 12, 25);
    let e = engine(&h);
    let sql = "SELECT node, count(*) AS n, min(time) AS first, max(time) AS last, \
               count(DISTINCT summary) AS s FROM flows GROUP BY node ORDER BY node";
    let before = common::table(&e, sql).await;
    let bytes_before: u64 = h.files().iter().map(|f| f.bytes).sum();
    assert_eq!(h.compact_now(&everything(), &mut || true).unwrap(), 2);
    assert_eq!(common::table(&e, sql).await, before);
    let bytes_after: u64 = h.files().iter().map(|f| f.bytes).sum();
    assert!(bytes_after < bytes_before, "{bytes_after} < {bytes_before}");
    // Rows of a compacted file are in time order.
    for f in h.files() {
        let snap_rows: Vec<i64> =
            Merge::new(vec![scan::Source::File(f.clone())], Range::ALL, 10_000)
                .flat_map(|b| {
                    let b = b.unwrap();
                    let t = relay::history::schema::times(&b).unwrap().clone();
                    (0..t.len()).map(move |i| t.value(i)).collect::<Vec<_>>()
                })
                .collect();
        assert!(snap_rows.is_sorted(), "{}", f.path.display());
    }
    drop(e);
    drop(h);
    let again = common::ingest(&dir, Vec::new(), 0);
    assert_eq!(common::table(&engine(&again), sql).await, before);
}

#[test]
fn a_stopped_compaction_leaves_the_files_as_they_were() {
    let dir = scratch("compact-stop");
    let (h, _) = small_files(&dir, 3, 5000);
    let before = h.files();
    let mut turns = 0;
    let done = h
        .compact_now(&everything(), &mut || {
            turns += 1;
            turns < 2
        })
        .unwrap();
    assert_eq!(done, 0);
    assert_eq!(h.files(), before);
    assert_eq!(
        files::list(&dir).unwrap(),
        before,
        "no file added nor removed"
    );
    let hidden = std::fs::read_dir(before[0].path.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(hidden, 0, "the temporary file is removed");
}

/// Retention deletes whole files: compaction caps a file's time span at a
/// quarter of the retention age, so that once retention runs no row is kept
/// more than that past the age (a quiet relay's hour file used to take every
/// new flush and keep its oldest rows for up to an hour).
#[tokio::test]
async fn compaction_keeps_files_short_enough_for_retention_to_take_old_rows() {
    let dir = scratch("compact-retention");
    let age = std::time::Duration::from_secs(2 * 3600);
    let cap = (age / 4).as_nanos() as i64;
    let now = std::time::SystemTime::now();
    let now_ns = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let h = History::open(relay::history::HistoryConfig {
        retention_age: age,
        ..config(&dir)
    })
    .unwrap();
    // One flush every 3 minutes for the last 111 minutes, one row each.
    let mut uuids = BTreeSet::new();
    for i in 0..38i64 {
        let t = now_ns - (111 - 3 * i) * 60_000_000_000;
        let uuid = format!("3f2a9c41-07d5-8e1b-8000-{i:012}");
        h.ingest(Arc::new(response(Flow {
            time: Some(prost_types::Timestamp {
                seconds: t / 1_000_000_000,
                nanos: (t % 1_000_000_000) as i32,
            }),
            uuid: uuid.clone(),
            node_name: "node1".into(),
            ..Default::default()
        })));
        uuids.insert(uuid);
        h.flush().unwrap();
    }
    assert_eq!(h.files().len(), 38);
    h.compact_now(&everything(), &mut || true).unwrap();
    let left = h.files();
    assert!(
        left.len() < 38,
        "compaction merged files: {} left",
        left.len()
    );
    for f in &left {
        assert!(f.last - f.first <= cap, "{f:?} spans more than {cap} ns");
    }
    let e = engine(&h);
    assert_eq!(count(&e).await, (38, 38));
    // An hour later, retention leaves no row older than the age plus the cap.
    let later = now + std::time::Duration::from_secs(3600);
    let cutoff = now_ns + 3600 * 1_000_000_000 - age.as_nanos() as i64;
    let gone = files::retention(&left, later, age, u64::MAX);
    assert!(!gone.is_empty());
    for f in left.iter().filter(|f| !gone.contains(f)) {
        assert!(
            f.first >= cutoff - cap,
            "{f:?} keeps rows from before {}",
            cutoff - cap
        );
    }
}

/// A file that cannot be read ends its hour's run, and only that: the
/// later hours are compacted in the same pass (it used to stop every pass
/// at the oldest hour, so nothing later was ever compacted). The damaged
/// file is set aside, in the quarantine folder, no longer read: before, it
/// stayed listed, and every read of its hour failed until retention.
#[test]
fn a_damaged_file_holds_back_only_its_own_run_and_is_set_aside() {
    let dir = scratch("compact-damaged");
    let (h, _) = small_files(&dir, 4, 100);
    let before = h.files();
    let hours: BTreeSet<_> = before.iter().map(|f| f.path.parent().unwrap()).collect();
    assert_eq!((before.len(), hours.len()), (4, 2), "{before:?}");
    std::fs::write(&before[0].path, b"not parquet").unwrap();
    assert_eq!(h.compact_now(&everything(), &mut || true).unwrap(), 1);
    let after = h.files();
    assert_eq!(after[0], before[1], "the damaged file's hour without it");
    assert_eq!(after.len(), 2);
    assert_eq!((after[1].lo, after[1].hi), (before[2].lo, before[3].hi));
    let relative = before[0].path.strip_prefix(&dir).unwrap();
    let aside = dir.join(files::QUARANTINE).join(relative);
    assert_eq!(std::fs::read(&aside).unwrap(), b"not parquet");
    assert!(!before[0].path.exists());
    assert_eq!(h.compact_now(&everything(), &mut || true).unwrap(), 0);
    assert_eq!(h.files(), after);
}

/// What a GetFlows read that met a damaged file does with it (as compaction
/// does): a file that could not be opened (that may pass) stays listed; one
/// whose content could not be decoded is set aside, once.
#[test]
fn only_a_file_whose_content_is_damaged_is_set_aside() {
    let dir = scratch("set-aside");
    let (h, _) = small_files(&dir, 2, 10);
    let before = h.files();
    let error = |damaged| scan::ReadError {
        path: before[0].path.clone(),
        why: "test".into(),
        damaged,
    };
    h.set_aside(&error(false));
    assert_eq!(h.files(), before);
    h.set_aside(&error(true));
    assert_eq!(h.files(), before[1..]);
    let aside = dir
        .join(files::QUARANTINE)
        .join(before[0].path.strip_prefix(&dir).unwrap());
    assert!(aside.exists() && !before[0].path.exists());
    // Told again (another reader): nothing more happens.
    h.set_aside(&error(true));
    assert_eq!(h.files(), before[1..]);
    assert!(aside.exists());
}

/// Clears the immutable attribute of a file when dropped (also while a
/// failed assertion unwinds), so the scratch folder can go.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .expect("chattr (e2fsprogs)");
        assert!(status.success(), "chattr +i {}", path.display());
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// An input that cannot be deleted after its run was merged (immutable
/// here; a read-only mount or a failing disk elsewhere) is told and left
/// for the next start: the pass goes on. Before, the error ended the pass,
/// the run's other inputs stayed on disk, unlisted, until a restart, and
/// the later hours were not compacted.
#[test]
fn an_input_that_cannot_be_deleted_stops_nothing_else() {
    test_support::require_root("chattr +i");
    let dir = scratch("compact-undeletable");
    let (h, uuids) = small_files(&dir, 4, 100);
    let before = h.files();
    let stuck = Immutable::set(&before[0].path);
    assert_eq!(h.compact_now(&everything(), &mut || true).unwrap(), 2);
    let after = h.files();
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!((after[0].lo, after[0].hi), (before[0].lo, before[1].hi));
    assert_eq!((after[1].lo, after[1].hi), (before[2].lo, before[3].hi));
    assert!(before[0].path.exists(), "the undeletable input stays");
    assert!(before[1..].iter().all(|f| !f.path.exists()));
    drop(stuck);
    drop(h);
    // The next start deletes it: the merged file holds its rows.
    let h = History::open(config(&dir)).unwrap();
    assert!(!before[0].path.exists());
    assert_eq!(h.files(), after);
    let mut seen = Vec::new();
    for b in Merge::new(scan::sources(h.files(), Vec::new()), Range::ALL, 1000) {
        seen.extend(read::flows(&b.unwrap()).into_iter().map(|f| f.uuid));
    }
    assert_eq!(seen.len(), uuids.len());
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), uuids);
}
