//! The rows of `policy_whatif` and `policy_replay`: one per replayed flow,
//! the flow's own columns, its service-graph edge
//! (`service_graph::group_of`, `destination_group`, as `graph_edges` names
//! it) and what the replay says.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringBuilder, TimestampNanosecondBuilder, UInt32Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::Result;
use observer_proto::flow::Flow;
use service_graph::{destination_group, group_of, l4};

use super::replay::Outcome;
use crate::history::schema::protocol_name;
use cluster_spec::policy::Direction;

/// The text columns after `time`, in order.
const TEXT: [&str; 13] = [
    "node",
    "uuid",
    "policy_version",
    "edge",
    "source",
    "target",
    "source_namespace",
    "source_pod",
    "source_ip",
    "destination_namespace",
    "destination_pod",
    "destination_ip",
    "protocol",
];
/// The text columns after `destination_port`, in order.
const REPLAY: [&str; 8] = [
    "direction",
    "verdict",
    "verdict_before",
    "rule_before",
    "verdict_after",
    "rule_after",
    "change",
    "problem",
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let mut fields = vec![Field::new("time", ts, false)];
    fields.extend(TEXT.iter().map(|n| Field::new(*n, DataType::Utf8, true)));
    fields.push(Field::new("destination_port", DataType::UInt32, true));
    fields.extend(REPLAY.iter().map(|n| Field::new(*n, DataType::Utf8, true)));
    Arc::new(Schema::new(fields))
});

/// The schema of both tables.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The names of every column, comma separated.
pub fn column_names() -> String {
    schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn text(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// One batch of `rows` (flow, its time in Unix ns, its replay).
pub fn batch(rows: &[(Flow, i64, Outcome)]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut time = TimestampNanosecondBuilder::with_capacity(n);
    let mut texts: Vec<StringBuilder> = (0..TEXT.len()).map(|_| StringBuilder::new()).collect();
    let mut port = UInt32Builder::with_capacity(n);
    let mut replay: Vec<StringBuilder> = (0..REPLAY.len()).map(|_| StringBuilder::new()).collect();
    for (f, t, o) in rows {
        time.append_value(*t);
        let (src, dst) = (f.source.as_ref(), f.destination.as_ref());
        let (source, target) = (group_of(src).id, destination_group(f).id);
        let edge = format!("{source}->{target}");
        let ip = f.ip.as_ref();
        let values: [Option<&str>; 13] = [
            text(&f.node_name),
            text(&f.uuid),
            f.policy_in_force.as_ref().map(|s| s.version.as_str()),
            Some(edge.as_str()),
            Some(source.as_str()),
            Some(target.as_str()),
            src.and_then(|e| text(&e.namespace)),
            src.and_then(|e| text(&e.pod_name)),
            ip.map(|i| i.source.as_str()),
            dst.and_then(|e| text(&e.namespace)),
            dst.and_then(|e| text(&e.pod_name)),
            ip.map(|i| i.destination.as_str()),
            protocol_name(f),
        ];
        for (b, v) in texts.iter_mut().zip(values) {
            b.append_option(v);
        }
        let (protocol, _, dport) = l4(f);
        port.append_option(matches!(protocol, "TCP" | "UDP" | "SCTP").then_some(dport));
        let direction = o.direction.map(|d| match d {
            Direction::Ingress => "INGRESS",
            Direction::Egress => "EGRESS",
        });
        let values: [Option<&str>; 8] = [
            direction,
            observer_proto::flow::Verdict::try_from(f.verdict)
                .ok()
                .map(|v| v.as_str_name()),
            o.before.as_ref().map(|j| j.verdict),
            o.before.as_ref().and_then(|j| j.rule.as_deref()),
            o.after.as_ref().map(|j| j.verdict),
            o.after.as_ref().and_then(|j| j.rule.as_deref()),
            Some(o.change.name()),
            o.problem.as_deref(),
        ];
        for (b, v) in replay.iter_mut().zip(values) {
            b.append_option(v);
        }
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(time.finish().with_timezone("UTC"))];
    columns.extend(texts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(port.finish()));
    columns.extend(replay.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    Ok(RecordBatch::try_new(schema(), columns)?)
}
