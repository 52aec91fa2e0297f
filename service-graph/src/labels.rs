//! The text of node and edge labels, shared by the DOT, Mermaid, JSON and TUI
//! renderings and the relay's graph tables, so that they all say the same thing.

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

/// `3 audit (would be denied)`: flows an audit-mode policy let pass; `None`
/// when none did.
pub fn audit(e: &Edge) -> Option<String> {
    (e.verdicts.audit > 0).then(|| format!("{} audit (would be denied)", e.verdicts.audit))
}

/// `TCP/25, TCP/443`.
pub fn ports(e: &Edge) -> String {
    let ports: Vec<&str> = e.ports.iter().map(String::as_str).collect();
    ports.join(", ")
}

/// `POLICY_DENIED (1), NETFILTER_DROP (2)`: dropped flows by reason, sorted by
/// reason; empty when nothing was dropped.
pub fn drop_reasons(e: &Edge) -> String {
    let parts: Vec<String> = e.drops.iter().map(|(r, n)| format!("{r} ({n})")).collect();
    parts.join(", ")
}

/// The lines of an edge label: ports, volume, drops, audits.
pub fn edge_lines(e: &Edge) -> Vec<String> {
    let mut v = vec![ports(e), volume(e)];
    v.extend(drops(e));
    v.extend(audit(e));
    v
}

/// `via from-endpoint (4) -> to-endpoint (4)`: the datapath hops the edge's
/// flows were seen at; none when no flow named one.
pub fn hops(e: &Edge) -> Option<String> {
    (!e.hops.is_empty()).then(|| format!("via {}", e.hops.path()))
}

/// The lines of an edge's label in a drawing (DOT, Mermaid): those of
/// [`edge_lines`], then its [`hops`].
pub fn drawn_lines(e: &Edge) -> Vec<String> {
    let mut v = edge_lines(e);
    v.extend(hops(e));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GraphBuilder;
    use test_support::graph_flows as fixtures;

    #[test]
    fn ports_and_drop_reasons_as_one_line_each() {
        let g = GraphBuilder::build(&fixtures::flows());
        let world = g.find("default/frontend", "world").unwrap();
        assert_eq!(ports(world), "TCP/25, TCP/443");
        assert_eq!(drop_reasons(world), "POLICY_DENIED (1)");
        let api = g.find("default/frontend", "default/api").unwrap();
        assert_eq!(ports(api), "TCP/8080, TCP/9999");
        assert_eq!(drop_reasons(api), "");
    }

    #[test]
    fn audited_flows_are_a_line_of_their_own() {
        let mut flows = fixtures::flows();
        let to_api = |f: &observer_proto::flow::Flow| {
            f.destination
                .as_ref()
                .is_some_and(|d| d.pod_name.starts_with("api"))
                && f.is_reply == Some(false)
        };
        let before = GraphBuilder::build(&flows);
        let plain = edge_lines(before.find("default/frontend", "default/api").unwrap());
        let f = flows.iter_mut().find(|f| to_api(f)).unwrap();
        f.verdict = observer_proto::flow::Verdict::Audit as i32;
        let g = GraphBuilder::build(&flows);
        let mut want = plain;
        want.push("1 audit (would be denied)".to_string());
        assert_eq!(
            edge_lines(g.find("default/frontend", "default/api").unwrap()),
            want
        );
    }
}
