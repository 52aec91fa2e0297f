//! The service graph of the window (the relay's `graph_edges`, the edges
//! `observe graph` draws) as Graphviz DOT, with the edges the draft flips
//! coloured: red where flows allowed today would be denied, green where
//! flows denied today would be allowed, orange where both; the others grey.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use service_graph::dot::quote;

use super::report::{ALLOWED_TO_AUDIT, ALLOWED_TO_DENIED, Report};

/// One edge of the window's graph: flows and ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphEdge {
    pub flows: u64,
    pub ports: String,
}

/// The query of the window's edges.
pub fn edges_sql(window: &str) -> String {
    format!("SELECT source, target, mainstat, detail__ports FROM graph_edges WHERE {window}")
}

/// Folds one batch of [`edges_sql`]'s answer into `edges`.
pub fn add_edges(
    edges: &mut BTreeMap<(String, String), GraphEdge>,
    batch: &RecordBatch,
) -> anyhow::Result<()> {
    let text = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| anyhow::anyhow!("graph_edges has no text column `{name}`"))
    };
    let (source, target, ports) = (text("source")?, text("target")?, text("detail__ports")?);
    let flows = batch
        .column_by_name("mainstat")
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .ok_or_else(|| anyhow::anyhow!("graph_edges has no `mainstat`"))?;
    for i in 0..batch.num_rows() {
        edges.insert(
            (source.value(i).to_string(), target.value(i).to_string()),
            GraphEdge {
                flows: if flows.is_valid(i) { flows.value(i) } else { 0 },
                ports: ports.value(i).to_string(),
            },
        );
    }
    Ok(())
}

/// The graph with the report's flips on its edges.
pub fn to_dot(edges: &BTreeMap<(String, String), GraphEdge>, report: &Report) -> String {
    // Per edge: (would be denied, would be allowed) lines.
    let mut flips: BTreeMap<(String, String), (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (k, g) in &report.groups {
        let rule = k.after.rule.as_deref().unwrap_or("no policy");
        let slot = flips
            .entry((k.source.clone(), k.target.clone()))
            .or_default();
        if k.change == ALLOWED_TO_DENIED {
            slot.0.push(format!("{} would be denied ({rule})", g.flows));
        } else if k.change == ALLOWED_TO_AUDIT {
            slot.0
                .push(format!("{} would be audited ({rule})", g.flows));
        } else {
            slot.1
                .push(format!("{} would be allowed ({rule})", g.flows));
        }
    }
    let all: BTreeSet<&(String, String)> = edges.keys().chain(flips.keys()).collect();
    let nodes: BTreeSet<&String> = all.iter().flat_map(|(s, t)| [s, t]).collect();
    let mut out = String::from("digraph whatif {\n    rankdir=LR;\n");
    out.push_str("    node [shape=box, style=rounded];\n");
    for n in nodes {
        let _ = writeln!(out, "    {} [label={}];", quote(n), quote(n));
    }
    for key in all {
        let mut lines = Vec::new();
        if let Some(e) = edges.get(key) {
            lines.push(e.ports.clone());
            lines.push(format!("{} flows", e.flows));
        }
        let (denied, allowed) = flips.get(key).cloned().unwrap_or_default();
        let colour = match (denied.is_empty(), allowed.is_empty()) {
            (false, false) => "orange",
            (false, true) => "red",
            (true, false) => "darkgreen",
            (true, true) => "grey",
        };
        lines.extend(denied);
        lines.extend(allowed);
        let label = lines.join("\n");
        let _ = writeln!(
            out,
            "    {} -> {} [label={}, color={colour}, fontcolor={colour}];",
            quote(&key.0),
            quote(&key.1),
            quote(&label)
        );
    }
    out.push_str("}\n");
    out
}
