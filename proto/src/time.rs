//! Flow time as one number: nanoseconds since the Unix epoch, so times of
//! different nodes compare and sort directly; and the one parser of durations
//! (`30s`, `2h`) and RFC 3339 times that every flag uses, on jiff.

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

/// Why a flag's duration or time was refused; each message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not a duration in any form jiff's friendly or ISO 8601 parsers read.
    #[error("{0:?} is not a duration such as 500ms, 30s, 5m, 2h or 1d")]
    NotADuration(String),
    /// Years and months have no fixed length.
    #[error("{0:?}: years and months have no fixed length (use w, d, h, m, s or ms)")]
    CalendarUnit(String),
    /// Below zero (`-5s`, `5s ago`).
    #[error("{0:?}: a duration cannot be negative")]
    Negative(String),
    /// A duration past what a span holds (about 20,000 years).
    #[error("{0:?}: too long a duration")]
    TooLong(String),
    /// A clock time (`05:12:00`), which jiff's friendly format would read
    /// as a duration (5 h 12 min): refused, a duration has units.
    #[error("{0:?} reads as a time of day, not a duration: a duration has units (30s, 5m12s)")]
    ClockTime(String),
    /// Not an RFC 3339 time with an offset.
    #[error("{0:?} is not a time such as 2026-11-26T10:00:00Z: {1}")]
    NotATime(String, String),
    /// A well-formed time after the last a protobuf `Timestamp` holds.
    #[error("{0:?} is later than 9999-12-31T23:59:59Z, the last time a timestamp holds")]
    TooLate(String),
}

/// A duration as flags write it: a number and a unit (`500ms`, `30s`, `5m`,
/// `2h`, `1d`, `1w`), or several (`1h30m`, `2 hours`), as jiff's friendly
/// format reads them; a day is 24 hours. A bare number has no unit and is
/// refused.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, TimeError> {
    let trimmed = text.trim();
    if trimmed.contains(':')
        && trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || c == ':' || c == '.')
    {
        return Err(TimeError::ClockTime(trimmed.to_string()));
    }
    let span: jiff::Span = trimmed.parse().map_err(|e: jiff::Error| {
        // jiff's words for a number or unit value past its range.
        let e = e.to_string();
        if e.contains("too big") || e.contains("failed to set value") {
            TimeError::TooLong(trimmed.to_string())
        } else {
            TimeError::NotADuration(trimmed.to_string())
        }
    })?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err(TimeError::CalendarUnit(trimmed.to_string()));
    }
    if span.is_negative() {
        return Err(TimeError::Negative(trimmed.to_string()));
    }
    span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .ok_or_else(|| TimeError::NotADuration(trimmed.to_string()))
}

/// Nanoseconds since the Unix epoch of an RFC 3339 time with an offset
/// (`2026-11-26T10:00:00Z`, `2026-11-26T11:00:00.5+01:00`, or shorter as
/// hubble takes them: `2026-11-26T10:00Z`, `2026-11-26T10Z`), or of a date
/// alone (`2026-11-26`: its midnight in UTC, as hubble reads it).
pub fn parse_rfc3339(text: &str) -> Result<i128, TimeError> {
    let trimmed = text.trim();
    if trimmed.len() == "2026-11-26".len()
        && let Ok(date) = trimmed.parse::<jiff::civil::Date>()
        && let Ok(midnight) = format!("{date}T00:00:00Z").parse::<jiff::Timestamp>()
    {
        return Ok(midnight.as_nanosecond());
    }
    let e = match trimmed.parse::<jiff::Timestamp>() {
        Ok(t) => return Ok(t.as_nanosecond()),
        Err(e) => e,
    };
    match beyond_timestamps(trimmed) {
        Some(Ok(at)) => return Ok(at),
        Some(Err(())) => return Err(TimeError::TooLate(trimmed.to_string())),
        None => {}
    }
    // A civil time alone is ambiguous: say what is missing.
    let why = if trimmed.parse::<jiff::civil::DateTime>().is_ok() {
        "it has no time zone: add Z for UTC or an offset such as +01:00".to_string()
    } else {
        e.to_string()
    };
    Err(TimeError::NotATime(trimmed.to_string(), why))
}

/// The last second a protobuf `Timestamp` holds: 9999-12-31T23:59:59Z.
const LAST_TIMESTAMP_SECOND: i128 = 253_402_300_799;

/// An RFC 3339 time past the last jiff's `Timestamp` holds (it stops a day
/// short of year 9999's end, to leave room for any offset): within the last
/// second a protobuf `Timestamp` holds (Go's parser takes it too), or
/// `Err` past it; `None` when `text` is no such time.
fn beyond_timestamps(text: &str) -> Option<Result<i128, ()>> {
    let pieces = jiff::fmt::temporal::Pieces::parse(text).ok()?;
    let offset = pieces.to_numeric_offset()?;
    let civil = pieces.date().to_datetime(pieces.time()?);
    let epoch = jiff::civil::date(1970, 1, 1).at(0, 0, 0, 0);
    let local = civil.duration_since(epoch).as_nanos();
    let at = local - i128::from(offset.seconds()) * 1_000_000_000;
    Some(if at < (LAST_TIMESTAMP_SECOND + 1) * 1_000_000_000 {
        Ok(at)
    } else {
        Err(())
    })
}

/// Nanoseconds since the Unix epoch of a time as compact output prints it
/// (Go's `StampMilli`: `Nov 26 15:04:05.123`, the fraction optional), read
/// in UTC as printed, in the year of `now` unless that puts it more than a
/// day after `now`: then in the year before (a line from late December read
/// in January). `None` when `text` is not such a time.
pub fn parse_stamp(text: &str, now: i128) -> Option<i128> {
    let utc = jiff::tz::Offset::UTC;
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let year = utc
        .to_datetime(jiff::Timestamp::from_nanosecond(now).ok()?)
        .year();
    let at = |year: i16| {
        let civil =
            jiff::civil::DateTime::strptime("%Y %b %d %H:%M:%S%.f", format!("{year} {words}"))
                .ok()?;
        utc.to_timestamp(civil).ok().map(|t| t.as_nanosecond())
    };
    const DAY: i128 = 86_400 * 1_000_000_000;
    match at(year)? {
        t if t > now + DAY => at(year - 1),
        t => Some(t),
    }
}

/// Nanoseconds since the Unix epoch of an RFC 1123 time with a numeric zone
/// (`Thu, 26 Nov 2026 15:04:05 +0000`, Go's `RFC1123Z`, a layout hubble's
/// `--since` takes) or the zone `GMT`, `UT` or `UTC` (as HTTP dates and
/// `date -R`'s relatives write it); `None` when `text` is not one.
pub fn parse_rfc1123z(text: &str) -> Option<i128> {
    let text = text.trim();
    let numeric = ["GMT", "UTC", "UT"]
        .iter()
        .find_map(|zone| text.strip_suffix(zone).filter(|t| t.ends_with(' ')))
        .map_or_else(|| text.to_string(), |t| format!("{t}+0000"));
    jiff::Timestamp::strptime("%a, %d %b %Y %H:%M:%S %z", &numeric)
        .ok()
        .map(|t| t.as_nanosecond())
}

/// Why `text`, an RFC 1123 time in form, is none: its weekday is not its
/// date's (`Sat, 06 Dec 2026 …`: "6 Dec 2026 is a Sunday").
pub fn rfc1123_weekday_mismatch(text: &str) -> Option<String> {
    let (day, rest) = text.trim().split_once(", ")?;
    if day.len() != 3 || parse_rfc1123z(text).is_some() {
        return None;
    }
    let date = jiff::civil::Date::strptime("%d %b %Y", rest.get(..11)?).ok()?;
    let weekday = date.strftime("%A").to_string();
    date.strftime("%a")
        .to_string()
        .ne(day)
        .then(|| format!("{} is a {weekday}, not {day}", date.strftime("%-d %b %Y")))
}

/// `2026-11-26T15:04:05Z`: RFC 3339 in UTC, whole seconds. Seconds beyond
/// jiff's range (years -9999 to 9999) are clamped to it.
pub fn rfc3339(unix_secs: i64) -> String {
    let clamped = unix_secs.clamp(
        jiff::Timestamp::MIN.as_second(),
        jiff::Timestamp::MAX.as_second(),
    );
    jiff::Timestamp::from_second(clamped)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn shorter_times_and_a_date_alone_as_hubble_takes_them() {
        let at = |s: &str| parse_rfc3339(s).map(|n| (n / 1_000_000_000) as i64);
        assert_eq!(at("2026-11-26"), Ok(1_795_651_200));
        assert_eq!(at("2026-11-26T15:04Z"), Ok(1_795_705_440));
        assert_eq!(at("2026-11-26T15Z"), Ok(1_795_705_200));
        assert_eq!(at("2026-11-26T16+01:00"), Ok(1_795_705_200));
        assert_eq!(
            at("2026-11-26T15:04:05"),
            Err(TimeError::NotATime(
                "2026-11-26T15:04:05".into(),
                "it has no time zone: add Z for UTC or an offset such as +01:00".into()
            ))
        );
    }

    #[test]
    fn compact_output_times_and_rfc1123z_as_hubble_takes_them() {
        let now = parse_rfc3339("2026-12-06T14:00:00Z").unwrap();
        let at = |t: &str| parse_rfc3339(t).unwrap();
        assert_eq!(
            parse_stamp("Nov 26 15:04:05.123", now),
            Some(at("2026-11-26T15:04:05.123Z"))
        );
        assert_eq!(
            parse_stamp("Dec  6 13:59:59", now),
            Some(at("2026-12-06T13:59:59Z"))
        );
        // More than a day ahead of now: last year's.
        assert_eq!(
            parse_stamp("Dec 31 23:00:00.000", now),
            Some(at("2025-12-31T23:00:00Z"))
        );
        assert_eq!(parse_stamp("Nov 31 10:00:00", now), None);
        assert_eq!(parse_stamp("2026-11-26", now), None);
        assert_eq!(
            parse_rfc1123z("Thu, 26 Nov 2026 15:04:05 +0100"),
            Some(at("2026-11-26T14:04:05Z"))
        );
        assert_eq!(parse_rfc1123z("Thu, 26 Nov 2026 15:04:05"), None);
        for zone in ["GMT", "UTC", "UT", "+0000"] {
            assert_eq!(
                parse_rfc1123z(&format!("Sun, 06 Dec 2026 18:30:00 {zone}")),
                Some(at("2026-12-06T18:30:00Z")),
                "{zone}"
            );
        }
        assert_eq!(
            rfc1123_weekday_mismatch("Sat, 06 Dec 2026 18:30:00 +0000").as_deref(),
            Some("6 Dec 2026 is a Sunday, not Sat")
        );
        assert_eq!(
            rfc1123_weekday_mismatch("Sun, 06 Dec 2026 18:30:00 GMT"),
            None
        );
        assert_eq!(rfc1123_weekday_mismatch("2h"), None);
    }

    #[test]
    fn calendar_dates_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-30T22:00:00Z");
        // 2026-11-26T15:04:05Z, and the leap day of 2024.
        assert_eq!(rfc3339(1_795_705_445), "2026-11-26T15:04:05Z");
        assert_eq!(rfc3339(1_709_208_000), "2024-02-29T12:00:00Z");
    }

    #[test]
    fn durations_parse_in_every_unit_flags_use() {
        let d = |t: &str| parse_duration(t);
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(d(" 24h "), Ok(Duration::from_secs(86_400)));
        assert_eq!(d("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(d("1w"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_why() {
        let e = |t: &str| parse_duration(t).unwrap_err().to_string();
        assert_eq!(
            e("5"),
            r#""5" is not a duration such as 500ms, 30s, 5m, 2h or 1d"#
        );
        assert_eq!(
            e("5x"),
            r#""5x" is not a duration such as 500ms, 30s, 5m, 2h or 1d"#
        );
        assert_eq!(
            e(""),
            r#""" is not a duration such as 500ms, 30s, 5m, 2h or 1d"#
        );
        assert_eq!(
            e("1y"),
            r#""1y": years and months have no fixed length (use w, d, h, m, s or ms)"#
        );
        assert_eq!(e("-5s"), r#""-5s": a duration cannot be negative"#);
        assert_eq!(
            e("99999999999999999999h"),
            r#""99999999999999999999h": too long a duration"#
        );
        assert_eq!(e("999999999h"), r#""999999999h": too long a duration"#);
        // jiff would read 5 h 12 min; a user typing it means a time of day.
        assert_eq!(
            e("05:12:00"),
            r#""05:12:00" reads as a time of day, not a duration: a duration has units (30s, 5m12s)"#
        );
    }

    #[test]
    fn rfc3339_times_parse_with_any_offset() {
        assert_eq!(
            parse_rfc3339("2026-11-26T15:04:05.5Z"),
            Ok(1_795_705_445_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-26T16:04:05+01:00"),
            Ok(1_795_705_445_000_000_000)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Ok(-1_000_000_000));
        // The last second a protobuf Timestamp holds, past jiff's Timestamp.
        assert_eq!(
            parse_rfc3339("9999-12-31T23:59:59Z"),
            Ok(LAST_TIMESTAMP_SECOND * 1_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("9999-12-31T22:59:59-01:00"),
            Ok(LAST_TIMESTAMP_SECOND * 1_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("9999-12-31T23:59:59-01:00")
                .unwrap_err()
                .to_string(),
            "\"9999-12-31T23:59:59-01:00\" is later than 9999-12-31T23:59:59Z, the last time a \
             timestamp holds"
        );
        assert_eq!(
            parse_rfc3339("2026-12-05T22:27:00")
                .unwrap_err()
                .to_string(),
            "\"2026-12-05T22:27:00\" is not a time such as 2026-11-26T10:00:00Z: it has no \
             time zone: add Z for UTC or an offset such as +01:00"
        );
        let err = parse_rfc3339("2026-02-31T00:00:00Z")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                r#""2026-02-31T00:00:00Z" is not a time such as 2026-11-26T10:00:00Z: "#
            ),
            "{err}"
        );
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
