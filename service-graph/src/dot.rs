//! Graphviz DOT rendering of a [`ServiceGraph`]: ids are quoted, labels escaped,
//! edges with drops drawn red.

use std::fmt::Write;

use crate::group::{Group, GroupKind};
use crate::labels;
use crate::model::ServiceGraph;

/// A DOT quoted string: `"` and `\` escaped, newlines as `\n` line breaks.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Lines joined by DOT's centred line break.
pub(crate) fn label(lines: &[String]) -> String {
    let escaped: Vec<String> = lines
        .iter()
        .map(|l| {
            let q = quote(l);
            q[1..q.len() - 1].to_string()
        })
        .collect();
    format!("\"{}\"", escaped.join("\\n"))
}

/// `label="api\ndefault"`, with `, shape=ellipse` for world, host and the
/// other reserved nodes.
pub(crate) fn node_attrs(n: &Group) -> String {
    let mut lines = vec![n.title.clone()];
    if !n.namespace.is_empty() {
        lines.push(n.namespace.clone());
    }
    let shape = match n.kind {
        GroupKind::Workload => "",
        _ => ", shape=ellipse",
    };
    format!("label={}{shape}", label(&lines))
}

impl ServiceGraph {
    /// The graph as a Graphviz `digraph`.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph services {\n    rankdir=LR;\n");
        out.push_str("    node [shape=box, style=rounded];\n");
        for n in self.nodes() {
            let _ = writeln!(out, "    {} [{}];", quote(&n.id), node_attrs(n));
        }
        for e in self.edges() {
            // Red where something was dropped; orange where policy only
            // audited (it would have been dropped), for a policy review.
            let colour = if e.edge.verdicts.dropped > 0 {
                ", color=red, fontcolor=red"
            } else if e.edge.verdicts.audit > 0 {
                ", color=darkorange, fontcolor=darkorange"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    {} -> {} [label={}{colour}];",
                quote(&e.source.id),
                quote(&e.target.id),
                label(&labels::drawn_lines(e.edge))
            );
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GraphBuilder;
    use test_support::graph_flows as fixtures;

    const EXPECTED: &str = r#"digraph services {
    rankdir=LR;
    node [shape=box, style=rounded];
    "default/api" [label="api\ndefault"];
    "default/frontend" [label="frontend\ndefault"];
    "host" [label="host", shape=ellipse];
    "kube-system/coredns-1" [label="coredns-1\nkube-system"];
    "world" [label="world", shape=ellipse];
    "default/frontend" -> "default/api" [label="TCP/8080, TCP/9999\n8 flows, 2.2 kB\nvia from-endpoint (4) -> to-endpoint (4)"];
    "default/frontend" -> "kube-system/coredns-1" [label="UDP/53\n2 flows, 160 B\nvia from-endpoint (1) -> to-endpoint (1)"];
    "default/frontend" -> "world" [label="TCP/25, TCP/443\n2 flows, 120 B\n1 dropped (POLICY_DENIED)\nvia from-endpoint (1) -> drop (1)", color=red, fontcolor=red];
    "host" -> "default/api" [label="TCP/8080\n1 flow, 60 B\nvia to-endpoint (1)"];
}
"#;

    #[test]
    fn dot_of_the_scripted_traffic() {
        let g = GraphBuilder::build(&fixtures::flows());
        assert_eq!(g.to_dot(), EXPECTED);
    }

    #[test]
    fn an_audited_edge_is_orange() {
        let dot = GraphBuilder::build(&fixtures::flows_with_an_audited_probe()).to_dot();
        assert!(
            dot.contains(
                "\"host\" -> \"default/api\" [label=\"TCP/8080\\n1 flow, 60 B\\n1 audit (would be denied)\\nvia to-endpoint (1)\", color=darkorange, fontcolor=darkorange];"
            ),
            "{dot}"
        );
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        assert_eq!(quote(r#"we"ird\name"#), r#""we\"ird\\name""#);
        assert_eq!(quote("a\nb"), r#""a\nb""#);
    }

    /// Graphviz itself must accept the output, awkward names included.
    #[test]
    fn graphviz_renders_it() {
        let mut flows = fixtures::flows();
        let ep = flows[0].source.as_mut().unwrap();
        ep.workloads[0].name = r#"we"ird\name {x} -> y;"#.into();
        let svg = test_support::graphviz::svg(&GraphBuilder::build(&flows).to_dot());
        // The awkward name comes through as text, escaped for SVG.
        assert!(svg.contains("we&quot;ird\\name {x} &#45;&gt; y;"), "{svg}");
    }
}
