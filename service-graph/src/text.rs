//! A [`ServiceGraph`] as text for a terminal: one line per edge, its ports,
//! volume and drops, and under it the datapath hops its flows were seen at.

use std::fmt::Write;

use crate::labels;
use crate::model::ServiceGraph;

/// A name on one line: a line end or tab in it shown as `\n`, `\r`,
/// `\t` (a name with a line end would print an edge line of its own).
pub fn one_line(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.contains(['\n', '\r', '\t']) {
        return std::borrow::Cow::Borrowed(name);
    }
    std::borrow::Cow::Owned(
        name.replace('\n', "\\n")
            .replace('\r', "\\r")
            .replace('\t', "\\t"),
    )
}

impl ServiceGraph {
    /// `source -> target  ports; volume; drops`, one line per edge, then
    /// `via hop (n) -> hop (n)` under its details.
    pub fn to_text(&self) -> String {
        let edges = self.edges();
        let names: Vec<String> = edges
            .iter()
            .map(|e| format!("{} -> {}", one_line(&e.source.id), one_line(&e.target.id)))
            .collect();
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let mut out = String::new();
        for (name, e) in names.iter().zip(&edges) {
            let _ = writeln!(
                out,
                "{name:<width$}  {}",
                labels::edge_lines(e.edge).join("; ")
            );
            if let Some(hops) = labels::hops(e.edge) {
                let _ = writeln!(out, "{:width$}  {hops}", "");
            }
        }
        if edges.is_empty() {
            // Flows may have come: replies and lifecycle reports draw none.
            out.push_str("no edges (no flow in a request's direction)\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::{GraphBuilder, ServiceGraph};
    use test_support::graph_flows as fixtures;

    /// A workload name with a line end printed an edge line of its own.
    #[test]
    fn a_line_end_in_a_name_makes_no_line() {
        let mut flows = fixtures::flows();
        for ep in flows
            .iter_mut()
            .flat_map(|f| [&mut f.source, &mut f.destination])
        {
            for w in ep.iter_mut().flat_map(|e| e.workloads.iter_mut()) {
                if w.name == "frontend" {
                    w.name = "x\ndefault/db -> world".into();
                }
            }
        }
        let text = GraphBuilder::build(&flows).to_text();
        assert!(!text.lines().any(|l| l.starts_with("default/db")), "{text}");
        assert!(
            text.contains("default/x\\ndefault/db -> world -> "),
            "{text}"
        );
    }

    #[test]
    fn text_of_the_scripted_traffic() {
        assert_eq!(
            GraphBuilder::build(&fixtures::flows()).to_text(),
            "\
default/frontend -> default/api            TCP/8080, TCP/9999; 8 flows, 2.2 kB
                                           via from-endpoint (4) -> to-endpoint (4)
default/frontend -> kube-system/coredns-1  UDP/53; 2 flows, 160 B
                                           via from-endpoint (1) -> to-endpoint (1)
default/frontend -> world                  TCP/25, TCP/443; 2 flows, 120 B; 1 dropped (POLICY_DENIED)
                                           via from-endpoint (1) -> drop (1)
host -> default/api                        TCP/8080; 1 flow, 60 B
                                           via to-endpoint (1)
"
        );
        assert_eq!(
            ServiceGraph::default().to_text(),
            "no edges (no flow in a request's direction)\n"
        );
    }
}
