//! What changed between two service graphs: the graph of a baseline window
//! (`before`) against the graph of the window of interest (`after`).
//!
//! [`GraphDiff::new`] lists every node and edge of either graph with its
//! [`Change`]: new (only after), vanished (only before), changed (on both,
//! with [`Reason`]s: a verdict that appeared or went away, a drop reason not
//! seen before, flows or bytes that moved by more than the [`Threshold`]) or
//! unchanged. A verdict that appeared or went away is a verdict flip
//! ([`EdgeDiff::flipped`]), drawn red where other changes are orange.
//!
//! Counts are compared as they are, so the two windows should be equally long.
//! The renderings live in [`dot`], [`mermaid`], [`json`] and [`text`].

pub mod dot;
pub mod json;
pub mod mermaid;
mod reason;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};

use crate::group::Group;
use crate::labels;
use crate::model::{Edge, ServiceGraph};

pub use reason::{Reason, VerdictKind};

/// What happened to a node or an edge between the two windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Change {
    /// Only in the window of interest.
    New,
    /// Only in the baseline window.
    Vanished,
    /// In both, with reasons.
    Changed,
    /// In both, nothing beyond the threshold.
    Unchanged,
}

impl Change {
    /// `new`, `vanished`, `changed`, `unchanged`: the JSON `change` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Vanished => "vanished",
            Change::Changed => "changed",
            Change::Unchanged => "unchanged",
        }
    }
}

/// How a node or edge is drawn: new green, vanished grey and dashed, changed
/// orange, a verdict flip red, unchanged as in a plain graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Paint {
    New,
    Vanished,
    Changed,
    Flipped,
    Plain,
}

impl Paint {
    /// The legend's entries, in order.
    pub const LEGEND: [Paint; 4] = [Paint::New, Paint::Vanished, Paint::Changed, Paint::Flipped];

    /// An RGB colour (`#2e7d32`), the same in DOT, Mermaid and JSON; `None`
    /// for [`Paint::Plain`].
    pub fn colour(self) -> Option<&'static str> {
        match self {
            Paint::New => Some("#2e7d32"),
            Paint::Vanished => Some("#9e9e9e"),
            Paint::Changed => Some("#ef6c00"),
            Paint::Flipped => Some("#c62828"),
            Paint::Plain => None,
        }
    }

    /// Vanished things are dashed.
    pub fn dashed(self) -> bool {
        self == Paint::Vanished
    }

    /// What the legend says.
    pub fn meaning(self) -> &'static str {
        match self {
            Paint::New => "new",
            Paint::Vanished => "vanished",
            Paint::Changed => "changed (flows, bytes, drop reasons)",
            Paint::Flipped => "verdict flipped",
            Paint::Plain => "unchanged",
        }
    }
}

/// How far flows and bytes of an edge may move, relative to the baseline,
/// before the edge counts as changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold(f64);

impl Threshold {
    /// 50%: half as many or half again as many flows (or bytes).
    pub const DEFAULT: Threshold = Threshold(0.5);

    /// `percent` of the baseline (`50.0` for 50%); `None` unless finite and
    /// not negative.
    pub fn percent(percent: f64) -> Option<Threshold> {
        (percent.is_finite() && percent >= 0.0).then_some(Threshold(percent / 100.0))
    }

    /// The threshold in percent.
    pub fn as_percent(self) -> f64 {
        self.0 * 100.0
    }

    /// Whether `after` is more than the threshold away from `before`; any
    /// amount is, from nothing.
    pub fn exceeded(self, before: u64, after: u64) -> bool {
        if before == 0 {
            return after > 0;
        }
        (after as f64 - before as f64).abs() > self.0 * before as f64
    }
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold::DEFAULT
    }
}

/// Which windows were compared, as the caller names them (for titles).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Compared {
    /// The window of interest.
    pub window: String,
    /// The baseline window.
    pub against: String,
}

/// One node of either graph.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDiff {
    pub group: Group,
    pub change: Change,
    /// Flows and bytes of the node's edges after (before, for a vanished node).
    pub totals: (u64, u64),
}

/// One edge of either graph.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeDiff {
    pub source: Group,
    pub target: Group,
    pub before: Option<Edge>,
    pub after: Option<Edge>,
    pub change: Change,
    /// Why a changed edge changed; empty for the others.
    pub reasons: Vec<Reason>,
}

impl EdgeDiff {
    /// `source->target`, as [`crate::EdgeView::id`].
    pub fn id(&self) -> String {
        format!("{}->{}", self.source.id, self.target.id)
    }

    /// The edge as it is now, or as it was for a vanished one.
    pub fn edge(&self) -> &Edge {
        match (&self.after, &self.before) {
            (Some(e), _) | (None, Some(e)) => e,
            (None, None) => unreachable!("an edge diff holds at least one side"),
        }
    }

    /// A verdict appeared on the edge or went away from it.
    pub fn flipped(&self) -> bool {
        self.reasons.iter().any(Reason::is_flip)
    }

    /// The reasons as one line: `DROPPED appeared (1 flow); flows 1 -> 2 (+100%)`.
    pub fn reasons_text(&self) -> String {
        let texts: Vec<String> = self.reasons.iter().map(Reason::to_string).collect();
        texts.join("; ")
    }

    pub fn paint(&self) -> Paint {
        match self.change {
            Change::Changed if self.flipped() => Paint::Flipped,
            c => paint_of(c),
        }
    }
}

impl NodeDiff {
    pub fn paint(&self) -> Paint {
        paint_of(self.change)
    }
}

fn paint_of(c: Change) -> Paint {
    match c {
        Change::New => Paint::New,
        Change::Vanished => Paint::Vanished,
        Change::Changed => Paint::Changed,
        Change::Unchanged => Paint::Plain,
    }
}

/// How many edges each [`Change`] has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub new: usize,
    pub vanished: usize,
    pub changed: usize,
    pub unchanged: usize,
}

/// Every node and edge of two graphs with what changed.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphDiff {
    /// Sorted by id.
    pub nodes: Vec<NodeDiff>,
    /// Sorted by source id, then target id.
    pub edges: Vec<EdgeDiff>,
    pub threshold: Threshold,
    pub compared: Option<Compared>,
}

impl GraphDiff {
    /// Compares `after` (the window of interest) with `before` (the baseline).
    pub fn new(before: &ServiceGraph, after: &ServiceGraph, threshold: Threshold) -> Self {
        let mut groups: BTreeMap<&str, (&Group, bool, bool)> = BTreeMap::new();
        for g in before.nodes() {
            groups.entry(&g.id).or_insert((g, false, false)).1 = true;
        }
        for g in after.nodes() {
            groups.entry(&g.id).or_insert((g, false, false)).2 = true;
        }
        let nodes = groups
            .into_values()
            .map(|(g, was, is)| {
                let (change, totals) = match (was, is) {
                    (true, false) => (Change::Vanished, before.node_totals(&g.id)),
                    (false, true) => (Change::New, after.node_totals(&g.id)),
                    _ => (Change::Unchanged, after.node_totals(&g.id)),
                };
                NodeDiff {
                    group: g.clone(),
                    change,
                    totals,
                }
            })
            .collect();

        let mut pairs: BTreeMap<(&str, &str), (&Group, &Group)> = BTreeMap::new();
        for e in before.edges().into_iter().chain(after.edges()) {
            pairs
                .entry((&e.source.id, &e.target.id))
                .or_insert((e.source, e.target));
        }
        let edges = pairs
            .into_iter()
            .map(|((s, t), (source, target))| {
                let was = before.find(s, t).cloned();
                let is = after.find(s, t).cloned();
                let reasons = match (&was, &is) {
                    (Some(b), Some(a)) => reasons(b, a, threshold),
                    _ => Vec::new(),
                };
                let change = match (&was, &is) {
                    (None, _) => Change::New,
                    (_, None) => Change::Vanished,
                    _ if reasons.is_empty() => Change::Unchanged,
                    _ => Change::Changed,
                };
                EdgeDiff {
                    source: source.clone(),
                    target: target.clone(),
                    before: was,
                    after: is,
                    change,
                    reasons,
                }
            })
            .collect();
        GraphDiff {
            nodes,
            edges,
            threshold,
            compared: None,
        }
    }

    /// Names the compared windows for the renderings' titles.
    pub fn with_compared(mut self, window: impl Into<String>, against: impl Into<String>) -> Self {
        self.compared = Some(Compared {
            window: window.into(),
            against: against.into(),
        });
        self
    }

    /// Edges by [`Change`].
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for e in &self.edges {
            match e.change {
                Change::New => c.new += 1,
                Change::Vanished => c.vanished += 1,
                Change::Changed => c.changed += 1,
                Change::Unchanged => c.unchanged += 1,
            }
        }
        c
    }

    /// Nothing new, vanished or changed, nodes included.
    pub fn is_unchanged(&self) -> bool {
        self.edges.iter().all(|e| e.change == Change::Unchanged)
            && self.nodes.iter().all(|n| n.change == Change::Unchanged)
    }

    /// `changes in W against B (flows and bytes beyond 50%)`, or without the
    /// windows when they were not named.
    pub fn title(&self) -> String {
        let beyond = format!(
            "flows and bytes beyond {}%",
            trim_float(self.threshold.as_percent())
        );
        match &self.compared {
            Some(c) => format!("changes in {} against {} ({beyond})", c.window, c.against),
            None => format!("changes ({beyond})"),
        }
    }
}

/// The lines of an edge's label in DOT and Mermaid: `new` or `vanished`
/// first, the plain label (ports, volume, drops, hops), then what changed.
pub(crate) fn edge_lines(e: &EdgeDiff) -> Vec<String> {
    let mut lines = match e.change {
        Change::New | Change::Vanished => vec![e.change.as_str().to_string()],
        Change::Changed | Change::Unchanged => Vec::new(),
    };
    lines.extend(labels::drawn_lines(e.edge()));
    lines.extend(e.reasons.iter().map(Reason::to_string));
    lines
}

/// `50`, `12.5`: a percentage without trailing zeros.
fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// What moved on an edge present in both windows, flips first.
fn reasons(before: &Edge, after: &Edge, threshold: Threshold) -> Vec<Reason> {
    let mut out = Vec::new();
    for kind in VerdictKind::ALL {
        match (kind.count(&before.verdicts), kind.count(&after.verdicts)) {
            (0, n) if n > 0 => out.push(Reason::VerdictAppeared {
                verdict: kind,
                flows: n,
            }),
            (n, 0) if n > 0 => out.push(Reason::VerdictGone {
                verdict: kind,
                flows: n,
            }),
            _ => {}
        }
    }
    let known: BTreeSet<&String> = before.drops.keys().collect();
    for (reason, &flows) in &after.drops {
        if !known.contains(reason) {
            out.push(Reason::NewDropReason {
                reason: reason.clone(),
                flows,
            });
        }
    }
    if threshold.exceeded(before.flows, after.flows) {
        out.push(Reason::Flows {
            before: before.flows,
            after: after.flows,
        });
    }
    if threshold.exceeded(before.bytes, after.bytes) {
        out.push(Reason::Bytes {
            before: before.bytes,
            after: after.bytes,
        });
    }
    out
}

#[cfg(test)]
mod tests;
