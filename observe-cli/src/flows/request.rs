//! Flags of `observe flows` → a `GetFlowsRequest`, and the connection to a probe or
//! relay.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use observer_proto::flow::FlowFilter;
use observer_proto::observer::GetFlowsRequest;
use observer_proto::observer::observer_client::ObserverClient;
use tonic::transport::Channel;

use super::filters::{FilterArgs, FlagError};
use super::negate;

/// Hubble's relay port, tried first; then the probe's.
pub const DEFAULT_SERVERS: [&str; 2] = ["localhost:4245", "localhost:4244"];

/// Connects to `server`, or to the first default that answers.
pub async fn connect(server: Option<&str>) -> anyhow::Result<ObserverClient<Channel>> {
    let candidates: Vec<&str> = match server {
        Some(s) => vec![s],
        None => DEFAULT_SERVERS.to_vec(),
    };
    let mut last_err = None;
    for addr in &candidates {
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Channel::from_shared(uri.clone())
            .map_err(|e| anyhow::anyhow!("invalid server address {addr:?}: {e}"))?
            .connect_timeout(Duration::from_secs(3));
        match endpoint.connect().await {
            Ok(ch) => return Ok(ObserverClient::new(ch).max_decoding_message_size(64 << 20)),
            Err(e) => last_err = Some(format!("{addr}: {e}")),
        }
    }
    anyhow::bail!(
        "cannot reach an observer server ({})",
        last_err.unwrap_or_default()
    )
}

/// The flags that shape which flows come back, as parsed: the filter flags are
/// split by `--not` ([`super::negate`]) into the whitelist and blacklist flags.
#[derive(Debug, Clone, Default)]
pub struct QueryArgs {
    pub last: Option<u64>,
    pub first: Option<u64>,
    pub follow: bool,
    pub since: Option<String>,
    pub until: Option<String>,
    /// The filter flags not negated: the request's whitelist.
    pub filters: FilterArgs,
    /// The filter flags each preceded by `--not`: the request's blacklist.
    pub negated: FilterArgs,
}

/// The flags as clap declares them; [`QueryArgs`] is built from their matches so
/// that `--not` can see where each filter flag stood.
#[derive(Debug, clap::Args)]
struct QueryFlags {
    /// The last N flows.
    #[arg(long)]
    last: Option<u64>,
    /// The first N flows.
    #[arg(long, conflicts_with_all = ["last", "follow"])]
    first: Option<u64>,
    /// Keep streaming new flows.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Flows since a time: a duration ago (`30s`, `5m`, `2h`, `1d`) or RFC 3339 (`2026-11-26T10:00:00Z`).
    #[arg(long)]
    since: Option<String>,
    /// Flows until a time, same forms as --since.
    #[arg(long)]
    until: Option<String>,
    #[command(flatten)]
    filters: FilterArgs,
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
            follow: flags.follow,
            since: flags.since,
            until: flags.until,
            filters,
            negated,
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
        Ok((self.filters.whitelist()?, self.negated.whitelist()?))
    }

    pub fn request(&self) -> anyhow::Result<GetFlowsRequest> {
        let now = SystemTime::now();
        let (number, first) = match (self.first, self.last) {
            (Some(n), _) => (n, true),
            (None, Some(n)) => (n, false),
            // Like `hubble observe`: without a window, the last 20.
            (None, None) if !self.follow && self.since.is_none() => (20, false),
            (None, None) => (0, false),
        };
        let (whitelist, blacklist) = self.filter_lists()?;
        Ok(GetFlowsRequest {
            number,
            first,
            follow: self.follow,
            whitelist,
            blacklist,
            since: self
                .since
                .as_deref()
                .map(|s| parse_time("since", s, now))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|s| parse_time("until", s, now))
                .transpose()?,
            ..Default::default()
        })
    }
}

/// A duration ago or an RFC 3339 UTC time.
pub fn parse_time(flag: &str, s: &str, now: SystemTime) -> anyhow::Result<prost_types::Timestamp> {
    let at = if let Some(ago) = parse_duration(s) {
        now.checked_sub(ago)
            .ok_or_else(|| anyhow::anyhow!("--{flag} {s}: too far back"))?
    } else {
        parse_rfc3339(s).ok_or_else(|| {
            anyhow::anyhow!("--{flag} {s:?}: expected a duration like 30s, 5m, 2h, 1d or a time like 2026-11-26T10:00:00Z")
        })?
    };
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Ok(prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let nanos: u32 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    let secs = days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se;
    UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs).ok()?, nanos))
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_durations_or_rfc3339() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_time("since", "2h", now).unwrap().seconds,
            1_000_000 - 7200
        );
        assert_eq!(
            parse_time("since", "90s", now).unwrap().seconds,
            1_000_000 - 90
        );
        let t = parse_time("since", "2026-11-26T15:04:05.5Z", now).unwrap();
        assert_eq!((t.seconds, t.nanos), (1_795_705_445, 500_000_000));
        let err = parse_time("since", "yesterday", now)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--since \"yesterday\": expected a duration"),
            "{err}"
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
    }
}
