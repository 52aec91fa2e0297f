//! A query whose SQL threads are all held (a computation that never pauses)
//! is still answered with its time-out, by the caller's own clock: the
//! task's limit runs on those very threads. Its own test binary: it holds
//! the process's one SQL runtime.

// Only the history is taken from it.
#[allow(dead_code)]
mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{ingest, scratch};
use futures::StreamExt;
use relay::sql::{SqlEngine, SqlError, SqlLimits, runtime};
use test_support::history_flows as flows;

/// Holds every SQL thread until the returned sender is dropped (or sent
/// to once per thread): as queries that never hand their threads back.
fn hold_sql_threads(within: Duration) -> mpsc::Sender<()> {
    let (release, held) = mpsc::channel::<()>();
    let held = std::sync::Arc::new(std::sync::Mutex::new(held));
    let (started_tx, started) = mpsc::channel();
    for _ in 0..runtime::THREADS {
        let (held, started_tx) = (held.clone(), started_tx.clone());
        runtime::handle().unwrap().spawn(async move {
            started_tx.send(()).unwrap();
            let _ = held.lock().unwrap().recv();
        });
    }
    tokio::task::block_in_place(|| {
        for _ in 0..runtime::THREADS {
            started.recv_timeout(within).expect("a SQL thread held");
        }
    });
    release
}

fn release(r: mpsc::Sender<()>) {
    for _ in 0..runtime::THREADS {
        let _ = r.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_on_held_sql_threads_times_out_before_they_are_free() {
    // Long enough that the threads are held before the task's own limit
    // could end a query.
    let limit = Duration::from_secs(2);
    let e = SqlEngine::new(
        Some(ingest(&scratch("sql-watchdog"), flows::golden(), 2)),
        SqlLimits {
            timeout: limit,
            ..SqlLimits::default()
        },
    );
    // Bounds the test, not the query: without the watchdog it never ends.
    let within = Duration::from_secs(120);

    // Held before the query starts: neither planned nor described.
    let held = hold_sql_threads(within);
    let planned = tokio::time::timeout(within, e.query("SELECT count(*) FROM flows")).await;
    assert_eq!(
        planned.expect("answered").unwrap_err(),
        SqlError::Timeout(limit)
    );
    let described = tokio::time::timeout(within, e.schema("SELECT 1")).await;
    assert_eq!(
        described.expect("answered").unwrap_err(),
        SqlError::Timeout(limit)
    );
    release(held);

    // Held while a query streams: the batches already sent come, then the
    // time-out, not an endless wait for the rest.
    let mut running = e
        .stream(
            "SELECT a.uuid FROM flows a, flows b, flows c, flows d",
            Vec::new(),
        )
        .await
        .expect("started");
    let first = tokio::time::timeout(within, running.next()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "a first batch");
    let held = hold_sql_threads(within);
    let end = tokio::time::timeout(within, async {
        loop {
            match running.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    });
    assert_eq!(
        end.await.expect("answered"),
        Some(Err(SqlError::Timeout(limit)))
    );
    assert!(running.next().await.is_none(), "nothing after the time-out");
    release(held);
    drop(running);

    // Free again, the threads answer.
    let answer = tokio::time::timeout(within, e.query("SELECT count(*) AS n FROM flows")).await;
    assert_eq!(answer.expect("answered").unwrap().batches[0].num_rows(), 1);
}
