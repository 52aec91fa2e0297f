//! Hubble's display names of datapath facts, in one place for every printer,
//! metric and graph.

use crate::flow::{DropReason, TraceObservationPoint, Verdict};

/// Cilium's trace sub-types (monitor `TraceTo*`/`TraceFrom*`), by number.
pub const TRACE_SUB_TYPES: [&str; 14] = [
    "to-endpoint",
    "to-proxy",
    "to-host",
    "to-stack",
    "to-overlay",
    "from-endpoint",
    "from-proxy",
    "from-host",
    "from-stack",
    "from-overlay",
    "from-network",
    "to-network",
    "from-crypto",
    "to-crypto",
];

/// The names `hubble observe --type agent:NAME` takes for the agent
/// notification sub-types (monitor `AgentNotify*`), by number.
pub const AGENT_SUB_TYPES: [&str; 13] = [
    "unspecified",
    "message",
    "agent-started",
    "endpoint-regenerate-success",
    "endpoint-regenerate-failure",
    "policy-updated",
    "policy-deleted",
    "endpoint-created",
    "endpoint-deleted",
    "ipcache-upserted",
    "ipcache-deleted",
    "service-upserted",
    "service-deleted",
];

/// The name of a trace sub-type number, if it has one.
pub fn trace_sub_type(sub_type: i32) -> Option<&'static str> {
    usize::try_from(sub_type)
        .ok()
        .and_then(|i| TRACE_SUB_TYPES.get(i))
        .copied()
}

/// Hubble's name of an observation point (`to-endpoint`, ...); empty if unknown.
pub fn point_name(p: TraceObservationPoint) -> &'static str {
    use TraceObservationPoint as P;
    match p {
        P::ToEndpoint => "to-endpoint",
        P::FromEndpoint => "from-endpoint",
        P::ToNetwork => "to-network",
        P::FromNetwork => "from-network",
        P::ToStack => "to-stack",
        P::FromStack => "from-stack",
        P::ToHost => "to-host",
        P::FromHost => "from-host",
        P::ToProxy => "to-proxy",
        P::FromProxy => "from-proxy",
        P::ToOverlay => "to-overlay",
        P::FromOverlay => "from-overlay",
        P::ToCrypto => "to-crypto",
        P::FromCrypto => "from-crypto",
        P::UnknownPoint => "",
    }
}

/// A verdict as Hubble prints it and labels metrics: the enum name
/// (`FORWARDED`, `DROPPED`, `VERDICT_UNKNOWN` for 0); `UNKNOWN` for a number
/// outside the enum.
pub fn verdict(v: i32) -> &'static str {
    Verdict::try_from(v).map_or("UNKNOWN", |v| v.as_str_name())
}

/// A verdict in lower case, as the `action` label of
/// `hubble_policy_verdicts_total`; `verdict_unknown` for 0 and numbers
/// outside the enum.
pub fn verdict_lower(v: i32) -> &'static str {
    match Verdict::try_from(v).unwrap_or(Verdict::Unknown) {
        Verdict::Forwarded => "forwarded",
        Verdict::Dropped => "dropped",
        Verdict::Error => "error",
        Verdict::Audit => "audit",
        Verdict::Redirected => "redirected",
        Verdict::Traced => "traced",
        Verdict::Translated => "translated",
        Verdict::Unknown => "verdict_unknown",
    }
}

/// A drop reason's name (`POLICY_DENIED`, `DROP_REASON_UNKNOWN` for 0);
/// `None` for a number outside the enum, which callers print as a number.
pub fn drop_reason(reason: i32) -> Option<&'static str> {
    DropReason::try_from(reason).ok().map(|r| r.as_str_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_types_and_points_agree_on_names() {
        assert_eq!(trace_sub_type(0), Some("to-endpoint"));
        assert_eq!(trace_sub_type(5), Some("from-endpoint"));
        assert_eq!(trace_sub_type(14), None);
        assert_eq!(trace_sub_type(-1), None);
        assert_eq!(
            point_name(TraceObservationPoint::ToEndpoint),
            TRACE_SUB_TYPES[0]
        );
        assert_eq!(
            point_name(TraceObservationPoint::FromNetwork),
            TRACE_SUB_TYPES[10]
        );
    }

    #[test]
    fn verdicts_and_drop_reasons() {
        assert_eq!(verdict(Verdict::Forwarded as i32), "FORWARDED");
        assert_eq!(verdict(0), "VERDICT_UNKNOWN");
        assert_eq!(verdict(999), "UNKNOWN");
        assert_eq!(verdict_lower(Verdict::Audit as i32), "audit");
        assert_eq!(verdict_lower(999), "verdict_unknown");
        assert_eq!(
            drop_reason(DropReason::PolicyDenied as i32),
            Some("POLICY_DENIED")
        );
        assert_eq!(drop_reason(0), Some("DROP_REASON_UNKNOWN"));
        assert_eq!(drop_reason(-7), None);
    }
}
