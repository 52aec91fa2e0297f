//! The table `policy_states`: every time a node put a policy in force, as
//! the relay recorded it ([`crate::history::policies`]), with the policies
//! and the text of that state. Flows name their state by `policy_version`.
//!
//! | column | type | |
//! |---|---|---|
//! | `applied` | timestamp(ns, UTC) | when the node put it in force |
//! | `node` | utf8 | |
//! | `run` | uint64 | the flow-probe run (its start, Unix ns): generations count from 1 in each |
//! | `generation` | uint64 | the node's `observe_probe_policy_generation` |
//! | `version` | utf8 | the state's digest, as flows' `policy_version` names it |
//! | `policies` | utf8 | `namespace/name` of every policy, joined by `,` (null when the state is not kept) |
//! | `files` | utf8 | the policy files' names, joined by `,` |
//! | `text` | utf8 | the policy files' text, one YAML stream (`---` between files) |
//! | `endpoints` | uint64 | endpoints the policies were compiled against |

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringBuilder, TimestampNanosecondBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::MemTable;
use datafusion::common::Result;

use crate::history::policies::PolicyStates;

/// The table's name.
pub const TABLE: &str = "policy_states";

/// The table's columns.
pub fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("applied", ts, false),
        Field::new("node", DataType::Utf8, false),
        Field::new("run", DataType::UInt64, false),
        Field::new("generation", DataType::UInt64, false),
        Field::new("version", DataType::Utf8, false),
        Field::new("policies", DataType::Utf8, true),
        Field::new("files", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("endpoints", DataType::UInt64, true),
    ]))
}

/// The table as it is now.
pub fn table(states: &PolicyStates) -> Result<MemTable> {
    let schema = schema();
    let mut applied = TimestampNanosecondBuilder::new();
    let (mut node, mut version) = (StringBuilder::new(), StringBuilder::new());
    let (mut run, mut generation) = (UInt64Builder::new(), UInt64Builder::new());
    let (mut policies, mut files, mut text) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut endpoints = UInt64Builder::new();
    for f in states.in_force() {
        applied.append_value(f.applied_ns);
        node.append_value(&f.node);
        run.append_value(f.run);
        generation.append_value(f.generation);
        version.append_value(&f.version);
        let state = states.state(&f.version);
        let names = state.as_ref().and_then(|s| s.policies().ok()).map(|ps| {
            ps.iter()
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect::<Vec<_>>()
                .join(",")
        });
        policies.append_option(names);
        files.append_option(state.as_ref().map(|s| {
            s.files
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        }));
        text.append_option(state.as_ref().map(|s| {
            s.files
                .iter()
                .map(|f| f.text.trim_end())
                .collect::<Vec<_>>()
                .join("\n---\n")
        }));
        endpoints.append_option(state.as_ref().map(|s| s.endpoints.endpoints.len() as u64));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(applied.finish().with_timezone("UTC")),
        Arc::new(node.finish()),
        Arc::new(run.finish()),
        Arc::new(generation.finish()),
        Arc::new(version.finish()),
        Arc::new(policies.finish()),
        Arc::new(files.finish()),
        Arc::new(text.finish()),
        Arc::new(endpoints.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    MemTable::try_new(schema, vec![vec![batch]])
}
