//! Mermaid `flowchart` rendering of a [`ServiceGraph`]. Node ids are `n0`,
//! `n1`, ... in node order (group ids hold `/`, which Mermaid ids cannot);
//! labels are quoted with `#`, `"`, `<`, `>`, `&` and the backtick written
//! as entity codes; edges
//! with drops are drawn red.

use std::collections::HashMap;
use std::fmt::Write;

use crate::group::{Group, GroupKind};
use crate::labels;
use crate::model::ServiceGraph;

/// Text safe inside a quoted Mermaid label.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '#' => out.push_str("#35;"),
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            // A label that begins `"` + backtick is Markdown to Mermaid,
            // and ends only at backtick + `"`: the chart failed to parse.
            '`' => out.push_str("#96;"),
            // Labels are HTML: `&lt;` would show as `<`.
            '&' => out.push_str("#amp;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Lines joined by Mermaid's `<br/>`, quoted.
pub(crate) fn label(lines: &[String]) -> String {
    let escaped: Vec<String> = lines.iter().map(|l| escape(l)).collect();
    format!("\"{}\"", escaped.join("<br/>"))
}

/// `["api<br/>default"]`; world, host and the other reserved nodes rounded:
/// `(["world"])`.
pub(crate) fn node_shape(n: &Group) -> String {
    let mut lines = vec![n.title.clone()];
    if !n.namespace.is_empty() {
        lines.push(n.namespace.clone());
    }
    let (open, close) = match n.kind {
        GroupKind::Workload => ("[", "]"),
        _ => ("([", "])"),
    };
    format!("{open}{}{close}", label(&lines))
}

impl ServiceGraph {
    /// The graph as a Mermaid `flowchart LR`.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let mut ids = HashMap::new();
        for (i, n) in self.nodes().into_iter().enumerate() {
            ids.insert(n.id.as_str(), format!("n{i}"));
            let _ = writeln!(out, "    n{i}{}", node_shape(n));
        }
        let (mut red, mut orange) = (Vec::new(), Vec::new());
        for (i, e) in self.edges().into_iter().enumerate() {
            let _ = writeln!(
                out,
                "    {} -->|{}| {}",
                ids[e.source.id.as_str()],
                label(&labels::drawn_lines(e.edge)),
                ids[e.target.id.as_str()]
            );
            // Red where something was dropped; orange where policy only
            // audited (it would have been dropped).
            if e.edge.verdicts.dropped > 0 {
                red.push(i.to_string());
            } else if e.edge.verdicts.audit > 0 {
                orange.push(i.to_string());
            }
        }
        for (links, colour) in [(red, "red"), (orange, "darkorange")] {
            if !links.is_empty() {
                let _ = writeln!(
                    out,
                    "    linkStyle {} stroke:{colour},color:{colour}",
                    links.join(",")
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GraphBuilder;
    use test_support::graph_flows as fixtures;

    #[test]
    fn mermaid_of_the_scripted_traffic() {
        let g = GraphBuilder::build(&fixtures::flows());
        assert_eq!(
            g.to_mermaid(),
            r#"flowchart LR
    n0["api<br/>default"]
    n1["frontend<br/>default"]
    n2(["host"])
    n3["coredns-1<br/>kube-system"]
    n4(["world"])
    n1 -->|"TCP/8080, TCP/9999<br/>8 flows, 2.2 kB<br/>via from-endpoint (4) -#gt; to-endpoint (4)"| n0
    n1 -->|"UDP/53<br/>2 flows, 160 B<br/>via from-endpoint (1) -#gt; to-endpoint (1)"| n3
    n1 -->|"TCP/25, TCP/443<br/>2 flows, 120 B<br/>1 dropped (POLICY_DENIED)<br/>via from-endpoint (1) -#gt; drop (1)"| n4
    n2 -->|"TCP/8080<br/>1 flow, 60 B<br/>via to-endpoint (1)"| n0
    linkStyle 2 stroke:red,color:red
"#
        );
    }

    #[test]
    fn an_audited_edge_is_orange() {
        let text = GraphBuilder::build(&fixtures::flows_with_an_audited_probe()).to_mermaid();
        assert!(
            text.ends_with(
                "    linkStyle 2 stroke:red,color:red\n    linkStyle 3 stroke:darkorange,color:darkorange\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn label_text_cannot_break_out() {
        assert_eq!(escape(r#"a"b<c>#d"#), "a#quot;b#lt;c#gt;#35;d");
        // A backtick after the opening quote made the label Markdown that
        // never ended; `&lt;` showed as `<`.
        assert_eq!(escape("`api&lt;"), "#96;api#amp;lt;");
    }
}
