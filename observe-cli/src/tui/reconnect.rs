//! Getting the flow stream back after the relay went away: a [`FlowSource`]
//! reopens it from the newest flow shown, [`Backoff`] spaces the attempts,
//! [`RecentIds`] drops flows sent again, and [`short_reason`] says in plain
//! words why the stream stopped.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use observer_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use prost_types::Timestamp;
use tokio_stream::{Stream, StreamExt};

use crate::connect::Target;

pub type FlowStream = Pin<Box<dyn Stream<Item = Result<GetFlowsResponse, tonic::Status>>>>;
/// A stream being opened (lazily: nothing happens until it is polled).
pub type Opening = Pin<Box<dyn Future<Output = anyhow::Result<FlowStream>>>>;

/// Where the TUI's flows come from once the first stream is gone.
pub trait FlowSource {
    /// The same flows again, from `since` on (the newest flow shown) when
    /// given; `None` when they cannot be asked for again.
    fn reopen(&mut self, since: Option<Timestamp>) -> Option<Opening>;
}

impl<T: FlowSource> FlowSource for &mut T {
    fn reopen(&mut self, since: Option<Timestamp>) -> Option<Opening> {
        (**self).reopen(since)
    }
}

/// A stream that is not asked for again (`observe graph -o tui`, which hands
/// over its stream alone): its end is shown as it is.
#[derive(Debug)]
pub struct NoReconnect;

impl FlowSource for NoReconnect {
    fn reopen(&mut self, _: Option<Timestamp>) -> Option<Opening> {
        None
    }
}

/// `GetFlows` again on `target`, with `request`'s filters.
#[derive(Debug, Clone)]
pub struct GetFlowsSource {
    pub target: Target,
    pub request: GetFlowsRequest,
}

impl GetFlowsSource {
    /// `request` again at `used`, the address of `target` the first stream
    /// came from: without `--server`, `target` tries the relay's port, then a
    /// probe's, and a reconnect while the relay is down must not land on one
    /// node's probe and show its flows as if they were all.
    pub fn new(target: &Target, used: &str, request: GetFlowsRequest) -> Self {
        GetFlowsSource {
            target: target.pinned(used),
            request,
        }
    }
}

impl FlowSource for GetFlowsSource {
    fn reopen(&mut self, since: Option<Timestamp>) -> Option<Opening> {
        // Past `--until` the stream has nothing more to give.
        if let Some(until) = &self.request.until
            && SystemTime::now() > to_system(until)
        {
            return None;
        }
        let target = self.target.clone();
        let req = self.reopened(since);
        Some(Box::pin(async move {
            let (mut client, _) = target.observer().await?;
            let stream = target.get_flows(&mut client, req).await?;
            Ok(Box::pin(stream) as FlowStream)
        }))
    }
}

impl GetFlowsSource {
    /// The request that reopens the stream from `since`: everything from
    /// there on, not `--last N` of it, and never before the `--since` asked
    /// for.
    fn reopened(&self, since: Option<Timestamp>) -> GetFlowsRequest {
        let mut req = self.request.clone();
        if let Some(since) = since {
            let asked = req
                .since
                .filter(|a| (a.seconds, a.nanos) > (since.seconds, since.nanos));
            req.since = Some(asked.unwrap_or(since));
            req.number = 0;
            req.first = false;
        }
        req
    }
}

fn to_system(t: &Timestamp) -> SystemTime {
    let d = Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
    SystemTime::UNIX_EPOCH + d
}

/// The flow stream, or the attempt to get it back, or neither.
pub enum Link {
    Open(FlowStream),
    /// Waiting out the backoff, then opening.
    Opening(Opening),
    /// Over: not asked for again.
    Closed,
}

/// What happened on the [`Link`].
#[expect(
    clippy::large_enum_variant,
    reason = "one per response, moved once: boxing would allocate per flow"
)]
pub enum Step {
    /// The stream's next item; `None` at its end.
    Item(Option<Result<GetFlowsResponse, tonic::Status>>),
    /// The attempt to reopen it finished.
    Opened(anyhow::Result<FlowStream>),
}

impl Link {
    /// The next step. Cancel-safe (the loop drops it at every tick): what is
    /// under way stays in `self`, so a slow connect is not started over.
    pub async fn step(&mut self) -> Step {
        match self {
            Link::Open(s) => Step::Item(s.next().await),
            Link::Opening(o) => Step::Opened(o.as_mut().await),
            Link::Closed => std::future::pending().await,
        }
    }
}

/// Waits between attempts: 1 s, doubling up to 10 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_secs(1);
    pub const MAX: Duration = Duration::from_secs(10);

    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(Self::MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

/// How far before the newest flow shown a reopened stream starts. The relay
/// sends flows in time order only within its reorder window: a node that
/// lags under load has older flows still on the way, or still in its probe's
/// buffer while the relay is down, and a stream reopened at the newest time
/// would never show them.
pub const REOPEN_MARGIN: Duration = Duration::from_secs(5);

/// The uuids of the flows shown within [`REOPEN_MARGIN`] of the newest, so a
/// flow sent again by a reopened stream is dropped; at most `capacity` of
/// them (memory stays bounded at any rate; past it, a repeat may show twice).
#[derive(Debug)]
pub struct RecentIds {
    capacity: usize,
    /// (flow time in ns, uuid hash), in the order the flows came.
    order: VecDeque<(i128, u64)>,
    set: HashSet<u64>,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        RecentIds {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// Records `uuid`, of a flow at `time_ns`, and forgets what came before
    /// `newest_ns - REOPEN_MARGIN`; `false` when it was seen already. Flows
    /// without a uuid cannot be told apart and always count as new.
    pub fn insert(&mut self, uuid: &str, time_ns: i128, newest_ns: i128) -> bool {
        if uuid.is_empty() {
            return true;
        }
        let id = id_of(uuid);
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back((time_ns, id));
        let horizon = newest_ns - REOPEN_MARGIN.as_nanos() as i128;
        while let Some(&(t, old)) = self.order.front()
            && (t < horizon || self.order.len() > self.capacity)
        {
            self.order.pop_front();
            self.set.remove(&old);
        }
        true
    }

    /// Uuids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// A uuid as 64 bits: a few hundred thousand of them make a collision about
/// one chance in a billion, and a tenth of the memory of the strings.
fn id_of(uuid: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(uuid)
}

/// Where a stream lost after showing flows up to `newest` reopens:
/// [`REOPEN_MARGIN`] before it.
pub fn reopen_from(newest: Option<Timestamp>) -> Option<Timestamp> {
    use observer_proto::time;
    newest.map(|t| time::timestamp(time::nanos(&t) - REOPEN_MARGIN.as_nanos() as i128))
}

/// Whether a server's refusal stays the same when asked again: a bad
/// request, credentials it does not take, a call it does not serve. The
/// stream's end is shown instead of reconnecting forever.
pub fn is_final(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::InvalidArgument
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::Unimplemented
    )
}

/// Why the stream stopped, in a few plain words, from the error's text.
pub fn short_reason(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| e.contains(w));
    if has(&["connection refused"]) {
        "connection refused"
    } else if has(&["shutting down"]) {
        // A relay stopping, as for a restart, says so before it goes.
        "the relay is shutting down"
    } else if has(&["timed out", "timeout", "no answer", "deadline"]) {
        "no answer"
    } else if has(&["dns", "lookup", "name or service not known"]) {
        "address not found"
    } else if has(&["certificate", "tls", "handshake"]) {
        "TLS failed"
    } else if has(&[
        "error reading a body",
        "connection reset",
        "broken pipe",
        "connection closed",
        "h2 protocol error",
        "goaway",
        "go away",
        "transport error",
    ]) {
        "connection lost"
    } else {
        "server error"
    }
}

/// The reconnecting banner: `reason`, then `detail` (the error's text) cut short.
pub fn banner(reason: &str, detail: &str) -> String {
    const DETAIL: usize = 80;
    let mut text = format!("relay unavailable: {reason}; reconnecting…");
    // The reason may be the detail's own words; said once, then the rest.
    let detail = detail
        .strip_prefix(reason)
        .map_or(detail, |rest| rest.trim_start_matches([';', ':', ',', ' ']));
    if !detail.is_empty() {
        let cut: String = detail.chars().take(DETAIL).collect();
        let more = if detail.chars().count() > DETAIL {
            "…"
        } else {
            ""
        };
        text += &format!(" ({cut}{more})");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_1s_to_10s_and_resets() {
        let mut b = Backoff::default();
        let secs: Vec<u64> = (0..6).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn recent_ids_drop_repeats_and_forget_the_oldest() {
        const S: i128 = 1_000_000_000;
        let mut ids = RecentIds::new(100);
        assert!(ids.insert("a", 100 * S, 100 * S));
        // A late flow, older than the newest, is kept while within the margin.
        assert!(ids.insert("late", 96 * S, 100 * S));
        assert!(ids.insert("b", 101 * S, 101 * S));
        assert!(!ids.insert("a", 100 * S, 101 * S));
        assert!(!ids.insert("late", 96 * S, 101 * S));
        // At 106 s, what came before 101 s is forgotten, 101 s and later kept.
        assert!(ids.insert("c", 106 * S, 106 * S));
        assert_eq!(ids.len(), 2);
        assert!(!ids.insert("b", 101 * S, 106 * S));
        assert!(ids.insert("a", 100 * S, 106 * S));
        assert!(ids.insert("", 0, 0));
        assert!(ids.insert("", 0, 0));

        // Past the capacity, the first in goes.
        let mut few = RecentIds::new(2);
        for id in ["x", "y", "z"] {
            assert!(few.insert(id, S, S));
        }
        assert!(!few.insert("z", S, S));
        assert!(few.insert("x", S, S));
    }

    #[test]
    fn a_reopened_stream_starts_the_margin_before_the_newest_flow() {
        let t = |seconds, nanos| Timestamp { seconds, nanos };
        assert_eq!(reopen_from(Some(t(100, 250))), Some(t(95, 250)));
        assert_eq!(reopen_from(None), None);
        // Not before the --since asked for; and all of it, not --last N.
        let mut source = source_of(GetFlowsRequest {
            since: Some(t(97, 0)),
            number: 20,
            ..Default::default()
        });
        let req = source.reopened(reopen_from(Some(t(100, 250))));
        assert_eq!((req.since, req.number), (Some(t(97, 0)), 0));
        source.request.since = None;
        let req = source.reopened(reopen_from(Some(t(100, 250))));
        assert_eq!(req.since, Some(t(95, 250)));
    }

    #[test]
    fn reasons_are_plain_words() {
        let h2 = "h2 protocol error: error reading a body from connection";
        assert_eq!(short_reason(h2), "connection lost");
        assert_eq!(
            banner(short_reason(h2), h2),
            "relay unavailable: connection lost; reconnecting… \
             (h2 protocol error: error reading a body from connection)"
        );
        assert_eq!(
            short_reason(
                "cannot reach a server (localhost:4245: transport error: tcp connect error: \
                 Connection refused (os error 111))"
            ),
            "connection refused"
        );
        assert_eq!(
            short_reason("status: Unavailable, message: \"the relay is shutting down\""),
            "the relay is shutting down"
        );
        assert_eq!(
            banner("the stream ended", ""),
            "relay unavailable: the stream ended; reconnecting…"
        );
        assert_eq!(
            banner(
                "the relay is shutting down",
                "the relay is shutting down; the answer ends here"
            ),
            "relay unavailable: the relay is shutting down; reconnecting… (the answer ends here)"
        );
        let long = "x".repeat(100);
        assert_eq!(short_reason(&long), "server error");
        assert_eq!(
            banner("server error", &long),
            format!(
                "relay unavailable: server error; reconnecting… ({}…)",
                "x".repeat(80)
            )
        );
    }

    #[test]
    fn reconnects_go_to_the_address_first_used() {
        let args = crate::connect::ConnectArgs {
            tls: true,
            tls_allow_insecure: true,
            ..Default::default()
        };
        let target = args.target(&["localhost:4245", "localhost:4244"]).unwrap();
        let source = GetFlowsSource::new(&target, "localhost:4244", GetFlowsRequest::default());
        assert_eq!(source.target.addresses(), ["localhost:4244"]);
        assert!(source.target.is_tls());
    }

    /// A source of `request` on an address nothing answers.
    fn source_of(request: GetFlowsRequest) -> GetFlowsSource {
        let target = crate::connect::ConnectArgs::server("127.0.0.1:1")
            .target(&[])
            .unwrap();
        GetFlowsSource { target, request }
    }

    #[test]
    fn past_until_there_is_nothing_to_reopen() {
        let mut source = source_of(GetFlowsRequest {
            until: Some(Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        });
        assert!(source.reopen(None).is_none());
        source.request.until = None;
        assert!(source.reopen(None).is_some());
    }
}
