//! What the history benchmarks (history_writer, history_compaction,
//! history_getflows_rss) share: settings from the environment, and a
//! history that keeps every file and leaves compaction to the benchmark.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use relay::history::{History, HistoryConfig};

/// The number in the environment variable `name` (`_` allowed as a
/// separator: `10_000_000`), or `default` without one.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The history in `dir` with the relay's defaults, except that nothing is
/// deleted for age or size and nothing is compacted in the background.
pub fn open_history(dir: &Path) -> Arc<History> {
    History::open(HistoryConfig {
        retention_bytes: u64::MAX,
        retention_age: Duration::from_secs(10 * 365 * 86_400),
        compaction: None,
        ..HistoryConfig::new(dir)
    })
    .expect("open history")
}
