//! Timestamps as `hubble observe` prints them: `Jan _2 15:04:05.000` in UTC,
//! or one of its other `--time-format`s.

/// `--time-format`: Hubble's names for its layouts, all in UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "verbatim")]
pub enum TimeFormat {
    /// `Nov 26 15:04:05.123`
    #[default]
    StampMilli,
    /// `2026-11-26T15:04:05Z`
    RFC3339,
    /// `2026-11-26T15:04:05.123Z`
    RFC3339Milli,
    /// `2026-11-26T15:04:05.123456Z`
    RFC3339Micro,
    /// `2026-11-26T15:04:05.123456789Z`
    RFC3339Nano,
    /// `Thu, 26 Nov 2026 15:04:05 +0000`
    RFC1123Z,
}

impl TimeFormat {
    fn layout(self) -> &'static str {
        match self {
            TimeFormat::StampMilli => "%b %e %H:%M:%S%.3f",
            TimeFormat::RFC3339 => "%Y-%m-%dT%H:%M:%SZ",
            TimeFormat::RFC3339Milli => "%Y-%m-%dT%H:%M:%S%.3fZ",
            TimeFormat::RFC3339Micro => "%Y-%m-%dT%H:%M:%S%.6fZ",
            TimeFormat::RFC3339Nano => "%Y-%m-%dT%H:%M:%S%.9fZ",
            TimeFormat::RFC1123Z => "%a, %d %b %Y %H:%M:%S +0000",
        }
    }
}

/// The time of `ts` (UTC), if jiff's range holds it.
pub fn utc(ts: &prost_types::Timestamp) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(ts.seconds, ts.nanos).ok()
}

/// `Nov 26 15:04:05.123` in UTC; `-` without a time or out of range.
pub fn timestamp(ts: Option<&prost_types::Timestamp>) -> String {
    timestamp_as(ts, TimeFormat::StampMilli)
}

/// [`timestamp`] in `format`.
pub fn timestamp_as(ts: Option<&prost_types::Timestamp>, format: TimeFormat) -> String {
    ts.and_then(utc).map_or_else(
        || "-".to_string(),
        |t| t.strftime(format.layout()).to_string(),
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
        let t = at(1_795_705_445, 123_456_789);
        let all = [
            (TimeFormat::RFC3339, "2026-11-26T15:04:05Z"),
            (TimeFormat::RFC3339Milli, "2026-11-26T15:04:05.123Z"),
            (TimeFormat::RFC3339Micro, "2026-11-26T15:04:05.123456Z"),
            (TimeFormat::RFC3339Nano, "2026-11-26T15:04:05.123456789Z"),
            (TimeFormat::RFC1123Z, "Thu, 26 Nov 2026 15:04:05 +0000"),
            (TimeFormat::StampMilli, "Nov 26 15:04:05.123"),
        ];
        for (format, want) in all {
            assert_eq!(timestamp_as(Some(&t), format), want, "{format:?}");
        }
        // The names Hubble takes.
        use clap::ValueEnum;
        assert_eq!(
            TimeFormat::from_str("RFC3339Nano", false),
            Ok(TimeFormat::RFC3339Nano)
        );
    }
}
