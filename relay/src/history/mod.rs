//! Flow history: every flow the relay ingests becomes a row of one Arrow
//! schema; rows are batched and written to Parquet files partitioned by
//! hour, small files are compacted into large ones, and files are kept by
//! age and total size. The SQL engine ([`crate::sql`]) reads the files and
//! the rows not yet written as one table; GetFlows reads them in time order
//! ([`scan`]).
//!
//! ```text
//!  merge ─► feed (bounded queue; full → dropped, counted) ─► writer: rows ─► encode ─► commit
//!                                                              │ in memory    (threads)   rename
//!                                                              ▼                            ▼
//!                                   readers ◄── snapshot: rows in memory + manifest ◄── files
//!                                                                              ▲
//!                                                  compact (background) ───────┘
//! ```
//!
//! - [`schema`]: the schema (below) and flows → `RecordBatch`.
//! - [`feed`]: the bounded queue from the merge; what it drops goes to
//!   [`losses`] (per node and second, kept on disk).
//! - [`writer`]: three threads in a pipeline: flows → chunks ([`chunk`])
//!   → batches in memory ([`recent`]), batches → Parquet ([`encode`],
//!   columns on several threads), fsync and publish.
//! - [`files`]: layout, names, permissions, retention; [`manifest`]: the
//!   files readers see and when a removed one may be deleted.
//! - [`compact`]: small files of an hour merged into large ones.
//! - [`scan`]: rows of a time range in time order, or the last N, with
//!   bounded memory; [`read`]: rows back into flows; [`tail`]: a node's
//!   newest flows, what a restarted relay need not take again.
//! - [`policies`]: the policy states the nodes had in force (files and
//!   endpoints, by version), and when each was put in force.
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
//! | `icmp_type`, `icmp_code` | uint8 | ICMP and ICMPv6 only |
//! | `source_identity`, `destination_identity` | uint32 | |
//! | `source_namespace`, `destination_namespace` | utf8 | |
//! | `source_pod`, `destination_pod` | utf8 | |
//! | `source_workload`, `destination_workload` | utf8 | first workload's name |
//! | `source_labels`, `destination_labels` | utf8 | labels joined by `,` |
//! | `source_service`, `destination_service` | utf8 | `namespace/name` |
//! | `traffic_direction` | utf8 | `INGRESS`, `EGRESS` |
//! | `observation_point` | utf8 | `TO_ENDPOINT`, ... |
//! | `sock_xlate_point` | utf8 | a socket translation's point (`SOCK_XLATE_POINT_PRE_DIRECTION_FWD`, ...), null otherwise |
//! | `is_reply` | boolean | null when unknown |
//! | `trace_reason` | utf8 | traces only, as Hubble: `NEW` (a connection's first packet), `ESTABLISHED`, `REPLY`; and `REPORT`: no packet, flow-probe's report of the connection's counters (`volume.report`) |
//! | `ingress_allowed_by`, `ingress_denied_by`, `egress_allowed_by`, `egress_denied_by` | utf8 | policies as `namespace/name` joined by `,` |
//! | `policy_generation`, `policy_version` | uint64, utf8 | the policy in force on the node (`policy_in_force`; see [`policies`]) |
//! | `fwd_bytes`, `fwd_packets`, `rev_bytes`, `rev_packets` | uint64 | `volume` (null without it) |
//! | `lifecycle_kind` | utf8 | `ESTABLISHED`, `CLOSED`, `RETRANSMIT` |
//! | `lifecycle_duration_ns` | uint64 | a close's connection lifetime; null otherwise |
//! | `lifecycle_retransmits` | uint32 | |
//! | `policy_match_type` | uint32 | null when 0 |
//! | `interface_index`, `interface_name` | uint32, utf8 | `interface` |
//! | `source_endpoint_id`, `destination_endpoint_id` | uint32 | endpoint `ID` (the observing node's endpoints only), null when 0 |
//! | `source_workload_kind`, `destination_workload_kind` | utf8 | first workload's kind |
//! | `source_mac`, `destination_mac` | utf8 | `ethernet` |
//! | `socket_cookie`, `cgroup_id` | uint64 | null when 0 |
//! | `summary` | utf8 | |
//! | `source_cluster`, `destination_cluster` | utf8 | endpoint `cluster_name` (null when empty) |
//! | `node_labels` | utf8 | the observing node's labels joined by `,` |
//!
//! On disk every column is ZSTD-compressed and encoded by its kind (see
//! [`encode`]); the relay_ingest benchmark measures about 26 bytes per lab
//! flow in full files, and compaction brings the small files of a quiet
//! relay there too. `uuid` stays text in SQL: flow-probe's UUIDs are a random
//! prefix per probe run plus a counter (`flow_probe::enrich::FlowIds`), which
//! ZSTD keeps to about 2–3 bytes a flow.
//!
//! # Guarantees
//! - **Each row once.** Rows leave memory in the same step (under one lock)
//!   their file joins the manifest, and a compacted file replaces its inputs
//!   in the manifest in one step; a reader takes the manifest and the rows in
//!   memory under that lock, and holds a lease that keeps the files it may
//!   read on disk until it is done.
//! - **No silent loss.** The merge never waits for history; a flow the
//!   writer cannot take is counted ([`feed`], [`losses`]). A write that fails
//!   keeps its rows in memory for the next try, up to [`MAX_MEMORY_BATCHES`]
//!   batches; past that the oldest are dropped, and counted the same way.
//! - **Durable once renamed.** A file is fsynced under a hidden temporary
//!   name, renamed, and its directory fsynced. A stop by SIGINT or SIGTERM
//!   writes every row first. A `kill -9` (or power loss) loses the rows not
//!   yet in a renamed file, and no more: the rows in memory (at most
//!   [`MAX_MEMORY_BATCHES`] × `batch_rows`, in practice those of the last
//!   `flush_interval`, 5 s by default, plus the writes in progress), the
//!   queue (`queue_flows`, 65,536 by default: milliseconds at full rate),
//!   and what the merge's reorder window holds. A half-written file stays a
//!   hidden `.tmp` and is removed at the next start.
//! - **Compaction is atomic and crash-safe** ([`compact`]): the compacted
//!   file is written and fsynced under a temporary name, then renamed (its
//!   name says which files it replaces, see [`files`]), and only then are
//!   its inputs removed. A `kill -9` at any point leaves, after the next
//!   start, every row exactly once: before the rename the inputs count and
//!   the temporary file is removed; after it the inputs are removed at
//!   start. Compaction runs on its own thread, pauses while the writer has a
//!   backlog, and works at most half of the time.
//! - **Retention** deletes whole files (compacted or not) by age and total
//!   size, through the same lease, so a running query keeps its files.

pub mod chunk;
pub mod compact;
pub mod encode;
pub mod feed;
pub mod files;
pub mod losses;
pub mod manifest;
pub mod policies;
pub mod read;
pub mod recent;
pub mod scan;
pub mod schema;
pub mod tail;
pub mod units;
pub mod writer;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;

use encode::Written;
use files::HistoryFile;
use losses::Losses;
use manifest::Manifest;
use observer_proto::time::{event_time, now_nanos};
use policies::PolicyStates;
use recent::{Recent, Segment};

/// The default history directory.
pub const DEFAULT_DIR: &str = "/var/lib/observe/history";
/// Rows per batch (and so at most per written file) by default.
pub const DEFAULT_BATCH_ROWS: usize = 65_536;
/// How often rows in memory are written by default.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Files older than this are deleted by default.
pub const DEFAULT_RETENTION_AGE: Duration = Duration::from_secs(24 * 3600);
/// The oldest files are deleted past this total by default (1 GiB).
pub const DEFAULT_RETENTION_BYTES: u64 = 1 << 30;
/// Flows the queue from the merge holds by default: about 65 ms at
/// 1,000,000 flows/s, to ride out a slow fsync.
pub const DEFAULT_QUEUE_FLOWS: usize = 65_536;
/// Batches of `batch_rows` rows kept in memory while writes fail; past
/// that the oldest failed one is dropped (and counted as lost).
pub const MAX_MEMORY_BATCHES: usize = 4;

/// The longest wait before rows whose write failed are tried again. The
/// wait starts at the flush interval and doubles with each failed round:
/// every try encodes all of them again, which on a full disk cost a third
/// of a core at a 1 s interval.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// When rows whose write failed are tried again.
#[derive(Default)]
struct Retry {
    /// Rounds that failed since the last write that worked.
    failed_rounds: u32,
    at: Option<Instant>,
}

/// Rows dropped while writes fail, logged at most once a minute (one line
/// per dropped batch flooded the log of a full disk).
#[derive(Default)]
struct DropLog {
    unlogged: u64,
    last: Option<Instant>,
}

const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

/// Where and how history is kept.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    pub dir: PathBuf,
    pub batch_rows: usize,
    pub flush_interval: Duration,
    pub retention_age: Duration,
    pub retention_bytes: u64,
    /// Capacity of the queue from the merge, in flows.
    pub queue_flows: usize,
    /// Threads that encode the columns of one file.
    pub encode_threads: usize,
    /// `None`: no compaction.
    pub compaction: Option<compact::CompactionConfig>,
    /// Stops the compaction thread for good at this point (crash tests).
    pub pause_at: Option<compact::PausePoint>,
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
            queue_flows: DEFAULT_QUEUE_FLOWS,
            encode_threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
            compaction: Some(compact::CompactionConfig::default()),
            pause_at: None,
        }
    }
}

/// The time a flow's row is kept at (Unix ns): its own, or now. A time
/// before 1970 (a peer's broken clock) is kept at the epoch: file names
/// hold times as unsigned digits.
pub(crate) fn row_time(r: &GetFlowsResponse) -> i64 {
    let time = event_time(r).unwrap_or_else(now_nanos);
    i64::try_from(time.max(0)).unwrap_or(i64::MAX)
}

/// What a query reads: the finished files and the rows still in memory,
/// and the lease that keeps those files on disk while it is held.
pub struct Snapshot {
    pub files: Vec<HistoryFile>,
    pub recent: Vec<RecordBatch>,
    pub lease: Lease,
}

/// Keeps the files of a snapshot on disk until dropped.
pub struct Lease {
    history: Arc<History>,
    epoch: u64,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({})", self.epoch)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.history.lock().manifest.release(self.epoch);
        self.history.reap();
    }
}

struct State {
    recent: Recent,
    manifest: Manifest,
}

/// The history of one relay: rows in memory and the files on disk.
pub struct History {
    cfg: HistoryConfig,
    state: Mutex<State>,
    /// One commit at a time: sequence numbers are published in order.
    commit: Mutex<()>,
    losses: Arc<Losses>,
    policies: Arc<PolicyStates>,
    written_rows: AtomicU64,
    written_bytes: AtomicU64,
    compactions: AtomicU64,
    /// Writes that failed since start.
    write_failures: AtomicU64,
    retry: Mutex<Retry>,
    drop_log: Mutex<DropLog>,
    /// A permit per GetFlows history read running ([`READERS`]).
    readers: Arc<tokio::sync::Semaphore>,
    /// The folder's lock ([`files::LOCK`]), held while history is open.
    _lock: std::fs::File,
}

/// GetFlows history reads at once. Each holds a thread of tokio's blocking
/// pool while its client reads (up to the lease limit): more slow clients
/// than that would leave none for the filters every GetFlows compiles there.
pub const READERS: usize = 64;

impl History {
    /// Opens (creating, owner-only) the directory, removes a crashed writer's
    /// temporary files and a stopped compaction's inputs, and applies
    /// retention.
    pub fn open(cfg: HistoryConfig) -> io::Result<Arc<History>> {
        let opened = files::open_dir(&cfg.dir, &schema::check_file)?;
        for q in &opened.quarantined {
            match &q.to {
                Some(to) => log::warn!(
                    "history: {} is no flow history this relay can read ({}): moved to {}",
                    q.from.display(),
                    q.why,
                    to.display()
                ),
                None => log::warn!(
                    "history: {} is no flow history this relay can read ({}): left out (it could not be moved)",
                    q.from.display(),
                    q.why
                ),
            }
        }
        if opened.leftovers > 0 {
            log::warn!(
                "history: removed {} unfinished file(s) of an earlier run",
                opened.leftovers
            );
        }
        if opened.superseded > 0 {
            log::warn!(
                "history: removed {} file(s) an earlier compaction had replaced",
                opened.superseded
            );
        }
        let losses = Arc::new(Losses::open(&cfg.dir)?);
        let policies = Arc::new(PolicyStates::open(&cfg.dir)?);
        let history = History {
            state: Mutex::new(State {
                recent: Recent::default(),
                manifest: Manifest::new(opened.files, opened.next_seq),
            }),
            cfg,
            commit: Mutex::new(()),
            losses,
            policies,
            written_rows: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            write_failures: AtomicU64::new(0),
            retry: Mutex::new(Retry::default()),
            drop_log: Mutex::new(DropLog::default()),
            readers: Arc::new(tokio::sync::Semaphore::new(READERS)),
            _lock: opened.lock,
        };
        // A full disk must not keep the relay from starting: retention runs
        // again after each write.
        if let Err(e) = history.retain() {
            log::warn!(
                "history: applying retention at start failed: {e} (tried again after each write)"
            );
        }
        Ok(Arc::new(history))
    }

    pub fn config(&self) -> &HistoryConfig {
        &self.cfg
    }

    /// The permits of GetFlows history reads ([`READERS`]).
    pub fn read_permits(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.readers
    }

    /// Flows history did not keep.
    pub fn losses(&self) -> &Arc<Losses> {
        &self.losses
    }

    /// The policies the nodes had in force.
    pub fn policies(&self) -> &Arc<PolicyStates> {
        &self.policies
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a response (only flows become rows). True when a batch is full.
    /// The writer thread adds whole batches ([`Self::add_rows`]); this is
    /// for callers that write with [`Self::flush`].
    pub fn ingest(&self, r: Arc<GetFlowsResponse>) -> bool {
        if !matches!(r.response_types, Some(ResponseTypes::Flow(_))) {
            return false;
        }
        let time = row_time(&r);
        let mut state = self.lock();
        state.recent.stage(time, r);
        state.recent.open_rows() >= self.cfg.batch_rows.max(1)
    }

    /// Adds rows of the history schema; returns the rows not yet being written.
    pub fn add_rows(&self, batch: RecordBatch) -> usize {
        let mut state = self.lock();
        state.recent.add(batch);
        state.recent.open_rows()
    }

    /// Rows in memory now.
    pub fn rows_in_memory(&self) -> usize {
        self.lock().recent.rows()
    }

    /// Rows written to files since start (compaction not counted).
    pub fn written_rows(&self) -> u64 {
        self.written_rows.load(Ordering::Relaxed)
    }

    /// Bytes of the files written since start (compaction not counted).
    pub fn written_bytes(&self) -> u64 {
        self.written_bytes.load(Ordering::Relaxed)
    }

    /// Compactions done since start.
    pub fn compactions(&self) -> u64 {
        self.compactions.load(Ordering::Relaxed)
    }

    /// Writes of rows to a file that failed since start (each is tried
    /// again, or its rows are dropped and counted as lost).
    pub fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    /// The files readers see now, oldest first.
    pub fn files(&self) -> Vec<HistoryFile> {
        self.lock().manifest.files().to_vec()
    }

    /// Files readers see now, and their total bytes.
    pub fn disk_usage(&self) -> io::Result<(u64, u64)> {
        let state = self.lock();
        let files = state.manifest.files();
        Ok((files.len() as u64, files.iter().map(|f| f.bytes).sum()))
    }

    /// Writes every row in memory to files (one per hour), then applies
    /// retention. Blocking: call from a blocking thread. A failed write
    /// keeps its rows in memory for the next try.
    pub fn flush(&self) -> io::Result<()> {
        let mut result = Ok(());
        for segment in self.seal(true) {
            let id = segment.id;
            let written = self.write(segment).and_then(|w| self.commit(id, w));
            if let Err(e) = written {
                self.write_failed(id);
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result?;
        self.retain()
    }

    /// Takes the rows in memory not being written yet, to be written: new
    /// rows always, rows whose write failed once their wait is over
    /// ([`MAX_RETRY_WAIT`]) or with `every`.
    pub fn seal(&self, every: bool) -> Vec<Segment> {
        let retry = every || {
            let r = self.retry.lock().unwrap_or_else(|p| p.into_inner());
            r.at.is_none_or(|t| Instant::now() >= t)
        };
        self.lock().recent.seal(retry)
    }

    /// Writes a sealed segment's rows, sorted by time, under a temporary name.
    pub fn write(&self, segment: Segment) -> io::Result<Written> {
        let batches = recent::in_time_order(segment.batches);
        encode::write_file(&self.cfg.dir, &batches, self.cfg.encode_threads)
    }

    /// Publishes a written segment: the rename, then (under the lock) its
    /// rows leave memory as its file joins the manifest.
    pub fn commit(&self, id: u64, written: Written) -> io::Result<HistoryFile> {
        let _one = self.commit.lock().unwrap_or_else(|p| p.into_inner());
        let seq = self.lock().manifest.take_seq();
        let rows = written.rows as u64;
        let file = written.publish(seq, seq)?;
        {
            let mut state = self.lock();
            state.manifest.add(file.clone());
            state.recent.remove(id);
        }
        *self.retry.lock().unwrap_or_else(|p| p.into_inner()) = Retry::default();
        self.written_rows.fetch_add(rows, Ordering::Relaxed);
        self.written_bytes.fetch_add(file.bytes, Ordering::Relaxed);
        Ok(file)
    }

    /// A segment's write failed: its rows stay in memory for the next try,
    /// up to [`MAX_MEMORY_BATCHES`] batches; older ones are dropped, counted.
    pub fn write_failed(&self, id: u64) {
        self.write_failures.fetch_add(1, Ordering::Relaxed);
        {
            // One round, however many of its segments failed: the wait
            // grows only once what waited was tried again.
            let mut r = self.retry.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if r.at.is_none_or(|t| now >= t) {
                r.failed_rounds = r.failed_rounds.saturating_add(1);
                let base = self.cfg.flush_interval.max(Duration::from_secs(1));
                let wait = base
                    .saturating_mul(1 << (r.failed_rounds - 1).min(16))
                    .min(MAX_RETRY_WAIT);
                r.at = Some(now + wait);
            }
        }
        let shed = {
            let mut state = self.lock();
            state.recent.failed(id);
            state
                .recent
                .shed(MAX_MEMORY_BATCHES * self.cfg.batch_rows.max(1))
        };
        let mut lost = 0;
        for segment in &shed {
            for b in &segment.batches {
                lost += b.num_rows();
                self.record_lost(b);
            }
        }
        if lost > 0 {
            let mut log = self.drop_log.lock().unwrap_or_else(|p| p.into_inner());
            log.unlogged += lost as u64;
            if log.last.is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY) {
                log::error!(
                    "history: writes to {} keep failing; dropped {} flow(s) kept in memory \
                     for them, counted as lost, {} since start",
                    self.cfg.dir.display(),
                    log.unlogged,
                    self.losses.total_since_start()
                );
                log.unlogged = 0;
                log.last = Some(Instant::now());
            }
        }
    }

    /// The writer has stopped with rows it could not write: they are
    /// counted as lost (and the losses saved, if the disk lets it), so a
    /// later query says history lacks them. Returns how many.
    pub fn give_up_unwritten(&self) -> usize {
        let left = self.lock().recent.take_all();
        let mut lost = 0;
        for segment in &left {
            for b in &segment.batches {
                lost += b.num_rows();
                self.record_lost(b);
            }
        }
        if lost > 0
            && let Err(e) = self.losses.save()
        {
            log::error!("history: {e}");
        }
        lost
    }

    /// `r` came again from its peer after a restart, and history does not
    /// hold it: if an earlier run took it and recorded it lost, it is not
    /// missing now. `None` once nothing more of its node can come back
    /// (see [`Losses::retaken`]).
    pub fn retaken(&self, r: &GetFlowsResponse) -> Option<bool> {
        let Some(ResponseTypes::Flow(f)) = &r.response_types else {
            return Some(false);
        };
        self.losses.retaken(feed::node_of(r), row_time(r), &f.uuid)
    }

    /// Counts every row of `batch` as lost.
    fn record_lost(&self, batch: &RecordBatch) {
        let strings = |name| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        };
        let (Some(times), Some(nodes)) = (schema::times(batch), strings("node")) else {
            return;
        };
        let uuids = strings("uuid");
        fn text(a: &StringArray, i: usize) -> &str {
            if a.is_valid(i) { a.value(i) } else { "" }
        }
        for i in 0..batch.num_rows() {
            let uuid = uuids.map_or("", |u| text(u, i));
            (self.losses).record_flow(text(nodes, i), times.value(i), 1, uuid);
        }
    }

    /// A listed file whose content could not be decoded (`bad`, from a
    /// read): no longer listed, and moved to [`files::QUARANTINE`], so that
    /// reads of its hours work again without it; the start-up check reads
    /// only a file's footer, and damage inside would otherwise fail every
    /// read of its hours until retention removed it. Not a file that could
    /// not be opened: that may pass.
    pub fn set_aside(&self, bad: &scan::ReadError) {
        if !bad.damaged || !self.lock().manifest.set_aside(&bad.path) {
            return;
        }
        match files::quarantine(&self.cfg.dir, &bad.path) {
            Ok(to) => log::error!(
                "history: {bad}: moved to {}; its flows are no longer read",
                to.display()
            ),
            Err(e) => log::error!(
                "history: {bad}: left out from now on (moving it aside failed: {e}); its \
                 flows are no longer read"
            ),
        }
    }

    /// Deletes the files past retention (once no reader holds them) and
    /// forgets their losses; saves the losses.
    pub fn retain(&self) -> io::Result<()> {
        let now = SystemTime::now();
        let gone = {
            let mut state = self.lock();
            // Removed from the disk by hand: no longer listed, so no
            // query plans to read it. Only when the disk says it is not
            // there: another error (EIO, a stale NFS handle) may pass, and
            // a file taken out here is deleted once no reader holds it.
            let missing: Vec<HistoryFile> = state
                .manifest
                .files()
                .iter()
                .filter(|f| {
                    std::fs::symlink_metadata(&f.path)
                        .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
                })
                .cloned()
                .collect();
            for f in &missing {
                log::warn!(
                    "history: {} is gone from the disk (removed by hand?): its flows are no longer read",
                    f.path.display()
                );
            }
            state.manifest.replace(&missing, None);
            let gone = files::retention(
                state.manifest.files(),
                now,
                self.cfg.retention_age,
                self.cfg.retention_bytes,
            );
            state.manifest.replace(&gone, None);
            gone
        };
        if !gone.is_empty() {
            log::info!("history: retention deletes {} file(s)", gone.len());
            self.reap();
        }
        let cutoff = now
            .checked_sub(self.cfg.retention_age)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(i64::MIN, |d| {
                i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
            });
        self.losses.forget_before(cutoff);
        self.losses.save()
    }

    /// How many readers hold a lease now.
    #[cfg(test)]
    pub(crate) fn readers(&self) -> usize {
        self.lock().manifest.readers()
    }

    /// Deletes the files that left the manifest and no reader can still read.
    pub(crate) fn reap(&self) {
        let paths = self.lock().manifest.reapable();
        for p in paths {
            remove_unlisted(&p);
        }
    }

    /// A lease on the files readers see now.
    pub fn lease(self: &Arc<Self>) -> Lease {
        let epoch = self.lock().manifest.lease();
        Lease {
            history: self.clone(),
            epoch,
        }
    }

    /// The newest `n` flows, oldest first; blocks on file reads.
    pub fn newest_flows(self: &Arc<Self>, n: usize) -> io::Result<Vec<GetFlowsResponse>> {
        let snap = self.snapshot()?;
        let sources = scan::sources(snap.files, snap.recent);
        let mut out = Vec::new();
        let mut emit = |r| {
            out.push(r);
            true
        };
        scan::last(
            sources,
            scan::Range::ALL,
            n,
            &mut |_| true,
            &mut emit,
            &|| false,
        )?;
        Ok(out)
    }

    /// `node`'s newest flow at or after `from` (ns) and the UUIDs of its
    /// flows within `overlap` of it ([`tail`]); blocks on file reads.
    pub fn node_tail(
        self: &Arc<Self>,
        node: &str,
        from: i64,
        overlap: Duration,
    ) -> io::Result<Option<tail::NodeTail>> {
        let snap = self.snapshot()?;
        let overlap = i64::try_from(overlap.as_nanos()).unwrap_or(i64::MAX);
        tail::node_tail(scan::sources(snap.files, snap.recent), node, from, overlap)
    }

    /// The files and the rows in memory, taken consistently, with a lease
    /// on the files.
    pub fn snapshot(self: &Arc<Self>) -> io::Result<Snapshot> {
        let mut state = self.lock();
        let files = state.manifest.files().to_vec();
        let recent = state.recent.batches();
        let epoch = state.manifest.lease();
        drop(state);
        Ok(Snapshot {
            files,
            recent,
            lease: Lease {
                history: self.clone(),
                epoch,
            },
        })
    }
}

/// Deletes a file that left the manifest. One that cannot be deleted is
/// told and left: the others go on (the next start deletes it, as
/// superseded by the file that replaced it).
fn remove_unlisted(path: &std::path::Path) {
    if let Err(e) = files::remove(path) {
        log::warn!(
            "history: removing {} (left for the next start): {e}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

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

    fn keep_all(dir: &std::path::Path) -> HistoryConfig {
        HistoryConfig {
            retention_age: Duration::from_secs(100 * 365 * 86_400),
            ..HistoryConfig::new(dir)
        }
    }

    #[tokio::test]
    async fn flow_uuids_come_back_as_the_same_text_from_files_and_memory() {
        let dir = test_support::scratch::ScratchDir::new("history-uuid");
        let h = History::open(keep_all(dir.path())).unwrap();
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
    }

    #[tokio::test]
    async fn a_flow_dated_before_1970_is_kept_at_the_epoch_across_a_restart() {
        let dir = test_support::scratch::ScratchDir::new("history-before-1970");
        let h = History::open(keep_all(dir.path())).unwrap();
        h.ingest(response("3f2a9c41-07d5-8e1b-8000-000000000001", -5));
        h.flush().unwrap();
        drop(h);
        let again = History::open(keep_all(dir.path())).unwrap();
        let engine = SqlEngine::new(Some(again), SqlLimits::default());
        let r = engine
            .query("SELECT uuid, CAST(time AS BIGINT) AS t FROM flows")
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&r.batches)
            .unwrap()
            .to_string();
        assert!(
            text.contains("| 3f2a9c41-07d5-8e1b-8000-000000000001 | 0 |"),
            "{text}"
        );
    }

    /// Rows whose write failed wait before they are tried again (each try
    /// encodes them all again), and do not count toward a full batch; new
    /// rows are tried at once; a stop tries everything; a write that works
    /// ends the wait; the error names the folder; failures are counted.
    #[test]
    fn failed_rows_wait_before_they_are_tried_again() {
        let dir = test_support::scratch::ScratchDir::new("history-retry");
        let cfg = HistoryConfig {
            flush_interval: Duration::from_secs(3600),
            batch_rows: 2,
            ..keep_all(dir.path())
        };
        let h = History::open(cfg).unwrap();
        // Hour A's folder is a file: every write there fails. Hour B is
        // one hour later.
        let (a, b) = (1_800_000_000, 1_800_003_600);
        let hour = files::partition_dir(dir.path(), a * 1_000_000_000);
        std::fs::create_dir_all(hour.parent().unwrap()).unwrap();
        std::fs::write(&hour, b"not a folder").unwrap();
        // Each sealed segment's rows, and the write's error if it failed.
        let write = |h: &History, every: bool| -> Vec<(usize, Option<String>)> {
            h.seal(every)
                .into_iter()
                .map(|s| {
                    let (id, rows) = (s.id, s.rows);
                    match h.write(s).and_then(|w| h.commit(id, w)) {
                        Ok(_) => (rows, None),
                        Err(e) => {
                            h.write_failed(id);
                            (rows, Some(e.to_string()))
                        }
                    }
                })
                .collect()
        };
        let rows = |w: Vec<(usize, Option<String>)>| -> Vec<usize> {
            w.into_iter().map(|(n, _)| n).collect()
        };
        h.ingest(response("u1", a));
        assert!(h.ingest(response("u2", a + 1)), "a full batch");
        let first = write(&h, false);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, 2);
        let error = first[0].1.clone().unwrap();
        assert!(
            error.starts_with(&hour.display().to_string())
                && error.ends_with("Not a directory (os error 20)"),
            "{error}"
        );
        // The two that failed are no part of the next batch, and wait
        // (the flush interval, an hour, capped at MAX_RETRY_WAIT); new rows
        // go at once.
        assert!(!h.ingest(response("u3", a + 2)), "one row open, not three");
        assert_eq!(rows(write(&h, false)), [1]);
        assert!(write(&h, false).is_empty());
        // A stop (or flush) tries them all.
        assert_eq!(rows(write(&h, true)), [2, 1]);
        assert_eq!(h.write_failures(), 4);
        assert_eq!(h.rows_in_memory(), 3);
        // A write of hour B works: the wait is over, hour A's rows are
        // taken at the next seal.
        h.ingest(response("u4", b));
        assert_eq!(write(&h, false), [(1, None)]);
        assert_eq!(rows(write(&h, false)), [2, 1]);
        // Writing works again: everything goes.
        std::fs::remove_file(&hour).unwrap();
        h.flush().unwrap();
        assert_eq!((h.rows_in_memory(), h.written_rows()), (0, 4));
        assert_eq!(h.write_failures(), 6);
    }

    /// Rows a stopped writer could not write are counted as lost.
    #[test]
    fn rows_left_unwritten_are_counted_as_lost() {
        let dir = test_support::scratch::ScratchDir::new("history-give-up");
        let h = History::open(keep_all(dir.path())).unwrap();
        h.ingest(response("u1", 1_800_000_000));
        h.ingest(response("u2", 1_800_000_001));
        assert_eq!(h.give_up_unwritten(), 2);
        assert_eq!(h.rows_in_memory(), 0);
        assert_eq!(h.losses().total_since_start(), 2);
        assert_eq!(h.give_up_unwritten(), 0);
    }

    #[test]
    fn a_full_batch_is_reported_at_batch_rows() {
        let dir = test_support::scratch::ScratchDir::new("history-full");
        let mut cfg = HistoryConfig::new(dir.path());
        cfg.batch_rows = 3;
        let h = History::open(cfg).unwrap();
        let full: Vec<bool> = (0..3)
            .map(|i| h.ingest(response("u", 1_700_000_000 + i)))
            .collect();
        assert_eq!(full, [false, false, true]);
    }

    #[test]
    fn history_is_owner_only() {
        let dir = test_support::scratch::ScratchDir::new("history-modes");
        let root = dir.path().join("history");
        // An older version's world-readable file and directory.
        let old = root.join("date=2023-11-14/hour=22");
        std::fs::create_dir_all(&old).unwrap();
        let old_file = old.join(files::file_name(
            1_700_000_000_000_000_000,
            1_700_000_000_000_000_000,
            0,
            0,
        ));
        std::fs::write(&old_file, b"").unwrap();
        for p in [&root, &old] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&old_file, std::fs::Permissions::from_mode(0o644)).unwrap();

        let h = History::open(keep_all(&root)).unwrap();
        h.ingest(response("u", 1_800_000_000));
        h.flush().unwrap();
        h.losses().record("n1", 1_800_000_001_000_000_000, 1);
        h.losses().save().unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let new_file = h.files().last().unwrap().path.clone();
        // Empty, it is no history: moved aside, owner-only all the same.
        let moved = root
            .join(files::QUARANTINE)
            .join(old_file.strip_prefix(&root).unwrap());
        let mut checked = vec![
            (root.clone(), 0o700),
            (old.clone(), 0o700),
            (old.parent().unwrap().to_path_buf(), 0o700),
            (moved.clone(), 0o600),
            (moved.parent().unwrap().to_path_buf(), 0o700),
            (root.join(files::QUARANTINE), 0o700),
            (new_file.clone(), 0o600),
            (new_file.parent().unwrap().to_path_buf(), 0o700),
            (
                new_file.parent().unwrap().parent().unwrap().to_path_buf(),
                0o700,
            ),
            (root.join(losses::FILE), 0o600),
        ];
        checked.dedup();
        for (p, want) in checked {
            assert_eq!(mode(&p), want, "{}", p.display());
        }
    }
}
