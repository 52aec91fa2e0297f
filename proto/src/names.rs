//! Hubble's display names of datapath facts, in one place for every printer,
//! metric and graph.

use crate::flow::TraceObservationPoint;

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
}
