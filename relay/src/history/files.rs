//! History files on disk: the time-partitioned layout, atomic writes, how the
//! columns are encoded, and retention.
//!
//! A batch of rows of one hour goes to
//! `<dir>/date=YYYY-MM-DD/hour=HH/<first>-<last>-<seq>.parquet`, where `first`
//! and `last` are the rows' times in nanoseconds since the epoch (UTC, 19
//! digits, so names sort by time). It is written to `.<name>.tmp` in the same
//! directory, fsynced, and renamed: a reader sees a whole file or none. Names
//! starting with `.` are never read; leftovers of a crash are removed at start.
//!
//! Each file is one row group, ZSTD-compressed ([`ZSTD_LEVEL`]), each column
//! encoded as its [`Store`] in the schema says: a dictionary for names,
//! addresses and enums, `DELTA_BINARY_PACKED` for time, ephemeral ports and
//! counters, plain for the UUID ([`writer_properties`]). Page statistics and
//! the page index are the parquet crate's defaults.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::schema::types::ColumnPath;

use super::schema::{COLUMNS, Store};

/// The ZSTD level of history files. On the relay_ingest benchmark's flows,
/// level 1 wrote 24.1 bytes/flow and level 3 24.5, with flushes about 4%
/// slower: the columns are mostly dictionary keys and bit-packed deltas
/// already, so a higher level buys nothing here and costs the writer time.
pub const ZSTD_LEVEL: i32 = 1;

/// How every history file is written: ZSTD at [`ZSTD_LEVEL`], and each
/// column encoded as its [`Store`] says.
pub fn writer_properties() -> WriterProperties {
    let level = ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid ZSTD level");
    let mut props = WriterProperties::builder().set_compression(Compression::ZSTD(level));
    for c in COLUMNS {
        let path = ColumnPath::from(c.name);
        props = match c.store {
            Store::Dict => props,
            Store::Delta => props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED),
            Store::Plain => props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::PLAIN),
        };
    }
    props.build()
}

/// One finished history file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HistoryFile {
    /// Time of its first and last row, ns since the epoch.
    pub first: i64,
    pub last: i64,
    pub path: PathBuf,
    pub bytes: u64,
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
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(writer_properties()))
            .map_err(io::Error::other)?;
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
    fn files_are_zstd_encoded_per_column_and_read_back_exactly() {
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
        use observer_proto::flow::{Flow, Layer4, Tcp, layer4::Protocol};

        use crate::history::schema::{Rec, to_batch};

        let root = std::env::temp_dir().join(format!("history-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let flows: Vec<Flow> = (1..=3)
            .map(|i| Flow {
                uuid: format!("01234567-89ab-8def-8000-00000000000{i}"),
                summary: "TCP Flags: SYN".into(),
                l4: Some(Layer4 {
                    protocol: Some(Protocol::Tcp(Tcp {
                        source_port: 40_000 + i,
                        destination_port: 80,
                        flags: None,
                    })),
                }),
                ..Default::default()
            })
            .collect();
        let recs: Vec<Rec> = flows
            .iter()
            .enumerate()
            .map(|(i, flow)| Rec {
                node: "n1",
                time: 1_709_211_900_000_000_000 + i as i64,
                flow,
            })
            .collect();
        let batch = to_batch(&recs);
        let file = prepare(&root, &batch, recs[0].time, recs[2].time, 0)
            .unwrap()
            .commit()
            .unwrap();

        let reader = SerializedFileReader::new(File::open(&file.path).unwrap()).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 1);
        let chunk = |name: &str| {
            meta.row_group(0)
                .columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap()
                .clone()
        };
        for c in meta.row_group(0).columns() {
            assert!(
                matches!(c.compression(), Compression::ZSTD(_)),
                "{}: {:?}",
                c.column_path(),
                c.compression()
            );
        }
        for (name, encoding) in [
            ("time", Encoding::DELTA_BINARY_PACKED),
            ("source_port", Encoding::DELTA_BINARY_PACKED),
            ("fwd_bytes", Encoding::DELTA_BINARY_PACKED),
            ("uuid", Encoding::PLAIN),
        ] {
            let c = chunk(name);
            assert!(c.encodings().any(|e| e == encoding), "{name}");
            assert!(
                c.dictionary_page_offset().is_none(),
                "{name}: no dictionary"
            );
        }
        for name in ["node", "summary", "destination_port"] {
            assert!(chunk(name).dictionary_page_offset().is_some(), "{name}");
        }

        let back: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&file.path).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(back, [batch]);
        fs::remove_dir_all(&root).unwrap();
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
