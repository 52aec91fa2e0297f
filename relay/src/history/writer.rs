//! The history writer: three threads in a pipeline, so taking flows,
//! encoding Parquet and waiting for the disk overlap.
//!
//! - `history-rows` takes flows from the [`feed`](super::feed) in chunks
//!   ([`super::chunk`]), turns each chunk into an Arrow batch and adds it to
//!   the rows in memory (visible to queries from then on); when
//!   `batch_rows` rows are waiting or the flush interval passes, it seals
//!   them and hands them on.
//! - `history-encode` sorts each sealed segment by time and encodes it,
//!   columns on several threads ([`super::encode`]), into a temporary file.
//! - `history-commit` fsyncs each file and publishes it, in order (rename,
//!   directory fsync, manifest), then applies retention.
//!
//! Between the stages are queues of one job each: when the disk or the
//! encoder falls behind, `history-rows` waits, the feed fills, and the
//! merge drops (and counts) what does not fit. Memory is bounded by
//! `queue_flows` flows and about three batches of rows.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::History;
use super::chunk::{CHUNK_FLOWS, Chunk};
use super::encode::Written;
use super::feed::{Intake, Item};
use super::recent::Segment;
use super::row_time;

/// The running writer; [`Writer::join`] waits for it after the feed's stop.
pub struct Writer {
    threads: Vec<JoinHandle<()>>,
}

impl Writer {
    /// Starts the threads over `history`, taking flows from `intake`.
    pub fn start(history: Arc<History>, intake: Intake) -> std::io::Result<Writer> {
        let (seal_tx, seal_rx) = sync_channel::<Vec<Segment>>(1);
        let (commit_tx, commit_rx) = sync_channel::<Vec<(u64, std::io::Result<Written>)>>(1);
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(f)
        };
        let h = history.clone();
        let rows = spawn(
            "history-rows",
            Box::new(move || take_rows(&h, &intake, &seal_tx)),
        )?;
        let h = history.clone();
        let encode = spawn(
            "history-encode",
            Box::new(move || encode(&h, &seal_rx, &commit_tx)),
        )?;
        let commit = spawn(
            "history-commit",
            Box::new(move || commit(&history, &commit_rx)),
        )?;
        Ok(Writer {
            threads: vec![rows, encode, commit],
        })
    }

    /// Waits for the threads: they end once the feed was stopped (or
    /// dropped) and everything taken is written. Blocking.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// `history-rows`: flows → batches in memory → sealed segments.
fn take_rows(history: &History, intake: &Intake, seal: &SyncSender<Vec<Segment>>) {
    let interval = history
        .config()
        .flush_interval
        .max(Duration::from_millis(1));
    let batch_rows = history.config().batch_rows.max(1);
    let mut deadline = Instant::now() + interval;
    let mut chunk = Chunk::<Instant>::default();
    let mut open = 0;
    let mut stopping = false;
    while !stopping {
        let wake = chunk.due().map_or(deadline, |t| t.min(deadline));
        match intake
            .rx
            .recv_timeout(wake.saturating_duration_since(Instant::now()))
        {
            Ok(Item::Flow(r)) => chunk.push(row_time(&r), r),
            Ok(Item::Stop) | Err(RecvTimeoutError::Disconnected) => stopping = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // A file holds at most `batch_rows` rows.
        let room = batch_rows.saturating_sub(open).clamp(1, CHUNK_FLOWS);
        while !stopping && chunk.len() < room {
            match intake.rx.try_recv() {
                Ok(Item::Flow(r)) => chunk.push(row_time(&r), r),
                Ok(Item::Stop) => stopping = true,
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let due = now >= deadline;
        let taken = chunk.len();
        if (chunk.ready(room, now) || due || stopping)
            && let Some(batch) = chunk.take()
        {
            open = history.add_rows(batch);
            intake.took(taken);
        }
        if open >= batch_rows || due || stopping {
            if due {
                deadline = Instant::now() + interval;
            }
            let segments = history.seal(stopping);
            open = 0;
            if !segments.is_empty() && seal.send(segments).is_err() {
                log::error!("history: the encoder stopped; rows stay in memory");
                return;
            }
        }
    }
}

/// `history-encode`: sealed segments → temporary files.
fn encode(
    history: &History,
    sealed: &Receiver<Vec<Segment>>,
    commit: &SyncSender<Vec<(u64, std::io::Result<Written>)>>,
) {
    for segments in sealed {
        let written = segments
            .into_iter()
            .map(|s| (s.id, history.write(s)))
            .collect();
        if commit.send(written).is_err() {
            return;
        }
    }
}

/// How often a run of failed writes is logged again.
const FAILING_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// `history-commit`: temporary files → published files, in order. A run of
/// failures (a full disk fails every segment) is logged when it starts, then
/// every [`FAILING_LOG_EVERY`] with its count, and once when writing works
/// again.
fn commit(history: &History, written: &Receiver<Vec<(u64, std::io::Result<Written>)>>) {
    let mut failing: Option<(u64, std::time::Instant)> = None;
    // Retention runs after every job: its error (saving losses.tsv on a
    // full disk) is logged when it changes, else once a minute.
    let mut retain_error: Option<(String, std::time::Instant)> = None;
    for job in written {
        for (id, w) in job {
            match w.and_then(|w| history.commit(id, w)) {
                Ok(_) => {
                    if let Some((failed, _)) = failing.take() {
                        log::info!(
                            "history: writing to {} works again, after {failed} failed write(s)",
                            history.config().dir.display()
                        );
                    }
                }
                Err(e) => {
                    let logged = failing.get_or_insert((0, std::time::Instant::now()));
                    logged.0 += 1;
                    if logged.0 == 1 || logged.1.elapsed() >= FAILING_LOG_EVERY {
                        log::error!(
                            "history: writing to {} failed (rows kept in memory, tried again; {} failure(s) so far): {e}",
                            history.config().dir.display(),
                            logged.0
                        );
                        logged.1 = std::time::Instant::now();
                    }
                    history.write_failed(id);
                }
            }
        }
        match history.retain() {
            Ok(()) => retain_error = None,
            Err(e) => {
                let text = e.to_string();
                let repeat = retain_error
                    .as_ref()
                    .is_some_and(|(last, at)| *last == text && at.elapsed() < FAILING_LOG_EVERY);
                if !repeat {
                    log::error!(
                        "history: retention and the loss record in {}: {text}",
                        history.config().dir.display()
                    );
                    retain_error = Some((text, std::time::Instant::now()));
                }
            }
        }
    }
    // The feed stopped and every write was tried: what is left goes with
    // the process, counted as lost.
    let unwritten = history.give_up_unwritten();
    if unwritten > 0 {
        log::error!(
            "history: {unwritten} flow(s) could not be written to {} before the relay stopped; \
             counted as lost",
            history.config().dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use observer_proto::flow::Flow;
    use observer_proto::observer::GetFlowsResponse;
    use observer_proto::observer::get_flows_response::ResponseTypes;

    use super::*;
    use crate::history::HistoryConfig;
    use crate::history::feed;
    use crate::history::losses::Losses;

    fn flow(node: &str, secs: i64, n: u64) -> Arc<GetFlowsResponse> {
        let time = Some(observer_proto::time::timestamp(
            i128::from(secs) * 1_000_000_000 + i128::from(n),
        ));
        Arc::new(GetFlowsResponse {
            node_name: node.into(),
            time,
            response_types: Some(ResponseTypes::Flow(Flow {
                time,
                uuid: format!("{node}-{n}"),
                ..Default::default()
            })),
        })
    }

    /// A feed faster than the writer: the queue is filled before the writer
    /// starts, so exactly what does not fit is dropped; delivered + lost =
    /// sent, per node, and each dropped flow is recorded at its second.
    #[test]
    fn under_a_feed_faster_than_the_writer_delivered_plus_lost_is_sent() {
        let dir = test_support::scratch::ScratchDir::new("history-writer-lost");
        let cfg = HistoryConfig {
            batch_rows: 1000,
            queue_flows: 5000,
            retention_age: Duration::from_secs(100 * 365 * 86_400),
            ..HistoryConfig::new(dir.path())
        };
        let history = History::open(cfg).unwrap();
        let losses: Arc<Losses> = history.losses().clone();
        let (feed, intake) = feed::channel(5000, losses.clone());
        let sent = AtomicU64::new(0);
        let base = 1_800_000_000;
        for n in 0..12_000u64 {
            let node = if n % 3 == 0 { "node-a" } else { "node-b" };
            // 1,000 flows a second of flow time.
            feed.offer(&flow(node, base + (n / 1000) as i64, n));
            sent.fetch_add(1, Ordering::Relaxed);
        }
        let writer = Writer::start(history.clone(), intake).unwrap();
        feed.stop();
        writer.join();

        let sent = sent.load(Ordering::Relaxed);
        let lost = losses.total_since_start();
        let delivered = history.written_rows();
        assert_eq!((delivered, lost), (5000, 7000));
        assert_eq!(delivered + lost, sent);
        assert_eq!(history.rows_in_memory(), 0);
        let files: u64 = crate::history::files::list(dir.path()).unwrap().len() as u64;
        assert_eq!(files, 5, "5,000 rows of one hour in batches of 1,000");
        // Flows 5,000..11,999 were dropped: node-a has every third.
        let per_node: Vec<(String, u64)> = losses
            .between(None, None)
            .into_iter()
            .map(|m| (m.node, m.flows))
            .collect();
        let a = (5000..12_000u64).filter(|n| n % 3 == 0).count() as u64;
        assert_eq!(
            per_node,
            [("node-a".into(), a), ("node-b".into(), 7000 - a)]
        );
        let second = |s: i64| (base + s) * 1_000_000_000;
        let sixth: u64 = losses
            .between(Some(second(6)), Some(second(6)))
            .iter()
            .map(|m| m.flows)
            .sum();
        assert_eq!(sixth, 1000, "second 6 of flow time lost whole");
        let fifth: u64 = losses
            .between(Some(second(4)), Some(second(4) + 999_999_999))
            .iter()
            .map(|m| m.flows)
            .sum();
        assert_eq!(fifth, 0, "second 4 was kept");
    }

    /// The writer keeps a flow dated before 1970 at the epoch, as
    /// `History::ingest` does: its file gets a name a start can read.
    #[test]
    fn a_flow_dated_before_1970_is_written_at_the_epoch() {
        let dir = test_support::scratch::ScratchDir::new("history-writer-1970");
        let cfg = HistoryConfig {
            retention_age: Duration::from_secs(100 * 365 * 86_400),
            ..HistoryConfig::new(dir.path())
        };
        let history = History::open(cfg.clone()).unwrap();
        let (feed, intake) = feed::channel(10, history.losses().clone());
        let writer = Writer::start(history.clone(), intake).unwrap();
        assert!(feed.offer(&flow("n", -5, 0)));
        feed.stop();
        writer.join();
        drop(history);
        let listed = crate::history::files::list(dir.path()).unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!((listed[0].first, listed[0].last), (0, 0));
    }

    #[test]
    fn a_stopped_writer_writes_everything_it_took() {
        let dir = test_support::scratch::ScratchDir::new("history-writer-stop");
        let cfg = HistoryConfig {
            flush_interval: Duration::from_secs(3600),
            retention_age: Duration::from_secs(100 * 365 * 86_400),
            ..HistoryConfig::new(dir.path())
        };
        let history = History::open(cfg).unwrap();
        let (feed, intake) = feed::channel(100_000, history.losses().clone());
        let writer = Writer::start(history.clone(), intake).unwrap();
        for n in 0..20_000 {
            assert!(feed.offer(&flow("n", 1_800_000_000, n)));
        }
        feed.stop();
        writer.join();
        assert_eq!(history.written_rows(), 20_000);
        assert_eq!(history.losses().total_since_start(), 0);
    }
}
