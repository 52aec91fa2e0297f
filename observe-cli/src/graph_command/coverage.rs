//! Who reported in each window of a graph diff. A node that sent flows in
//! one window and none in the other (its probe was down, or the node came
//! or went), or whose flows history lost, makes the edges only it observed
//! look new, vanished or flipped; the diff says so beside its result.

use std::collections::BTreeMap;

use observer_proto::flow::LostEventSource;
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;

/// Per node, in one window: the flows it sent, those history lost, and the
/// events its probe lost (its kernel ring or its queue was full).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Coverage {
    nodes: BTreeMap<String, Counts>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    flows: u64,
    lost: u64,
    probe_lost: u64,
}

impl Coverage {
    /// Counts one response of the window's answer.
    pub fn record(&mut self, resp: &GetFlowsResponse) {
        match &resp.response_types {
            Some(ResponseTypes::Flow(f)) => {
                self.nodes.entry(f.node_name.clone()).or_default().flows += 1;
            }
            Some(ResponseTypes::LostEvents(l)) => {
                let c = self.nodes.entry(resp.node_name.clone()).or_default();
                // The relay's history tells its losses with this source.
                if l.source == LostEventSource::HubbleRingBuffer as i32 {
                    c.lost += l.num_events_lost;
                } else {
                    c.probe_lost += l.num_events_lost;
                }
            }
            _ => {}
        }
    }
}

/// What the windows' coverage says about the diff: a node silent in one
/// window but not the other, and flows history lost in either.
pub fn notes(
    before: &Coverage,
    after: &Coverage,
    before_label: &str,
    after_label: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let nodes: std::collections::BTreeSet<&String> =
        before.nodes.keys().chain(after.nodes.keys()).collect();
    for node in nodes {
        let b = before.nodes.get(node).copied().unwrap_or_default();
        let a = after.nodes.get(node).copied().unwrap_or_default();
        if b.flows > 0 && a.flows == 0 {
            out.push(format!(
                "no flows of {node} in {after_label}, {} in {before_label}: what only it \
                 observed shows as vanished or flipped (was its probe down?)",
                b.flows
            ));
        } else if a.flows > 0 && b.flows == 0 {
            out.push(format!(
                "no flows of {node} in {before_label}, {} in {after_label}: what only it \
                 observed shows as new or flipped (was its probe down?)",
                a.flows
            ));
        }
        for (c, label) in [(b, before_label), (a, after_label)] {
            out.extend(lost_note(node, c, label));
        }
    }
    out
}

/// The flows history lost of each node in one window (`label`).
pub fn lost_notes(cover: &Coverage, label: &str) -> Vec<String> {
    cover
        .nodes
        .iter()
        .flat_map(|(node, c)| lost_note(node, *c, label))
        .collect()
}

fn lost_note(node: &str, c: Counts, label: &str) -> Vec<String> {
    let mut out = Vec::new();
    if c.lost > 0 {
        out.push(format!(
            "history lost {} flows of {node} in {label}: its counts there are low",
            c.lost
        ));
    }
    if c.probe_lost > 0 {
        out.push(format!(
            "the probe of {node} lost {} events in {label}: its counts there are low",
            c.probe_lost
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::flow::{Flow, LostEvent};

    fn flow(node: &str) -> GetFlowsResponse {
        GetFlowsResponse {
            response_types: Some(ResponseTypes::Flow(Flow {
                node_name: node.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn lost(node: &str, n: u64, source: LostEventSource) -> GetFlowsResponse {
        GetFlowsResponse {
            node_name: node.into(),
            response_types: Some(ResponseTypes::LostEvents(LostEvent {
                num_events_lost: n,
                source: source as i32,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn coverage(responses: &[GetFlowsResponse]) -> Coverage {
        let mut c = Coverage::default();
        responses.iter().for_each(|r| c.record(r));
        c
    }

    #[test]
    fn a_node_silent_in_one_window_and_losses_are_told() {
        let before = coverage(&[
            flow("node1"),
            flow("node2"),
            flow("node2"),
            lost("node1", 7, LostEventSource::HubbleRingBuffer),
        ]);
        let after = coverage(&[flow("node1"), flow("node3")]);
        assert_eq!(
            notes(&before, &after, "the baseline", "the window"),
            [
                "history lost 7 flows of node1 in the baseline: its counts there are low",
                "no flows of node2 in the window, 2 in the baseline: what only it observed \
                 shows as vanished or flipped (was its probe down?)",
                "no flows of node3 in the baseline, 1 in the window: what only it observed \
                 shows as new or flipped (was its probe down?)",
            ]
        );
        // Both windows heard from every node, nothing lost: nothing to say.
        let same = coverage(&[flow("node1"), flow("node2")]);
        assert!(notes(&same, &same.clone(), "a", "b").is_empty());
        // One window (a plain graph): its losses, history's and a probe's.
        assert_eq!(
            lost_notes(&before, "the window"),
            ["history lost 7 flows of node1 in the window: its counts there are low"]
        );
        let probe = coverage(&[lost("node2", 3, LostEventSource::PerfEventRingBuffer)]);
        assert_eq!(
            lost_notes(&probe, "the window"),
            ["the probe of node2 lost 3 events in the window: its counts there are low"]
        );
        assert!(lost_notes(&after, "the window").is_empty());
    }
}
