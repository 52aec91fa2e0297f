//! A [`GraphDiff`] as a Mermaid `flowchart LR`: nodes in classes by [`Paint`],
//! vanished edges dotted (`-.->`), every coloured edge in a `linkStyle`, and a
//! legend subgraph titled with what was compared.

use std::collections::HashMap;
use std::fmt::Write;

use super::{GraphDiff, Paint};
use crate::mermaid::{escape, label, node_shape};

/// The Mermaid class of a paint; `None` for [`Paint::Plain`].
fn class(p: Paint) -> Option<&'static str> {
    match p {
        Paint::New => Some("new"),
        Paint::Vanished => Some("vanished"),
        Paint::Changed => Some("changed"),
        Paint::Flipped => Some("flipped"),
        Paint::Plain => None,
    }
}

/// `:::new`, or nothing.
fn class_suffix(p: Paint) -> String {
    class(p).map(|c| format!(":::{c}")).unwrap_or_default()
}

impl GraphDiff {
    /// The diff as a Mermaid `flowchart LR`.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let mut ids = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            ids.insert(n.group.id.as_str(), format!("n{i}"));
            let _ = writeln!(
                out,
                "    n{i}{}{}",
                node_shape(&n.group),
                class_suffix(n.paint())
            );
        }
        let mut styles = Vec::new();
        for (i, e) in self.edges.iter().enumerate() {
            let p = e.paint();
            let arrow = if p.dashed() { "-.->" } else { "-->" };
            let _ = writeln!(
                out,
                "    {} {arrow}|{}| {}",
                ids[e.source.id.as_str()],
                label(&super::edge_lines(e)),
                ids[e.target.id.as_str()]
            );
            if let Some(c) = p.colour() {
                let width = if p == Paint::Flipped {
                    ",stroke-width:3px"
                } else {
                    ""
                };
                styles.push(format!("    linkStyle {i} stroke:{c},color:{c}{width}"));
            }
        }
        let _ = writeln!(out, "    subgraph legend [\"{}\"]", escape(&self.title()));
        for (i, p) in Paint::LEGEND.iter().enumerate() {
            let _ = writeln!(
                out,
                "        legend{i}[\"{}\"]{}",
                escape(p.meaning()),
                class_suffix(*p)
            );
        }
        out.push_str("    end\n");
        for line in styles {
            out.push_str(&line);
            out.push('\n');
        }
        for p in Paint::LEGEND {
            let c = p.colour().unwrap_or("black");
            let dash = if p.dashed() {
                ",stroke-dasharray:5 5"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    classDef {} stroke:{c},color:{c}{dash}",
                class(p).unwrap_or("plain")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::before_after;

    #[test]
    fn mermaid_colours_each_change() {
        assert_eq!(
            before_after().to_mermaid(),
            r##"flowchart LR
    n0["api<br/>default"]
    n1["frontend<br/>default"]
    n2(["host"]):::new
    n3["coredns-1<br/>kube-system"]:::vanished
    n4(["world"])
    n1 -->|"TCP/8080, TCP/9999<br/>8 flows, 2.2 kB<br/>via from-endpoint (4) -#gt; to-endpoint (4)"| n0
    n1 -.->|"vanished<br/>UDP/53<br/>2 flows, 160 B<br/>via from-endpoint (1) -#gt; to-endpoint (1)"| n3
    n1 -->|"TCP/25, TCP/443<br/>2 flows, 120 B<br/>1 dropped (POLICY_DENIED)<br/>via from-endpoint (1) -#gt; drop (1)<br/>DROPPED appeared (1 flow)<br/>new drop reason POLICY_DENIED (1 flow)<br/>flows 1 -#gt; 2 (+100%)"| n4
    n2 -->|"new<br/>TCP/8080<br/>1 flow, 60 B<br/>via to-endpoint (1)"| n0
    subgraph legend ["changes in 15:04 against 15:03 (flows and bytes beyond 50%)"]
        legend0["new"]:::new
        legend1["vanished"]:::vanished
        legend2["changed (flows, bytes, drop reasons)"]:::changed
        legend3["verdict flipped"]:::flipped
    end
    linkStyle 1 stroke:#9e9e9e,color:#9e9e9e
    linkStyle 2 stroke:#c62828,color:#c62828,stroke-width:3px
    linkStyle 3 stroke:#2e7d32,color:#2e7d32
    classDef new stroke:#2e7d32,color:#2e7d32
    classDef vanished stroke:#9e9e9e,color:#9e9e9e,stroke-dasharray:5 5
    classDef changed stroke:#ef6c00,color:#ef6c00
    classDef flipped stroke:#c62828,color:#c62828
"##
        );
    }
}
