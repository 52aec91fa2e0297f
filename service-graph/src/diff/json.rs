//! A [`GraphDiff`] as node-graph JSON: every node and edge as in
//! [`crate::json`] (an edge's counters are those of its window of interest,
//! or of the baseline for a vanished one), plus `change` (`new`, `vanished`,
//! `changed`, `unchanged`), `color` (the [`super::Paint`] colour, `null` when
//! unchanged) and, on edges, `flipped`, `strokeDasharray` (vanished),
//! `reasons`, `detail__change`, and `before` / `after` summaries. At the top:
//! `compared`, `threshold_percent` and `counts`.

use serde_json::{Value, json};

use super::{Change, EdgeDiff, GraphDiff, Reason};
use crate::json::{edge_json, node_json};
use crate::model::Edge;

fn reason_json(r: &Reason) -> Value {
    let mut v = match r {
        Reason::VerdictAppeared { verdict, flows } | Reason::VerdictGone { verdict, flows } => {
            json!({"verdict": verdict.name(), "flows": flows})
        }
        Reason::NewDropReason { reason, flows } => json!({"reason": reason, "flows": flows}),
        Reason::Flows { before, after } | Reason::Bytes { before, after } => {
            json!({"before": before, "after": after})
        }
    };
    v["kind"] = json!(r.kind());
    v["text"] = json!(r.to_string());
    v
}

/// The counters one window has of an edge.
fn summary(e: Option<&Edge>) -> Value {
    e.map_or(Value::Null, |w| {
        json!({
            "flows": w.flows,
            "bytes": w.bytes,
            "connections": w.connections,
            "verdicts": {
                "forwarded": w.verdicts.forwarded,
                "dropped": w.verdicts.dropped,
                "audit": w.verdicts.audit,
                "other": w.verdicts.other,
            },
            "drops": w.drops,
        })
    })
}

/// `new`, `vanished`, `unchanged`, or the reasons joined by `; `.
fn detail(e: &EdgeDiff) -> String {
    match e.change {
        Change::Changed => e.reasons_text(),
        c => c.as_str().to_string(),
    }
}

impl GraphDiff {
    pub fn to_json_value(&self) -> Value {
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .map(|n| {
                let mut v = node_json(&n.group, n.totals);
                v["change"] = json!(n.change.as_str());
                v["color"] = json!(n.paint().colour());
                v
            })
            .collect();
        let edges: Vec<Value> = self
            .edges
            .iter()
            .map(|e| {
                let p = e.paint();
                let mut v = edge_json(&e.source, &e.target, e.edge());
                v["change"] = json!(e.change.as_str());
                v["flipped"] = json!(e.flipped());
                v["color"] = json!(p.colour());
                v["strokeDasharray"] = json!(p.dashed().then_some("5 5"));
                v["reasons"] = Value::Array(e.reasons.iter().map(reason_json).collect());
                v["detail__change"] = json!(detail(e));
                v["before"] = summary(e.before.as_ref());
                v["after"] = summary(e.after.as_ref());
                v
            })
            .collect();
        let c = self.counts();
        json!({
            "compared": self.compared.as_ref().map(|c| json!({"window": c.window, "against": c.against})),
            "threshold_percent": self.threshold.as_percent(),
            "counts": {
                "new": c.new,
                "vanished": c.vanished,
                "changed": c.changed,
                "unchanged": c.unchanged,
            },
            "nodes": nodes,
            "edges": edges,
        })
    }

    /// [`GraphDiff::to_json_value`] as one line of JSON.
    pub fn to_json(&self) -> String {
        self.to_json_value().to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::tests::before_after;

    #[test]
    fn json_has_a_change_per_node_and_edge() {
        let v: Value = serde_json::from_str(&before_after().to_json()).unwrap();
        assert_eq!(
            v["compared"],
            json!({"window": "15:04", "against": "15:03"})
        );
        assert_eq!(v["threshold_percent"], 50.0);
        assert_eq!(
            v["counts"],
            json!({"new": 1, "vanished": 1, "changed": 1, "unchanged": 1})
        );
        let nodes: Vec<(&str, &str, &Value)> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap(),
                    n["change"].as_str().unwrap(),
                    &n["color"],
                )
            })
            .collect();
        assert_eq!(
            nodes,
            [
                ("default/api", "unchanged", &Value::Null),
                ("default/frontend", "unchanged", &Value::Null),
                ("host", "new", &json!("#2e7d32")),
                ("kube-system/coredns-1", "vanished", &json!("#9e9e9e")),
                ("world", "unchanged", &Value::Null),
            ]
        );
        assert_eq!(v["nodes"][3]["mainstat"], 2);
        let edges = v["edges"].as_array().unwrap();
        let world = &edges[2];
        assert_eq!(world["id"], "default/frontend->world");
        assert_eq!(world["change"], "changed");
        assert_eq!(world["flipped"], true);
        assert_eq!(world["color"], "#c62828");
        assert_eq!(world["strokeDasharray"], Value::Null);
        assert_eq!(
            world["reasons"],
            json!([
                {"kind": "verdict_appeared", "verdict": "DROPPED", "flows": 1,
                 "text": "DROPPED appeared (1 flow)"},
                {"kind": "new_drop_reason", "reason": "POLICY_DENIED", "flows": 1,
                 "text": "new drop reason POLICY_DENIED (1 flow)"},
                {"kind": "flows", "before": 1, "after": 2, "text": "flows 1 -> 2 (+100%)"},
            ])
        );
        assert_eq!(
            world["detail__change"],
            "DROPPED appeared (1 flow); new drop reason POLICY_DENIED (1 flow); flows 1 -> 2 (+100%)"
        );
        assert_eq!(
            world["before"],
            json!({"flows": 1, "bytes": 120, "connections": 1,
                   "verdicts": {"forwarded": 1, "dropped": 0, "audit": 0, "other": 0},
                   "drops": {}})
        );
        assert_eq!(world["after"]["verdicts"]["dropped"], 1);
        assert_eq!(world["mainstat"], 2);
        // A vanished edge: its baseline counters, dashed, no `after`.
        let dns = &edges[1];
        assert_eq!(
            (
                &dns["change"],
                &dns["mainstat"],
                &dns["strokeDasharray"],
                &dns["after"],
                &dns["detail__change"]
            ),
            (
                &json!("vanished"),
                &json!(2),
                &json!("5 5"),
                &Value::Null,
                &json!("vanished")
            )
        );
        assert_eq!(edges[3]["change"], "new");
        assert_eq!(edges[3]["before"], Value::Null);
        assert_eq!(edges[0]["change"], "unchanged");
        assert_eq!(edges[0]["color"], Value::Null);
        assert_eq!(edges[0]["reasons"], json!([]));
    }
}
