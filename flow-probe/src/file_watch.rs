//! Wakes a watcher when the files it reads change: `notify` (inotify on Linux)
//! on the folders that hold them, so a change applies at once.
//!
//! Folders, not files, are watched: a file replaced by a rename (the atomic
//! way to write it) is a new inode, which a watch on the old one never sees.
//! A write wakes on its close, not on each `write(2)`, so a half-written file
//! is not read; renames, removals and new links wake at once.
//!
//! inotify can still miss a change, so a slow re-check ([`RECHECK`]) backs it
//! up: a watched folder that is removed or replaced takes its watch with it
//! (the watch follows the old inode), a folder that did not exist yet cannot
//! be watched, and network or FUSE file systems do not report other hosts'
//! writes. A re-check that finds a change the watch missed starts the watch
//! anew ([`FileWatch::rewatch`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// How often the watched files are compared with what was last applied, for
/// the changes inotify cannot report.
pub const RECHECK: Duration = Duration::from_secs(10);

/// Which paths in the watched folders matter.
pub type Relevant = Arc<dyn Fn(&Path) -> bool + Send + Sync>;

/// Why [`FileWatch::next`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A relevant file changed (or inotify lost events and asks for a rescan).
    Changed,
    /// Time for the slow re-check.
    Recheck,
}

/// Watches folders for changes of the paths `relevant` accepts.
pub struct FileWatch {
    dirs: Vec<PathBuf>,
    relevant: Relevant,
    changed: Arc<Notify>,
    watcher: Option<RecommendedWatcher>,
    recheck: tokio::time::Interval,
}

impl FileWatch {
    /// Starts watching `dirs` (not recursively). Must run inside a tokio
    /// runtime (for the re-check timer).
    pub fn new(dirs: Vec<PathBuf>, relevant: Relevant) -> Self {
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recheck.reset(); // the first re-check one interval from now
        let mut w = FileWatch {
            dirs,
            relevant,
            changed: Arc::new(Notify::new()),
            watcher: None,
            recheck,
        };
        w.rewatch();
        w
    }

    /// The folder that holds `file`, absolute (the current folder for a
    /// bare file name): the paths of the watch's events are absolute, and
    /// a relative folder would never equal theirs.
    pub fn folder_of(file: &Path) -> PathBuf {
        let folder = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::path::absolute(&folder).unwrap_or(folder)
    }

    /// Drops the watch and watches the folders again (after a removed or
    /// replaced folder took its watch with it).
    pub fn rewatch(&mut self) {
        self.watcher = None;
        let changed = self.changed.clone();
        let relevant = self.relevant.clone();
        let handler = move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if wakes(&ev, &*relevant) => changed.notify_one(),
            Ok(_) => {}
            Err(e) => {
                log::warn!("watching files: {e}; re-reading them");
                changed.notify_one();
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                log::warn!("cannot watch files ({e}); re-checking every {RECHECK:?}");
                return;
            }
        };
        for dir in &self.dirs {
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                log::warn!(
                    "cannot watch {} ({e}); re-checking it every {RECHECK:?}",
                    dir.display()
                );
            }
        }
        self.watcher = Some(watcher);
    }

    /// Waits for a change worth reading again: one the watch reports, or one
    /// the re-check finds (`snapshot()` differs from `seen`, which then holds
    /// it; the watch starts anew, as it missed the change).
    pub async fn changed<S: PartialEq>(&mut self, seen: &mut S, snapshot: impl Fn() -> S) {
        loop {
            let wake = self.next().await;
            let now = snapshot();
            if wake == Wake::Recheck {
                if now == *seen {
                    continue;
                }
                log::info!(
                    "{:?} changed unseen by their watch: watching anew",
                    self.dirs
                );
                self.rewatch();
            }
            *seen = now;
            return;
        }
    }

    /// Waits for a relevant change or the next re-check.
    pub async fn next(&mut self) -> Wake {
        tokio::select! {
            () = self.changed.notified() => Wake::Changed,
            _ = self.recheck.tick() => Wake::Recheck,
        }
    }
}

/// Whether `ev` may have changed what a relevant path holds. Opens, reads,
/// attribute changes and the writes before a close do not; a new regular
/// file is empty until its close.
fn wakes(ev: &notify::Event, relevant: &dyn Fn(&Path) -> bool) -> bool {
    if ev.need_rescan() {
        return true;
    }
    let kind_wakes = match ev.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Name(_)) => true,
        EventKind::Modify(_) => false,
        EventKind::Create(_) => ev
            .paths
            .iter()
            .any(|p| !std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())),
        EventKind::Remove(_) | EventKind::Any | EventKind::Other => true,
    };
    kind_wakes && ev.paths.iter().any(|p| relevant(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};
    use test_support::scratch::ScratchDir;

    #[test]
    fn the_folder_of_a_relative_file_is_absolute() {
        let here = std::env::current_dir().unwrap();
        assert_eq!(FileWatch::folder_of(Path::new("svc.yaml")), here);
        assert_eq!(
            FileWatch::folder_of(Path::new("conf/svc.yaml")),
            here.join("conf")
        );
        assert_eq!(
            FileWatch::folder_of(Path::new("/etc/observe/svc.yaml")),
            Path::new("/etc/observe")
        );
    }

    fn yaml_only() -> Relevant {
        Arc::new(|p: &Path| p.extension().is_some_and(|e| e == "yaml"))
    }

    fn event(kind: EventKind, path: &Path) -> notify::Event {
        notify::Event::new(kind).add_path(path.to_path_buf())
    }

    #[test]
    fn closes_after_writing_renames_removals_and_rescans_wake_and_reads_do_not() {
        let scratch = ScratchDir::new("file-watch-kinds");
        let dir = scratch.path();
        let file = dir.join("a.yaml");
        std::fs::write(&file, "one").unwrap();
        let wake = |kind, path: &Path| wakes(&event(kind, path), &*yaml_only());
        let close_write = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(wake(close_write, &file));
        assert!(wake(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            &file
        ));
        assert!(wake(EventKind::Remove(RemoveKind::File), &file));
        assert!(wakes(
            &notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan),
            &*yaml_only()
        ));
        // Our own reads, attribute changes, the writes before the close, and
        // a new regular file (empty until its close) do not.
        assert!(!wake(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            &file
        ));
        assert!(!wake(
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            &file
        ));
        assert!(!wake(
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            &file
        ));
        assert!(!wake(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &file
        ));
        assert!(!wake(EventKind::Create(CreateKind::File), &file));
        // A new symbolic link is complete at once.
        let link = dir.join("b.yaml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(wake(EventKind::Create(CreateKind::File), &link));
        // Paths the watcher does not read never wake it.
        assert!(!wake(close_write, &dir.join("a.yaml.tmp")));
    }

    /// A fresh watch of `dir`, `change` made, and the wake it gives.
    async fn wake_after(dir: &Path, change: impl FnOnce()) -> Wake {
        let mut w = FileWatch::new(vec![dir.to_path_buf()], yaml_only());
        change();
        tokio::time::timeout(RECHECK / 2, w.next())
            .await
            .expect("a wake before the re-check")
    }

    #[tokio::test]
    async fn writing_renaming_over_and_removing_a_file_wake_the_watch() {
        let scratch = ScratchDir::new("file-watch-real");
        let dir = scratch.path();
        let file = dir.join("a.yaml");
        let write = || std::fs::write(&file, "one").unwrap();
        assert_eq!(wake_after(dir, write).await, Wake::Changed);
        let tmp = dir.join("a.yaml.tmp");
        std::fs::write(&tmp, "two").unwrap();
        let rename = || std::fs::rename(&tmp, &file).unwrap();
        assert_eq!(wake_after(dir, rename).await, Wake::Changed);
        let remove = || std::fs::remove_file(&file).unwrap();
        assert_eq!(wake_after(dir, remove).await, Wake::Changed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_folder_that_cannot_be_watched_is_rechecked() {
        let scratch = ScratchDir::new("file-watch-recheck");
        let mut w = FileWatch::new(vec![scratch.path().join("missing")], yaml_only());
        assert_eq!(w.next().await, Wake::Recheck);
    }
}
