//! Timestamps as `hubble observe` prints them: `Jan _2 15:04:05.000` in UTC.

/// The time of `ts` (UTC), if jiff's range holds it.
pub fn utc(ts: &prost_types::Timestamp) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(ts.seconds, ts.nanos).ok()
}

/// `Nov 26 15:04:05.123` in UTC; `-` without a time or out of range.
pub fn timestamp(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(utc).map_or_else(
        || "-".to_string(),
        |t| t.strftime("%b %e %H:%M:%S%.3f").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hubble_layout_in_utc() {
        let at = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        assert_eq!(
            timestamp(Some(&at(1_795_705_445, 123_999_999))),
            "Nov 26 15:04:05.123"
        );
        assert_eq!(
            timestamp(Some(&at(1_709_208_000, 0))),
            "Feb 29 12:00:00.000"
        );
        assert_eq!(timestamp(Some(&at(-1, 0))), "Dec 31 23:59:59.000");
        assert_eq!(timestamp(Some(&at(i64::MAX, 0))), "-");
        assert_eq!(timestamp(None), "-");
    }
}
