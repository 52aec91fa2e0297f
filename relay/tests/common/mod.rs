//! What the relay's history and SQL tests share: a scratch directory, a
//! history that keeps everything, flows ingested part to files and part in
//! memory, and answers as text tables.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::util::pretty::pretty_format_batches;
use observer_proto::flow::Flow;
use relay::history::{History, HistoryConfig};
use relay::sql::{SqlEngine, SqlLimits};
use test_support::history_flows::response;

/// A fresh directory under the target dir, removed first.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// History that keeps everything (the fixtures' flows are years old).
pub fn config(dir: &Path) -> HistoryConfig {
    HistoryConfig {
        retention_age: Duration::from_secs(100 * 365 * 86_400),
        ..HistoryConfig::new(dir)
    }
}

/// `flows` ingested in order, all but the last `in_memory` flushed to files.
pub fn ingest(dir: &Path, flows: Vec<Flow>, in_memory: usize) -> Arc<History> {
    let h = History::open(config(dir)).unwrap();
    let split = flows.len().saturating_sub(in_memory);
    for (i, f) in flows.into_iter().enumerate() {
        if i == split {
            h.flush().unwrap();
        }
        h.ingest(Arc::new(response(f)));
    }
    h
}

pub fn engine(h: &Arc<History>) -> SqlEngine {
    SqlEngine::new(Some(h.clone()), SqlLimits::default())
}

/// The answer to `sql` as a text table.
pub async fn table(engine: &SqlEngine, sql: &str) -> String {
    let r = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pretty_format_batches(&r.batches).unwrap().to_string()
}
