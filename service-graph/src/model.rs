//! The graph itself: nodes are [`Group`]s, edges carry what was seen from one
//! group to another. It lives in a petgraph `StableDiGraph`, so expiring an edge
//! or a node keeps every other index valid. Listings are sorted by id, so every
//! rendering is deterministic.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::Direction;
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};

use crate::group::Group;
use crate::hops::Hops;

/// How an edge's packets ended, each counted once, at its last sighting: a
/// packet seen leaving its pod and then arriving (or dropped) counts where it
/// arrived (or was dropped), one seen only leaving counts there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdicts {
    pub forwarded: u64,
    pub dropped: u64,
    pub audit: u64,
    /// Any other verdict (error, traced, translated, ...).
    pub other: u64,
}

/// What was seen from one group to another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edge {
    /// Request-direction flow events (each observation point counts).
    pub flows: u64,
    /// Distinct connections (5-tuples), each counted once.
    pub connections: u64,
    /// Bytes of both directions, each connection counted once at its largest volume.
    pub bytes: u64,
    /// Packets, counted like bytes.
    pub packets: u64,
    pub verdicts: Verdicts,
    /// `TCP/8080`, `UDP/53`, `ICMPv4`, ...
    pub ports: BTreeSet<String>,
    /// Drop reason name → dropped flows.
    pub drops: BTreeMap<String, u64>,
    pub hops: Hops,
    /// Unix time in nanoseconds of the last flow of the edge.
    pub last_seen_ns: i128,
}

/// One edge with its endpoints, as listed by [`ServiceGraph::edges`].
#[derive(Debug, Clone, Copy)]
pub struct EdgeView<'a> {
    pub source: &'a Group,
    pub target: &'a Group,
    pub edge: &'a Edge,
}

impl EdgeView<'_> {
    /// `source->target`, unique in a graph.
    pub fn id(&self) -> String {
        format!("{}->{}", self.source.id, self.target.id)
    }
}

/// Workload groups and who talks to whom.
#[derive(Debug, Clone, Default)]
pub struct ServiceGraph {
    graph: StableDiGraph<Group, Edge>,
    index: HashMap<String, NodeIndex>,
}

impl ServiceGraph {
    /// The node for `group`, added if new.
    pub(crate) fn node(&mut self, group: Group) -> NodeIndex {
        if let Some(&i) = self.index.get(&group.id) {
            return i;
        }
        let id = group.id.clone();
        let i = self.graph.add_node(group);
        self.index.insert(id, i);
        i
    }

    /// The edge `a → b`, added empty if new.
    pub(crate) fn edge(&mut self, a: NodeIndex, b: NodeIndex) -> EdgeIndex {
        self.graph
            .find_edge(a, b)
            .unwrap_or_else(|| self.graph.add_edge(a, b, Edge::default()))
    }

    pub(crate) fn edge_mut(&mut self, e: EdgeIndex) -> Option<&mut Edge> {
        self.graph.edge_weight_mut(e)
    }

    /// Removes the edges last seen before `cutoff_ns`, then the nodes left
    /// without edges; returns the removed edges.
    pub(crate) fn expire(&mut self, cutoff_ns: i128) -> Vec<EdgeIndex> {
        let old: Vec<EdgeIndex> = self
            .graph
            .edge_indices()
            .filter(|&e| self.graph[e].last_seen_ns < cutoff_ns)
            .collect();
        for &e in &old {
            self.graph.remove_edge(e);
        }
        let lonely: Vec<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|&n| self.graph.neighbors_undirected(n).next().is_none())
            .collect();
        for n in lonely {
            if let Some(g) = self.graph.remove_node(n) {
                self.index.remove(&g.id);
            }
        }
        old
    }

    /// The underlying petgraph graph.
    pub fn petgraph(&self) -> &StableDiGraph<Group, Edge> {
        &self.graph
    }

    /// Nodes sorted by id.
    pub fn nodes(&self) -> Vec<&Group> {
        let mut v: Vec<&Group> = self.graph.node_weights().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Edges sorted by source id, then target id.
    pub fn edges(&self) -> Vec<EdgeView<'_>> {
        let mut v: Vec<EdgeView<'_>> = (&self.graph)
            .edge_references()
            .map(|e| EdgeView {
                source: &self.graph[e.source()],
                target: &self.graph[e.target()],
                edge: e.weight(),
            })
            .collect();
        v.sort_by(|a, b| (&a.source.id, &a.target.id).cmp(&(&b.source.id, &b.target.id)));
        v
    }

    /// The edge from `source` to `target` (group ids), if any.
    pub fn find(&self, source: &str, target: &str) -> Option<&Edge> {
        let (a, b) = (self.index.get(source)?, self.index.get(target)?);
        self.graph.find_edge(*a, *b).map(|e| &self.graph[e])
    }

    /// Flows and bytes of every edge in or out of node `id` (a self-loop once).
    pub fn node_totals(&self, id: &str) -> (u64, u64) {
        let Some(&n) = self.index.get(id) else {
            return (0, 0);
        };
        let out = self.graph.edges_directed(n, Direction::Outgoing);
        let inc = self
            .graph
            .edges_directed(n, Direction::Incoming)
            .filter(|e| e.source() != n);
        out.chain(inc).fold((0, 0), |(f, b), e| {
            (f + e.weight().flows, b + e.weight().bytes)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }
}

/// `512 B`, `2.2 kB`, `3.4 MB`: decimal units, one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 999.95 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_decimal_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(2180), "2.2 kB");
        assert_eq!(human_bytes(999_960), "1.0 MB");
        assert_eq!(human_bytes(3_400_000_000), "3.4 GB");
    }
}
