//! The text of node and edge labels, shared by the DOT, Mermaid and TUI
//! renderings so that they all say the same thing.

use crate::model::{Edge, human_bytes};

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `8 flows, 2.2 kB`.
pub fn volume(e: &Edge) -> String {
    format!(
        "{}, {}",
        plural(e.flows, "flow", "flows"),
        human_bytes(e.bytes)
    )
}

/// `1 dropped (POLICY_DENIED)`; `None` when nothing was dropped.
pub fn drops(e: &Edge) -> Option<String> {
    if e.verdicts.dropped == 0 {
        return None;
    }
    let reasons: Vec<&str> = e.drops.keys().map(String::as_str).collect();
    Some(format!(
        "{} dropped ({})",
        e.verdicts.dropped,
        reasons.join(", ")
    ))
}

/// The lines of an edge label: ports, volume, drops.
pub fn edge_lines(e: &Edge) -> Vec<String> {
    let ports: Vec<&str> = e.ports.iter().map(String::as_str).collect();
    let mut v = vec![ports.join(", "), volume(e)];
    v.extend(drops(e));
    v
}

/// `forwarded 8, dropped 1`: the non-zero verdict counts.
pub fn verdicts(e: &Edge) -> String {
    let v = &e.verdicts;
    let parts: Vec<String> = [
        ("forwarded", v.forwarded),
        ("dropped", v.dropped),
        ("audit", v.audit),
        ("other", v.other),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(name, n)| format!("{name} {n}"))
    .collect();
    parts.join(", ")
}
