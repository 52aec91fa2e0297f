//! What the benchmarks over a stored history (history_writer,
//! history_compaction, history_getflows_rss, sql_top_talkers, policy_whatif)
//! share: settings from the environment, their folder, and a history that
//! keeps every file and leaves compaction to the benchmark.

use std::path::{Path, PathBuf};
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

/// The folder named by the environment variable `var` (kept after the run),
/// or a new temporary `<name>-<pid>` one: `(folder, temporary)`, where a
/// temporary one is the caller's to remove.
pub fn bench_dir(var: &str, name: &str) -> (PathBuf, bool) {
    match std::env::var_os(var) {
        Some(d) => (PathBuf::from(d), false),
        None => (
            std::env::temp_dir().join(format!("{name}-{}", std::process::id())),
            true,
        ),
    }
}

/// Prints how many files and bytes the `n` flows in `dir` take.
pub fn print_files(dir: &Path, n: u64) {
    let list = relay::history::files::list(dir).expect("list history");
    let bytes: u64 = list.iter().map(|f| f.bytes).sum();
    println!(
        "history: {n} flows in {} Parquet files, {:.1} MiB, {}",
        list.len(),
        bytes as f64 / (1 << 20) as f64,
        dir.display()
    );
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
