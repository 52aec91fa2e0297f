//! History files on disk: the time-partitioned layout, atomic writes and
//! retention.
//!
//! A batch of rows of one hour goes to
//! `<dir>/date=YYYY-MM-DD/hour=HH/<first>-<last>-<seq>.parquet`, where `first`
//! and `last` are the rows' times in nanoseconds since the epoch (UTC, 19
//! digits, so names sort by time). It is written to `.<name>.tmp` in the same
//! directory, fsynced, and renamed: a reader sees a whole file or none. Names
//! starting with `.` are never read; leftovers of a crash are removed at start.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;

/// One finished history file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HistoryFile {
    /// Time of its first and last row, ns since the epoch.
    pub first: i64,
    pub last: i64,
    pub path: PathBuf,
    pub bytes: u64,
}

/// `(date, hour)` of `nanos` since the epoch, UTC: `("2024-05-01", 13)`.
pub fn date_hour(nanos: i64) -> (String, u32) {
    let secs = nanos.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let hour = (secs.rem_euclid(86_400) / 3600) as u32;
    let (y, m, d) = civil_from_days(days);
    (format!("{y:04}-{m:02}-{d:02}"), hour)
}

/// Howard Hinnant's days-since-epoch to proleptic Gregorian date.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The partition directory of rows at `nanos`.
pub fn partition_dir(root: &Path, nanos: i64) -> PathBuf {
    let (date, hour) = date_hour(nanos);
    root.join(format!("date={date}"))
        .join(format!("hour={hour:02}"))
}

/// A history file written under its temporary name, not yet visible.
pub struct Prepared {
    tmp: PathBuf,
    path: PathBuf,
    first: i64,
    last: i64,
}

impl Prepared {
    /// Renames the file to its final name (the moment it becomes visible) and
    /// syncs the directory so the rename is durable.
    pub fn commit(self) -> io::Result<HistoryFile> {
        if let Err(e) = fs::rename(&self.tmp, &self.path) {
            let _ = fs::remove_file(&self.tmp);
            return Err(e);
        }
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        let bytes = fs::metadata(&self.path)?.len();
        Ok(HistoryFile {
            first: self.first,
            last: self.last,
            path: self.path,
            bytes,
        })
    }
}

/// Writes `batch` (rows from `first` to `last`) under a hidden temporary name
/// in its partition and fsyncs it; [`Prepared::commit`] publishes it. `seq`
/// makes the name unique, raised past any existing file's.
pub fn prepare(
    root: &Path,
    batch: &RecordBatch,
    first: i64,
    last: i64,
    seq: u64,
) -> io::Result<Prepared> {
    let dir = partition_dir(root, first);
    fs::create_dir_all(&dir)?;
    let mut seq = seq;
    let (name, path) = loop {
        let name = format!("{first:019}-{last:019}-{seq:06}.parquet");
        let path = dir.join(&name);
        if !path.exists() {
            break (name, path);
        }
        seq += 1;
    };
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let file = File::create(&tmp)?;
        let props = WriterProperties::builder().build();
        let mut writer =
            ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(io::Error::other)?;
        writer.write(batch).map_err(io::Error::other)?;
        let file = writer.into_inner().map_err(io::Error::other)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(Prepared {
        tmp,
        path,
        first,
        last,
    })
}

fn parse_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(".parquet")?;
    let mut parts = stem.split('-');
    let first = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    Some((first, last))
}

/// Every finished history file under `root`, oldest first. Hidden names
/// (temporary files) and anything not named like a history file are skipped.
pub fn list(root: &Path) -> io::Result<Vec<HistoryFile>> {
    let mut files = Vec::new();
    visit(root, &mut |path, name| {
        if let Some((first, last)) = parse_name(name) {
            let bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            files.push(HistoryFile {
                first,
                last,
                path: path.to_path_buf(),
                bytes,
            });
        }
    })?;
    files.sort();
    Ok(files)
}

/// Calls `f` for every regular file below `dir` not starting with `.`; with
/// `hidden` only those starting with `.`.
fn walk(dir: &Path, hidden: bool, f: &mut dyn FnMut(&Path, &str)) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() && !name.starts_with('.') {
            walk(&path, hidden, f)?;
        } else if kind.is_file() && name.starts_with('.') == hidden {
            f(&path, name);
        }
    }
    Ok(())
}

fn visit(dir: &Path, f: &mut dyn FnMut(&Path, &str)) -> io::Result<()> {
    walk(dir, false, f)
}

/// Removes temporary files a crashed writer left; returns how many.
pub fn remove_leftovers(root: &Path) -> io::Result<usize> {
    let mut n = 0;
    walk(root, true, &mut |path, name| {
        if name.ends_with(".tmp") && fs::remove_file(path).is_ok() {
            n += 1;
        }
    })?;
    Ok(n)
}

/// Deletes files whose last row is older than `max_age` before `now`, then the
/// oldest until the rest total at most `max_bytes`. Returns the deleted files.
pub fn enforce_retention(
    root: &Path,
    now: SystemTime,
    max_age: Duration,
    max_bytes: u64,
) -> io::Result<Vec<HistoryFile>> {
    let files = list(root)?;
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
        fs::remove_file(&f.path)?;
        total -= f.bytes;
        if let Some(dir) = f.path.parent() {
            // Empty partitions go too; fails harmlessly when not empty.
            let _ = fs::remove_dir(dir);
            if let Some(date) = dir.parent() {
                let _ = fs::remove_dir(date);
            }
        }
        deleted.push(f);
    }
    Ok(deleted)
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
    }

    #[test]
    fn names_parse_back() {
        assert_eq!(
            parse_name("0000000000000000005-0000000000000000009-000001.parquet"),
            Some((5, 9))
        );
        assert_eq!(parse_name(".x.parquet.tmp"), None);
    }
}
