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
    /// `2026-11-26T15:04:05.123Z` (trailing zeros dropped, as Go's `.999`)
    RFC3339Milli,
    /// `2026-11-26T15:04:05.123456Z` (trailing zeros dropped)
    RFC3339Micro,
    /// `2026-11-26T15:04:05.123456789Z` (trailing zeros dropped)
    RFC3339Nano,
    /// `Thu, 26 Nov 2026 15:04:05 +0000`
    RFC1123Z,
    /// `2026-11-26`
    YearMonthDay,
    /// `2026-11-26T15Z`
    YearMonthDayHour,
    /// `2026-11-26T15:04Z`
    YearMonthDayHourMinute,
}

impl TimeFormat {
    fn layout(self) -> &'static str {
        match self {
            TimeFormat::StampMilli => "%b %e %H:%M:%S%.3f",
            TimeFormat::RFC3339 => "%Y-%m-%dT%H:%M:%SZ",
            // The fraction is added by `fraction`, trimmed as Go trims it.
            TimeFormat::RFC3339Milli | TimeFormat::RFC3339Micro | TimeFormat::RFC3339Nano => {
                "%Y-%m-%dT%H:%M:%S"
            }
            TimeFormat::RFC1123Z => "%a, %d %b %Y %H:%M:%S +0000",
            TimeFormat::YearMonthDay => "%Y-%m-%d",
            TimeFormat::YearMonthDayHour => "%Y-%m-%dT%HZ",
            TimeFormat::YearMonthDayHourMinute => "%Y-%m-%dT%H:%MZ",
        }
    }

    /// The fraction of a second and zone after [`TimeFormat::layout`]: for the
    /// RFC 3339 layouts with a fraction, its digits up to the format's
    /// precision without trailing zeros (none when zero), then `Z`.
    fn fraction(self, nanos: i32) -> Option<String> {
        let digits = match self {
            TimeFormat::RFC3339Milli => 3,
            TimeFormat::RFC3339Micro => 6,
            TimeFormat::RFC3339Nano => 9,
            _ => return None,
        };
        let all = format!("{:09}", nanos.clamp(0, 999_999_999));
        let kept = all[..digits].trim_end_matches('0');
        Some(if kept.is_empty() {
            "Z".to_string()
        } else {
            format!(".{kept}Z")
        })
    }
}

/// The time of `ts` (UTC), if jiff's range holds it.
pub fn utc(ts: &prost_types::Timestamp) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(ts.seconds, ts.nanos).ok()
}

/// `Nov 26 15:04:05.123` in UTC; `N/A` without a time (as Hubble) or out of
/// range.
pub fn timestamp(ts: Option<&prost_types::Timestamp>) -> String {
    timestamp_as(ts, TimeFormat::StampMilli)
}

/// [`timestamp`] in `format`.
pub fn timestamp_as(ts: Option<&prost_types::Timestamp>, format: TimeFormat) -> String {
    ts.and_then(utc).map_or_else(
        || "N/A".to_string(),
        |t| {
            let mut text = t.strftime(format.layout()).to_string();
            if let Some(rest) = format.fraction(t.subsec_nanosecond()) {
                text += &rest;
            }
            text
        },
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
        assert_eq!(timestamp(Some(&at(i64::MAX, 0))), "N/A");
        assert_eq!(timestamp(None), "N/A");
        let t = at(1_795_705_445, 123_456_789);
        let all = [
            (TimeFormat::RFC3339, "2026-11-26T15:04:05Z"),
            (TimeFormat::RFC3339Milli, "2026-11-26T15:04:05.123Z"),
            (TimeFormat::RFC3339Micro, "2026-11-26T15:04:05.123456Z"),
            (TimeFormat::RFC3339Nano, "2026-11-26T15:04:05.123456789Z"),
            (TimeFormat::RFC1123Z, "Thu, 26 Nov 2026 15:04:05 +0000"),
            (TimeFormat::StampMilli, "Nov 26 15:04:05.123"),
            (TimeFormat::YearMonthDay, "2026-11-26"),
            (TimeFormat::YearMonthDayHour, "2026-11-26T15Z"),
            (TimeFormat::YearMonthDayHourMinute, "2026-11-26T15:04Z"),
        ];
        for (format, want) in all {
            assert_eq!(timestamp_as(Some(&t), format), want, "{format:?}");
        }
        // Go's `.999` layouts drop trailing zeros, and the dot with them.
        let trimmed = [
            (
                at(1_795_705_445, 0),
                TimeFormat::RFC3339Milli,
                "2026-11-26T15:04:05Z",
            ),
            (
                at(1_795_705_445, 120_000_000),
                TimeFormat::RFC3339Milli,
                "2026-11-26T15:04:05.12Z",
            ),
            (
                at(1_795_705_445, 223_000_000),
                TimeFormat::RFC3339Micro,
                "2026-11-26T15:04:05.223Z",
            ),
            (
                at(1_795_705_445, 223_000_000),
                TimeFormat::RFC3339Nano,
                "2026-11-26T15:04:05.223Z",
            ),
            (
                at(1_795_705_445, 1),
                TimeFormat::RFC3339Milli,
                "2026-11-26T15:04:05Z",
            ),
            (
                at(1_795_705_445, 1),
                TimeFormat::RFC3339Nano,
                "2026-11-26T15:04:05.000000001Z",
            ),
        ];
        for (t, format, want) in trimmed {
            assert_eq!(timestamp_as(Some(&t), format), want, "{format:?} {t:?}");
        }
        // The names Hubble takes.
        use clap::ValueEnum;
        assert_eq!(
            TimeFormat::from_str("RFC3339Nano", false),
            Ok(TimeFormat::RFC3339Nano)
        );
    }
}
