//! The one Arrow schema of flow history, and the conversion of flows into
//! [`RecordBatch`]es of it. Every column is declared once in [`COLUMNS`]: its
//! name, type and how it is read from a flow, so the schema and the batches
//! can never disagree. The column list is documented in the module overview
//! ([`crate::history`]).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt8Array, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use observer_proto::flow::layer4::Protocol;
use observer_proto::flow::{
    DropReason, Endpoint, Flow, FlowType, IpVersion, Policy, TcpFlags, TraceObservationPoint,
    TrafficDirection, Verdict,
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
    Str(fn(&Rec) -> Option<String>),
    Bool(fn(&Rec) -> Option<bool>),
    U8(fn(&Rec) -> Option<u8>),
    I32(fn(&Rec) -> Option<i32>),
    U32(fn(&Rec) -> Option<u32>),
    U64(fn(&Rec) -> Option<u64>),
}

/// One column: name and extractor (the Arrow type follows from the extractor).
pub struct Column {
    pub name: &'static str,
    pub get: Get,
}

const fn col(name: &'static str, get: Get) -> Column {
    Column { name, get }
}

fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
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

/// The set flags in Hubble's order, comma separated: "SYN,ACK".
pub fn flags_string(t: &TcpFlags) -> String {
    let all = [
        (t.syn, "SYN"),
        (t.ack, "ACK"),
        (t.psh, "PSH"),
        (t.fin, "FIN"),
        (t.rst, "RST"),
        (t.urg, "URG"),
        (t.ece, "ECE"),
        (t.cwr, "CWR"),
        (t.ns, "NS"),
    ];
    let set: Vec<&str> = all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
    set.join(",")
}

fn tcp_flags(r: &Rec) -> Option<String> {
    match r.flow.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(t) => t.flags.as_ref().map(flags_string),
        _ => None,
    }
}

fn workload(e: Option<&Endpoint>) -> Option<String> {
    e?.workloads.first().and_then(|w| some(&w.name))
}

fn labels(e: Option<&Endpoint>) -> Option<String> {
    let e = e?;
    (!e.labels.is_empty()).then(|| e.labels.join(","))
}

/// Policies as `namespace/name`, comma separated; `None` when there are none.
fn policies(ps: &[Policy]) -> Option<String> {
    let names: Vec<String> = ps
        .iter()
        .map(|p| {
            if p.namespace.is_empty() {
                p.name.clone()
            } else {
                format!("{}/{}", p.namespace, p.name)
            }
        })
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

fn service(s: Option<&observer_proto::flow::Service>) -> Option<String> {
    let s = s?;
    match (s.namespace.as_str(), s.name.as_str()) {
        (_, "") => None,
        ("", n) => Some(n.to_string()),
        (ns, n) => Some(format!("{ns}/{n}")),
    }
}

fn volume<'a>(r: &Rec<'a>) -> Option<&'a observer_proto::observe::v1::FlowVolume> {
    r.flow.volume.as_ref()
}

fn lifecycle<'a>(r: &Rec<'a>) -> Option<&'a observer_proto::observe::v1::TcpLifecycle> {
    r.flow.tcp_lifecycle.as_ref()
}

/// Every column, in schema order.
pub static COLUMNS: &[Column] = &[
    col("time", Get::Time),
    col("node", Get::Str(|r| some(r.node))),
    col("uuid", Get::Str(|r| some(&r.flow.uuid))),
    col(
        "verdict",
        Get::Str(|r| {
            Verdict::try_from(r.flow.verdict)
                .ok()
                .map(|v| v.as_str_name().into())
        }),
    ),
    col(
        "drop_reason",
        Get::Str(|r| match DropReason::try_from(r.flow.drop_reason_desc) {
            Ok(DropReason::Unknown) | Err(_) => None,
            Ok(d) => Some(d.as_str_name().into()),
        }),
    ),
    col(
        "kernel_drop",
        Get::Str(|r| r.flow.kernel_drop.as_ref().and_then(|k| some(&k.name))),
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
        Get::Str(|r| {
            FlowType::try_from(r.flow.r#type)
                .ok()
                .map(|t| t.as_str_name().into())
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
    col("source_ip", Get::Str(|r| some(&r.flow.ip.as_ref()?.source))),
    col(
        "destination_ip",
        Get::Str(|r| some(&r.flow.ip.as_ref()?.destination)),
    ),
    col("source_port", Get::U32(|r| ports(r).map(|p| p.0))),
    col("destination_port", Get::U32(|r| ports(r).map(|p| p.1))),
    col(
        "protocol",
        Get::Str(|r| protocol_name(r.flow).map(String::from)),
    ),
    col("tcp_flags", Get::Str(tcp_flags)),
    col("source_identity", Get::U32(|r| src(r).map(|e| e.identity))),
    col(
        "destination_identity",
        Get::U32(|r| dst(r).map(|e| e.identity)),
    ),
    col("source_namespace", Get::Str(|r| some(&src(r)?.namespace))),
    col(
        "destination_namespace",
        Get::Str(|r| some(&dst(r)?.namespace)),
    ),
    col("source_pod", Get::Str(|r| some(&src(r)?.pod_name))),
    col("destination_pod", Get::Str(|r| some(&dst(r)?.pod_name))),
    col("source_workload", Get::Str(|r| workload(src(r)))),
    col("destination_workload", Get::Str(|r| workload(dst(r)))),
    col("source_labels", Get::Str(|r| labels(src(r)))),
    col("destination_labels", Get::Str(|r| labels(dst(r)))),
    col(
        "source_service",
        Get::Str(|r| service(r.flow.source_service.as_ref())),
    ),
    col(
        "destination_service",
        Get::Str(|r| service(r.flow.destination_service.as_ref())),
    ),
    col(
        "traffic_direction",
        Get::Str(
            |r| match TrafficDirection::try_from(r.flow.traffic_direction) {
                Ok(TrafficDirection::Unknown) | Err(_) => None,
                Ok(d) => Some(d.as_str_name().into()),
            },
        ),
    ),
    col(
        "observation_point",
        Get::Str(
            |r| match TraceObservationPoint::try_from(r.flow.trace_observation_point) {
                Ok(TraceObservationPoint::UnknownPoint) | Err(_) => None,
                Ok(p) => Some(p.as_str_name().into()),
            },
        ),
    ),
    col("is_reply", Get::Bool(|r| r.flow.is_reply)),
    col(
        "ingress_allowed_by",
        Get::Str(|r| policies(&r.flow.ingress_allowed_by)),
    ),
    col(
        "ingress_denied_by",
        Get::Str(|r| policies(&r.flow.ingress_denied_by)),
    ),
    col(
        "egress_allowed_by",
        Get::Str(|r| policies(&r.flow.egress_allowed_by)),
    ),
    col(
        "egress_denied_by",
        Get::Str(|r| policies(&r.flow.egress_denied_by)),
    ),
    col("fwd_bytes", Get::U64(|r| volume(r).map(|v| v.fwd_bytes))),
    col(
        "fwd_packets",
        Get::U64(|r| volume(r).map(|v| v.fwd_packets)),
    ),
    col("rev_bytes", Get::U64(|r| volume(r).map(|v| v.rev_bytes))),
    col(
        "rev_packets",
        Get::U64(|r| volume(r).map(|v| v.rev_packets)),
    ),
    col(
        "lifecycle_kind",
        Get::Str(|r| match Kind::try_from(lifecycle(r)?.kind) {
            Ok(Kind::Unknown) | Err(_) => None,
            Ok(k) => Some(k.as_str_name().into()),
        }),
    ),
    col(
        "lifecycle_duration_ns",
        Get::U64(|r| lifecycle(r).map(|l| l.duration_ns)),
    ),
    col(
        "lifecycle_retransmits",
        Get::U32(|r| lifecycle(r).map(|l| l.retransmits)),
    ),
    col("summary", Get::Str(|r| some(&r.flow.summary))),
];

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

/// The names of every column, in order, comma separated.
pub fn column_names() -> String {
    COLUMNS
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `recs` as one batch of the history schema.
pub fn to_batch(recs: &[Rec]) -> RecordBatch {
    let arrays: Vec<ArrayRef> = COLUMNS
        .iter()
        .map(|c| -> ArrayRef {
            match &c.get {
                Get::Time => Arc::new(
                    TimestampNanosecondArray::from_iter_values(recs.iter().map(|r| r.time))
                        .with_timezone("UTC"),
                ),
                Get::Str(f) => Arc::new(recs.iter().map(f).collect::<StringArray>()),
                Get::Bool(f) => Arc::new(recs.iter().map(f).collect::<BooleanArray>()),
                Get::U8(f) => Arc::new(recs.iter().map(f).collect::<UInt8Array>()),
                Get::I32(f) => Arc::new(recs.iter().map(f).collect::<Int32Array>()),
                Get::U32(f) => Arc::new(recs.iter().map(f).collect::<UInt32Array>()),
                Get::U64(f) => Arc::new(recs.iter().map(f).collect::<UInt64Array>()),
            }
        })
        .collect();
    RecordBatch::try_new(schema(), arrays).expect("the columns follow the schema")
}
