//! The flags of `observe graph --diff`: which two windows to compare and how
//! much flows and bytes may move before an edge counts as changed.
//!
//! - `--diff 1h`: the last hour against the hour before it.
//! - `--since T1 [--until T2] --against T3..T4`: the window of `--since` and
//!   `--until` (default: the 15 minutes up to `--until`, or up to now) against T3..T4.
//!
//! Every time is a duration ago (`2h`) or RFC 3339 (`2026-11-26T10:00:00Z`),
//! as `--since` takes them. Both ends of a window are included.

use std::time::SystemTime;

use observer_proto::time;
use service_graph::Threshold;

use super::default_since;
use crate::flows::request::{QueryArgs, parse_time};

/// The diff flags, as parsed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DiffArgs {
    /// Compare the last DURATION (`1h`, `30m`) with the DURATION before it.
    #[arg(
        long,
        value_name = "DURATION",
        conflicts_with_all = ["since", "until", "against", "last", "first"]
    )]
    pub diff: Option<String>,
    /// Compare the window of --since/--until (default: the 15m up to --until or now) against
    /// T3..T4, each a duration ago or RFC 3339 (`2h..1h`).
    #[arg(long, value_name = "T3..T4", conflicts_with_all = ["last", "first"])]
    pub against: Option<String>,
    /// With --diff or --against: an edge whose flows or bytes moved by more
    /// than this share of the earlier window's counts is changed [default: 50%].
    #[arg(long, value_name = "PERCENT")]
    pub diff_threshold: Option<String>,
}

/// From `since` to `until`, both included, in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since: i128,
    pub until: i128,
}

impl Window {
    /// `2026-11-26T15:00:00Z..2026-11-26T16:00:00Z`.
    pub fn label(self) -> String {
        format!("{}..{}", rfc3339(self.since), rfc3339(self.until))
    }

    fn length(self) -> i128 {
        self.until - self.since
    }
}

/// RFC 3339 in UTC, with as many fractional digits as the time has
/// (`2026-11-26T14:04:04.999999999Z`): what `--since` and `--against` read.
pub fn rfc3339(nanos: i128) -> String {
    jiff::Timestamp::from_nanosecond(nanos).map_or_else(|_| nanos.to_string(), |t| t.to_string())
}

/// The two windows and the threshold of one `observe graph` diff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiffPlan {
    /// The window of interest.
    pub window: Window,
    /// The baseline it is compared against.
    pub against: Window,
    pub threshold: Threshold,
}

impl DiffPlan {
    /// A note when the windows differ in length by more than a millisecond
    /// (counts are compared as they are).
    pub fn length_note(&self) -> Option<String> {
        let (a, b) = (self.window.length(), self.against.length());
        ((a - b).abs() > 1_000_000).then(|| {
            format!(
                "the windows differ in length ({} against {}): flows and bytes are compared as counted",
                seconds(a),
                seconds(b)
            )
        })
    }
}

/// `3600s`, `1.5s`.
fn seconds(nanos: i128) -> String {
    let s = nanos as f64 / 1e9;
    format!("{}s", (s * 1000.0).round() / 1000.0)
}

impl DiffArgs {
    /// The two windows, or `None` without `--diff` and `--against`.
    pub fn plan(&self, query: &QueryArgs, now: SystemTime) -> anyhow::Result<Option<DiffPlan>> {
        let threshold = match &self.diff_threshold {
            None => Threshold::DEFAULT,
            Some(_) if self.diff.is_none() && self.against.is_none() => {
                anyhow::bail!("--diff-threshold applies only with --diff or --against")
            }
            Some(t) => parse_threshold(t)?,
        };
        let at = |flag: &str, s: &str| parse_time(flag, s, now).map(|t| time::nanos(&t));
        if let Some(d) = &self.diff {
            let span = time::parse_duration(d).map_err(|e| anyhow::anyhow!("--diff {e}"))?;
            anyhow::ensure!(!span.is_zero(), "--diff {d:?}: the window cannot be empty");
            let now = at("diff", "0s")?;
            let span = span.as_nanos() as i128;
            return Ok(Some(DiffPlan {
                window: Window {
                    since: now - span,
                    until: now,
                },
                // Up to, not including, the window's first nanosecond.
                against: Window {
                    since: now - 2 * span,
                    until: now - span - 1,
                },
                threshold,
            }));
        }
        let Some(against) = &self.against else {
            return Ok(None);
        };
        let since = match &query.since {
            Some(s) => s.clone(),
            None => default_since(query.until.as_deref(), now)?,
        };
        let window = Window {
            since: at("since", &since)?,
            until: at("until", query.until.as_deref().unwrap_or("0s"))?,
        };
        let now_ns = at("since", "0s")?;
        anyhow::ensure!(
            window.since < window.until,
            "--since is not before --until: the window is empty"
        );
        anyhow::ensure!(
            window.since <= now_ns,
            "--since {}: the window starts after now ({}): there are no flows yet",
            rfc3339(window.since),
            rfc3339(now_ns)
        );
        let Some((from, to)) = against.split_once("..") else {
            anyhow::bail!(
                "--against {against:?}: expected T3..T4, each a duration ago like 2h or a time like 2026-11-26T10:00:00Z"
            );
        };
        let against_window = Window {
            since: at("against", from)?,
            until: at("against", to)?,
        };
        anyhow::ensure!(
            against_window.since <= against_window.until,
            "--against {against:?}: the start is after the end (durations count back from now: 2h..1h)"
        );
        anyhow::ensure!(
            against_window.since < against_window.until,
            "--against {against:?}: the window is empty (durations count back from now: 2h..1h)"
        );
        anyhow::ensure!(
            against_window.since <= now_ns,
            "--against {against:?}: the window starts after now ({}): there are no flows yet",
            rfc3339(now_ns)
        );
        Ok(Some(DiffPlan {
            window,
            against: against_window,
            threshold,
        }))
    }
}

/// `50%` or `50`: a share of the earlier window's counts.
pub fn parse_threshold(s: &str) -> anyhow::Result<Threshold> {
    s.trim()
        .trim_end_matches('%')
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(Threshold::percent)
        .ok_or_else(|| {
            anyhow::anyhow!("--diff-threshold {s:?}: expected a percentage such as 50% or 12.5%")
        })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// 2026-11-26T15:04:05Z.
    const NOW: u64 = 1_795_705_445;
    const S: i128 = 1_000_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn plan(words: &[&str]) -> anyhow::Result<Option<DiffPlan>> {
        #[derive(clap::Parser)]
        #[command(no_binary_name = true)]
        struct Line {
            #[command(flatten)]
            query: QueryArgs,
            #[command(flatten)]
            diff: DiffArgs,
        }
        let line = <Line as clap::Parser>::try_parse_from(words)?;
        line.diff.plan(&line.query, now())
    }

    #[test]
    fn diff_compares_the_last_span_with_the_one_before() {
        let p = plan(&["--diff", "1h"]).unwrap().unwrap();
        let now = NOW as i128 * S;
        assert_eq!(
            p.window,
            Window {
                since: now - 3600 * S,
                until: now
            }
        );
        assert_eq!(
            p.against,
            Window {
                since: now - 7200 * S,
                until: now - 3600 * S - 1
            }
        );
        assert_eq!(p.threshold, Threshold::DEFAULT);
        assert_eq!(
            p.window.label(),
            "2026-11-26T14:04:05Z..2026-11-26T15:04:05Z"
        );
        assert_eq!(
            p.against.label(),
            "2026-11-26T13:04:05Z..2026-11-26T14:04:04.999999999Z"
        );
        // One nanosecond short: not worth a note.
        assert_eq!(p.length_note(), None);
    }

    #[test]
    fn against_takes_explicit_times_and_the_since_until_window() {
        let p = plan(&[
            "--since",
            "2026-11-26T15:00:00Z",
            "--until",
            "2026-11-26T15:00:10.5Z",
            "--against",
            "2026-11-26T14:00:00Z..2026-11-26T14:00:10.5Z",
            "--diff-threshold",
            "20%",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            p.window.label(),
            "2026-11-26T15:00:00Z..2026-11-26T15:00:10.5Z"
        );
        assert_eq!(
            p.against.label(),
            "2026-11-26T14:00:00Z..2026-11-26T14:00:10.5Z"
        );
        assert_eq!(p.threshold, Threshold::percent(20.0).unwrap());
        assert_eq!(p.length_note(), None);
        // Durations ago, and the default window (the last 15 minutes).
        let p = plan(&["--against", "30m..15m"]).unwrap().unwrap();
        let now = NOW as i128 * S;
        assert_eq!((p.window.since, p.window.until), (now - 900 * S, now));
        assert_eq!(
            (p.against.since, p.against.until),
            (now - 1800 * S, now - 900 * S)
        );
        // --until alone: the 15 minutes before it.
        let p = plan(&["--until", "1h", "--against", "3h..2h45m"])
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.window.since, p.window.until),
            (now - 4500 * S, now - 3600 * S)
        );
        let p = plan(&["--since", "1h", "--against", "3h..2h30m"])
            .unwrap()
            .unwrap();
        assert_eq!(
            p.length_note().as_deref(),
            Some(
                "the windows differ in length (3600s against 1800s): flows and bytes are compared as counted"
            )
        );
    }

    #[test]
    fn without_diff_flags_there_is_no_plan() {
        assert_eq!(plan(&["--since", "1h"]).unwrap(), None);
    }

    #[test]
    fn bad_diff_flags_say_what_is_wrong() {
        let err = |words: &[&str]| plan(words).unwrap_err().to_string();
        assert_eq!(
            err(&["--diff", "soon"]),
            "--diff \"soon\" is not a duration such as 500ms, 30s, 5m, 2h or 1d"
        );
        assert_eq!(
            err(&["--diff", "0s"]),
            "--diff \"0s\": the window cannot be empty"
        );
        // A flag after --diff is a value left out, as clap says; so is a
        // negative duration (clap reads it as a flag).
        for words in [["--diff", "--follow"], ["--diff", "-5m"]] {
            assert!(plan(&words).is_err(), "{words:?}");
        }
        assert!(
            err(&["--diff", "--follow"]).contains("a value is required for '--diff <DURATION>'")
        );
        assert_eq!(
            err(&["--against", "2h"]),
            "--against \"2h\": expected T3..T4, each a duration ago like 2h or a time like 2026-11-26T10:00:00Z"
        );
        assert_eq!(
            err(&["--against", "1h..2h"]),
            "--against \"1h..2h\": the start is after the end (durations count back from now: 2h..1h)"
        );
        assert_eq!(
            err(&["--against", "2h..yesterday"]),
            "--against \"yesterday\": expected a duration like 30s, 5m, 2h, 1d or a time like 2026-11-26T10:00:00Z or Nov 26 10:00:00.000 (UTC)"
        );
        assert_eq!(
            err(&["--since", "1h", "--until", "2h", "--against", "3h..2h"]),
            "--since is not before --until: the window is empty"
        );
        assert_eq!(
            err(&["--against", "2m..2m"]),
            "--against \"2m..2m\": the window is empty (durations count back from now: 2h..1h)"
        );
        assert_eq!(
            err(&["--against", "2026-11-27T00:00:00Z..2026-11-28T00:00:00Z"]),
            "--against \"2026-11-27T00:00:00Z..2026-11-28T00:00:00Z\": the window starts after now (2026-11-26T15:04:05Z): there are no flows yet"
        );
        assert_eq!(
            err(&[
                "--since",
                "2026-11-27T00:00:00Z",
                "--until",
                "2026-11-28T00:00:00Z",
                "--against",
                "2h..1h"
            ]),
            "--since 2026-11-27T00:00:00Z: the window starts after now (2026-11-26T15:04:05Z): there are no flows yet"
        );
        assert_eq!(
            err(&["--diff", "1h", "--diff-threshold", "half"]),
            "--diff-threshold \"half\": expected a percentage such as 50% or 12.5%"
        );
        assert_eq!(
            err(&["--diff", "1h", "--diff-threshold=-5%"]),
            "--diff-threshold \"-5%\": expected a percentage such as 50% or 12.5%"
        );
        assert_eq!(
            err(&["--diff-threshold", "10%"]),
            "--diff-threshold applies only with --diff or --against"
        );
        // clap refuses the combinations that make no sense.
        for words in [
            &["--diff", "1h", "--since", "2h"][..],
            &["--diff", "1h", "--against", "2h..1h"],
            &["--against", "2h..1h", "--last", "5"],
        ] {
            let e = err(words);
            assert!(e.contains("cannot be used with"), "{words:?}: {e}");
        }
    }
}
