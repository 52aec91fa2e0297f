//! JSON rendering of a [`ServiceGraph`], shaped for a Grafana node-graph panel:
//! `nodes` (`id`, `title`, `subtitle`, `mainstat`, `secondarystat`) and `edges`
//! (`id`, `source`, `target`, `mainstat`, `secondarystat`, and `detail__*`
//! strings the panel shows on hover), plus the structured counters (verdicts,
//! ports, drops, hops) for other consumers.

use serde_json::{Value, json};

use crate::group::Group;
use crate::labels;
use crate::model::{Edge, ServiceGraph};

/// A node as the node-graph panel reads it; mainstat is flows, secondarystat bytes.
pub(crate) fn node_json(n: &Group, (flows, bytes): (u64, u64)) -> Value {
    json!({
        "id": n.id,
        "title": n.title,
        "subtitle": n.namespace,
        "mainstat": flows,
        "secondarystat": bytes,
        "kind": n.kind.as_str(),
    })
}

/// An edge as the node-graph panel reads it, with its structured counters.
pub(crate) fn edge_json(source: &Group, target: &Group, w: &Edge) -> Value {
    let hops: Vec<Value> = w
        .hops
        .iter()
        .map(|h| json!({"hop": h.key.name(), "count": h.count}))
        .collect();
    json!({
        "id": format!("{}->{}", source.id, target.id),
        "source": source.id,
        "target": target.id,
        "mainstat": w.flows,
        "secondarystat": w.bytes,
        "connections": w.connections,
        "packets": w.packets,
        "verdicts": {
            "forwarded": w.verdicts.forwarded,
            "dropped": w.verdicts.dropped,
            "audit": w.verdicts.audit,
            "other": w.verdicts.other,
        },
        "ports": w.ports,
        "drops": w.drops,
        "hops": hops,
        "detail__verdicts": labels::verdicts(w),
        "detail__ports": labels::ports(w),
        "detail__hops": w.hops.path(),
    })
}

impl ServiceGraph {
    /// `{"nodes": [...], "edges": [...]}`; mainstat is flows, secondarystat bytes.
    pub fn to_json_value(&self) -> Value {
        let nodes: Vec<Value> = self
            .nodes()
            .into_iter()
            .map(|n| node_json(n, self.node_totals(&n.id)))
            .collect();
        let edges: Vec<Value> = self
            .edges()
            .into_iter()
            .map(|e| edge_json(e.source, e.target, e.edge))
            .collect();
        json!({ "nodes": nodes, "edges": edges })
    }

    /// [`ServiceGraph::to_json_value`] as one line of JSON.
    pub fn to_json(&self) -> String {
        self.to_json_value().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GraphBuilder;
    use test_support::graph_flows as fixtures;

    #[test]
    fn json_nodes_and_edges() {
        let g = GraphBuilder::build(&fixtures::flows());
        let v: Value = serde_json::from_str(&g.to_json()).unwrap();
        let ids: Vec<&str> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "default/api",
                "default/frontend",
                "host",
                "kube-system/coredns-1",
                "world"
            ]
        );
        assert_eq!(
            v["nodes"][1],
            json!({
                "id": "default/frontend",
                "title": "frontend",
                "subtitle": "default",
                "mainstat": 12,
                "secondarystat": 2460,
                "kind": "workload",
            })
        );
        assert_eq!(v["nodes"][4]["subtitle"], "");
        assert_eq!(v["edges"].as_array().unwrap().len(), 4);
        assert_eq!(
            v["edges"][2],
            json!({
                "id": "default/frontend->world",
                "source": "default/frontend",
                "target": "world",
                "mainstat": 2,
                "secondarystat": 120,
                "connections": 2,
                "packets": 2,
                "verdicts": {"forwarded": 1, "dropped": 1, "audit": 0, "other": 0},
                "ports": ["TCP/25", "TCP/443"],
                "drops": {"POLICY_DENIED": 1},
                "hops": [
                    {"hop": "from-endpoint", "count": 1},
                    {"hop": "drop", "count": 1}
                ],
                "detail__verdicts": "forwarded 1, dropped 1",
                "detail__ports": "TCP/25, TCP/443",
                "detail__hops": "from-endpoint (1) -> drop (1)",
            })
        );
        assert_eq!(
            v["edges"][0]["hops"],
            json!([
                {"hop": "from-endpoint", "count": 4},
                {"hop": "to-endpoint", "count": 4}
            ])
        );
    }
}
