//! Why an edge counts as changed, as data and as one line of text.

use std::fmt;

use crate::model::{Verdicts, human_bytes};

/// The verdict groups an edge counts ([`Verdicts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VerdictKind {
    Forwarded,
    Dropped,
    Audit,
    /// Any other verdict (error, traced, translated, ...).
    Other,
}

impl VerdictKind {
    pub const ALL: [VerdictKind; 4] = [
        VerdictKind::Forwarded,
        VerdictKind::Dropped,
        VerdictKind::Audit,
        VerdictKind::Other,
    ];

    /// `FORWARDED`, `DROPPED`, `AUDIT`, `OTHER`.
    pub fn name(self) -> &'static str {
        match self {
            VerdictKind::Forwarded => "FORWARDED",
            VerdictKind::Dropped => "DROPPED",
            VerdictKind::Audit => "AUDIT",
            VerdictKind::Other => "OTHER",
        }
    }

    /// Flows of this verdict in `v`.
    pub fn count(self, v: &Verdicts) -> u64 {
        match self {
            VerdictKind::Forwarded => v.forwarded,
            VerdictKind::Dropped => v.dropped,
            VerdictKind::Audit => v.audit,
            VerdictKind::Other => v.other,
        }
    }
}

/// One way an edge present in both windows changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The edge had no flows of this verdict before and has `flows` now.
    VerdictAppeared { verdict: VerdictKind, flows: u64 },
    /// The edge had `flows` of this verdict before and has none now.
    VerdictGone { verdict: VerdictKind, flows: u64 },
    /// Dropped flows with a reason the baseline did not have on this edge.
    NewDropReason { reason: String, flows: u64 },
    /// Request flows moved beyond the threshold.
    Flows { before: u64, after: u64 },
    /// Bytes moved beyond the threshold.
    Bytes { before: u64, after: u64 },
}

impl Reason {
    /// A verdict appeared or went away.
    pub fn is_flip(&self) -> bool {
        matches!(
            self,
            Reason::VerdictAppeared { .. } | Reason::VerdictGone { .. }
        )
    }

    /// `verdict_appeared`, `verdict_gone`, `new_drop_reason`, `flows`, `bytes`.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::VerdictAppeared { .. } => "verdict_appeared",
            Reason::VerdictGone { .. } => "verdict_gone",
            Reason::NewDropReason { .. } => "new_drop_reason",
            Reason::Flows { .. } => "flows",
            Reason::Bytes { .. } => "bytes",
        }
    }
}

fn flows(n: u64) -> String {
    format!("{n} {}", if n == 1 { "flow" } else { "flows" })
}

/// ` (+33%)`; nothing from zero.
fn relative(before: u64, after: u64) -> String {
    if before == 0 {
        return String::new();
    }
    let pct = ((after as f64 - before as f64) / before as f64 * 100.0).round() as i64;
    format!(" ({}{pct}%)", if pct > 0 { "+" } else { "" })
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::VerdictAppeared { verdict, flows: n } => {
                write!(f, "{} appeared ({})", verdict.name(), flows(*n))
            }
            Reason::VerdictGone { verdict, flows: n } => {
                write!(f, "{} gone (was {})", verdict.name(), flows(*n))
            }
            Reason::NewDropReason { reason, flows: n } => {
                write!(f, "new drop reason {reason} ({})", flows(*n))
            }
            Reason::Flows { before, after } => {
                write!(f, "flows {before} -> {after}{}", relative(*before, *after))
            }
            Reason::Bytes { before, after } => write!(
                f,
                "bytes {} -> {}{}",
                human_bytes(*before),
                human_bytes(*after),
                relative(*before, *after)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_one_line() {
        let line = |r: Reason| r.to_string();
        assert_eq!(
            line(Reason::VerdictAppeared {
                verdict: VerdictKind::Dropped,
                flows: 1
            }),
            "DROPPED appeared (1 flow)"
        );
        assert_eq!(
            line(Reason::VerdictGone {
                verdict: VerdictKind::Audit,
                flows: 3
            }),
            "AUDIT gone (was 3 flows)"
        );
        assert_eq!(
            line(Reason::NewDropReason {
                reason: "POLICY_DENIED".into(),
                flows: 2
            }),
            "new drop reason POLICY_DENIED (2 flows)"
        );
        assert_eq!(
            line(Reason::Flows {
                before: 6,
                after: 8
            }),
            "flows 6 -> 8 (+33%)"
        );
        assert_eq!(
            line(Reason::Bytes {
                before: 2180,
                after: 60
            }),
            "bytes 2.2 kB -> 60 B (-97%)"
        );
        assert_eq!(
            line(Reason::Bytes {
                before: 0,
                after: 120
            }),
            "bytes 0 B -> 120 B"
        );
    }
}
