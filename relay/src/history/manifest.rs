//! The files readers see, and when a file that left that set may be deleted.
//!
//! Queries read the manifest (taken with the rows in memory under one lock),
//! never the directory: a compacted file and its inputs may both be on disk
//! for a moment, but the manifest swaps one for the other in one step. A
//! reader holds a [`Lease`] on the manifest's epoch while it reads; a file
//! that left the manifest (compacted or past retention) is deleted only when
//! no reader of an earlier epoch is left, so a running query never loses a
//! file under it, for [`LEASE_LIMIT`]: a reader that never ends (a client
//! that reads a message a minute, streams opened one after another) would
//! otherwise keep every file compaction and retention let go on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a lease keeps the files its epoch saw. SQL ends within its
/// timeout (30 s by default, at most this); a GetFlows history part within
/// this (`server::older`).
pub const LEASE_LIMIT: Duration = Duration::from_secs(15 * 60);

use super::files::HistoryFile;

/// The finished files and the readers' epochs.
#[derive(Debug, Default)]
pub struct Manifest {
    /// Oldest first.
    files: Vec<HistoryFile>,
    next_seq: u64,
    /// Raised whenever files leave the manifest.
    epoch: u64,
    /// Live leases per epoch, and when the newest of them was taken.
    readers: BTreeMap<u64, (usize, Instant)>,
    /// Files that left, with the epoch from which no reader sees them.
    doomed: Vec<(u64, PathBuf)>,
}

impl Manifest {
    pub fn new(mut files: Vec<HistoryFile>, next_seq: u64) -> Self {
        files.sort();
        Manifest {
            files,
            next_seq,
            ..Manifest::default()
        }
    }

    pub fn files(&self) -> &[HistoryFile] {
        &self.files
    }

    /// The sequence number of the next file written.
    pub fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Whether `f` is listed.
    pub fn contains(&self, f: &HistoryFile) -> bool {
        self.files.binary_search(f).is_ok()
    }

    /// Lists a new file.
    pub fn add(&mut self, f: HistoryFile) {
        let at = self.files.binary_search(&f).unwrap_or_else(|i| i);
        self.files.insert(at, f);
    }

    /// Unlists `gone` (those listed) and lists `with`, in one step; the
    /// unlisted files are deleted once no earlier reader is left
    /// ([`Self::reapable`]).
    pub fn replace(&mut self, gone: &[HistoryFile], with: Option<HistoryFile>) {
        let before = self.files.len();
        self.files.retain(|f| !gone.contains(f));
        if self.files.len() != before {
            self.epoch += 1;
            for f in gone {
                self.doomed.push((self.epoch, f.path.clone()));
            }
        }
        if let Some(f) = with {
            self.add(f);
        }
    }

    /// Takes `file` out of the list without deleting it (it is moved aside);
    /// whether it was listed.
    pub fn set_aside(&mut self, file: &Path) -> bool {
        let before = self.files.len();
        self.files.retain(|f| f.path != file);
        let listed = self.files.len() != before;
        if listed {
            self.epoch += 1;
        }
        listed
    }

    /// A reader starts: its epoch.
    pub fn lease(&mut self) -> u64 {
        self.lease_at(Instant::now())
    }

    fn lease_at(&mut self, now: Instant) -> u64 {
        let (n, newest) = self.readers.entry(self.epoch).or_insert((0, now));
        *n += 1;
        *newest = now;
        self.epoch
    }

    /// A reader of `epoch` is done.
    pub fn release(&mut self, epoch: u64) {
        if let Some((n, _)) = self.readers.get_mut(&epoch) {
            *n -= 1;
            if *n == 0 {
                self.readers.remove(&epoch);
            }
        }
    }

    /// How many readers hold a lease.
    pub fn readers(&self) -> usize {
        self.readers.values().map(|(n, _)| n).sum()
    }

    /// The unlisted files no reader can still read (or whose readers'
    /// leases are past [`LEASE_LIMIT`]), taken out of the list.
    pub fn reapable(&mut self) -> Vec<PathBuf> {
        self.reapable_at(Instant::now())
    }

    fn reapable_at(&mut self, now: Instant) -> Vec<PathBuf> {
        let oldest = self
            .readers
            .iter()
            .find(|(_, (_, newest))| now.saturating_duration_since(*newest) < LEASE_LIMIT)
            .map_or(u64::MAX, |(epoch, _)| *epoch);
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.doomed)
            .into_iter()
            .partition(|(epoch, _)| *epoch <= oldest);
        self.doomed = later;
        now.into_iter().map(|(_, p)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn file(n: u64) -> HistoryFile {
        HistoryFile {
            first: n as i64,
            last: n as i64,
            path: Path::new("/h").join(n.to_string()),
            bytes: 1,
            lo: n,
            hi: n,
        }
    }

    /// A reader that never ends keeps what it saw for the lease's limit,
    /// not for ever.
    #[test]
    fn a_lease_past_its_limit_keeps_no_file() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let mut m = Manifest::new(vec![file(1), file(2)], 3);
        let slow = m.lease_at(t0);
        // A second reader of the same files, five minutes on: the limit
        // counts from the newest lease of what they saw.
        let second = m.lease_at(t0 + 5 * minute);
        m.replace(&[file(1)], None);
        let fresh = m.lease_at(t0 + 6 * minute);
        assert!(m.reapable_at(t0 + LEASE_LIMIT).is_empty());
        assert_eq!(m.reapable_at(t0 + 5 * minute + LEASE_LIMIT), [file(1).path]);
        for epoch in [slow, second, fresh] {
            m.release(epoch);
        }
        assert_eq!(m.readers(), 0);
    }

    #[test]
    fn files_leave_at_once_and_are_deleted_after_their_last_reader() {
        let mut m = Manifest::new(vec![file(2), file(1)], 3);
        assert_eq!(m.files(), [file(1), file(2)]);
        assert_eq!(m.take_seq(), 3);
        let early = m.lease();
        let merged = HistoryFile {
            lo: 1,
            hi: 2,
            ..file(1)
        };
        m.replace(&[file(1), file(2)], Some(merged.clone()));
        assert_eq!(m.files(), std::slice::from_ref(&merged));
        let late = m.lease();
        assert!(m.reapable().is_empty(), "the early reader may read 1 and 2");
        m.release(late);
        assert!(m.reapable().is_empty());
        m.release(early);
        assert_eq!(m.reapable(), [file(1).path, file(2).path]);
        assert!(m.reapable().is_empty(), "once");
        // Without readers, at once; unlisted files are ignored.
        m.replace(&[file(9)], None);
        assert!(m.reapable().is_empty());
        m.replace(std::slice::from_ref(&merged), None);
        assert_eq!(m.reapable(), [merged.path]);
        assert!(m.files().is_empty());
    }
}
