//! Flags of `observe flows` → a `GetFlowsRequest` (the connection is
//! [`crate::connect`]'s).

use std::time::{SystemTime, UNIX_EPOCH};

use observer_proto::flow::FlowFilter;
use observer_proto::observer::GetFlowsRequest;
use observer_proto::time::{self, TimeError};

use super::filters::{FilterArgs, FlagError};
use super::negate;

/// Hubble's relay port, tried first; then the probe's.
pub const DEFAULT_SERVERS: [&str; 2] = ["localhost:4245", "localhost:4244"];

/// The flags that shape which flows come back, as parsed: the filter flags are
/// split by `--not` ([`super::negate`]) into the whitelist and blacklist flags.
#[derive(Debug, Clone, Default)]
pub struct QueryArgs {
    pub last: Option<u64>,
    pub first: Option<u64>,
    pub all: bool,
    pub follow: bool,
    pub since: Option<String>,
    pub until: Option<String>,
    /// The filter flags not negated: the request's whitelist.
    pub filters: FilterArgs,
    /// The filter flags each preceded by `--not`: the request's blacklist.
    pub negated: FilterArgs,
    /// `--allowlist`: JSON `FlowFilter`s added to the whitelist.
    pub allowlist: Vec<String>,
    /// `--denylist`: JSON `FlowFilter`s added to the blacklist.
    pub denylist: Vec<String>,
    /// `observe flows --experimental-field-mask`: the Flow fields to get
    /// (empty: all).
    pub field_mask: Vec<String>,
}

/// Hubble's rules for the counts: a count of 0 is none, so
/// `--last 0 --all` is `--all`.
pub fn check_counts(
    first: Option<u64>,
    last: Option<u64>,
    all: bool,
    follow: bool,
) -> anyhow::Result<()> {
    let first = first.is_some_and(|n| n > 0);
    let last = last.is_some_and(|n| n > 0);
    let clash = [
        (first && last, "--first", "--last"),
        (first && all, "--first", "--all"),
        (first && follow, "--first", "--follow"),
        (last && all, "--last", "--all"),
    ];
    match clash.iter().find(|(both, ..)| *both) {
        Some((_, a, b)) => anyhow::bail!("cannot set both {a} and {b}"),
        None => Ok(()),
    }
}

/// Where the flows a request selects come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Server,
    /// `--input-file`.
    File,
}

/// The flags as clap declares them; [`QueryArgs`] is built from their matches so
/// that `--not` can see where each filter flag stood.
#[derive(Debug, clap::Args)]
struct QueryFlags {
    /// The last N flows (0: as if not given).
    // A negative number is a value, refused by its own parser (not taken
    // for a flag).
    #[arg(long, allow_negative_numbers = true)]
    last: Option<u64>,
    /// The first N flows (0: as if not given).
    // Which counts go together is checked with the values (request()):
    // Hubble refuses `--first 5 --last 5`, not `--first 0 --last 5`.
    #[arg(long, allow_negative_numbers = true)]
    first: Option<u64>,
    /// Every flow the server holds (with --since, history's too): may be many.
    #[arg(long)]
    all: bool,
    /// Keep streaming new flows.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Flows since a time: a duration ago (`30s`, `5m`, `2h`, `1d`), RFC 3339 (`2026-11-26T10:00:00Z`, `2026-11-26T10Z`), a date (`2026-11-26`, midnight UTC), a time as compact output prints it (`Nov 26 15:04:05.123`, UTC) or RFC 1123 with a zone (`Thu, 26 Nov 2026 15:04:05 GMT`).
    // A leading `-` is a value here, so `-5m` gets the duration's own error.
    #[arg(long, allow_hyphen_values = true)]
    since: Option<String>,
    /// Flows until a time, same forms as --since.
    #[arg(long, allow_hyphen_values = true)]
    until: Option<String>,
    #[command(flatten)]
    filters: FilterArgs,
    /// A filter as JSON `FlowFilter`s, e.g. '{"source_pod":["default/"]}' (the
    /// form --print-raw-filters prints); a flow matching any of them or the
    /// filter flags is shown. Repeatable.
    #[arg(long, value_name = "JSON")]
    allowlist: Vec<String>,
    /// JSON `FlowFilter`s as for --allowlist: a flow matching any of them is
    /// left out. Repeatable.
    #[arg(long, value_name = "JSON")]
    denylist: Vec<String>,
}

impl clap::Args for QueryArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        QueryFlags::augment_args(cmd).arg(negate::not_arg())
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        QueryFlags::augment_args_for_update(cmd).arg(negate::not_arg())
    }
}

impl clap::FromArgMatches for QueryArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let flags = QueryFlags::from_arg_matches(m)?;
        let (filters, negated) = negate::split(m)?;
        Ok(QueryArgs {
            last: flags.last,
            first: flags.first,
            all: flags.all,
            follow: flags.follow,
            since: flags.since,
            until: flags.until,
            filters,
            negated,
            allowlist: flags.allowlist,
            denylist: flags.denylist,
            field_mask: Vec::new(),
        })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// `observe flows`' query flags alone (tests, and callers holding words).
#[derive(Debug, clap::Parser)]
#[command(name = "flows", no_binary_name = true)]
struct QueryLine {
    #[command(flatten)]
    query: QueryArgs,
}

impl QueryArgs {
    /// Parses query flags given as words, without a program name.
    pub fn try_parse_words<I, T>(words: I) -> Result<QueryArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <QueryLine as clap::Parser>::try_parse_from(words).map(|l| l.query)
    }

    /// (whitelist, blacklist) of the filter flags.
    pub fn filter_lists(&self) -> Result<(Vec<FlowFilter>, Vec<FlowFilter>), FlagError> {
        let mut whitelist = self.filters.whitelist()?;
        whitelist.extend(raw_filters("allowlist", &self.allowlist)?);
        let mut blacklist = self.negated.whitelist()?;
        blacklist.extend(raw_filters("denylist", &self.denylist)?);
        Ok((whitelist, blacklist))
    }

    /// Whether the flags say which flows (a time, a count or all), not only
    /// which kind.
    pub fn has_window(&self) -> bool {
        self.since.is_some() || self.has_count()
    }

    /// Whether the flags ask for a number of flows (`--first`, `--last` above
    /// 0, or `--all`).
    pub fn has_count(&self) -> bool {
        self.all || self.last.is_some_and(|n| n > 0) || self.first.is_some_and(|n| n > 0)
    }

    pub fn request(&self) -> anyhow::Result<GetFlowsRequest> {
        self.request_from(Source::Server)
    }

    /// The request for `source`: a file's times are the writer's clock, so
    /// a `--since` ahead of this one is no mistake there.
    pub fn request_from(&self, source: Source) -> anyhow::Result<GetFlowsRequest> {
        check_counts(self.first, self.last, self.all, self.follow)?;
        let now = SystemTime::now();
        // As in `hubble observe`, a count of 0 is no count.
        let (number, first) = match (self.first.filter(|n| *n > 0), self.last.filter(|n| *n > 0)) {
            // Every flow held; a follow must say so with a count (0 asks for
            // new flows only), as hubble's u64::MAX does. With --since the
            // window says it, and 0 streams history instead of counting it.
            _ if self.all && self.follow && self.since.is_none() => (u64::MAX, false),
            _ if self.all => (0, false),
            (Some(n), _) => (n, true),
            (None, Some(n)) => (n, false),
            // Like `hubble observe`: without a window (neither end), the last 20.
            (None, None) if !self.follow && self.since.is_none() && self.until.is_none() => {
                (20, false)
            }
            (None, None) => (0, false),
        };
        let (whitelist, blacklist) = self.filter_lists()?;
        let mut since = self
            .since
            .as_deref()
            .map(|s| parse_time("since", s, now))
            .transpose()?;
        let until = self
            .until
            .as_deref()
            .map(|s| parse_time("until", s, now))
            .transpose()?;
        if let (Some(s), Some(u)) = (&since, &until) {
            anyhow::ensure!(
                time::nanos(s) <= time::nanos(u),
                "--since {} is after --until {}: no flow can be between them",
                self.since.as_deref().unwrap_or_default(),
                self.until.as_deref().unwrap_or_default()
            );
        }
        // The same instant the durations above count back from.
        let now = parse_time("since", "0s", now)?;
        if let Some(s) = since.filter(|_| !self.follow && source == Source::Server) {
            anyhow::ensure!(
                time::nanos(&s) <= time::nanos(&now),
                "--since {} is in the future: there are no flows from then yet",
                self.since.as_deref().unwrap_or_default()
            );
        }
        if let (true, Some(u)) = (self.follow, until) {
            anyhow::ensure!(
                time::nanos(&u) > time::nanos(&now),
                "--until {} is not in the future: --follow would have nothing new to show (without --follow, the flows up to then)",
                self.until.as_deref().unwrap_or_default()
            );
            // A follow starts now, not at the oldest flow held, as an
            // --until alone would; unless a count (--last, --first, --all)
            // asks for held flows first.
            if number == 0 {
                since.get_or_insert(now);
            }
        }
        // Checked here, so that a bad path names the flag.
        observer_runtime::field_mask::FieldMask::parse(&self.field_mask)
            .map_err(|e| anyhow::anyhow!("--experimental-field-mask: {e}"))?;
        let field_mask = (!self.field_mask.is_empty()).then(|| prost_types::FieldMask {
            paths: self.field_mask.clone(),
        });
        Ok(GetFlowsRequest {
            number,
            first,
            follow: self.follow,
            whitelist,
            blacklist,
            since,
            until,
            field_mask,
        })
    }
}

/// A duration ago (`30s`, `2h`, `1d`, `0`) or an RFC 3339 time or a date
/// ([`observer_proto::time`]'s parsers).
pub fn parse_time(flag: &str, s: &str, now: SystemTime) -> anyhow::Result<prost_types::Timestamp> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    // A bare 0 is no duration to jiff; to Go's (hubble's) it is: now.
    let duration = if s.trim() == "0" {
        Ok(std::time::Duration::ZERO)
    } else {
        time::parse_duration(s)
    };
    let at = match duration {
        Ok(ago) => now - ago.as_nanos() as i128,
        Err(TimeError::NotADuration(_)) => match time::parse_rfc3339(s) {
            Ok(at) => at,
            // Say what is wrong with what was meant as a date.
            Err(e) if looks_like_a_date(s) => anyhow::bail!("--{flag} {e}"),
            // A time copied from compact output, or hubble's RFC1123Z.
            Err(_) => match time::parse_stamp(s, now).or_else(|| time::parse_rfc1123z(s)) {
                Some(at) => at,
                None => match time::rfc1123_weekday_mismatch(s) {
                    Some(why) => anyhow::bail!("--{flag} {s:?}: {why}"),
                    None => anyhow::bail!(
                        "--{flag} {s:?}: expected a duration like 30s, 5m, 2h, 1d or a time like \
                     2026-11-26T10:00:00Z or Nov 26 10:00:00.000 (UTC)"
                    ),
                },
            },
        },
        Err(TimeError::ClockTime(_)) => anyhow::bail!(
            "--{flag} {s:?} reads as a time of day, which needs its date and zone: \
             {}T{s}Z, say; a duration has units (30s, 5m12s)",
            jiff::Timestamp::from_nanosecond(now)
                .map(|t| t.strftime("%Y-%m-%d").to_string())
                .unwrap_or_else(|_| "2026-11-26".into())
        ),
        Err(e) => anyhow::bail!("--{flag} {e}"),
    };
    Ok(time::timestamp(at))
}

/// `YYYY-`: the start of an RFC 3339 time.
fn looks_like_a_date(s: &str) -> bool {
    let b = s.trim().as_bytes();
    b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// The filters given to `--{flag}` as JSON, each value one or several
/// `FlowFilter` objects; checked as the server will check them.
fn raw_filters(flag: &'static str, values: &[String]) -> Result<Vec<FlowFilter>, FlagError> {
    let mut all = Vec::new();
    for value in values {
        let bad = |problem: String| FlagError {
            flag,
            value: Some(value.clone()),
            problem,
        };
        let filters: Vec<FlowFilter> =
            observer_proto::json::from_json_stream("flow.FlowFilter", value)
                .map_err(|e| bad(format!("not a JSON FlowFilter: {e}")))?;
        observer_runtime::filter::compile(&filters, &[]).map_err(|e| bad(e.to_string()))?;
        all.extend(filters);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_parse_as_durations_or_rfc3339() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_time("since", "2h", now).unwrap().seconds,
            1_000_000 - 7200
        );
        assert_eq!(parse_time("since", "0", now).unwrap().seconds, 1_000_000);
        assert_eq!(
            parse_time("since", "2026-11-26", now).unwrap().seconds,
            1_795_651_200
        );
        assert_eq!(
            parse_time("since", "90s", now).unwrap().seconds,
            1_000_000 - 90
        );
        assert_eq!(
            parse_time("until", "1d", now).unwrap().seconds,
            1_000_000 - 86_400
        );
        let t = parse_time("since", "2026-11-26T15:04:05.5Z", now).unwrap();
        assert_eq!((t.seconds, t.nanos), (1_795_705_445, 500_000_000));
        let t = parse_time("since", "2026-11-26T16:04:05+01:00", now).unwrap();
        assert_eq!((t.seconds, t.nanos), (1_795_705_445, 0));
        let err = |s: &str| parse_time("since", s, now).unwrap_err().to_string();
        assert_eq!(
            err("yesterday"),
            "--since \"yesterday\": expected a duration like 30s, 5m, 2h, 1d or a time like 2026-11-26T10:00:00Z or Nov 26 10:00:00.000 (UTC)"
        );
        assert_eq!(err("-5m"), "--since \"-5m\": a duration cannot be negative");
        // Not 5 h 12 min ago, as jiff alone would read it.
        assert_eq!(
            err("05:12:00"),
            "--since \"05:12:00\" reads as a time of day, which needs its date and zone: \
             1970-01-12T05:12:00Z, say; a duration has units (30s, 5m12s)"
        );
        assert_eq!(
            err("1y"),
            "--since \"1y\": years and months have no fixed length (use w, d, h, m, s or ms)"
        );
        // RFC 1123 with a zone name, as HTTP dates write it; a wrong weekday
        // is named.
        let t = parse_time("since", "Sun, 06 Dec 2026 18:30:00 GMT", now).unwrap();
        assert_eq!(t.seconds, 1_796_581_800);
        assert_eq!(
            err("Sat, 06 Dec 2026 18:30:00 +0000"),
            "--since \"Sat, 06 Dec 2026 18:30:00 +0000\": 6 Dec 2026 is a Sunday, not Sat"
        );
        let date = err("2026-02-31T10:00:00Z");
        assert!(
            date.starts_with(
                "--since \"2026-02-31T10:00:00Z\" is not a time such as 2026-11-26T10:00:00Z: "
            ),
            "{date}"
        );
    }

    #[test]
    fn last_first_and_follow_become_number_and_first() {
        let q = |f: fn(&mut QueryArgs)| {
            let mut a = QueryArgs::default();
            f(&mut a);
            let r = a.request().unwrap();
            (r.number, r.first, r.follow)
        };
        assert_eq!(q(|_| {}), (20, false, false));
        assert_eq!(q(|a| a.last = Some(5)), (5, false, false));
        assert_eq!(q(|a| a.first = Some(3)), (3, true, false));
        assert_eq!(q(|a| a.follow = true), (0, false, true));
        // As in hubble observe: 0 is no count, --all is every flow.
        assert_eq!(q(|a| a.last = Some(0)), (20, false, false));
        assert_eq!(q(|a| a.first = Some(0)), (20, false, false));
        assert_eq!(q(|a| a.all = true), (0, false, false));
        // A window, either end: every flow in it.
        assert_eq!(q(|a| a.since = Some("1h".into())), (0, false, false));
        assert_eq!(q(|a| a.until = Some("1m".into())), (0, false, false));
        // Following, --all still sends what is held first.
        let all_then_follow = |a: &mut QueryArgs| {
            a.all = true;
            a.follow = true;
        };
        assert_eq!(q(all_then_follow), (u64::MAX, false, true));
        assert_eq!(
            q(|a| {
                a.all = true;
                a.follow = true;
                a.since = Some("1h".into());
            }),
            (0, false, true)
        );
        let negative = QueryArgs::try_parse_words(["--last", "-1"]).unwrap_err();
        assert!(
            negative
                .to_string()
                .starts_with("error: invalid value '-1' for '--last <LAST>'"),
            "{negative}"
        );
        let words = QueryArgs::try_parse_words(["--all"]).unwrap();
        assert_eq!(words.request().unwrap().number, 0);
        // A follow until a past time has nothing new to show; until a later
        // one, it starts now rather than at the oldest flow held.
        let past = QueryArgs::try_parse_words(["--follow", "--until", "1m"]).unwrap();
        assert_eq!(
            past.request().unwrap_err().to_string(),
            "--until 1m is not in the future: --follow would have nothing new to show (without --follow, the flows up to then)"
        );
        let before = observer_proto::time::now_nanos();
        let later = QueryArgs::try_parse_words(["-f", "--until", "2999-01-01T00:00:00Z"])
            .unwrap()
            .request()
            .unwrap();
        let since = observer_proto::time::nanos(&later.since.unwrap());
        assert!(since >= before && since <= observer_proto::time::now_nanos());
        // A count asks for held flows first: the last 5, then new ones.
        let last = ["-f", "--last", "5", "--until", "2999-01-01T00:00:00Z"];
        let r = QueryArgs::try_parse_words(last).unwrap().request().unwrap();
        assert_eq!((r.number, r.since, r.follow), (5, None, true));
        let all = ["-f", "--all", "--until", "2999-01-01T00:00:00Z"];
        let r = QueryArgs::try_parse_words(all).unwrap().request().unwrap();
        assert_eq!((r.number, r.since), (u64::MAX, None));
        let future = QueryArgs::try_parse_words(["--since", "2999-01-01T00:00:00Z"]).unwrap();
        assert_eq!(
            future.request().unwrap_err().to_string(),
            "--since 2999-01-01T00:00:00Z is in the future: there are no flows from then yet"
        );
        // Swapped durations: an empty window, named by the flags.
        let swapped = QueryArgs::try_parse_words(["--since", "1h", "--until", "2h"]).unwrap();
        assert_eq!(
            swapped.request().unwrap_err().to_string(),
            "--since 1h is after --until 2h: no flow can be between them"
        );
        let same = [
            "--since",
            "2026-01-01T00:00:00Z",
            "--until",
            "2026-01-01T00:00:00Z",
        ];
        assert!(QueryArgs::try_parse_words(same).unwrap().request().is_ok());
        let with_since = ["-f", "--since", "1h", "--until", "2999-01-01T00:00:00Z"];
        let r = QueryArgs::try_parse_words(with_since)
            .unwrap()
            .request()
            .unwrap();
        assert!(
            observer_proto::time::nanos(&r.since.unwrap()) < before,
            "--since kept"
        );
        let negative = QueryArgs::try_parse_words(["--since", "-5m"]).unwrap();
        assert_eq!(
            negative.request().unwrap_err().to_string(),
            "--since \"-5m\": a duration cannot be negative"
        );
        let refused = |words: &[&str]| {
            let args = QueryArgs::try_parse_words(words).unwrap();
            args.request().unwrap_err().to_string()
        };
        assert_eq!(
            refused(&["--all", "--last", "5"]),
            "cannot set both --last and --all"
        );
        assert_eq!(
            refused(&["--first", "2", "--last", "5"]),
            "cannot set both --first and --last"
        );
        assert_eq!(
            refused(&["--first", "2", "-f"]),
            "cannot set both --first and --follow"
        );
        assert_eq!(
            refused(&["--all", "--first", "1"]),
            "cannot set both --first and --all"
        );
    }

    /// A count of 0 is none, so it goes with any other (as in Hubble).
    #[test]
    fn a_count_of_zero_goes_with_the_others() {
        let q = |words: &[&str]| {
            let r = QueryArgs::try_parse_words(words)
                .unwrap()
                .request()
                .unwrap();
            (r.number, r.first, r.follow)
        };
        assert_eq!(q(&["--last", "0", "--all"]), (0, false, false));
        assert_eq!(q(&["--first", "0", "--last", "5"]), (5, false, false));
        assert_eq!(q(&["--first", "0", "-f"]), (0, false, true));
        assert_eq!(q(&["--first", "0", "--all", "-f"]), (u64::MAX, false, true));
    }
}
