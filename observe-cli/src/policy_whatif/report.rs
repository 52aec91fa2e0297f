//! The rows of the relay's `policy_whatif` folded into a report: flips
//! grouped by service-graph edge, change and the rules before and after,
//! each group with its flows, ports, first and last time and a few
//! examples (the earliest); flows that could not be replayed counted by
//! why. Memory is bounded by the groups, not by the flows.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{TimestampNanosecondType, UInt32Type};
use serde_json::{Value, json};

use crate::graph_command::diff_args::rfc3339;

/// The columns the report reads, as the relay names them.
pub const COLUMNS: &[&str] = &[
    "time",
    "node",
    "uuid",
    "source",
    "target",
    "source_ip",
    "destination_ip",
    "protocol",
    "destination_port",
    "direction",
    "verdict_before",
    "rule_before",
    "verdict_after",
    "rule_after",
    "change",
    "problem",
];

/// A verdict and the rule behind it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Judged {
    pub verdict: String,
    /// `namespace/name`, `default deny`, or none (no policy judges it).
    pub rule: Option<String>,
}

impl Judged {
    fn json(&self) -> Value {
        json!({"verdict": self.verdict, "rule": self.rule})
    }

    /// `DROPPED by default/deny-x`, `FORWARDED (no policy)`.
    fn text(&self) -> String {
        match &self.rule {
            Some(r) if r == "default deny" => format!("{} by default deny", self.verdict),
            Some(r) => format!("{} by {r}", self.verdict),
            None => format!("{} (no policy)", self.verdict),
        }
    }
}

/// What groups flips: the edge, the change and the verdicts around it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub change: String,
    pub source: String,
    pub target: String,
    pub before: Judged,
    pub after: Judged,
}

/// One flipped flow, as an example.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Example {
    pub time: i64,
    pub node: String,
    pub uuid: String,
    pub source_ip: String,
    pub destination_ip: String,
    /// `TCP/8080`, `ICMPv4`.
    pub port: String,
    pub direction: String,
}

impl Example {
    fn json(&self) -> Value {
        json!({
            "time": rfc3339(i128::from(self.time)),
            "node": self.node,
            "uuid": self.uuid,
            "source_ip": self.source_ip,
            "destination_ip": self.destination_ip,
            "port": self.port,
            "direction": self.direction,
        })
    }
}

/// The flips of one [`Key`].
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub flows: u64,
    pub first: i64,
    pub last: i64,
    pub ports: BTreeSet<String>,
    /// The earliest, at most the report's limit.
    pub examples: BTreeSet<Example>,
}

/// Everything a what-if found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub groups: BTreeMap<Key, Group>,
    /// Flows not replayed, by why.
    pub unreplayed: BTreeMap<String, u64>,
    examples: usize,
}

pub const ALLOWED_TO_DENIED: &str = "ALLOWED_TO_DENIED";
pub const DENIED_TO_ALLOWED: &str = "DENIED_TO_ALLOWED";
pub const ALLOWED_TO_AUDIT: &str = "ALLOWED_TO_AUDIT";
pub const AUDIT_TO_ALLOWED: &str = "AUDIT_TO_ALLOWED";

/// The changes the report keeps, in its order, with their titles; the
/// audit ones are shown only when they happen.
const CHANGES: [(&str, &str, bool); 4] = [
    (
        ALLOWED_TO_DENIED,
        "allowed today, denied with the draft",
        true,
    ),
    (
        DENIED_TO_ALLOWED,
        "denied today, allowed with the draft",
        true,
    ),
    (
        ALLOWED_TO_AUDIT,
        "allowed today, audited with the draft (denied once enforced)",
        false,
    ),
    (
        AUDIT_TO_ALLOWED,
        "audited today, allowed with the draft",
        false,
    ),
];

impl Report {
    /// A report keeping `examples` examples per group.
    pub fn new(examples: usize) -> Self {
        Report {
            examples,
            ..Default::default()
        }
    }

    /// Flows of `change`.
    pub fn flows(&self, change: &str) -> u64 {
        self.groups
            .iter()
            .filter(|(k, _)| k.change == change)
            .map(|(_, g)| g.flows)
            .sum()
    }

    /// Whether a flow allowed today would be denied.
    pub fn would_deny(&self) -> bool {
        self.flows(ALLOWED_TO_DENIED) > 0
    }

    /// Folds in one batch of the relay's answer.
    pub fn add(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| anyhow::anyhow!("the relay's answer has no text column `{name}`"))
        };
        let times = batch
            .column_by_name("time")
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .ok_or_else(|| anyhow::anyhow!("the relay's answer has no `time`"))?;
        let ports = batch
            .column_by_name("destination_port")
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            .ok_or_else(|| anyhow::anyhow!("the relay's answer has no `destination_port`"))?;
        let cols: Vec<_> = COLUMNS
            .iter()
            .filter(|c| !matches!(**c, "time" | "destination_port"))
            .map(|c| text(c).map(|a| (*c, a)))
            .collect::<anyhow::Result<_>>()?;
        let get = |name: &str, i: usize| -> Option<String> {
            let (_, a) = cols.iter().find(|(n, _)| *n == name)?;
            a.is_valid(i).then(|| a.value(i).to_string())
        };
        for i in 0..batch.num_rows() {
            let change = get("change", i).unwrap_or_default();
            if !CHANGES.iter().any(|(c, _, _)| *c == change) {
                if change == "UNREPLAYED" {
                    let why = get("problem", i).unwrap_or_default();
                    *self.unreplayed.entry(why).or_default() += 1;
                }
                continue;
            }
            let protocol = get("protocol", i).unwrap_or_else(|| "IP".into());
            let port = match ports.is_valid(i) {
                true => format!("{protocol}/{}", ports.value(i)),
                false => protocol,
            };
            let key = Key {
                change,
                source: get("source", i).unwrap_or_default(),
                target: get("target", i).unwrap_or_default(),
                before: Judged {
                    verdict: get("verdict_before", i).unwrap_or_default(),
                    rule: get("rule_before", i),
                },
                after: Judged {
                    verdict: get("verdict_after", i).unwrap_or_default(),
                    rule: get("rule_after", i),
                },
            };
            let time = times.value(i);
            let example = Example {
                time,
                node: get("node", i).unwrap_or_default(),
                uuid: get("uuid", i).unwrap_or_default(),
                source_ip: get("source_ip", i).unwrap_or_default(),
                destination_ip: get("destination_ip", i).unwrap_or_default(),
                port: port.clone(),
                direction: get("direction", i).unwrap_or_default(),
            };
            let limit = self.examples;
            let g = self.groups.entry(key).or_insert_with(|| Group {
                first: time,
                last: time,
                ..Default::default()
            });
            g.flows += 1;
            g.first = g.first.min(time);
            g.last = g.last.max(time);
            g.ports.insert(port);
            g.examples.insert(example);
            if g.examples.len() > limit {
                g.examples.pop_last();
            }
        }
        Ok(())
    }

    /// The report as JSON: totals, groups (allowed → denied first) and the
    /// flows not replayed.
    pub fn to_json(&self, window: (&str, &str), drafts: &[String]) -> Value {
        let groups: Vec<Value> = self
            .groups
            .iter()
            .map(|(k, g)| {
                json!({
                    "change": k.change,
                    "edge": format!("{}->{}", k.source, k.target),
                    "source": k.source,
                    "target": k.target,
                    "before": k.before.json(),
                    "after": k.after.json(),
                    "flows": g.flows,
                    "ports": g.ports,
                    "first": rfc3339(i128::from(g.first)),
                    "last": rfc3339(i128::from(g.last)),
                    "examples": g.examples.iter().map(Example::json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let unreplayed: Vec<Value> = self
            .unreplayed
            .iter()
            .map(|(problem, flows)| json!({"problem": problem, "flows": flows}))
            .collect();
        json!({
            "since": window.0,
            "until": window.1,
            "drafts": drafts,
            "allowed_to_denied": self.flows(ALLOWED_TO_DENIED),
            "denied_to_allowed": self.flows(DENIED_TO_ALLOWED),
            "allowed_to_audit": self.flows(ALLOWED_TO_AUDIT),
            "audit_to_allowed": self.flows(AUDIT_TO_ALLOWED),
            "edges": groups,
            "unreplayed": unreplayed,
        })
    }

    /// The report for a person.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (change, title, always) in CHANGES {
            let n = self.flows(change);
            if n == 0 && !always {
                continue;
            }
            out.push_str(&format!("{title}: {n} {}\n", plural(n, "flow")));
            for (k, g) in self.groups.iter().filter(|(k, _)| k.change == change) {
                let ports: Vec<&str> = g.ports.iter().map(String::as_str).collect();
                out.push_str(&format!(
                    "  {} -> {}  {} {}  {}\n",
                    k.source,
                    k.target,
                    g.flows,
                    plural(g.flows, "flow"),
                    ports.join(", ")
                ));
                out.push_str(&format!(
                    "    {}  ->  {}\n",
                    k.before.text(),
                    k.after.text()
                ));
                out.push_str(&format!(
                    "    first {}  last {}\n",
                    rfc3339(i128::from(g.first)),
                    rfc3339(i128::from(g.last))
                ));
                for e in &g.examples {
                    out.push_str(&format!(
                        "    e.g. {} {} {} -> {} {} {} {}\n",
                        rfc3339(i128::from(e.time)),
                        e.node,
                        e.source_ip,
                        e.destination_ip,
                        e.port,
                        e.direction,
                        e.uuid
                    ));
                }
            }
        }
        out
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray, TimestampNanosecondArray, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    /// (time, uuid, change, rule_after, port) of a row.
    type Row<'a> = (i64, &'a str, &'a str, Option<&'a str>, Option<u32>);

    /// The verdicts before and after of a row of `change`.
    fn verdicts(change: &str) -> (&'static str, &'static str) {
        match change {
            ALLOWED_TO_AUDIT => ("FORWARDED", "AUDIT"),
            AUDIT_TO_ALLOWED => ("AUDIT", "FORWARDED"),
            _ => ("AUDIT", "DROPPED"),
        }
    }

    /// A batch of the relay's columns.
    fn batch(rows: &[Row]) -> RecordBatch {
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        let mut fields = vec![Field::new("time", ts, false)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(
            TimestampNanosecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())
                .with_timezone("UTC"),
        )];
        for name in COLUMNS
            .iter()
            .filter(|c| !matches!(**c, "time" | "destination_port"))
        {
            let values: Vec<Option<&str>> = rows
                .iter()
                .map(|r| match *name {
                    "uuid" => Some(r.1),
                    "change" => Some(r.2),
                    "rule_after" => r.3,
                    "problem" => (r.2 == "UNREPLAYED").then_some("no version"),
                    "source" => Some("other/client"),
                    "target" => Some("default/frontend"),
                    "protocol" => Some(if r.4.is_some() { "TCP" } else { "ICMPv4" }),
                    "verdict_before" => Some(verdicts(r.2).0),
                    "rule_before" => Some("default deny"),
                    "verdict_after" => Some(verdicts(r.2).1),
                    _ => Some("x"),
                })
                .collect();
            fields.push(Field::new(*name, DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from(values)));
        }
        fields.push(Field::new("destination_port", DataType::UInt32, true));
        columns.push(Arc::new(UInt32Array::from(
            rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        )));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    #[test]
    fn flips_group_by_edge_and_rules_with_the_earliest_examples() {
        let mut r = Report::new(2);
        let deny = Some("default/deny-client");
        r.add(&batch(&[
            (30, "c", ALLOWED_TO_DENIED, deny, Some(9999)),
            (10, "a", ALLOWED_TO_DENIED, deny, None),
            (20, "b", ALLOWED_TO_DENIED, deny, None),
            (5, "z", "UNREPLAYED", None, None),
            (7, "u", "UNCHANGED", None, None),
        ]))
        .unwrap();
        r.add(&batch(&[(
            40,
            "d",
            ALLOWED_TO_DENIED,
            Some("default deny"),
            None,
        )]))
        .unwrap();
        assert!(r.would_deny());
        assert_eq!(
            (r.flows(ALLOWED_TO_DENIED), r.flows(DENIED_TO_ALLOWED)),
            (4, 0)
        );
        assert_eq!(
            r.unreplayed,
            BTreeMap::from([("no version".to_string(), 1)])
        );
        let v = r.to_json(("s", "u"), &["d.yaml".into()]);
        let edges = v["edges"].as_array().unwrap();
        assert_eq!(edges.len(), 2);
        let first = &edges[1];
        assert_eq!(
            first["after"],
            json!({"verdict": "DROPPED", "rule": "default/deny-client"})
        );
        assert_eq!(
            (first["flows"].as_u64(), first["ports"].clone()),
            (Some(3), json!(["ICMPv4", "TCP/9999"]))
        );
        let uuids: Vec<&str> = first["examples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["uuid"].as_str().unwrap())
            .collect();
        assert_eq!(uuids, ["a", "b"]);
        assert_eq!(first["first"], rfc3339(10));
        assert_eq!(first["last"], rfc3339(30));
        let text = r.to_text();
        assert!(
            text.starts_with("allowed today, denied with the draft: 4 flows\n"),
            "{text}"
        );
        assert!(
            text.contains("    AUDIT by default deny  ->  DROPPED by default/deny-client\n"),
            "{text}"
        );
        assert!(
            text.ends_with("denied today, allowed with the draft: 0 flows\n"),
            "{text}"
        );
    }

    #[test]
    fn an_audit_mode_drafts_would_be_drops_have_their_own_section() {
        let mut r = Report::new(1);
        let audit = Some("default/api-audit");
        r.add(&batch(&[
            (10, "a", ALLOWED_TO_AUDIT, audit, Some(8080)),
            (20, "b", ALLOWED_TO_AUDIT, audit, Some(8080)),
            (30, "c", AUDIT_TO_ALLOWED, audit, None),
        ]))
        .unwrap();
        // Nothing denied: the exit status says so.
        assert!(!r.would_deny());
        let text = r.to_text();
        let sections: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
        assert_eq!(
            sections,
            [
                "allowed today, denied with the draft: 0 flows",
                "denied today, allowed with the draft: 0 flows",
                "allowed today, audited with the draft (denied once enforced): 2 flows",
                "audited today, allowed with the draft: 1 flow",
            ]
        );
        assert!(
            text.contains("    FORWARDED by default deny  ->  AUDIT by default/api-audit\n"),
            "{text}"
        );
        let v = r.to_json(("s", "u"), &["d.yaml".into()]);
        assert_eq!(
            (
                v["allowed_to_audit"].as_u64(),
                v["audit_to_allowed"].as_u64()
            ),
            (Some(2), Some(1))
        );
        // Without them, no such sections.
        assert!(!Report::new(1).to_text().contains("audit"));
    }
}
