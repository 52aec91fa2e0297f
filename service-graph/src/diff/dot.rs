//! A [`GraphDiff`] as a Graphviz `digraph`: the title on top, nodes and edges
//! coloured by [`Paint`] (vanished ones dashed), changed edges listing what
//! changed under their label, and a legend.

use std::fmt::Write;

use super::{GraphDiff, Paint};
use crate::dot::{label, node_attrs, quote};

/// `, color="#2e7d32", fontcolor="#2e7d32"` and `style` for dashed
/// (`rounded,dashed` for nodes); nothing for [`Paint::Plain`].
fn paint_attrs(p: Paint, node: bool) -> String {
    let Some(c) = p.colour() else {
        return String::new();
    };
    let mut out = format!(", color=\"{c}\", fontcolor=\"{c}\"");
    if p.dashed() {
        out.push_str(if node {
            ", style=\"rounded,dashed\""
        } else {
            ", style=dashed"
        });
    }
    if p == Paint::Flipped {
        out.push_str(", penwidth=2");
    }
    out
}

/// The legend: one HTML-like label, each meaning in its colour.
fn legend() -> String {
    let rows: String = Paint::LEGEND
        .iter()
        .map(|p| {
            let dashed = if p.dashed() { " (dashed)" } else { "" };
            format!(
                "<tr><td align=\"left\"><font color=\"{}\">{}{dashed}</font></td></tr>",
                p.colour().unwrap_or("black"),
                p.meaning()
            )
        })
        .collect();
    format!(
        "    subgraph cluster_legend {{\n        label=\"legend\";\n        color=\"#9e9e9e\";\n        \"#legend\" [shape=none, label=<<table border=\"0\">{rows}</table>>];\n    }}\n"
    )
}

impl GraphDiff {
    /// The diff as a Graphviz `digraph`.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph changes {\n    rankdir=LR;\n");
        let _ = writeln!(out, "    label={};\n    labelloc=t;", quote(&self.title()));
        out.push_str("    node [shape=box, style=rounded];\n");
        for n in &self.nodes {
            let _ = writeln!(
                out,
                "    {} [{}{}];",
                quote(&n.group.id),
                node_attrs(&n.group),
                paint_attrs(n.paint(), true)
            );
        }
        for e in &self.edges {
            let _ = writeln!(
                out,
                "    {} -> {} [label={}{}];",
                quote(&e.source.id),
                quote(&e.target.id),
                label(&super::edge_lines(e)),
                paint_attrs(e.paint(), false)
            );
        }
        out.push_str(&legend());
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::before_after;

    const EXPECTED: &str = r##"digraph changes {
    rankdir=LR;
    label="changes in 15:04 against 15:03 (flows and bytes beyond 50%)";
    labelloc=t;
    node [shape=box, style=rounded];
    "default/api" [label="api\ndefault"];
    "default/frontend" [label="frontend\ndefault"];
    "host" [label="host", shape=ellipse, color="#2e7d32", fontcolor="#2e7d32"];
    "kube-system/coredns-1" [label="coredns-1\nkube-system", color="#9e9e9e", fontcolor="#9e9e9e", style="rounded,dashed"];
    "world" [label="world", shape=ellipse];
    "default/frontend" -> "default/api" [label="TCP/8080, TCP/9999\n8 flows, 2.2 kB\nvia from-endpoint (4) -> to-endpoint (4)"];
    "default/frontend" -> "kube-system/coredns-1" [label="vanished\nUDP/53\n2 flows, 160 B\nvia from-endpoint (1) -> to-endpoint (1)", color="#9e9e9e", fontcolor="#9e9e9e", style=dashed];
    "default/frontend" -> "world" [label="TCP/25, TCP/443\n2 flows, 120 B\n1 dropped (POLICY_DENIED)\nvia from-endpoint (1) -> drop (1)\nDROPPED appeared (1 flow)\nnew drop reason POLICY_DENIED (1 flow)\nflows 1 -> 2 (+100%)", color="#c62828", fontcolor="#c62828", penwidth=2];
    "host" -> "default/api" [label="new\nTCP/8080\n1 flow, 60 B\nvia to-endpoint (1)", color="#2e7d32", fontcolor="#2e7d32"];
    subgraph cluster_legend {
        label="legend";
        color="#9e9e9e";
        "#legend" [shape=none, label=<<table border="0"><tr><td align="left"><font color="#2e7d32">new</font></td></tr><tr><td align="left"><font color="#9e9e9e">vanished (dashed)</font></td></tr><tr><td align="left"><font color="#ef6c00">changed (flows, bytes, drop reasons)</font></td></tr><tr><td align="left"><font color="#c62828">verdict flipped</font></td></tr></table>>];
    }
}
"##;

    #[test]
    fn dot_colours_each_change() {
        assert_eq!(before_after().to_dot(), EXPECTED);
    }

    /// Graphviz itself accepts it, legend included.
    #[test]
    fn graphviz_renders_the_diff() {
        let svg = test_support::graphviz::svg(&before_after().to_dot());
        assert!(svg.contains("verdict flipped"), "{svg}");
        assert!(svg.contains("stroke-dasharray"), "{svg}");
    }
}
