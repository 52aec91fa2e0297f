//! Rows → a Parquet file: how every column is encoded, and the two ways a
//! file is written, both under a hidden temporary name; [`Written::publish`]
//! then fsyncs it, renames it and fsyncs its directory (on the writer's
//! commit thread, while the next file is being encoded).
//!
//! - [`write_file`]: a batch of the writer, one row group whose columns are
//!   encoded on several threads at once (each column is its own Parquet
//!   column chunk, so they are independent), then appended in order.
//! - [`FileSink`]: a compacted file, written batch by batch on one thread,
//!   in row groups of [`COMPACTED_ROW_GROUP_ROWS`].
//!
//! Each column is ZSTD-compressed ([`ZSTD_LEVEL`]) and encoded as its
//! [`Store`] in the schema says: a dictionary for names, addresses and
//! enums, `DELTA_BINARY_PACKED` for time, ephemeral ports and counters,
//! plain for the UUID ([`writer_properties`]). Only `time` keeps statistics
//! (per page, so reads skip by time); the others cost the writer time for
//! no reader: no query prunes by them.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, RecordBatch, TimestampNanosecondArray};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, compute_leaves,
};
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;

use super::files::{self, HistoryFile};
use super::schema::{self, COLUMNS, Store};

/// The ZSTD level of history files. On the relay_ingest benchmark's flows,
/// level 1 wrote 24.1 bytes/flow and level 3 24.5, with flushes about 4%
/// slower: the columns are mostly dictionary keys and bit-packed deltas
/// already, so a higher level buys nothing here and costs the writer time.
pub const ZSTD_LEVEL: i32 = 1;

/// Rows per row group of a compacted file: a dictionary per column and row
/// group, so larger groups compress better; reads decode a row group in
/// batches, so its size does not bound their memory.
pub const COMPACTED_ROW_GROUP_ROWS: usize = 131_072;

/// How every history file is written: ZSTD at [`ZSTD_LEVEL`], each column
/// encoded as its [`Store`] says, statistics on `time` only.
pub fn writer_properties() -> WriterProperties {
    let level = ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid ZSTD level");
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from("time"), EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(COMPACTED_ROW_GROUP_ROWS));
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

/// A file written under its temporary name, not yet synced nor visible.
#[derive(Debug)]
pub struct Written {
    file: File,
    tmp: PathBuf,
    dir: PathBuf,
    pub first: i64,
    pub last: i64,
    pub rows: usize,
}

impl Written {
    /// Fsyncs the file, renames it to the name of its rows and sequence
    /// numbers `lo..=hi` (the moment it exists for the next start) and syncs
    /// the directory.
    pub fn publish(self, lo: u64, hi: u64) -> io::Result<HistoryFile> {
        self.publish_with(lo, hi, files::sync_dir)
    }

    /// [`Self::publish`] with the directory synced by `sync_dir`.
    fn publish_with(
        self,
        lo: u64,
        hi: u64,
        sync_dir: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<HistoryFile> {
        if let Err(e) = self.file.sync_all() {
            let e = at(&self.tmp, e);
            self.discard();
            return Err(e);
        }
        let path = self
            .dir
            .join(files::file_name(self.first, self.last, lo, hi));
        if path.exists() {
            self.discard();
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists already", path.display()),
            ));
        }
        if let Err(e) = fs::rename(&self.tmp, &path) {
            let e = at(&path, e);
            self.discard();
            return Err(e);
        }
        // Renamed, the file is read at the next start. An error from here on
        // keeps its rows to be written again under other numbers, so the
        // file goes: kept, it would count them twice.
        let bytes = match sync_dir(&self.dir).and_then(|()| fs::metadata(&path)) {
            Ok(m) => m.len(),
            Err(e) => {
                let _ = fs::remove_file(&path);
                let _ = files::sync_dir(&self.dir);
                return Err(at(&self.dir, e));
            }
        };
        Ok(HistoryFile {
            first: self.first,
            last: self.last,
            path,
            bytes,
            lo,
            hi,
        })
    }

    /// Removes the temporary file.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// A hidden, unique temporary file in the partition of rows at `first`.
fn temporary(root: &Path, first: i64) -> io::Result<(PathBuf, PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = files::partition_dir(root, first);
    files::create_dir_synced(&dir).map_err(|e| at(&dir, e))?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{first:019}-{}-{n}.tmp", std::process::id()));
    let file = files::create_file(&tmp).map_err(|e| at(&tmp, e))?;
    Ok((dir, tmp, file))
}

/// `e` with the path it happened at in front (its kind kept): an operator
/// told "Permission denied" must learn which folder to fix.
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The time of the first and last row of `batches` (sorted by time).
fn time_bounds(batches: &[RecordBatch]) -> Option<(i64, i64)> {
    fn times(b: &RecordBatch) -> Option<&TimestampNanosecondArray> {
        schema::times(b).filter(|t| !t.is_empty())
    }
    let first = batches.iter().find_map(times)?.value(0);
    let last = batches.iter().rev().find_map(times)?;
    Some((first, last.value(last.len() - 1)))
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

/// Writes `batches` (rows of one hour, sorted by time, not empty) as one
/// file of one row group under a temporary name in its partition, its
/// columns encoded on `threads` threads.
pub fn write_file(root: &Path, batches: &[RecordBatch], threads: usize) -> io::Result<Written> {
    let (first, last) = time_bounds(batches)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no rows to write"))?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let (dir, tmp, file) = temporary(root, first)?;
    let written = encode(BufWriter::new(file), batches, threads.max(1))
        .and_then(|out| out.into_inner().map_err(|e| e.into_error()));
    let file = match written {
        Ok(file) => file,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(at(&tmp, e));
        }
    };
    Ok(Written {
        file,
        tmp,
        dir,
        first,
        last,
        rows,
    })
}

/// One row group of `batches`, the columns split round-robin over
/// `threads` scoped threads.
fn encode(
    out: BufWriter<File>,
    batches: &[RecordBatch],
    threads: usize,
) -> io::Result<BufWriter<File>> {
    let schema = schema::schema();
    let writer =
        ArrowWriter::try_new(out, schema.clone(), Some(writer_properties())).map_err(other)?;
    let (mut file, factory) = writer.into_serialized_writer().map_err(other)?;
    let writers = factory.create_column_writers(0).map_err(other)?;
    let mut groups: Vec<Vec<(usize, ArrowColumnWriter)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (i, w) in writers.into_iter().enumerate() {
        groups[i % threads].push((i, w));
    }
    let encode_group = |group: Vec<(usize, ArrowColumnWriter)>| {
        group
            .into_iter()
            .map(|(i, mut w)| {
                let field = schema.field(i);
                for b in batches {
                    for leaf in compute_leaves(field, b.column(i))? {
                        w.write(&leaf)?;
                    }
                }
                Ok((i, w.close()?))
            })
            .collect::<datafusion::parquet::errors::Result<Vec<(usize, ArrowColumnChunk)>>>()
    };
    let mut chunks = std::thread::scope(|s| {
        let mut rest = groups.into_iter();
        let mine = rest.next().unwrap_or_default();
        let helpers: Vec<_> = rest.map(|g| s.spawn(|| encode_group(g))).collect();
        let mut all = encode_group(mine)?;
        for h in helpers {
            let part = h.join().map_err(|_| {
                datafusion::parquet::errors::ParquetError::General(
                    "an encoder thread panicked".into(),
                )
            })??;
            all.extend(part);
        }
        Ok::<_, datafusion::parquet::errors::ParquetError>(all)
    })
    .map_err(other)?;
    chunks.sort_by_key(|(i, _)| *i);
    let mut group = file.next_row_group().map_err(other)?;
    for (_, chunk) in chunks {
        chunk.append_to_row_group(&mut group).map_err(other)?;
    }
    group.close().map_err(other)?;
    file.into_inner().map_err(other)
}

/// A compacted file being written batch by batch (rows in time order).
pub struct FileSink {
    writer: ArrowWriter<BufWriter<File>>,
    tmp: PathBuf,
    dir: PathBuf,
    bounds: Option<(i64, i64)>,
    rows: usize,
}

impl FileSink {
    /// A new temporary file in the partition of rows at `first`.
    pub fn create(root: &Path, first: i64) -> io::Result<FileSink> {
        let (dir, tmp, file) = temporary(root, first)?;
        match ArrowWriter::try_new(
            BufWriter::new(file),
            schema::schema(),
            Some(writer_properties()),
        ) {
            Ok(writer) => Ok(FileSink {
                writer,
                tmp,
                dir,
                bounds: None,
                rows: 0,
            }),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(other(e))
            }
        }
    }

    pub fn write(&mut self, batch: &RecordBatch) -> io::Result<()> {
        if let Some((first, last)) = time_bounds(std::slice::from_ref(batch)) {
            self.bounds = Some(match self.bounds {
                Some((f, _)) => (f, last),
                None => (first, last),
            });
        }
        self.rows += batch.num_rows();
        self.writer.write(batch).map_err(other)
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes the footer; `None` (and nothing left) without rows.
    pub fn finish(self) -> io::Result<Option<Written>> {
        let FileSink {
            writer,
            tmp,
            dir,
            bounds,
            rows,
        } = self;
        let done = writer
            .into_inner()
            .map_err(other)
            .and_then(|out| out.into_inner().map_err(|e| e.into_error()));
        match (done, bounds) {
            (Ok(file), Some((first, last))) => Ok(Some(Written {
                file,
                tmp,
                dir,
                first,
                last,
                rows,
            })),
            (Ok(_), None) => {
                let _ = fs::remove_file(&tmp);
                Ok(None)
            }
            (Err(e), _) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Stops and removes the temporary file.
    pub fn abandon(self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use observer_proto::flow::{Flow, Layer4, Tcp, layer4::Protocol};

    use super::*;
    use crate::history::schema::{Rec, to_batch};

    fn batch(from: i64, n: u32) -> RecordBatch {
        let flows: Vec<Flow> = (0..n)
            .map(|i| Flow {
                uuid: format!("01234567-89ab-8def-8000-{i:012}"),
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
                time: from + i as i64,
                flow,
            })
            .collect();
        to_batch(&recs)
    }

    #[test]
    fn a_file_whose_directory_sync_failed_is_not_left_to_count_twice() {
        let root = test_support::scratch::ScratchDir::new("history-encode-sync");
        let t = 1_709_211_900_000_000_000;
        let err = write_file(root.path(), &[batch(t, 3)], 1)
            .unwrap()
            .publish_with(7, 7, |_| Err(io::Error::other("EIO")))
            .unwrap_err();
        let dir = files::partition_dir(root.path(), t);
        assert_eq!(err.to_string(), format!("{}: EIO", dir.display()));
        assert_eq!(
            files::list(root.path()).unwrap().len(),
            0,
            "the rows are written again under other numbers: none may stay"
        );
    }

    #[test]
    fn files_are_zstd_encoded_per_column_on_threads_and_read_back_exactly() {
        let root = test_support::scratch::ScratchDir::new("history-encode");
        let t = 1_709_211_900_000_000_000;
        let batches = [batch(t, 3), batch(t + 3, 2)];
        let file = write_file(root.path(), &batches, 3)
            .unwrap()
            .publish(7, 7)
            .unwrap();
        assert_eq!((file.first, file.last, file.lo, file.hi), (t, t + 4, 7, 7));
        assert_eq!(
            fs::metadata(&file.path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(file.path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );

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
        assert!(
            chunk("time").statistics().is_some(),
            "time keeps statistics"
        );
        assert!(chunk("summary").statistics().is_none());

        let back: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&file.path).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let want = datafusion::arrow::compute::concat_batches(&schema::schema(), &batches).unwrap();
        assert_eq!(back, [want]);
    }

    /// A flow with every field history keeps set, each to its own value.
    fn full_flow(time: i64) -> Flow {
        use observer_proto::flow::{
            CiliumEventType, DropReason, Endpoint, Ethernet, FlowType, Ip, IpVersion,
            NetworkInterface, Policy, Service, SocketTranslationPoint, TcpFlags,
            TraceObservationPoint, TrafficDirection, Verdict, Workload,
        };
        use observer_proto::observe::v1::tcp_lifecycle::Kind;
        use observer_proto::observe::v1::{FlowVolume, KernelDrop, TcpLifecycle};
        let endpoint = |identity, ns: &str, pod: &str, app: &str| Endpoint {
            id: identity - 12_000,
            identity,
            namespace: ns.into(),
            pod_name: pod.into(),
            cluster_name: format!("cluster-{ns}"),
            labels: vec![format!("k8s:app={app}"), format!("k8s:ns={ns}")],
            workloads: vec![Workload {
                name: app.into(),
                kind: "Deployment".into(),
            }],
        };
        // As flow-probe names a policy; one without a namespace is bare.
        let policy = |ns: &str, name: &str| {
            let bare = Policy {
                namespace: ns.into(),
                name: name.into(),
                ..Default::default()
            };
            if ns.is_empty() {
                return bare;
            }
            Policy {
                labels: cluster_spec::policy::policy_labels(name, ns),
                kind: cluster_spec::policy::KIND.into(),
                ..bare
            }
        };
        Flow {
            time: Some(observer_proto::time::timestamp(i128::from(time))),
            node_name: "node-7".into(),
            node_labels: vec!["zone=b".into(), "rack=3".into()],
            uuid: "3f2a9c41-07d5-8e1b-8000-00000000002a".into(),
            verdict: Verdict::Dropped as i32,
            drop_reason: DropReason::PolicyDenied as u32,
            drop_reason_desc: DropReason::PolicyDenied as i32,
            ethernet: Some(Ethernet {
                source: "02:42:c6:12:00:05".into(),
                destination: "02:42:c6:12:00:09".into(),
            }),
            interface: Some(NetworkInterface {
                index: 17,
                name: "lxc5d9f".into(),
            }),
            policy_match_type: 2,
            socket_cookie: 4_242,
            cgroup_id: 9_001,
            kernel_drop: Some(KernelDrop {
                reason: 0,
                name: "SKB_DROP_REASON_NETFILTER_DROP".into(),
            }),
            event_type: Some(CiliumEventType {
                r#type: 4,
                sub_type: 3,
            }),
            r#type: FlowType::L3L4 as i32,
            ip: Some(Ip {
                source: "fd42::1:5".into(),
                destination: "fd42::2:9".into(),
                ip_version: IpVersion::IPv6 as i32,
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(Protocol::Tcp(Tcp {
                    source_port: 41_234,
                    destination_port: 8443,
                    flags: Some(TcpFlags {
                        syn: true,
                        ack: true,
                        ece: true,
                        ..Default::default()
                    }),
                })),
            }),
            source: Some(endpoint(12_001, "shop", "web-5d9f", "web")),
            destination: Some(endpoint(12_002, "pay", "api-77c1", "api")),
            source_service: Some(Service {
                namespace: "shop".into(),
                name: "web-svc".into(),
            }),
            destination_service: Some(Service {
                namespace: String::new(),
                name: "api-svc".into(),
            }),
            traffic_direction: TrafficDirection::Egress as i32,
            trace_observation_point: TraceObservationPoint::ToStack as i32,
            sock_xlate_point: SocketTranslationPoint::SockXlatePointPostDirectionFwd as i32,
            is_reply: Some(true),
            ingress_allowed_by: vec![policy("pay", "allow-web"), policy("", "cluster-a")],
            ingress_denied_by: vec![policy("pay", "deny-b")],
            egress_allowed_by: vec![policy("shop", "egress-c")],
            egress_denied_by: vec![policy("", "deny-d"), policy("shop", "deny-e")],
            volume: Some(FlowVolume {
                fwd_bytes: 1_001,
                fwd_packets: 11,
                rev_bytes: 2_002,
                rev_packets: 22,
                first_packet: false,
                report: false,
                echo_id: 0,
            }),
            tcp_lifecycle: Some(TcpLifecycle {
                kind: Kind::Retransmit as i32,
                duration_ns: 3_003_003,
                retransmits: 5,
            }),
            summary: "TCP Flags: SYN, ACK, ECE".into(),
            ..Default::default()
        }
    }

    /// Flow → row → file → row → flow keeps every field history stores,
    /// and a flow with none of them set comes back as bare.
    #[test]
    fn every_stored_field_comes_back_from_the_file_exactly() {
        let root = test_support::scratch::ScratchDir::new("history-round-trip");
        let t = 1_709_211_900_123_456_789;
        let bare = Flow {
            time: Some(observer_proto::time::timestamp(i128::from(t + 1))),
            node_name: "node-8".into(),
            uuid: "3f2a9c41-07d5-8e1b-8000-00000000002b".into(),
            ..Default::default()
        };
        let flows = [full_flow(t), bare];
        let recs: Vec<Rec> = flows
            .iter()
            .zip([t, t + 1])
            .map(|(flow, time)| Rec {
                node: &flow.node_name,
                time,
                flow,
            })
            .collect();
        let file = write_file(root.path(), &[to_batch(&recs)], 2)
            .unwrap()
            .publish(1, 1)
            .unwrap();
        let back: Vec<Flow> =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&file.path).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .flat_map(|b| crate::history::read::flows(&b.unwrap()))
                .collect();
        assert_eq!(back, flows);
    }

    #[test]
    fn a_sink_writes_row_groups_and_an_empty_one_leaves_nothing() {
        let root = test_support::scratch::ScratchDir::new("history-sink");
        let t = 1_709_211_900_000_000_000;
        let mut sink = FileSink::create(root.path(), t).unwrap();
        sink.write(&batch(t, 4)).unwrap();
        sink.write(&batch(t + 10, 1)).unwrap();
        assert_eq!(sink.rows(), 5);
        let file = sink.finish().unwrap().unwrap().publish(1, 4).unwrap();
        assert_eq!((file.first, file.last), (t, t + 10));
        assert!(file.is_compacted());
        let empty = FileSink::create(root.path(), t).unwrap();
        assert!(empty.finish().unwrap().is_none());
        assert_eq!(files::list(root.path()).unwrap(), [file]);
    }
}
