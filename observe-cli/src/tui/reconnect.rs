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
        let mut req = self.request.clone();
        if let Some(since) = since {
            // Everything from there on, not `--last N` of it.
            req.since = Some(since);
            req.number = 0;
            req.first = false;
        }
        Some(Box::pin(async move {
            let (mut client, _) = target.observer().await?;
            let stream = target.get_flows(&mut client, req).await?;
            Ok(Box::pin(stream) as FlowStream)
        }))
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

/// The uuids of the last `capacity` flows, so a flow sent again after a
/// reconnect (from the newest time shown, inclusive) is dropped.
#[derive(Debug)]
pub struct RecentIds {
    capacity: usize,
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        RecentIds {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// Records `uuid`; `false` when it was seen already. Flows without a uuid
    /// cannot be told apart and always count as new.
    pub fn insert(&mut self, uuid: &str) -> bool {
        if uuid.is_empty() {
            return true;
        }
        if !self.set.insert(uuid.to_string()) {
            return false;
        }
        self.order.push_back(uuid.to_string());
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// Why the stream stopped, in a few plain words, from the error's text.
pub fn short_reason(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| e.contains(w));
    if has(&["connection refused"]) {
        "connection refused"
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
        let mut ids = RecentIds::new(2);
        assert!(ids.insert("a"));
        assert!(ids.insert("b"));
        assert!(!ids.insert("a"));
        assert!(ids.insert("c"));
        // "a" fell out of the two kept; "b" and "c" are still known.
        assert!(ids.insert("a"));
        assert!(!ids.insert("c"));
        assert!(ids.insert(""));
        assert!(ids.insert(""));
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
            banner("the stream ended", ""),
            "relay unavailable: the stream ended; reconnecting…"
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

    #[test]
    fn past_until_there_is_nothing_to_reopen() {
        let target = crate::connect::ConnectArgs::server("127.0.0.1:1")
            .target(&[])
            .unwrap();
        let mut source = GetFlowsSource {
            target,
            request: GetFlowsRequest {
                until: Some(Timestamp {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            },
        };
        assert!(source.reopen(None).is_none());
        source.request.until = None;
        assert!(source.reopen(None).is_some());
    }
}
