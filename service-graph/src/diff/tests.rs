//! The diff over the scripted flows of `test_support::graph_flows`, with
//! flows left out of one window or the other.
//!
//! The script's flows by index: 0-7 frontend → api connection 1 (requests at
//! 0, 1, 4-7), 8-10 connection 2 (refused), 11-14 the DNS exchange, 15-16
//! frontend → world answered, 17 frontend → world dropped by policy, 18 the
//! host's probe of api.

use observer_proto::flow::{DropReason, Flow};
use test_support::graph_flows as fixtures;

use super::*;
use crate::GraphBuilder;

/// The script without the flows at `skip`.
fn without(skip: &[usize]) -> ServiceGraph {
    let flows: Vec<Flow> = fixtures::flows()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !skip.contains(i))
        .map(|(_, f)| f)
        .collect();
    GraphBuilder::build(&flows)
}

fn edge_changes(d: &GraphDiff) -> Vec<(String, Change)> {
    d.edges.iter().map(|e| (e.id(), e.change)).collect()
}

fn node_changes(d: &GraphDiff) -> Vec<(&str, Change)> {
    d.nodes
        .iter()
        .map(|n| (n.group.id.as_str(), n.change))
        .collect()
}

fn reasons_of<'a>(d: &'a GraphDiff, id: &str) -> &'a [Reason] {
    &d.edges
        .iter()
        .find(|e| e.id() == id)
        .unwrap_or_else(|| panic!("edge {id}"))
        .reasons
}

/// Before: no drop, no host probe. After: no DNS. Shared by the renderings' tests.
pub(super) fn before_after() -> GraphDiff {
    GraphDiff::new(
        &without(&[17, 18]),
        &without(&[11, 12, 13, 14]),
        Threshold::DEFAULT,
    )
    .with_compared("15:04", "15:03")
}

#[test]
fn new_vanished_and_flipped_edges() {
    let d = before_after();
    assert_eq!(
        edge_changes(&d),
        [
            ("default/frontend->default/api".into(), Change::Unchanged),
            (
                "default/frontend->kube-system/coredns-1".into(),
                Change::Vanished
            ),
            ("default/frontend->world".into(), Change::Changed),
            ("host->default/api".into(), Change::New),
        ]
    );
    assert_eq!(
        reasons_of(&d, "default/frontend->world"),
        [
            Reason::VerdictAppeared {
                verdict: VerdictKind::Dropped,
                flows: 1
            },
            Reason::NewDropReason {
                reason: "POLICY_DENIED".into(),
                flows: 1
            },
            Reason::Flows {
                before: 1,
                after: 2
            },
        ]
    );
    assert!(d.edges[2].flipped());
    // Only changed edges have reasons.
    for i in [0, 1, 3] {
        assert!(d.edges[i].reasons.is_empty(), "{:?}", d.edges[i]);
        assert!(!d.edges[i].flipped());
    }
    // Each side keeps its own edge; a vanished edge shows what it was.
    assert_eq!(d.edges[1].after, None);
    assert_eq!(d.edges[1].edge().flows, 2);
    assert_eq!(d.edges[3].before, None);
    assert_eq!(d.edges[3].edge().bytes, 60);
    assert_eq!(
        node_changes(&d),
        [
            ("default/api", Change::Unchanged),
            ("default/frontend", Change::Unchanged),
            ("host", Change::New),
            ("kube-system/coredns-1", Change::Vanished),
            ("world", Change::Unchanged),
        ]
    );
    // A vanished node's totals are those it had.
    assert_eq!(d.nodes[3].totals, (2, 160));
    assert_eq!(
        d.counts(),
        Counts {
            new: 1,
            vanished: 1,
            changed: 1,
            unchanged: 1
        }
    );
    assert!(!d.is_unchanged());
}

#[test]
fn the_same_flows_change_nothing() {
    let g = GraphBuilder::build(&fixtures::flows());
    let d = GraphDiff::new(&g, &g, Threshold::DEFAULT);
    assert!(d.is_unchanged());
    assert_eq!(d.counts().unchanged, 4);
    assert!(d.edges.iter().all(|e| e.reasons.is_empty()));
}

#[test]
fn flows_and_bytes_count_only_beyond_the_threshold() {
    // Without the refused connection, frontend -> api has 6 flows and 2080 B;
    // with it 8 flows (+33%) and 2180 B (+5%).
    let (before, after) = (without(&[8, 9, 10]), without(&[]));
    let api = "default/frontend->default/api";
    let d = GraphDiff::new(&before, &after, Threshold::DEFAULT);
    assert_eq!(d.edges[0].change, Change::Unchanged);
    let d = GraphDiff::new(&before, &after, Threshold::percent(25.0).unwrap());
    assert_eq!(
        reasons_of(&d, api),
        [Reason::Flows {
            before: 6,
            after: 8
        }]
    );
    assert_eq!(edge_changes(&d)[0], (api.to_string(), Change::Changed));
    assert!(!d.edges[0].flipped());
    let d = GraphDiff::new(&before, &after, Threshold::percent(0.0).unwrap());
    assert_eq!(
        reasons_of(&d, api),
        [
            Reason::Flows {
                before: 6,
                after: 8
            },
            Reason::Bytes {
                before: 2080,
                after: 2180
            },
        ]
    );
}

#[test]
fn a_verdict_that_went_away_is_a_flip() {
    // frontend -> world loses its dropped flow: 2 flows -> 1 is exactly 50%,
    // not beyond it.
    let d = GraphDiff::new(&without(&[]), &without(&[17]), Threshold::DEFAULT);
    assert_eq!(
        reasons_of(&d, "default/frontend->world"),
        [Reason::VerdictGone {
            verdict: VerdictKind::Dropped,
            flows: 1
        }]
    );
    assert!(d.edges[2].flipped());
}

#[test]
fn a_drop_for_a_new_reason_is_a_change_but_not_a_flip() {
    let mut flows = fixtures::flows();
    let mut deny = flows[17].clone();
    deny.drop_reason_desc = DropReason::PolicyDeny as i32;
    deny.time = flows[18].time;
    flows.insert(18, deny);
    let d = GraphDiff::new(
        &without(&[]),
        &GraphBuilder::build(&flows),
        Threshold::DEFAULT,
    );
    assert_eq!(
        reasons_of(&d, "default/frontend->world"),
        [
            // 2 flows -> 3 is 50%, not beyond.
            Reason::NewDropReason {
                reason: "POLICY_DENY".into(),
                flows: 1
            },
        ]
    );
    assert!(!d.edges[2].flipped());
}

#[test]
fn threshold_percentages() {
    assert_eq!(Threshold::percent(-1.0), None);
    assert_eq!(Threshold::percent(f64::NAN), None);
    let t = Threshold::percent(50.0).unwrap();
    assert_eq!(t, Threshold::DEFAULT);
    assert!(!t.exceeded(2, 1));
    assert!(!t.exceeded(2, 3));
    assert!(t.exceeded(2, 4));
    assert!(t.exceeded(0, 1));
    assert!(!t.exceeded(0, 0));
}

#[test]
fn title_names_the_windows_and_the_threshold() {
    let g = GraphBuilder::build(&fixtures::flows());
    let d = GraphDiff::new(&g, &g, Threshold::percent(12.5).unwrap());
    assert_eq!(d.title(), "changes (flows and bytes beyond 12.5%)");
    let d = d.with_compared("the last hour", "the hour before");
    assert_eq!(
        d.title(),
        "changes in the last hour against the hour before (flows and bytes beyond 12.5%)"
    );
}
