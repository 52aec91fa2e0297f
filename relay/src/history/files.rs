//! History files on disk: the time-partitioned layout, names, atomic writes,
//! owner-only permissions, the rule that tells which files a compacted file
//! replaces, and which files retention deletes.
//!
//! A file holds rows of one hour, sorted by time, in
//! `<dir>/date=YYYY-MM-DD/hour=HH/`. Its name says what it holds:
//! - `<first>-<last>-<seq>.parquet`: a batch written by the writer;
//! - `<first>-<last>-<lo>-<hi>.parquet`: a compacted file, the rows of every
//!   file of its directory whose sequence numbers lie in `lo..=hi`.
//!
//! `first` and `last` are the rows' times in nanoseconds since the epoch
//! (UTC, 19 digits, so names sort by time). Sequence numbers grow across
//! restarts (the next one is above every number on disk), so a file written
//! after a compaction never falls inside its range: a file is *superseded*
//! when another file of its directory has a range that contains its own and
//! is larger ([`superseded`]). That is the commit rule of compaction: once
//! the compacted file is renamed into place its inputs are gone for readers
//! and for the next start, whether or not they are deleted yet.
//!
//! Every file is written under a hidden `.<name>.tmp`, fsynced, and renamed:
//! a reader sees a whole file or none. Names starting with `.` are never
//! read; leftovers of a crash are removed at start. Directories are created
//! `0700` and files `0600`: flows name workloads and addresses.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Mode of history directories: the owner's only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of history files: the owner's only.
pub const FILE_MODE: u32 = 0o600;

/// One finished history file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HistoryFile {
    /// Time of its first and last row, ns since the epoch.
    pub first: i64,
    pub last: i64,
    pub path: PathBuf,
    pub bytes: u64,
    /// The sequence numbers it holds: `lo == hi` for a written batch.
    pub lo: u64,
    pub hi: u64,
}

impl HistoryFile {
    /// Whether it was made by compaction.
    pub fn is_compacted(&self) -> bool {
        self.lo < self.hi
    }

    /// Whether this file's range holds `other`'s and is larger: `other`'s
    /// rows are all in this one.
    pub fn supersedes(&self, other: &HistoryFile) -> bool {
        self.path.parent() == other.path.parent()
            && self.lo <= other.lo
            && other.hi <= self.hi
            && (self.lo, self.hi) != (other.lo, other.hi)
    }
}

/// Hours since the epoch of `nanos` since the epoch: rows with the same value
/// share a partition ([`partition_dir`]).
pub fn hour_index(nanos: i64) -> i64 {
    nanos.div_euclid(3_600_000_000_000)
}

/// `(date, hour)` of `nanos` since the epoch, UTC: `("2024-05-01", 13)`.
pub fn date_hour(nanos: i64) -> (String, u32) {
    // Every i64 of nanoseconds (years 1677 to 2262) is inside jiff's range.
    let at = jiff::tz::Offset::UTC.to_datetime(
        jiff::Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    );
    (at.date().to_string(), at.hour() as u32)
}

/// The partition directory of rows at `nanos`.
pub fn partition_dir(root: &Path, nanos: i64) -> PathBuf {
    let (date, hour) = date_hour(nanos);
    root.join(format!("date={date}"))
        .join(format!("hour={hour:02}"))
}

/// The file name of rows from `first` to `last` holding sequence numbers
/// `lo..=hi`.
pub fn file_name(first: i64, last: i64, lo: u64, hi: u64) -> String {
    if lo == hi {
        format!("{first:019}-{last:019}-{lo:06}.parquet")
    } else {
        format!("{first:019}-{last:019}-{lo:06}-{hi:06}.parquet")
    }
}

/// `(first, last, lo, hi)` of a history file name.
fn parse_name(name: &str) -> Option<(i64, i64, u64, u64)> {
    let stem = name.strip_suffix(".parquet")?;
    let mut parts = stem.split('-');
    let first = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    let lo = parts.next()?.parse().ok()?;
    let hi = match parts.next() {
        Some(hi) => hi.parse().ok().filter(|hi| *hi > lo)?,
        None => lo,
    };
    parts.next().is_none().then_some((first, last, lo, hi))
}

/// Creates `dir` and its missing parents owner-only.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// [`create_dir`], then the parent of each directory it made fsynced: a
/// file renamed into a new hour's folder is durable only once the folder
/// itself is (POSIX does not promise that a `mkdir` reaches the disk with
/// the file).
pub fn create_dir_synced(dir: &Path) -> io::Result<()> {
    create_dir_synced_with(dir, sync_dir)
}

/// [`create_dir_synced`] with the directories synced by `sync`. A symbolic
/// link on the way (`date=…` or `hour=…` pointing elsewhere) is refused:
/// history writes only into its own folders.
fn create_dir_synced_with(
    dir: &Path,
    mut sync: impl FnMut(&Path) -> io::Result<()>,
) -> io::Result<()> {
    for d in dir.ancestors().take(2) {
        if fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symbolic link: history writes only into folders of its own",
                    d.display()
                ),
            ));
        }
    }
    let made: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    if made.is_empty() {
        return Ok(());
    }
    create_dir(dir)?;
    for d in made.iter().rev() {
        if let Some(parent) = d.parent() {
            sync(parent)?;
        }
    }
    Ok(())
}

/// A new owner-only file, failing if it exists.
pub fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Fsyncs a directory, so the renames and removals in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `name` in `dir` through a hidden temporary file, fsynced and
/// renamed (and the directory fsynced), owner-only: a reader sees the old
/// file or the new one.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut f = create_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Makes `path` owner-only if it is not (history written by older versions).
/// [`restrict`], where an entry the relay does not own (a file an admin
/// copied in, a volume's `lost+found`) only gets a warning naming it.
fn restrict_or_warn(path: &Path, mode: u32) -> io::Result<()> {
    match restrict(path, mode) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            log::warn!(
                "history: {} is not the relay's to make owner-only ({e}); left as it is",
                path.display()
            );
            Ok(())
        }
        other => other.map_err(|e| at(path, e)),
    }
}

/// `e`, naming `path`.
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    let now = fs::metadata(path)?.permissions().mode();
    if now & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Every finished history file under `root`, oldest first, superseded ones
/// included. Hidden names (temporary files) and anything not named like a
/// history file are skipped.
pub fn list(root: &Path) -> io::Result<Vec<HistoryFile>> {
    let mut files = Vec::new();
    walk(root, &mut |path, name| {
        if let Some((first, last, lo, hi)) = parse_name(name) {
            let bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            files.push(HistoryFile {
                first,
                last,
                path: path.to_path_buf(),
                bytes,
                lo,
                hi,
            });
        }
        Ok(())
    })?;
    files.sort();
    Ok(files)
}

/// The files of `files` another one supersedes.
pub fn superseded(files: &[HistoryFile]) -> Vec<HistoryFile> {
    let mut by_dir: BTreeMap<Option<&Path>, Vec<&HistoryFile>> = BTreeMap::new();
    for f in files {
        by_dir.entry(f.path.parent()).or_default().push(f);
    }
    let mut gone = Vec::new();
    for group in by_dir.values() {
        for f in group {
            if group.iter().any(|g| g.is_compacted() && g.supersedes(f)) {
                gone.push((*f).clone());
            }
        }
    }
    gone.sort();
    gone
}

/// Where files that are no readable history are moved at start, below the
/// history directory (hidden: never read, never counted by retention).
pub const QUARANTINE: &str = ".quarantine";

/// A file [`open_dir`] moved out of the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub from: PathBuf,
    /// Where it is now (`None`: it could not be moved; it is left out all the same).
    pub to: Option<PathBuf>,
    pub why: String,
}

/// The file in a history folder a relay holds locked while it uses the
/// folder: two would number their files alike, and each one's compaction
/// and retention would remove the other's.
pub const LOCK: &str = ".lock";

/// How long a relay waits for the folder's lock: a relay restarted may find
/// the one before still exiting.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Locks `root` for this relay (until the file returned is closed), or says
/// that another relay holds it.
fn lock_dir(root: &Path) -> io::Result<File> {
    let path = root.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(FILE_MODE)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(|e| at(&path, e))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let locked = loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => break other,
        }
    };
    match locked {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "another relay uses this history folder (it holds {} locked): two relays \
                 would number their files alike and remove each other's; give each its own \
                 --history-dir",
                path.display()
            ),
        )),
        Err(e) => Err(at(&path, e.into())),
    }
}

/// What [`open_dir`] found and did.
pub struct Opened {
    /// The folder's lock ([`LOCK`]), held while this is kept.
    pub lock: File,
    /// The files to read: finished and not superseded, oldest first.
    pub files: Vec<HistoryFile>,
    /// Files named like history that `check` refused (truncated, not
    /// Parquet, not flows), moved to [`QUARANTINE`].
    pub quarantined: Vec<Quarantined>,
    /// Temporary files of a writer that stopped, removed.
    pub leftovers: usize,
    /// Inputs of a compaction that stopped after its commit, removed.
    pub superseded: usize,
    /// The next sequence number: above every one on disk.
    pub next_seq: u64,
}

/// Opens (creating) a history directory after a start or a crash: makes it
/// owner-only, removes temporary files, moves the files `check` refuses to
/// [`QUARANTINE`] (one bad file must not stop every read of the rest),
/// removes superseded inputs, and lists what is left.
pub fn open_dir(root: &Path, check: &dyn Fn(&Path) -> Result<(), String>) -> io::Result<Opened> {
    if root.exists() && !root.is_dir() {
        // Else creating it says only "File exists".
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "it is a file, not a folder",
        ));
    }
    create_dir(root)?;
    let owner = fs::metadata(root)?.uid();
    let me = rustix::process::geteuid().as_raw();
    if owner != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "it belongs to user {owner}, not to the relay's (user {me}), who could plant \
                 links or files there for the relay to write through or read: give the relay \
                 a folder of its own, or `chown -R {me} {}`",
                root.display()
            ),
        ));
    }
    restrict(root, DIR_MODE)?;
    // Before anything is removed: the temporary files may be another
    // relay's, being written.
    let lock = lock_dir(root)?;
    let mut leftovers = 0;
    walk_all(root, &mut |path, name, is_dir| {
        if is_dir {
            return restrict_or_warn(path, DIR_MODE);
        }
        if name.starts_with('.') && name.ends_with(".tmp") {
            fs::remove_file(path).map_err(|e| at(path, e))?;
            leftovers += 1;
            return Ok(());
        }
        restrict_or_warn(path, FILE_MODE)
    })?;
    let mut all = list(root)?;
    let mut quarantined = Vec::new();
    all.retain(|f| match check(&f.path) {
        Ok(()) => true,
        Err(why) => {
            let to = quarantine(root, &f.path).ok();
            quarantined.push(Quarantined {
                from: f.path.clone(),
                to,
                why,
            });
            false
        }
    });
    let gone = superseded(&all);
    for f in &gone {
        fs::remove_file(&f.path)?;
        if let Some(dir) = f.path.parent() {
            sync_dir(dir)?;
        }
    }
    let next_seq = all.iter().map(|f| f.hi + 1).max().unwrap_or(0);
    let files = all.into_iter().filter(|f| !gone.contains(f)).collect();
    Ok(Opened {
        lock,
        files,
        quarantined,
        leftovers,
        superseded: gone.len(),
        next_seq,
    })
}

/// Moves `path` (below `root`) to the same place below [`QUARANTINE`].
pub(crate) fn quarantine(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let to = root.join(QUARANTINE).join(relative);
    if let Some(dir) = to.parent() {
        create_dir(dir)?;
    }
    fs::rename(path, &to)?;
    Ok(to)
}

/// Calls `f` for every regular file below `dir` not starting with `.`.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &str) -> io::Result<()>) -> io::Result<()> {
    walk_all(dir, &mut |path, name, is_dir| {
        if is_dir || name.starts_with('.') {
            Ok(())
        } else {
            f(path, name)
        }
    })
}

/// Calls `f` for every directory (`true`) and regular file (`false`) below
/// `dir`; hidden directories are not entered, and one the relay may not
/// read (a volume's `lost+found`) is left out with a warning.
fn walk_all(dir: &Path, f: &mut dyn FnMut(&Path, &str, bool) -> io::Result<()>) -> io::Result<()> {
    walk_below(dir, f, true)
}

fn walk_below(
    dir: &Path,
    f: &mut dyn FnMut(&Path, &str, bool) -> io::Result<()>,
    top: bool,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if !top && e.kind() == io::ErrorKind::PermissionDenied => {
            log::warn!("history: {} cannot be read ({e}); left out", dir.display());
            return Ok(());
        }
        Err(e) if top => return Err(e),
        Err(e) => return Err(at(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| at(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| at(&path, e))?;
        if kind.is_dir() && !name.starts_with('.') {
            f(&path, name, true)?;
            walk_below(&path, f, false)?;
        } else if kind.is_file() {
            f(&path, name, false)?;
        }
    }
    Ok(())
}

/// Removes a finished file and, when they are left empty, its hour and
/// date directories.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        // Fails harmlessly when not empty.
        if fs::remove_dir(dir).is_ok() {
            if let Some(date) = dir.parent() {
                let _ = fs::remove_dir(date);
            }
        } else {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// The files (of `files`, oldest first) retention deletes: those whose last
/// row is older than `max_age` before `now`, then the oldest until the rest
/// total at most `max_bytes`.
pub fn retention(
    files: &[HistoryFile],
    now: SystemTime,
    max_age: Duration,
    max_bytes: u64,
) -> Vec<HistoryFile> {
    let cutoff = now
        .checked_sub(max_age)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(i64::MIN, |d| {
            i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
        });
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut deleted = Vec::new();
    for f in files {
        if f.last >= cutoff && total <= max_bytes {
            break;
        }
        total -= f.bytes;
        deleted.push(f.clone());
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_hours_are_utc() {
        assert_eq!(date_hour(0), ("1970-01-01".into(), 0));
        // 2024-02-29T13:05:00Z
        assert_eq!(
            date_hour(1_709_211_900_000_000_000),
            ("2024-02-29".into(), 13)
        );
        assert_eq!(date_hour(-1), ("1969-12-31".into(), 23));
        assert_eq!(date_hour(i64::MIN), ("1677-09-21".into(), 0));
        assert_eq!(date_hour(i64::MAX), ("2262-04-11".into(), 23));
    }

    #[test]
    fn hours_index_the_partitions() {
        let root = Path::new("/h");
        let t = 1_709_211_900_000_000_000; // 2024-02-29T13:05:00Z
        for (a, b) in [(t, t + 1), (t, t + 3_600_000_000_000), (-1, 0), (0, 1)] {
            assert_eq!(
                hour_index(a) == hour_index(b),
                partition_dir(root, a) == partition_dir(root, b),
                "{a} {b}"
            );
        }
    }

    #[test]
    fn a_new_partition_is_synced_into_its_parents() {
        let dir = test_support::scratch::ScratchDir::new("history-dir-synced");
        let root = dir.path().join("history");
        create_dir(&root).unwrap();
        let hour = partition_dir(&root, 1_709_211_900_000_000_000);
        let made = |dir: &Path| {
            let mut synced = Vec::new();
            create_dir_synced_with(dir, |d: &Path| {
                synced.push(d.to_path_buf());
                Ok(())
            })
            .unwrap();
            synced
        };
        // The new date folder into the root, the new hour into the date.
        assert_eq!(
            made(&hour),
            [root.clone(), hour.parent().unwrap().to_path_buf()]
        );
        assert!(hour.is_dir());
        assert!(made(&hour).is_empty(), "nothing new, nothing synced");
    }

    /// A history folder someone else owns could hold their links: the
    /// relay refuses it; and never writes through a link to an hour.
    #[test]
    fn a_folder_not_the_relays_and_links_to_elsewhere_are_refused() {
        let dir = test_support::scratch::ScratchDir::new("history-dir-theirs");
        let root = dir.path().join("history");
        create_dir(&root).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        create_dir(&elsewhere).unwrap();
        let hour = partition_dir(&root, 1_709_211_900_000_000_000);
        create_dir(hour.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &hour).unwrap();
        let err = create_dir_synced(&hour).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is a symbolic link: history writes only into folders of its own",
                hour.display()
            )
        );

        if !rustix::process::geteuid().is_root() {
            return; // only root can give a folder away
        }
        let theirs = dir.path().join("theirs");
        create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65_534), None).unwrap();
        let err = open_dir(&theirs, &|_| Ok(())).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            err.to_string(),
            format!(
                "it belongs to user 65534, not to the relay's (user 0), who could plant links or \
                 files there for the relay to write through or read: give the relay a folder \
                 of its own, or `chown -R 0 {}`",
                theirs.display()
            )
        );
    }

    /// From the history review: two relays on one folder numbered their
    /// files alike and removed each other's. The second is refused, without
    /// touching the first one's unfinished file, until the first is gone.
    #[test]
    fn one_relay_at_a_time_uses_a_folder() {
        let dir = test_support::scratch::ScratchDir::new("history-dir-locked");
        let root = dir.path().join("history");
        let first = open_dir(&root, &|_| Ok(())).unwrap();
        let writing = root.join(".being-written.tmp");
        fs::write(&writing, b"rows").unwrap();
        let err = open_dir(&root, &|_| Ok(())).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            err.to_string(),
            format!(
                "another relay uses this history folder (it holds {} locked): two relays would \
                 number their files alike and remove each other's; give each its own \
                 --history-dir",
                root.join(LOCK).display()
            )
        );
        assert!(writing.exists(), "the first relay's file stays");
        drop(first);
        let again = open_dir(&root, &|_| Ok(())).unwrap();
        assert_eq!(again.leftovers, 1);
        assert!(again.files.is_empty(), "the lock is no history file");
    }

    #[test]
    fn names_parse_back() {
        assert_eq!(
            parse_name("0000000000000000005-0000000000000000009-000001.parquet"),
            Some((5, 9, 1, 1))
        );
        assert_eq!(
            parse_name(&file_name(5, 9, 3, 17)),
            Some((5, 9, 3, 17)),
            "compacted"
        );
        assert_eq!(
            file_name(5, 9, 4, 4),
            "0000000000000000005-0000000000000000009-000004.parquet"
        );
        assert_eq!(parse_name(".x.parquet.tmp"), None);
        assert_eq!(
            parse_name(&file_name(5, 9, 3, 17).replace("-000017", "-000002")),
            None
        );
        assert_eq!(parse_name("1-2-3-4-5.parquet"), None);
    }

    fn file(dir: &str, lo: u64, hi: u64) -> HistoryFile {
        HistoryFile {
            first: 0,
            last: 0,
            path: Path::new(dir).join(file_name(0, 0, lo, hi)),
            bytes: 1,
            lo,
            hi,
        }
    }

    #[test]
    fn a_compacted_file_supersedes_the_files_of_its_range_in_its_directory() {
        let files = [
            file("/h/a", 1, 1),
            file("/h/a", 2, 2),
            file("/h/a", 1, 2),
            file("/h/a", 3, 3),
            file("/h/b", 2, 2),
            file("/h/a", 1, 3),
            file("/h/a", 5, 5),
        ];
        let gone = superseded(&files);
        let mut want = vec![
            files[0].clone(),
            files[1].clone(),
            files[2].clone(),
            files[3].clone(),
        ];
        want.sort();
        assert_eq!(gone, want, "not /h/b's 2, not 1-3 itself, not 5 (later)");
    }

    #[test]
    fn retention_takes_old_files_then_the_oldest_past_the_size() {
        let hour = 3_600_000_000_000_i64;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * 3600);
        let files: Vec<HistoryFile> = [2, 5, 9]
            .iter()
            .map(|h| HistoryFile {
                first: h * hour,
                last: h * hour + 1,
                path: PathBuf::from(format!("/h/{h}")),
                bytes: 10,
                lo: *h as u64,
                hi: *h as u64,
            })
            .collect();
        let age = Duration::from_secs(6 * 3600);
        assert_eq!(retention(&files, now, age, 100), files[..1]);
        assert_eq!(retention(&files, now, age, 10), files[..2]);
        assert_eq!(retention(&files, now, age * 2, 30), []);
    }
}
