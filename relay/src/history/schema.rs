//! The one Arrow schema of flow history, and the conversion of flows into
//! [`RecordBatch`]es of it. Every column is declared once in [`COLUMNS`]: its
//! name, how it is read from a flow (which gives its Arrow type) and how it is
//! stored in Parquet ([`Store`]), so the schema, the batches and the files can
//! never disagree. The column list is documented in the module overview
//! ([`crate::history`]).
//!
//! [`to_batch`] fills one pre-sized Arrow builder per column, row by row:
//! strings are appended straight from the flow (joined lists are written piece
//! by piece into the builder), so building a row allocates nothing. The
//! flows a few rows ahead are prefetched: they come from a deep queue, and
//! otherwise every string of every flow is a cache miss.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::new_null_array;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Int32Builder, RecordBatch, StringBuilder,
    TimestampNanosecondArray, TimestampNanosecondBuilder, UInt8Builder, UInt32Builder,
    UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use observer_proto::flow::layer4::Protocol;
use observer_proto::flow::{
    DropReason, Endpoint, Flow, FlowType, IpVersion, Policy, SocketTranslationPoint, Tcp, TcpFlags,
    TraceObservationPoint, TraceReason, TrafficDirection, Verdict,
};
use observer_proto::observe::v1::tcp_lifecycle::Kind;

/// One flow about to become a row: its node and time (ns since the epoch).
pub struct Rec<'a> {
    pub node: &'a str,
    pub time: i64,
    pub flow: &'a Flow,
}

/// How a column's values are read from a flow.
pub enum Get {
    Time,
    /// Appends the row's value, or null, to the column's builder.
    Str(fn(&Rec, &mut StringBuilder)),
    Bool(fn(&Rec) -> Option<bool>),
    U8(fn(&Rec) -> Option<u8>),
    I32(fn(&Rec) -> Option<i32>),
    U32(fn(&Rec) -> Option<u32>),
    U64(fn(&Rec) -> Option<u64>),
}

/// How a column is stored in Parquet. Every column is also compressed (ZSTD,
/// see [`super::files`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A dictionary per file and run-length/bit-packed keys: columns with few
    /// distinct values (names, addresses, enums, well-known ports).
    Dict,
    /// `DELTA_BINARY_PACKED`, no dictionary: integers that are sorted (time)
    /// or take many distinct values (ephemeral ports, byte counts).
    Delta,
    /// Plain values, no dictionary: values that are (nearly) all distinct,
    /// where a dictionary only costs time; ZSTD finds what they share.
    Plain,
}

/// One column: name, extractor (the Arrow type follows from it) and storage.
pub struct Column {
    pub name: &'static str,
    pub get: Get,
    pub store: Store,
}

/// A column stored with a dictionary (see [`Column::stored`] for the others).
const fn col(name: &'static str, get: Get) -> Column {
    Column {
        name,
        get,
        store: Store::Dict,
    }
}

impl Column {
    const fn stored(self, store: Store) -> Column {
        Column { store, ..self }
    }
}

/// `s`, or null when it is empty.
fn put(b: &mut StringBuilder, s: Option<&str>) {
    match s {
        Some(s) if !s.is_empty() => b.append_value(s),
        _ => b.append_null(),
    }
}

/// The items joined by `,`, or null when there are none.
fn put_joined<'a>(b: &mut StringBuilder, items: impl IntoIterator<Item = &'a str>) {
    let mut any = false;
    for item in items {
        if any {
            b.append_value_part(",");
        }
        b.append_value_part(item);
        any = true;
    }
    if any {
        b.append_value("");
    } else {
        b.append_null();
    }
}

/// Writing a value in pieces: the next `append_value` ends it.
trait Parts {
    fn append_value_part(&mut self, s: &str);
}

impl Parts for StringBuilder {
    fn append_value_part(&mut self, s: &str) {
        // Writing into the builder's value buffer cannot fail.
        let _ = self.write_str(s);
    }
}

fn src<'a>(r: &Rec<'a>) -> Option<&'a Endpoint> {
    r.flow.source.as_ref()
}

fn dst<'a>(r: &Rec<'a>) -> Option<&'a Endpoint> {
    r.flow.destination.as_ref()
}

fn ports(r: &Rec) -> Option<(u32, u32)> {
    match r.flow.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(t) => Some((t.source_port, t.destination_port)),
        Protocol::Udp(u) => Some((u.source_port, u.destination_port)),
        Protocol::Sctp(s) => Some((s.source_port, s.destination_port)),
        Protocol::IcmPv4(_) | Protocol::IcmPv6(_) => None,
    }
}

/// "TCP", "UDP", "ICMPv4", "ICMPv6" or "SCTP".
pub fn protocol_name(f: &Flow) -> Option<&'static str> {
    Some(match f.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(_) => "TCP",
        Protocol::Udp(_) => "UDP",
        Protocol::IcmPv4(_) => "ICMPv4",
        Protocol::IcmPv6(_) => "ICMPv6",
        Protocol::Sctp(_) => "SCTP",
    })
}

/// The names of the set flags: SYN, ACK, PSH, FIN, RST, then the rare ones.
/// Not the order of Hubble's summaries (RST and FIN before PSH): stored
/// values stay as history already holds them.
fn flag_names(t: &TcpFlags) -> impl Iterator<Item = &'static str> {
    [
        (t.syn, "SYN"),
        (t.ack, "ACK"),
        (t.psh, "PSH"),
        (t.fin, "FIN"),
        (t.rst, "RST"),
        (t.urg, "URG"),
        (t.ece, "ECE"),
        (t.cwr, "CWR"),
        (t.ns, "NS"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
}

/// The set flags in [`flag_names`]' order, comma separated: "SYN,ACK".
pub fn flags_string(t: &TcpFlags) -> String {
    flag_names(t).collect::<Vec<_>>().join(",")
}

/// The set flags of a TCP flow ("" when it has flags but none is set), null
/// for other flows.
fn tcp_flags(r: &Rec, b: &mut StringBuilder) {
    match r.flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(Tcp {
            flags: Some(flags), ..
        })) => {
            for (i, name) in flag_names(flags).enumerate() {
                if i > 0 {
                    b.append_value_part(",");
                }
                b.append_value_part(name);
            }
            b.append_value("");
        }
        _ => b.append_null(),
    }
}

fn workload(e: Option<&Endpoint>, b: &mut StringBuilder) {
    put(
        b,
        e.and_then(|e| e.workloads.first()).map(|w| w.name.as_str()),
    );
}

fn workload_kind(e: Option<&Endpoint>, b: &mut StringBuilder) {
    put(
        b,
        e.and_then(|e| e.workloads.first()).map(|w| w.kind.as_str()),
    );
}

fn labels(e: Option<&Endpoint>, b: &mut StringBuilder) {
    put_joined(
        b,
        e.into_iter()
            .flat_map(|e| e.labels.iter().map(String::as_str)),
    );
}

/// The `trace_reason` of a report of a connection's counters (`volume.report`),
/// which Hubble's enum has no name for.
pub const REPORT: &str = "REPORT";

/// Policies as `namespace/name`, comma separated; null when there are none.
fn policies(ps: &[Policy], b: &mut StringBuilder) {
    if ps.is_empty() {
        b.append_null();
        return;
    }
    for (i, p) in ps.iter().enumerate() {
        if i > 0 {
            b.append_value_part(",");
        }
        if !p.namespace.is_empty() {
            b.append_value_part(&p.namespace);
            b.append_value_part("/");
        }
        b.append_value_part(&p.name);
    }
    b.append_value("");
}

/// `namespace/name` (or `name`), null without a name.
fn service(s: Option<&observer_proto::flow::Service>, b: &mut StringBuilder) {
    match s.map(|s| (s.namespace.as_str(), s.name.as_str())) {
        None | Some((_, "")) => b.append_null(),
        Some(("", name)) => b.append_value(name),
        Some((ns, name)) => {
            b.append_value_part(ns);
            b.append_value_part("/");
            b.append_value(name);
        }
    }
}

/// ICMP type and code of an ICMP or ICMPv6 flow.
fn icmp(r: &Rec) -> Option<(u32, u32)> {
    match r.flow.l4.as_ref()?.protocol.as_ref()? {
        Protocol::IcmPv4(i) => Some((i.r#type, i.code)),
        Protocol::IcmPv6(i) => Some((i.r#type, i.code)),
        _ => None,
    }
}

fn stamp<'a>(r: &Rec<'a>) -> Option<&'a observer_proto::observe::v1::PolicyStamp> {
    r.flow.policy_in_force.as_ref()
}

fn volume<'a>(r: &Rec<'a>) -> Option<&'a observer_proto::observe::v1::FlowVolume> {
    r.flow.volume.as_ref()
}

fn lifecycle<'a>(r: &Rec<'a>) -> Option<&'a observer_proto::observe::v1::TcpLifecycle> {
    r.flow.tcp_lifecycle.as_ref()
}

/// Every column, in schema order.
pub static COLUMNS: &[Column] = &[
    col("time", Get::Time).stored(Store::Delta),
    col("node", Get::Str(|r, b| put(b, Some(r.node)))),
    col("uuid", Get::Str(|r, b| put(b, Some(&r.flow.uuid)))).stored(Store::Plain),
    col(
        "verdict",
        Get::Str(|r, b| {
            put(
                b,
                Verdict::try_from(r.flow.verdict)
                    .ok()
                    .map(|v| v.as_str_name()),
            )
        }),
    ),
    col(
        "drop_reason",
        Get::Str(|r, b| match DropReason::try_from(r.flow.drop_reason_desc) {
            Ok(DropReason::Unknown) | Err(_) => b.append_null(),
            Ok(d) => b.append_value(d.as_str_name()),
        }),
    ),
    col(
        "kernel_drop",
        Get::Str(|r, b| put(b, r.flow.kernel_drop.as_ref().map(|k| k.name.as_str()))),
    ),
    col(
        "event_type",
        Get::I32(|r| r.flow.event_type.as_ref().map(|e| e.r#type)),
    ),
    col(
        "event_subtype",
        Get::I32(|r| r.flow.event_type.as_ref().map(|e| e.sub_type)),
    ),
    col(
        "flow_type",
        Get::Str(|r, b| {
            put(
                b,
                FlowType::try_from(r.flow.r#type)
                    .ok()
                    .map(|t| t.as_str_name()),
            )
        }),
    ),
    col(
        "ip_version",
        Get::U8(
            |r| match IpVersion::try_from(r.flow.ip.as_ref()?.ip_version) {
                Ok(IpVersion::IPv4) => Some(4),
                Ok(IpVersion::IPv6) => Some(6),
                _ => None,
            },
        ),
    ),
    col(
        "source_ip",
        Get::Str(|r, b| put(b, r.flow.ip.as_ref().map(|ip| ip.source.as_str()))),
    ),
    col(
        "destination_ip",
        Get::Str(|r, b| put(b, r.flow.ip.as_ref().map(|ip| ip.destination.as_str()))),
    ),
    col("source_port", Get::U32(|r| ports(r).map(|p| p.0))).stored(Store::Delta),
    col("destination_port", Get::U32(|r| ports(r).map(|p| p.1))),
    col("protocol", Get::Str(|r, b| put(b, protocol_name(r.flow)))),
    col("tcp_flags", Get::Str(tcp_flags)),
    col(
        "icmp_type",
        Get::U8(|r| icmp(r).and_then(|i| u8::try_from(i.0).ok())),
    ),
    col(
        "icmp_code",
        Get::U8(|r| icmp(r).and_then(|i| u8::try_from(i.1).ok())),
    ),
    col("source_identity", Get::U32(|r| src(r).map(|e| e.identity))),
    col(
        "destination_identity",
        Get::U32(|r| dst(r).map(|e| e.identity)),
    ),
    col(
        "source_namespace",
        Get::Str(|r, b| put(b, src(r).map(|e| e.namespace.as_str()))),
    ),
    col(
        "destination_namespace",
        Get::Str(|r, b| put(b, dst(r).map(|e| e.namespace.as_str()))),
    ),
    col(
        "source_pod",
        Get::Str(|r, b| put(b, src(r).map(|e| e.pod_name.as_str()))),
    ),
    col(
        "destination_pod",
        Get::Str(|r, b| put(b, dst(r).map(|e| e.pod_name.as_str()))),
    ),
    col("source_workload", Get::Str(|r, b| workload(src(r), b))),
    col("destination_workload", Get::Str(|r, b| workload(dst(r), b))),
    col("source_labels", Get::Str(|r, b| labels(src(r), b))),
    col("destination_labels", Get::Str(|r, b| labels(dst(r), b))),
    col(
        "source_service",
        Get::Str(|r, b| service(r.flow.source_service.as_ref(), b)),
    ),
    col(
        "destination_service",
        Get::Str(|r, b| service(r.flow.destination_service.as_ref(), b)),
    ),
    col(
        "traffic_direction",
        Get::Str(
            |r, b| match TrafficDirection::try_from(r.flow.traffic_direction) {
                Ok(TrafficDirection::Unknown) | Err(_) => b.append_null(),
                Ok(d) => b.append_value(d.as_str_name()),
            },
        ),
    ),
    col(
        "observation_point",
        Get::Str(
            |r, b| match TraceObservationPoint::try_from(r.flow.trace_observation_point) {
                Ok(TraceObservationPoint::UnknownPoint) | Err(_) => b.append_null(),
                Ok(p) => b.append_value(p.as_str_name()),
            },
        ),
    ),
    col(
        "sock_xlate_point",
        Get::Str(
            |r, b| match SocketTranslationPoint::try_from(r.flow.sock_xlate_point) {
                Ok(SocketTranslationPoint::SockXlatePointUnknown) | Err(_) => b.append_null(),
                Ok(p) => b.append_value(p.as_str_name()),
            },
        ),
    ),
    col("is_reply", Get::Bool(|r| r.flow.is_reply)),
    col(
        "trace_reason",
        Get::Str(|r, b| match TraceReason::try_from(r.flow.trace_reason) {
            // No packet: flow-probe's report of a connection's counters.
            _ if r.flow.volume.as_ref().is_some_and(|v| v.report) => b.append_value(REPORT),
            Ok(TraceReason::Unknown) | Err(_) => b.append_null(),
            Ok(t) => b.append_value(t.as_str_name()),
        }),
    ),
    col(
        "ingress_allowed_by",
        Get::Str(|r, b| policies(&r.flow.ingress_allowed_by, b)),
    ),
    col(
        "ingress_denied_by",
        Get::Str(|r, b| policies(&r.flow.ingress_denied_by, b)),
    ),
    col(
        "egress_allowed_by",
        Get::Str(|r, b| policies(&r.flow.egress_allowed_by, b)),
    ),
    col(
        "egress_denied_by",
        Get::Str(|r, b| policies(&r.flow.egress_denied_by, b)),
    ),
    col(
        "policy_generation",
        Get::U64(|r| stamp(r).map(|s| s.generation)),
    ),
    col(
        "policy_version",
        Get::Str(|r, b| put(b, stamp(r).map(|s| s.version.as_str()))),
    ),
    col("fwd_bytes", Get::U64(|r| volume(r).map(|v| v.fwd_bytes))).stored(Store::Delta),
    col(
        "fwd_packets",
        Get::U64(|r| volume(r).map(|v| v.fwd_packets)),
    ),
    col("rev_bytes", Get::U64(|r| volume(r).map(|v| v.rev_bytes))).stored(Store::Delta),
    col(
        "rev_packets",
        Get::U64(|r| volume(r).map(|v| v.rev_packets)),
    ),
    col(
        "lifecycle_kind",
        Get::Str(|r, b| match lifecycle(r).map(|l| Kind::try_from(l.kind)) {
            None | Some(Ok(Kind::Unknown) | Err(_)) => b.append_null(),
            Some(Ok(k)) => b.append_value(k.as_str_name()),
        }),
    ),
    // Only a close of an established connection has a duration: null, not
    // 0, for ESTABLISHED, RETRANSMIT and a connect that failed, so an average
    // over CLOSED rows is one of lifetimes.
    col(
        "lifecycle_duration_ns",
        Get::U64(|r| lifecycle(r).map(|l| l.duration_ns).filter(|d| *d != 0)),
    )
    .stored(Store::Delta),
    col(
        "lifecycle_retransmits",
        Get::U32(|r| lifecycle(r).map(|l| l.retransmits)),
    ),
    col(
        "policy_match_type",
        Get::U32(|r| Some(r.flow.policy_match_type).filter(|m| *m != 0)),
    ),
    col(
        "interface_index",
        Get::U32(|r| r.flow.interface.as_ref().map(|i| i.index)),
    ),
    col(
        "interface_name",
        Get::Str(|r, b| put(b, r.flow.interface.as_ref().map(|i| i.name.as_str()))),
    ),
    col(
        "source_endpoint_id",
        Get::U32(|r| src(r).map(|e| e.id).filter(|id| *id != 0)),
    ),
    col(
        "destination_endpoint_id",
        Get::U32(|r| dst(r).map(|e| e.id).filter(|id| *id != 0)),
    ),
    col(
        "source_workload_kind",
        Get::Str(|r, b| workload_kind(src(r), b)),
    ),
    col(
        "destination_workload_kind",
        Get::Str(|r, b| workload_kind(dst(r), b)),
    ),
    col(
        "source_mac",
        Get::Str(|r, b| put(b, r.flow.ethernet.as_ref().map(|e| e.source.as_str()))),
    ),
    col(
        "destination_mac",
        Get::Str(|r, b| put(b, r.flow.ethernet.as_ref().map(|e| e.destination.as_str()))),
    ),
    col(
        "socket_cookie",
        Get::U64(|r| Some(r.flow.socket_cookie).filter(|c| *c != 0)),
    ),
    col(
        "cgroup_id",
        Get::U64(|r| Some(r.flow.cgroup_id).filter(|c| *c != 0)),
    ),
    col("summary", Get::Str(|r, b| put(b, Some(&r.flow.summary)))),
    col(
        "source_cluster",
        Get::Str(|r, b| put(b, src(r).map(|e| e.cluster_name.as_str()))),
    ),
    col(
        "destination_cluster",
        Get::Str(|r, b| put(b, dst(r).map(|e| e.cluster_name.as_str()))),
    ),
    col(
        "node_labels",
        Get::Str(|r, b| put_joined(b, r.flow.node_labels.iter().map(String::as_str))),
    ),
];

/// Whether the file at `path` is flow history this relay reads: Parquet
/// whose footer can be read, with a `time` column, and each of its columns
/// one of the schema's, of the schema's type (files of an older relay may
/// lack newer columns: those read as nulls). Otherwise why not.
pub fn check_file(path: &std::path::Path) -> Result<(), String> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let ours = schema();
    let theirs = reader.schema();
    for f in theirs.fields() {
        let Ok(want) = ours.field_with_name(f.name()) else {
            return Err(format!("its column {} is no flow history column", f.name()));
        };
        if f.data_type() != want.data_type() {
            return Err(format!(
                "its {} column is {}, not {}",
                f.name(),
                f.data_type(),
                want.data_type()
            ));
        }
    }
    if theirs.field_with_name("time").is_err() {
        return Err("it has no time column".into());
    }
    Ok(())
}

fn data_type(get: &Get) -> DataType {
    match get {
        Get::Time => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        Get::Str(_) => DataType::Utf8,
        Get::Bool(_) => DataType::Boolean,
        Get::U8(_) => DataType::UInt8,
        Get::I32(_) => DataType::Int32,
        Get::U32(_) => DataType::UInt32,
        Get::U64(_) => DataType::UInt64,
    }
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|c| Field::new(c.name, data_type(&c.get), !matches!(c.get, Get::Time)))
            .collect::<Vec<_>>(),
    ))
});

/// The history schema (the `flows` table).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// `batch` in the current schema: a file written before a column was added
/// reads with that column null. Fails on a column of another type.
pub fn conform(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = schema();
    if batch.schema().fields() == schema.fields() {
        return batch.with_schema(schema);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => Ok(c.clone()),
            None if f.is_nullable() => Ok(new_null_array(f.data_type(), batch.num_rows())),
            None => Err(ArrowError::SchemaError(format!(
                "the history file has no column `{}`",
                f.name()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

/// The `time` column of a batch of the history schema (or some of its
/// columns with `time` among them).
pub fn times(batch: &RecordBatch) -> Option<&TimestampNanosecondArray> {
    batch
        .column_by_name("time")?
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
}

/// The names of every column, in order, comma separated.
pub fn column_names() -> String {
    COLUMNS
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One column's builder while a batch is built.
enum Builder {
    Time(TimestampNanosecondBuilder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
    U8(UInt8Builder),
    I32(Int32Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
}

/// Bytes reserved per row for a string column's values before its first
/// batch; after that, what the column's last batch held per row (plus one),
/// so a batch rarely grows (and copies) a buffer.
const STR_BYTES_PER_ROW: usize = 16;

/// Per column, the bytes per row of its last batch (0: none yet).
static STR_HINTS: LazyLock<Vec<AtomicUsize>> =
    LazyLock::new(|| COLUMNS.iter().map(|_| AtomicUsize::new(0)).collect());

fn str_bytes_per_row(column: usize) -> usize {
    match STR_HINTS[column].load(Ordering::Relaxed) {
        0 => STR_BYTES_PER_ROW,
        n => n + 1,
    }
}

impl Builder {
    fn new(column: usize, get: &Get, rows: usize) -> Builder {
        match get {
            Get::Time => Builder::Time(TimestampNanosecondBuilder::with_capacity(rows)),
            Get::Str(_) => Builder::Str(StringBuilder::with_capacity(
                rows,
                rows * str_bytes_per_row(column),
            )),
            Get::Bool(_) => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            Get::U8(_) => Builder::U8(UInt8Builder::with_capacity(rows)),
            Get::I32(_) => Builder::I32(Int32Builder::with_capacity(rows)),
            Get::U32(_) => Builder::U32(UInt32Builder::with_capacity(rows)),
            Get::U64(_) => Builder::U64(UInt64Builder::with_capacity(rows)),
        }
    }

    fn append(&mut self, get: &Get, r: &Rec) {
        match (self, get) {
            (Builder::Time(b), Get::Time) => b.append_value(r.time),
            (Builder::Str(b), Get::Str(f)) => f(r, b),
            (Builder::Bool(b), Get::Bool(f)) => b.append_option(f(r)),
            (Builder::U8(b), Get::U8(f)) => b.append_option(f(r)),
            (Builder::I32(b), Get::I32(f)) => b.append_option(f(r)),
            (Builder::U32(b), Get::U32(f)) => b.append_option(f(r)),
            (Builder::U64(b), Get::U64(f)) => b.append_option(f(r)),
            _ => unreachable!("every builder is made from its column's extractor"),
        }
    }

    fn finish(self, column: usize) -> ArrayRef {
        match self {
            Builder::Time(mut b) => Arc::new(b.finish().with_timezone("UTC")),
            Builder::Str(mut b) => {
                let a = b.finish();
                if !a.is_empty() {
                    let per_row = a.value_data().len().div_ceil(a.len());
                    STR_HINTS[column].store(per_row, Ordering::Relaxed);
                }
                Arc::new(a)
            }
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::U8(mut b) => Arc::new(b.finish()),
            Builder::I32(mut b) => Arc::new(b.finish()),
            Builder::U32(mut b) => Arc::new(b.finish()),
            Builder::U64(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Rows ahead whose flows (and then their strings) are fetched into cache
/// while a row is built: the flows come from a queue tens of thousands
/// deep, so every string of every flow is a cache miss otherwise.
const AHEAD: usize = 4;

/// `recs` as one batch of the history schema, built row by row.
pub fn to_batch(recs: &[Rec]) -> RecordBatch {
    let mut builders: Vec<Builder> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| Builder::new(i, &c.get, recs.len()))
        .collect();
    for (i, r) in recs.iter().enumerate() {
        if let Some(ahead) = recs.get(i + 2 * AHEAD) {
            prefetch::lines(ahead.flow);
        }
        if let Some(ahead) = recs.get(i + AHEAD) {
            prefetch::strings(ahead.flow);
        }
        for (b, c) in builders.iter_mut().zip(COLUMNS) {
            b.append(&c.get, r);
        }
    }
    let arrays: Vec<ArrayRef> = builders
        .into_iter()
        .enumerate()
        .map(|(i, b)| b.finish(i))
        .collect();
    RecordBatch::try_new(schema(), arrays).expect("the columns follow the schema")
}

/// Cache hints for a flow about to become a row.
mod prefetch {
    use observer_proto::flow::{Endpoint, Flow};

    fn hint<T: ?Sized>(p: *const T) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is only a hint: it reads nothing and never
        // faults, whatever the address.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }

    /// The cache lines of the flow itself.
    pub fn lines(f: &Flow) {
        let start = std::ptr::from_ref(f).cast::<u8>();
        for off in (0..size_of::<Flow>()).step_by(64) {
            hint(start.wrapping_add(off));
        }
    }

    fn endpoint(e: Option<&Endpoint>) {
        if let Some(e) = e {
            hint(e.namespace.as_ptr());
            hint(e.pod_name.as_ptr());
            hint(e.labels.as_ptr());
            hint(e.workloads.as_ptr());
        }
    }

    /// The text the flow's string columns copy (its lines must be in cache
    /// already: see [`lines`]).
    pub fn strings(f: &Flow) {
        hint(f.uuid.as_ptr());
        hint(f.summary.as_ptr());
        if let Some(ip) = &f.ip {
            hint(ip.source.as_ptr());
            hint(ip.destination.as_ptr());
        }
        endpoint(f.source.as_ref());
        endpoint(f.destination.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use observer_proto::flow::{Layer4, Service, Udp, Workload};

    use super::*;

    fn flow() -> Flow {
        Flow {
            uuid: "01234567-89ab-8def-8000-000000000001".into(),
            l4: Some(Layer4 {
                protocol: Some(Protocol::Tcp(Tcp {
                    source_port: 40_000,
                    destination_port: 80,
                    flags: Some(TcpFlags::default()),
                })),
            }),
            source: Some(Endpoint {
                labels: vec!["k8s:app=web".into(), "k8s:tier=front".into()],
                workloads: vec![Workload {
                    name: "web".into(),
                    kind: "Deployment".into(),
                }],
                ..Default::default()
            }),
            destination: Some(Endpoint::default()),
            source_service: Some(Service {
                namespace: String::new(),
                name: "web".into(),
            }),
            destination_service: Some(Service {
                namespace: "shop".into(),
                name: "api".into(),
            }),
            ingress_allowed_by: vec![
                Policy {
                    namespace: "shop".into(),
                    name: "allow-web".into(),
                    ..Default::default()
                },
                Policy {
                    name: "cluster-wide".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    /// Column `name` of `batch` as text values (None for null).
    fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let a = batch.column_by_name(name).unwrap().as_string::<i32>();
        (0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
            .collect()
    }

    #[test]
    fn strings_are_appended_joined_and_null_when_empty() {
        let mut udp = flow();
        udp.uuid.clear();
        udp.l4 = Some(Layer4 {
            protocol: Some(Protocol::Udp(Udp::default())),
        });
        udp.source_service = Some(Service::default());
        udp.ingress_allowed_by.clear();
        let (a, b) = (flow(), udp);
        let recs = [
            Rec {
                node: "n1",
                time: 1,
                flow: &a,
            },
            Rec {
                node: "",
                time: 2,
                flow: &b,
            },
        ];
        let batch = to_batch(&recs);
        assert_eq!(batch.schema(), schema());
        let s = |v: &str| Some(v.to_string());
        assert_eq!(strings(&batch, "node"), [s("n1"), None]);
        assert_eq!(
            strings(&batch, "uuid"),
            [s("01234567-89ab-8def-8000-000000000001"), None]
        );
        // A TCP flow with no flag set has "" (not null); UDP has none.
        assert_eq!(strings(&batch, "tcp_flags"), [s(""), None]);
        assert_eq!(strings(&batch, "protocol"), [s("TCP"), s("UDP")]);
        assert_eq!(
            strings(&batch, "source_labels"),
            vec![s("k8s:app=web,k8s:tier=front"); 2]
        );
        assert_eq!(strings(&batch, "destination_labels"), [None, None]);
        assert_eq!(strings(&batch, "source_workload"), vec![s("web"); 2]);
        assert_eq!(strings(&batch, "source_service"), [s("web"), None]);
        assert_eq!(
            strings(&batch, "destination_service"),
            vec![s("shop/api"); 2]
        );
        assert_eq!(
            strings(&batch, "ingress_allowed_by"),
            [s("shop/allow-web,cluster-wide"), None]
        );
        assert_eq!(strings(&batch, "egress_denied_by"), [None, None]);
        let ports = batch.column_by_name("source_port").unwrap();
        assert_eq!(
            ports
                .as_primitive::<datafusion::arrow::datatypes::UInt32Type>()
                .value(0),
            40_000
        );
        assert_eq!(ports.null_count(), 0, "UDP has ports too");
    }

    #[test]
    fn flags_keep_their_stored_order() {
        let t = TcpFlags {
            ack: true,
            syn: true,
            fin: true,
            ..Default::default()
        };
        assert_eq!(flags_string(&t), "SYN,ACK,FIN");
        let f = Flow {
            l4: Some(Layer4 {
                protocol: Some(Protocol::Tcp(Tcp {
                    flags: Some(t),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        let batch = to_batch(&[Rec {
            node: "n",
            time: 0,
            flow: &f,
        }]);
        assert_eq!(strings(&batch, "tcp_flags"), [Some("SYN,ACK,FIN".into())]);
    }

    #[test]
    fn icmp_type_trace_reason_and_the_policy_in_force_come_back_from_a_row() {
        use observer_proto::flow::IcmPv6;
        use observer_proto::observe::v1::PolicyStamp;
        let f = Flow {
            l4: Some(Layer4 {
                protocol: Some(Protocol::IcmPv6(IcmPv6 {
                    r#type: 135,
                    code: 0,
                })),
            }),
            trace_reason: TraceReason::New as i32,
            policy_in_force: Some(PolicyStamp {
                generation: 7,
                version: "0123456789abcdef".into(),
            }),
            ..Default::default()
        };
        let plain = Flow::default();
        let batch = to_batch(&[
            Rec {
                node: "n",
                time: 0,
                flow: &f,
            },
            Rec {
                node: "n",
                time: 1,
                flow: &plain,
            },
        ]);
        assert_eq!(strings(&batch, "trace_reason"), [Some("NEW".into()), None]);
        assert_eq!(
            strings(&batch, "policy_version"),
            [Some("0123456789abcdef".into()), None]
        );
        let back = super::super::read::flows(&batch);
        assert_eq!(
            (&back[0].l4, back[0].trace_reason, &back[0].policy_in_force),
            (&f.l4, f.trace_reason, &f.policy_in_force)
        );
        assert_eq!((back[1].trace_reason, &back[1].policy_in_force), (0, &None));
    }

    /// A report of a connection's counters keeps its mark through history:
    /// `flows` as one history batch (node `n`, time 0).
    fn batch_of(flows: &[Flow]) -> RecordBatch {
        let recs: Vec<Rec> = flows
            .iter()
            .map(|flow| Rec {
                node: "n",
                time: 0,
                flow,
            })
            .collect();
        to_batch(&recs)
    }

    /// `REPORT` in `trace_reason`, read back as Hubble's ESTABLISHED with
    /// `volume.report`.
    #[test]
    fn a_report_comes_back_from_a_row_as_a_report() {
        use observer_proto::observe::v1::FlowVolume;
        let volume = |report| FlowVolume {
            fwd_bytes: 4260,
            fwd_packets: 30,
            rev_bytes: 0,
            rev_packets: 0,
            first_packet: false,
            report,
            echo_id: 0,
        };
        let flows = [true, false].map(|report| Flow {
            trace_reason: TraceReason::Established as i32,
            volume: Some(volume(report)),
            ..Default::default()
        });
        let batch = batch_of(&flows);
        assert_eq!(
            strings(&batch, "trace_reason"),
            [Some("REPORT".into()), Some("ESTABLISHED".into())]
        );
        let back = super::super::read::flows(&batch);
        for (b, f) in back.iter().zip(&flows) {
            assert_eq!((b.trace_reason, &b.volume), (f.trace_reason, &f.volume));
        }
    }

    #[test]
    fn a_lifecycle_without_a_duration_stores_none() {
        use datafusion::arrow::datatypes::UInt64Type;
        use observer_proto::observe::v1::{TcpLifecycle, tcp_lifecycle::Kind};
        let life = |kind: Kind, duration_ns| Flow {
            tcp_lifecycle: Some(TcpLifecycle {
                kind: kind as i32,
                duration_ns,
                retransmits: 1,
            }),
            ..Default::default()
        };
        let flows = [
            life(Kind::Established, 0),
            life(Kind::Retransmit, 0),
            life(Kind::Closed, 0),
            life(Kind::Closed, 2_500_000),
        ];
        let batch = batch_of(&flows);
        let durations = batch
            .column_by_name("lifecycle_duration_ns")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let got: Vec<Option<u64>> = (0..durations.len())
            .map(|i| durations.is_valid(i).then(|| durations.value(i)))
            .collect();
        assert_eq!(got, [None, None, None, Some(2_500_000)]);
        // Read back, a missing duration is the proto's 0 again.
        let back = super::super::read::flows(&batch);
        for (b, f) in back.iter().zip(&flows) {
            assert_eq!(b.tcp_lifecycle, f.tcp_lifecycle);
        }
    }

    /// What cluster and node-label filters read comes back from a row, so
    /// they select a flow from history as they select it live.
    #[test]
    fn clusters_node_labels_and_policy_kinds_come_back_from_a_row() {
        use observer_proto::flow::FlowFilter;
        use observer_runtime::filter::compile;
        let mut f = flow();
        f.source.as_mut().unwrap().cluster_name = "east".into();
        f.node_labels = vec!["zone=a".into(), "rack=7".into()];
        f.ingress_allowed_by[0].kind = cluster_spec::policy::KIND.into();
        f.ingress_allowed_by[0].labels = cluster_spec::policy::policy_labels("allow-web", "shop");
        let batch = batch_of(std::slice::from_ref(&f));
        assert_eq!(strings(&batch, "source_cluster"), [Some("east".into())]);
        assert_eq!(strings(&batch, "destination_cluster"), [None]);
        assert_eq!(
            strings(&batch, "node_labels"),
            [Some("zone=a,rack=7".into())]
        );
        let back = &super::super::read::flows(&batch)[0];
        assert_eq!(back.source.as_ref().unwrap().cluster_name, "east");
        assert_eq!(back.destination.as_ref().unwrap().cluster_name, "");
        assert_eq!(back.node_labels, f.node_labels);
        assert_eq!(back.ingress_allowed_by[0], f.ingress_allowed_by[0]);
        // No namespace: no policy flow-probe names, so no kind is made up.
        assert_eq!(
            back.ingress_allowed_by[1],
            Policy {
                name: "cluster-wide".into(),
                ..Default::default()
            }
        );
        let selects = |filter: FlowFilter| compile(&[filter], &[]).unwrap().matches(back);
        assert!(selects(FlowFilter {
            source_cluster_name: vec!["east".into()],
            node_labels: vec!["zone=a".into()],
            ..Default::default()
        }));
        assert!(!selects(FlowFilter {
            source_cluster_name: vec!["default".into()],
            ..Default::default()
        }));
    }

    #[test]
    fn a_batch_of_an_older_schema_gets_the_new_columns_null() {
        let f = flow();
        let batch = to_batch(&[Rec {
            node: "n",
            time: 5,
            flow: &f,
        }]);
        let older = batch.project(&[0, 1, 2]).expect("time, node and uuid");
        let conformed = conform(older).unwrap();
        assert_eq!(conformed.schema(), schema());
        assert_eq!(strings(&conformed, "uuid"), strings(&batch, "uuid"));
        assert_eq!(strings(&conformed, "policy_version"), [None]);
        let no_time = batch.project(&[1]).unwrap();
        assert!(conform(no_time).is_err());
    }

    #[test]
    fn an_empty_batch_has_the_schema() {
        let batch = to_batch(&[]);
        assert_eq!(batch.num_rows(), 0);
        assert_eq!(batch.num_columns(), COLUMNS.len());
    }
}
