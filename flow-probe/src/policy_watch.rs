//! Watches the policy directory and keeps the datapath in step with it: every
//! change is loaded, compiled and synced without restarting anything. A file that
//! does not parse is reported (naming the file, the field and the problem) and
//! the policy in force stays as it was.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cluster_spec::endpoints::EndpointsFile;

use crate::datapath::Datapath;
use cluster_spec::policy;

/// How often the directory is checked for changes.
pub const POLL: Duration = Duration::from_millis(500);

/// Names, sizes and modification times of the policy files: changes when any
/// file is added, removed or written.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x == "yaml" || x == "yml")
        })
        .map(|e| {
            let meta = e.metadata().ok();
            (
                e.path(),
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            )
        })
        .collect();
    out.sort();
    out
}

/// Loads, compiles and syncs once; errors leave the datapath untouched.
pub fn apply(
    datapath: &mut Datapath,
    dir: Option<&Path>,
    endpoints: &EndpointsFile,
) -> anyhow::Result<()> {
    let policies = match dir {
        Some(d) => policy::load_dir(d)?,
        None => Vec::new(),
    };
    let compiled = policy::compile(&policies, endpoints);
    let report = datapath.sync(&compiled, endpoints)?;
    log::info!(
        "policy in force: {} policies, {} rules ({} written, {} removed), {} endpoints",
        compiled.policies.len(),
        compiled.entries.len(),
        report.rules_written,
        report.rules_removed,
        report.endpoints
    );
    Ok(())
}

/// Applies the directory now and on every change until `stop` resolves.
pub async fn run(
    mut datapath: Datapath,
    dir: Option<PathBuf>,
    endpoints: EndpointsFile,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut seen = dir.as_deref().map(fingerprint);
    if let Err(e) = apply(&mut datapath, dir.as_deref(), &endpoints) {
        log::error!("{e:#}; the pinned policy stays in force");
    }
    let Some(dir) = dir else { return };
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        let now = Some(fingerprint(&dir));
        if now == seen {
            continue;
        }
        seen = now;
        if let Err(e) = apply(&mut datapath, Some(&dir), &endpoints) {
            log::error!("{e:#}; the previous policy stays in force");
        }
    }
}
