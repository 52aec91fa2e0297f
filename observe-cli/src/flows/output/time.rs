//! Timestamps as `hubble observe` prints them: `Jan _2 15:04:05.000` in UTC.

use observer_proto::time::civil_from_days;

/// `Nov 26 15:04:05.123` in UTC.
pub fn timestamp(ts: Option<&prost_types::Timestamp>) -> String {
    let Some(ts) = ts else { return "-".to_string() };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = ts.seconds.div_euclid(86_400);
    let secs = ts.seconds.rem_euclid(86_400);
    let (_, month, day) = civil_from_days(days);
    format!(
        "{} {:>2} {:02}:{:02}:{:02}.{:03}",
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ts.nanos / 1_000_000
    )
}
