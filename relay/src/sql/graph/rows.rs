//! A [`ServiceGraph`] as the rows of `graph_nodes` or `graph_edges` (columns:
//! [`super`]), one row per node or edge, sorted by id as the graph lists them.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::Result;
use service_graph::{ServiceGraph, labels};

/// Which of the two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    Nodes,
    Edges,
}

const NODE_TEXT: [&str; 3] = ["id", "title", "subtitle"];
const NODE_COUNTS: [&str; 2] = ["mainstat", "secondarystat"];
const NODE_LABELS: [&str; 1] = ["detail__kind"];
const EDGE_TEXT: [&str; 3] = ["id", "source", "target"];
const EDGE_COUNTS: [&str; 8] = [
    "mainstat",
    "secondarystat",
    "detail__connections",
    "detail__packets",
    "detail__forwarded",
    "detail__dropped",
    "detail__audit",
    "detail__other",
];
const EDGE_LABELS: [&str; 3] = ["detail__ports", "detail__drop_reasons", "detail__hops"];

fn time_field() -> Field {
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    Field::new(super::window::TIME, ts, false)
}

fn fields(text: &[&str], counts: &[&str], labels: &[&str]) -> Vec<Field> {
    let utf8 = |n: &&str| Field::new(*n, DataType::Utf8, false);
    let mut v = vec![time_field()];
    v.extend(text.iter().map(utf8));
    v.extend(
        counts
            .iter()
            .map(|n| Field::new(*n, DataType::UInt64, false)),
    );
    v.extend(labels.iter().map(utf8));
    v
}

/// One row's values, in schema order after `time`.
struct Row {
    time: i64,
    text: Vec<String>,
    counts: Vec<u64>,
    labels: Vec<String>,
}

impl Rows {
    pub fn name(self) -> &'static str {
        match self {
            Rows::Nodes => "graph_nodes",
            Rows::Edges => "graph_edges",
        }
    }

    pub fn schema(self) -> SchemaRef {
        Arc::new(Schema::new(match self {
            Rows::Nodes => fields(&NODE_TEXT, &NODE_COUNTS, &NODE_LABELS),
            Rows::Edges => fields(&EDGE_TEXT, &EDGE_COUNTS, &EDGE_LABELS),
        }))
    }

    /// The column names, joined by `, `.
    pub fn column_names(self) -> String {
        let schema = self.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        names.join(", ")
    }

    /// The rows of `graph`, every column of [`Rows::schema`].
    pub fn batch(self, graph: &ServiceGraph) -> Result<RecordBatch> {
        let rows = match self {
            Rows::Nodes => node_rows(graph),
            Rows::Edges => edge_rows(graph),
        };
        let (text, counts, labels) = match self {
            Rows::Nodes => (NODE_TEXT.len(), NODE_COUNTS.len(), NODE_LABELS.len()),
            Rows::Edges => (EDGE_TEXT.len(), EDGE_COUNTS.len(), EDGE_LABELS.len()),
        };
        let strings = |get: fn(&Row) -> &[String], i: usize| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| get(r)[i].as_str()),
            ))
        };
        let times = rows.iter().map(|r| r.time);
        let mut columns: Vec<ArrayRef> = vec![Arc::new(
            TimestampNanosecondArray::from_iter_values(times).with_timezone("UTC"),
        )];
        columns.extend((0..text).map(|i| strings(|r| &r.text, i)));
        columns.extend((0..counts).map(|i| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.counts[i]),
            ))
        }));
        columns.extend((0..labels).map(|i| strings(|r| &r.labels, i)));
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

fn node_rows(graph: &ServiceGraph) -> Vec<Row> {
    // A node was last seen when the last of its edges was.
    let mut last: HashMap<&str, i128> = HashMap::new();
    for e in graph.edges() {
        for id in [&e.source.id, &e.target.id] {
            let t = last.entry(id).or_default();
            *t = (*t).max(e.edge.last_seen_ns);
        }
    }
    graph
        .nodes()
        .into_iter()
        .map(|n| {
            let (flows, bytes) = graph.node_totals(&n.id);
            Row {
                time: nanos(last.get(n.id.as_str()).copied().unwrap_or_default()),
                text: vec![n.id.clone(), n.title.clone(), n.namespace.clone()],
                counts: vec![flows, bytes],
                labels: vec![n.kind.as_str().to_string()],
            }
        })
        .collect()
}

fn edge_rows(graph: &ServiceGraph) -> Vec<Row> {
    graph
        .edges()
        .into_iter()
        .map(|e| {
            let w = e.edge;
            let v = &w.verdicts;
            Row {
                time: nanos(w.last_seen_ns),
                text: vec![e.id(), e.source.id.clone(), e.target.id.clone()],
                counts: vec![
                    w.flows,
                    w.bytes,
                    w.connections,
                    w.packets,
                    v.forwarded,
                    v.dropped,
                    v.audit,
                    v.other,
                ],
                labels: vec![labels::ports(w), labels::drop_reasons(w), w.hops.path()],
            }
        })
        .collect()
}

/// Flow times come from `i64` columns, so they fit.
fn nanos(t: i128) -> i64 {
    i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
}
