//! Flow time as one number: nanoseconds since the Unix epoch, so times of
//! different nodes compare and sort directly.

use crate::observer::GetFlowsResponse;
use crate::observer::get_flows_response::ResponseTypes;
use prost_types::Timestamp;

/// Nanoseconds since the Unix epoch of a protobuf timestamp.
pub fn nanos(ts: &Timestamp) -> i128 {
    i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos)
}

/// The protobuf timestamp of `nanos` since the Unix epoch.
pub fn timestamp(nanos: i128) -> Timestamp {
    Timestamp {
        seconds: nanos.div_euclid(1_000_000_000) as i64,
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

/// Wall clock now, in nanoseconds since the Unix epoch.
pub fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default()
}

/// When an event happened: the response's time, else its flow's time.
pub fn event_time(r: &GetFlowsResponse) -> Option<i128> {
    if let Some(t) = &r.time {
        return Some(nanos(t));
    }
    match &r.response_types {
        Some(ResponseTypes::Flow(f)) => f.time.as_ref().map(nanos),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_also_before_the_epoch() {
        for n in [
            0,
            1,
            1_000_000_000,
            1_700_000_000_123_456_789,
            -1,
            -1_500_000_000,
        ] {
            assert_eq!(nanos(&timestamp(n)), n);
        }
        assert_eq!(
            timestamp(-1),
            Timestamp {
                seconds: -1,
                nanos: 999_999_999
            }
        );
    }
}
