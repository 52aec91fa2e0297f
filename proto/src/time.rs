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

/// Days since 1970-01-01 → `(year, month 1-12, day 1-31)`, proleptic
/// Gregorian (Howard Hinnant's civil-from-days).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-11-26T15:04:05Z`: RFC 3339 in UTC, whole seconds.
pub fn rfc3339(unix_secs: i64) -> String {
    let (y, m, d) = civil_from_days(unix_secs.div_euclid(86_400));
    let s = unix_secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_dates_in_utc() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // 2026-11-26T15:04:05Z, and the leap day of 2024.
        assert_eq!(rfc3339(1_795_705_445), "2026-11-26T15:04:05Z");
        assert_eq!(rfc3339(1_709_208_000), "2024-02-29T12:00:00Z");
    }

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
