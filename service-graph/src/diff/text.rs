//! A [`GraphDiff`] as text for a terminal: the title, one line per edge
//! (verdict flips first, then new, vanished, changed and unchanged edges:
//! what changed, or what the edge carries as in [`crate::text`]), the nodes
//! that came or went, and the counts.

use std::fmt::Write;

use super::{Change, EdgeDiff, GraphDiff, Paint};
use crate::labels;

/// Sort rank and word of an edge's line.
fn rank(p: Paint) -> (u8, &'static str) {
    match p {
        Paint::Flipped => (0, "flipped"),
        Paint::New => (1, "new"),
        Paint::Vanished => (2, "vanished"),
        Paint::Changed => (3, "changed"),
        Paint::Plain => (4, "unchanged"),
    }
}

/// What changed, or what the edge carries when it is new, vanished or the same.
fn what(e: &EdgeDiff) -> String {
    match e.change {
        Change::Changed => e.reasons_text(),
        _ => labels::drawn_lines(e.edge()).join("; "),
    }
}

/// `new host, default/db`; nothing when no node has `change`.
fn nodes_with(d: &GraphDiff, change: Change) -> Option<String> {
    let ids: Vec<std::borrow::Cow<'_, str>> = d
        .nodes
        .iter()
        .filter(|n| n.change == change)
        .map(|n| crate::text::one_line(&n.group.id))
        .collect();
    (!ids.is_empty()).then(|| format!("{} {}", change.as_str(), ids.join(", ")))
}

impl GraphDiff {
    /// The diff as lines of text.
    pub fn to_text(&self) -> String {
        let mut out = self.title();
        out.push_str("\n\n");
        let mut edges: Vec<(u8, &str, String, &EdgeDiff)> = self
            .edges
            .iter()
            .map(|e| {
                let (r, word) = rank(e.paint());
                let id = format!(
                    "{} -> {}",
                    crate::text::one_line(&e.source.id),
                    crate::text::one_line(&e.target.id)
                );
                (r, word, id, e)
            })
            .collect();
        edges.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
        let width = edges.iter().map(|e| e.2.chars().count()).max().unwrap_or(0);
        for (_, word, id, e) in &edges {
            let _ = writeln!(out, "{word:<9} {id:<width$}  {}", what(e));
        }
        if edges.is_empty() {
            out.push_str("no edges in either window\n");
        }
        let nodes: Vec<String> = [Change::New, Change::Vanished]
            .into_iter()
            .filter_map(|c| nodes_with(self, c))
            .collect();
        let nodes = if nodes.is_empty() {
            "none new or vanished".to_string()
        } else {
            nodes.join("; ")
        };
        let c = self.counts();
        let flips = self.edges.iter().filter(|e| e.flipped()).count();
        let _ = write!(
            out,
            "\nnodes: {nodes}\nedges: {} new, {} vanished, {} changed ({flips} with a verdict flip), {} unchanged\n",
            c.new, c.vanished, c.changed, c.unchanged
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::before_after;

    #[test]
    fn text_lists_flips_first() {
        assert_eq!(
            before_after().to_text(),
            "changes in 15:04 against 15:03 (flows and bytes beyond 50%)

flipped   default/frontend -> world                  DROPPED appeared (1 flow); new drop reason POLICY_DENIED (1 flow); flows 1 -> 2 (+100%)
new       host -> default/api                        TCP/8080; 1 flow, 60 B; via to-endpoint (1)
vanished  default/frontend -> kube-system/coredns-1  UDP/53; 2 flows, 160 B; via from-endpoint (1) -> to-endpoint (1)
unchanged default/frontend -> default/api            TCP/8080, TCP/9999; 8 flows, 2.2 kB; via from-endpoint (4) -> to-endpoint (4)

nodes: new host; vanished kube-system/coredns-1
edges: 1 new, 1 vanished, 1 changed (1 with a verdict flip), 1 unchanged
"
        );
    }
}
