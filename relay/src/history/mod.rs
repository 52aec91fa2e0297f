//! Flow history: every flow the relay ingests becomes a row of one Arrow
//! schema; rows are batched by count and time and written to Parquet files
//! partitioned by hour, kept by age and total size. The SQL engine
//! ([`crate::sql`]) reads the files and the rows not yet written as one table.
//!
//! - [`schema`]: the schema (below) and flows → `RecordBatch`.
//! - [`files`]: layout, atomic writes (temp name, fsync, rename), column
//!   encodings and compression, retention.
//! - [`task`]: the follower of the store that feeds and flushes the history.
//! - [`read`]: rows back into flows, for `GetFlows` with an old `since`.
//!
//! # The `flows` schema
//! One row per flow (lost-event and node-status records are not rows). Strings
//! are null when the flow has no value; enums are their protobuf names.
//!
//! | column | type | from |
//! |---|---|---|
//! | `time` | timestamp(ns, UTC), not null | flow time (else the response's) |
//! | `node` | utf8 | node name |
//! | `uuid` | utf8 | flow UUID |
//! | `verdict` | utf8 | `FORWARDED`, `DROPPED`, ... |
//! | `drop_reason` | utf8 | `drop_reason_desc` name, null when unknown |
//! | `kernel_drop` | utf8 | kernel drop reason name (`kernel_drop.name`) |
//! | `event_type`, `event_subtype` | int32 | Cilium event type and sub-type |
//! | `flow_type` | utf8 | `L3_L4`, `L7`, `SOCK` |
//! | `ip_version` | uint8 | 4 or 6 |
//! | `source_ip`, `destination_ip` | utf8 | |
//! | `source_port`, `destination_port` | uint32 | TCP/UDP/SCTP only |
//! | `protocol` | utf8 | `TCP`, `UDP`, `ICMPv4`, `ICMPv6`, `SCTP` |
//! | `tcp_flags` | utf8 | set flags, e.g. `SYN,ACK` |
//! | `source_identity`, `destination_identity` | uint32 | |
//! | `source_namespace`, `destination_namespace` | utf8 | |
//! | `source_pod`, `destination_pod` | utf8 | |
//! | `source_workload`, `destination_workload` | utf8 | first workload's name |
//! | `source_labels`, `destination_labels` | utf8 | labels joined by `,` |
//! | `source_service`, `destination_service` | utf8 | `namespace/name` |
//! | `traffic_direction` | utf8 | `INGRESS`, `EGRESS` |
//! | `observation_point` | utf8 | `TO_ENDPOINT`, ... |
//! | `is_reply` | boolean | null when unknown |
//! | `ingress_allowed_by`, `ingress_denied_by`, `egress_allowed_by`, `egress_denied_by` | utf8 | policies as `namespace/name` joined by `,` |
//! | `fwd_bytes`, `fwd_packets`, `rev_bytes`, `rev_packets` | uint64 | `volume` (null without it) |
//! | `lifecycle_kind` | utf8 | `ESTABLISHED`, `CLOSED`, `RETRANSMIT` |
//! | `lifecycle_duration_ns` | uint64 | |
//! | `lifecycle_retransmits` | uint32 | |
//! | `summary` | utf8 | |
//!
//! On disk every column is ZSTD-compressed and encoded by its kind (see
//! [`files`]); the relay_ingest benchmark measures about 24 bytes per lab
//! flow. `uuid` stays text in SQL: flow-probe's UUIDs are a random prefix per
//! probe run plus a counter (`flow_probe::enrich::FlowIds`), which ZSTD keeps
//! to about 2–3 bytes a flow.
//!
//! Consistency: rows move from memory to a file under one lock, and the SQL
//! engine takes its snapshot (file list + rows in memory) under the same lock,
//! so a query sees each row exactly once.
//!
//! # What a crash loses
//! A row is durable once its file is renamed (the file and its directory are
//! fsynced, see [`files`]). A stop by SIGINT or SIGTERM writes every row first
//! ([`task`]). A `kill -9` (or power loss) loses the rows not yet in a renamed
//! file, and no more:
//! - the rows in memory: at most `batch_rows` ([`DEFAULT_BATCH_ROWS`]:
//!   65,536), all ingested within the last `flush_interval`
//!   ([`DEFAULT_FLUSH_INTERVAL`]: 5 s) plus the time of the write in
//!   progress, whichever bound is reached first (while writes succeed: a
//!   failed write keeps its rows in memory for the next try);
//! - the flows the history task has not yet taken from the store's broadcast
//!   (its buffer is the ring capacity clamped to 1,024–65,536: 16,380 by
//!   default, [`crate::config::DEFAULT_RING_CAPACITY`]), and those still in
//!   the merge's reorder window.
//!
//! A half-written file stays a hidden `.tmp` and is removed at the next start;
//! every renamed file is whole.

pub mod files;
pub mod read;
pub mod schema;
pub mod task;
pub mod units;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use datafusion::arrow::array::RecordBatch;
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;

use files::HistoryFile;
use observer_proto::time::{event_time, now_nanos};
use schema::Rec;

/// The default history directory.
pub const DEFAULT_DIR: &str = "/var/lib/observe/history";
/// Rows per batch (and so at most per file) by default.
pub const DEFAULT_BATCH_ROWS: usize = 65_536;
/// How often rows in memory are written by default.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Files older than this are deleted by default.
pub const DEFAULT_RETENTION_AGE: Duration = Duration::from_secs(24 * 3600);
/// The oldest files are deleted past this total by default (1 GiB).
pub const DEFAULT_RETENTION_BYTES: u64 = 1 << 30;

/// Where and how history is kept.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    pub dir: PathBuf,
    pub batch_rows: usize,
    pub flush_interval: Duration,
    pub retention_age: Duration,
    pub retention_bytes: u64,
}

impl HistoryConfig {
    /// Defaults for everything but the directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        HistoryConfig {
            dir: dir.into(),
            batch_rows: DEFAULT_BATCH_ROWS,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            retention_age: DEFAULT_RETENTION_AGE,
            retention_bytes: DEFAULT_RETENTION_BYTES,
        }
    }
}

/// A flow waiting in memory to be written: node, time, flow response.
type Pending = (i64, Arc<GetFlowsResponse>);

#[derive(Default)]
struct Recent {
    /// Rows not yet being written.
    pending: Vec<Pending>,
    /// Rows being written right now (still read from memory until renamed).
    flushing: Vec<Pending>,
}

/// What a query reads: the finished files and the rows still in memory.
pub struct Snapshot {
    pub files: Vec<HistoryFile>,
    pub recent: Vec<RecordBatch>,
}

/// The history of one relay: rows in memory and the files on disk.
pub struct History {
    cfg: HistoryConfig,
    recent: Mutex<Recent>,
    /// One flush at a time.
    flush: Mutex<()>,
    seq: AtomicU64,
    written_rows: AtomicU64,
}

fn to_batch(rows: &[Pending]) -> RecordBatch {
    let recs: Vec<Rec> = rows
        .iter()
        .filter_map(|(time, r)| match &r.response_types {
            Some(ResponseTypes::Flow(f)) => Some(Rec {
                node: if f.node_name.is_empty() {
                    &r.node_name
                } else {
                    &f.node_name
                },
                time: *time,
                flow: f,
            }),
            _ => None,
        })
        .collect();
    schema::to_batch(&recs)
}

impl History {
    /// Opens (creating) the directory, removes a crashed writer's temporary
    /// files and applies retention.
    pub fn open(cfg: HistoryConfig) -> io::Result<Arc<History>> {
        std::fs::create_dir_all(&cfg.dir)?;
        let removed = files::remove_leftovers(&cfg.dir)?;
        if removed > 0 {
            log::warn!("history: removed {removed} unfinished file(s) of an earlier run");
        }
        let history = History {
            cfg,
            recent: Mutex::new(Recent::default()),
            flush: Mutex::new(()),
            seq: AtomicU64::new(0),
            written_rows: AtomicU64::new(0),
        };
        history.retain()?;
        Ok(Arc::new(history))
    }

    pub fn config(&self) -> &HistoryConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a response (only flows become rows). True when a batch is full.
    pub fn ingest(&self, r: Arc<GetFlowsResponse>) -> bool {
        if !matches!(r.response_types, Some(ResponseTypes::Flow(_))) {
            return false;
        }
        let time = event_time(&r).unwrap_or_else(now_nanos);
        let time = i64::try_from(time).unwrap_or(i64::MAX);
        let mut recent = self.lock();
        recent.pending.push((time, r));
        recent.pending.len() >= self.cfg.batch_rows.max(1)
    }

    /// Rows written to files since start.
    pub fn written_rows(&self) -> u64 {
        self.written_rows.load(Ordering::Relaxed)
    }

    /// Finished files on disk now, and their total bytes.
    pub fn disk_usage(&self) -> io::Result<(u64, u64)> {
        let files = files::list(&self.cfg.dir)?;
        Ok((files.len() as u64, files.iter().map(|f| f.bytes).sum()))
    }

    /// Writes every row in memory to files (one per hour it spans), then
    /// applies retention. Blocking: call from a blocking thread.
    pub fn flush(&self) -> io::Result<()> {
        let _one = self.flush.lock().unwrap_or_else(|p| p.into_inner());
        let rows = {
            let mut recent = self.lock();
            let rows = std::mem::take(&mut recent.pending);
            recent.flushing = rows.clone();
            rows
        };
        let mut result = Ok(());
        let mut start = 0;
        while start < rows.len() && result.is_ok() {
            let hour = files::hour_index(rows[start].0);
            let end = start
                + rows[start..]
                    .iter()
                    .take_while(|(t, _)| files::hour_index(*t) == hour)
                    .count();
            result = self.write_part(&rows[start..end]);
            start = end;
        }
        let mut recent = self.lock();
        if result.is_err() {
            // Not lost: back in front of the newer rows, tried again next time.
            let mut rest = rows[start..].to_vec();
            rest.append(&mut recent.pending);
            recent.pending = rest;
        }
        recent.flushing.clear();
        drop(recent);
        result?;
        self.retain()
    }

    fn write_part(&self, rows: &[Pending]) -> io::Result<()> {
        let batch = to_batch(rows);
        let first = rows.iter().map(|r| r.0).min().unwrap_or_default();
        let last = rows.iter().map(|r| r.0).max().unwrap_or_default();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let prepared = files::prepare(&self.cfg.dir, &batch, first, last, seq)?;
        // The rename happens under the lock, where the rows leave memory: a
        // snapshot sees them in the file or in memory, never both nor neither.
        let mut recent = self.lock();
        prepared.commit()?;
        let n = rows.len().min(recent.flushing.len());
        recent.flushing.drain(..n);
        self.written_rows
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn retain(&self) -> io::Result<()> {
        let deleted = files::enforce_retention(
            &self.cfg.dir,
            SystemTime::now(),
            self.cfg.retention_age,
            self.cfg.retention_bytes,
        )?;
        if !deleted.is_empty() {
            log::info!("history: retention deleted {} file(s)", deleted.len());
        }
        Ok(())
    }

    /// The files and the rows in memory, taken consistently.
    pub fn snapshot(&self) -> io::Result<Snapshot> {
        let (files, rows) = {
            let recent = self.lock();
            let files = files::list(&self.cfg.dir)?;
            let mut rows = recent.flushing.clone();
            rows.extend(recent.pending.iter().cloned());
            (files, rows)
        };
        let recent = if rows.is_empty() {
            Vec::new()
        } else {
            vec![to_batch(&rows)]
        };
        Ok(Snapshot { files, recent })
    }
}

#[cfg(test)]
mod tests {
    use observer_proto::flow::Flow;

    use super::*;
    use crate::sql::{SqlEngine, SqlLimits};

    fn response(uuid: &str, secs: i64) -> Arc<GetFlowsResponse> {
        let time = Some(prost_types::Timestamp {
            seconds: secs,
            nanos: 0,
        });
        Arc::new(GetFlowsResponse {
            node_name: "n1".into(),
            time,
            response_types: Some(ResponseTypes::Flow(Flow {
                time,
                uuid: uuid.into(),
                ..Default::default()
            })),
        })
    }

    #[tokio::test]
    async fn flow_uuids_come_back_as_the_same_text_from_files_and_memory() {
        let dir = std::env::temp_dir().join(format!("history-uuid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = HistoryConfig::new(&dir);
        cfg.retention_age = Duration::from_secs(100 * 365 * 86_400);
        let h = History::open(cfg).unwrap();
        let (a, b) = (
            "3f2a9c41-07d5-8e1b-8000-000000000001",
            "3f2a9c41-07d5-8e1b-8000-000000000002",
        );
        h.ingest(response(a, 1_700_000_000));
        h.flush().unwrap();
        h.ingest(response(b, 1_700_000_001));
        assert_eq!(h.written_rows(), 1, "one in a file, one in memory");

        let engine = SqlEngine::new(Some(h.clone()), SqlLimits::default());
        for uuid in [a, b] {
            let sql = format!("SELECT uuid FROM flows WHERE uuid = '{uuid}'");
            let r = engine.query(&sql).await.unwrap();
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&r.batches)
                .unwrap()
                .to_string();
            assert!(text.contains(&format!("| {uuid} |")), "{text}");
            assert_eq!(r.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        }
        let back = engine.flows_between(0, None).await.unwrap();
        let uuids: Vec<String> = back
            .iter()
            .map(|r| match &r.response_types {
                Some(ResponseTypes::Flow(f)) => f.uuid.clone(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(uuids, [a, b]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_batch_is_reported_at_batch_rows() {
        let dir = std::env::temp_dir().join(format!("history-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = HistoryConfig::new(&dir);
        cfg.batch_rows = 3;
        let h = History::open(cfg).unwrap();
        let full: Vec<bool> = (0..3)
            .map(|i| h.ingest(response("u", 1_700_000_000 + i)))
            .collect();
        assert_eq!(full, [false, false, true]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
