//! A validated `GetFlows` request and the flow-probe semantics the relay keeps:
//! `number` (the last N, or the first N with `first`), `follow`, `since`/`until`,
//! Hubble's whitelist/blacklist and the `field_mask` ([`crate::field_mask`]),
//! applied by [`FlowQuery::respond`].
//!
//! flow-probe and the relay both answer `GetFlows` with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::field_mask::{FieldMask, FieldMaskError};
use crate::filter::{self, FilterError, FlowMatcher};
use crate::store::Entry;
use observer_proto::observer::GetFlowsRequest;
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::time::{event_time, nanos, now_nanos};

/// How long past its `until` (by the clock) a follow of flows still waits
/// for flows stamped before it: they reach a server late (a probe drains
/// its ring buffer on a timer; the relay holds flows in its reorder
/// window). Then it ends, even when no later flow came to end it.
pub const UNTIL_GRACE: Duration = Duration::from_secs(2);

/// Resolves once the wall clock is `grace` past `until`; never without one.
pub(crate) async fn clock_past(until: Option<i128>, grace: Duration) {
    let Some(until) = until else {
        return std::future::pending().await;
    };
    let end = until.saturating_add(grace.as_nanos() as i128);
    loop {
        let left = end - now_nanos();
        if left < 0 {
            return;
        }
        // Checked again after the wait: the clock may have been set back.
        let wait = u64::try_from(left).unwrap_or(u64::MAX).saturating_add(1);
        tokio::time::sleep(Duration::from_nanos(wait)).await;
    }
}

/// A `GetFlows` request that cannot be served; `InvalidArgument` at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// `first` asks for the oldest flows, `follow` for what comes next.
    #[error("first cannot be combined with follow")]
    FirstWithFollow,
    /// A whitelist or blacklist filter does not compile. Its text is in the
    /// message, not a source as well, so an error chain says it once.
    #[error("invalid flow filter: {0}")]
    Filter(FilterError),
    /// The time window is empty.
    #[error("since is after until")]
    SinceAfterUntil,
    /// A timestamp's nanoseconds outside 0..=999,999,999 (protobuf's
    /// Timestamp allows no other).
    #[error("{0}: nanos {1} is out of range (0 to 999999999)")]
    BadTimestamp(&'static str, i32),
    /// A timestamp's seconds outside the years 1 to 9999 (protobuf's
    /// Timestamp allows no other, and Hubble checks it).
    #[error("{0}: {1} seconds is outside the years 0001 to 9999")]
    TimestampOutOfRange(&'static str, i64),
    /// A field mask path names no Flow field.
    #[error(transparent)]
    FieldMask(#[from] FieldMaskError),
}

/// Seconds of 0001-01-01T00:00:00Z and of 9999-12-31T23:59:59Z, the range
/// of protobuf's Timestamp.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// A request's `since` and `until` in nanoseconds, or why not: each a
/// Timestamp protobuf allows, and not `since` after `until`.
pub fn window(
    since: Option<&prost_types::Timestamp>,
    until: Option<&prost_types::Timestamp>,
) -> Result<(Option<i128>, Option<i128>), RequestError> {
    for (name, t) in [("since", since), ("until", until)] {
        let Some(t) = t else { continue };
        if !(0..1_000_000_000).contains(&t.nanos) {
            return Err(RequestError::BadTimestamp(name, t.nanos));
        }
        if !TIMESTAMP_SECONDS.contains(&t.seconds) {
            return Err(RequestError::TimestampOutOfRange(name, t.seconds));
        }
    }
    let (since, until) = (since.map(nanos), until.map(nanos));
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(RequestError::SinceAfterUntil);
    }
    Ok((since, until))
}

impl From<FilterError> for RequestError {
    fn from(e: FilterError) -> Self {
        RequestError::Filter(e)
    }
}

impl From<RequestError> for tonic::Status {
    fn from(e: RequestError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

/// What a client asked for, checked.
#[derive(Debug, Clone)]
pub struct FlowQuery {
    matcher: FlowMatcher,
    pub number: usize,
    pub first: bool,
    pub follow: bool,
    pub since: Option<i128>,
    pub until: Option<i128>,
    mask: Option<FieldMask>,
}

impl FlowQuery {
    pub fn parse(req: &GetFlowsRequest) -> Result<Self, RequestError> {
        if req.first && req.follow {
            return Err(RequestError::FirstWithFollow);
        }
        let matcher = filter::compile(&req.whitelist, &req.blacklist)?;
        let paths = req.field_mask.as_ref().map_or(&[][..], |m| &m.paths[..]);
        let mask = FieldMask::parse(paths)?;
        let (since, until) = window(req.since.as_ref(), req.until.as_ref())?;
        Ok(FlowQuery {
            matcher,
            number: usize::try_from(req.number).unwrap_or(usize::MAX),
            first: req.first,
            follow: req.follow,
            since,
            until,
            mask,
        })
    }

    /// What the client receives for a selected response: a flow with only
    /// the fields of the field mask; anything else as it is.
    pub fn respond(&self, r: &Arc<GetFlowsResponse>) -> Arc<GetFlowsResponse> {
        match (&self.mask, &r.response_types) {
            (Some(_), Some(ResponseTypes::Flow(_))) => Arc::new(self.masked((**r).clone())),
            _ => r.clone(),
        }
    }

    /// [`Self::respond`] for a response of one's own (a file's).
    pub fn masked(&self, mut r: GetFlowsResponse) -> GetFlowsResponse {
        if let (Some(mask), Some(ResponseTypes::Flow(f))) = (&self.mask, &mut r.response_types) {
            *f = mask.apply(f);
        }
        r
    }

    fn in_window(&self, r: &GetFlowsResponse) -> bool {
        let within =
            |t: i128| self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u);
        match event_time(r) {
            Some(t) => within(t) || self.overlaps_lost_span(r),
            None => true,
        }
    }

    /// Whether `r` is a lost-event record whose lost events' span (`first`
    /// to `last`) overlaps the window: it is reported when the loss is
    /// found, which may be long after.
    fn overlaps_lost_span(&self, r: &GetFlowsResponse) -> bool {
        let Some(ResponseTypes::LostEvents(l)) = &r.response_types else {
            return false;
        };
        let (Some(first), Some(last)) = (&l.first, &l.last) else {
            return false;
        };
        self.since.is_none_or(|s| nanos(last) >= s) && self.until.is_none_or(|u| nanos(first) <= u)
    }

    /// Whether a stored response goes to the client. Lost-event records pass
    /// every filter: a gap is never hidden.
    pub fn selects(&self, r: &GetFlowsResponse) -> bool {
        self.in_window(r)
            && match &r.response_types {
                Some(ResponseTypes::Flow(f)) => self.matcher.matches(f),
                _ => true,
            }
    }

    /// Whether a live response ends a follow: a flow past `until`. A
    /// lost-events record or node status is stamped when it was noticed,
    /// ahead of flows still on their way: it ends nothing (the clock does,
    /// [`Self::until_passed`]).
    pub fn is_past_until(&self, r: &GetFlowsResponse) -> bool {
        matches!(r.response_types, Some(ResponseTypes::Flow(_)))
            && self
                .until
                .is_some_and(|u| event_time(r).is_some_and(|t| t > u))
    }

    /// Resolves when a follow ends with no later flow: `grace` (at least
    /// [`UNTIL_GRACE`] where flows come late) after `until` passed (never
    /// without one).
    pub async fn until_passed(&self, grace: Duration) {
        clock_past(self.until, grace).await
    }

    /// Parses `req` on tokio's blocking pool: compiling a filter of many
    /// thousand entries never holds an async worker that other RPCs need.
    pub async fn parse_off_workers(req: GetFlowsRequest) -> Result<Self, tonic::Status> {
        off_workers(move || Self::parse(&req).map_err(tonic::Status::from)).await?
    }

    /// [`Self::history`] on tokio's blocking pool, for the same reason: a
    /// large filter over a full ring takes a while. Hands the query back.
    /// Dropped (the client went away), it stops the work too: thousands of
    /// filters over a full ring kept a core busy for minutes after the
    /// client had given up.
    pub async fn history_off_workers(
        self,
        ring: Vec<Entry>,
    ) -> Result<(Self, Vec<Entry>), tonic::Status> {
        let stop = StopOnDrop::default();
        let flag = stop.0.clone();
        let picked = off_workers(move || {
            let history = self.history_until(ring, &flag);
            (self, history)
        })
        .await;
        drop(stop);
        picked
    }

    /// The part of the ring to send before following (or instead of it).
    pub fn history(&self, ring: Vec<Entry>) -> Vec<Entry> {
        self.history_until(ring, &AtomicBool::new(false))
    }

    /// [`Self::history`], given up (empty) once `stop` is set; it is looked
    /// at every [`STOP_CHECK_EVERY`] entries.
    fn history_until(&self, ring: Vec<Entry>, stop: &AtomicBool) -> Vec<Entry> {
        if self.follow && self.number == 0 && self.since.is_none() {
            return Vec::new();
        }
        let mut picked: Vec<Entry> = Vec::new();
        for (i, e) in ring.into_iter().enumerate() {
            if i % STOP_CHECK_EVERY == 0 && stop.load(Ordering::Relaxed) {
                return Vec::new();
            }
            if self.selects(&e.response) {
                picked.push(e);
            }
        }
        if self.number != 0 {
            keep_flows(&mut picked, self.number, self.first);
        }
        if self.mask.is_some() {
            for e in &mut picked {
                e.response = self.respond(&e.response);
            }
        }
        picked
    }
}

/// Whether `e` is a flow (not a lost-events or node record).
pub fn is_flow(e: &Entry) -> bool {
    matches!(e.response.response_types, Some(ResponseTypes::Flow(_)))
}

/// Keeps the first (`first`) or last `n` flows of `entries`, and the other
/// records among them: as Hubble counts `number`, a lost-events record is
/// no flow (it would take one's place), and one between two flows kept is
/// kept.
pub fn keep_flows(entries: &mut Vec<Entry>, n: usize, first: bool) {
    if n == 0 {
        entries.clear();
        return;
    }
    if first {
        if let Some(nth) = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| is_flow(e))
            .nth(n - 1)
        {
            let end = nth.0 + 1;
            entries.truncate(end);
        }
    } else if let Some(nth) = entries
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, e)| is_flow(e))
        .nth(n - 1)
    {
        let start = nth.0;
        entries.drain(..start);
    }
}

/// How many ring entries [`FlowQuery::history_until`] matches between two
/// looks at its stop flag.
const STOP_CHECK_EVERY: usize = 256;

/// Sets its flag when dropped.
#[derive(Debug, Default)]
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `work` on the blocking pool; a panic there is an internal error.
async fn off_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tonic::Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| tonic::Status::internal(format!("GetFlows filter task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use observer_proto::flow::{Flow, FlowFilter, LostEvent};

    use super::*;
    use observer_proto::time::timestamp;

    fn ring(times: &[i128]) -> Vec<Entry> {
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry {
                seq: i as u64,
                response: Arc::new(GetFlowsResponse {
                    node_name: format!("n{i}"),
                    time: Some(timestamp(t)),
                    response_types: Some(ResponseTypes::Flow(Flow {
                        node_name: format!("n{i}"),
                        ..Default::default()
                    })),
                }),
            })
            .collect()
    }

    fn times(entries: &[Entry]) -> Vec<i128> {
        entries
            .iter()
            .map(|e| event_time(&e.response).unwrap())
            .collect()
    }

    #[test]
    fn number_takes_the_last_or_with_first_the_first() {
        let req = GetFlowsRequest {
            number: 2,
            ..Default::default()
        };
        let q = FlowQuery::parse(&req).unwrap();
        assert_eq!(times(&q.history(ring(&[1, 2, 3]))), [2, 3]);
        let q = FlowQuery::parse(&GetFlowsRequest { first: true, ..req }).unwrap();
        assert_eq!(times(&q.history(ring(&[1, 2, 3]))), [1, 2]);
    }

    /// As Hubble counts: a lost-events record is no flow; one between the
    /// flows kept goes with them.
    #[test]
    fn number_counts_flows_not_lost_event_records() {
        let mut entries = ring(&[1, 2, 4, 5]);
        entries[2] = Entry {
            seq: 2,
            response: Arc::new(GetFlowsResponse {
                time: Some(timestamp(3)),
                response_types: Some(ResponseTypes::LostEvents(LostEvent::default())),
                ..Default::default()
            }),
        };
        let req = GetFlowsRequest {
            number: 2,
            ..Default::default()
        };
        let q = FlowQuery::parse(&req).unwrap();
        assert_eq!(times(&q.history(entries.clone())), [2, 3, 5]);
        let q = FlowQuery::parse(&GetFlowsRequest {
            first: true,
            ..req.clone()
        })
        .unwrap();
        assert_eq!(times(&q.history(entries.clone())), [1, 2]);
        let q = FlowQuery::parse(&GetFlowsRequest { number: 3, ..req }).unwrap();
        assert_eq!(times(&q.history(entries)), [1, 2, 3, 5]);
    }

    #[test]
    fn follow_without_number_or_since_sends_no_history() {
        let q = FlowQuery::parse(&GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .unwrap();
        assert!(q.history(ring(&[1, 2])).is_empty());
        let q = FlowQuery::parse(&GetFlowsRequest {
            follow: true,
            since: Some(timestamp(2)),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(times(&q.history(ring(&[1, 2, 3]))), [2, 3]);
        // hubble's --all --follow: every flow held, then new ones.
        let q = FlowQuery::parse(&GetFlowsRequest {
            follow: true,
            number: u64::MAX,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(times(&q.history(ring(&[1, 2, 3]))), [1, 2, 3]);
    }

    #[test]
    fn since_until_and_filters_select() {
        let q = FlowQuery::parse(&GetFlowsRequest {
            since: Some(timestamp(2)),
            until: Some(timestamp(3)),
            whitelist: vec![FlowFilter {
                node_name: vec!["n2".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(times(&q.history(ring(&[1, 2, 3, 4]))), [3]);
        assert!(q.is_past_until(&ring(&[4])[0].response));
        assert!(!q.is_past_until(&ring(&[3])[0].response));
        let lost_later = GetFlowsResponse {
            time: Some(timestamp(4)),
            response_types: Some(ResponseTypes::LostEvents(LostEvent::default())),
            ..Default::default()
        };
        assert!(
            !q.is_past_until(&lost_later),
            "a loss noticed later ends nothing"
        );
    }

    #[test]
    fn history_stops_when_told_and_the_guard_tells_it_when_dropped() {
        // Set: given up at the first look, nothing picked.
        let q = FlowQuery::parse(&GetFlowsRequest::default()).unwrap();
        let stop = AtomicBool::new(true);
        assert!(q.history_until(ring(&[1, 2, 3]), &stop).is_empty());
        let stop = AtomicBool::new(false);
        assert_eq!(times(&q.history_until(ring(&[1, 2, 3]), &stop)), [1, 2, 3]);
        // Dropped: the guard sets the flag that the blocking work reads.
        let guard = StopOnDrop::default();
        let flag = guard.0.clone();
        assert!(!flag.load(Ordering::Relaxed));
        drop(guard);
        assert!(flag.load(Ordering::Relaxed));
    }

    #[test]
    fn a_lost_event_is_in_a_window_that_its_time_or_its_losses_span_meet() {
        // Reported at 10 (when the loss was found); lost from 4 to 6.
        let lost = |span: Option<(i128, i128)>| GetFlowsResponse {
            time: Some(timestamp(10)),
            response_types: Some(ResponseTypes::LostEvents(LostEvent {
                num_events_lost: 3,
                first: span.map(|s| timestamp(s.0)),
                last: span.map(|s| timestamp(s.1)),
                ..Default::default()
            })),
            ..Default::default()
        };
        let window = |since: i128, until: Option<i128>| {
            FlowQuery::parse(&GetFlowsRequest {
                since: Some(timestamp(since)),
                until: until.map(timestamp),
                ..Default::default()
            })
            .unwrap()
        };
        let spanned = lost(Some((4, 6)));
        for (since, until, selected) in [
            (1, Some(3), false),
            (1, Some(4), true),
            (5, Some(5), true),
            (6, Some(8), true),
            (7, Some(9), false),
            (7, None, true), // its time
            (10, Some(10), true),
            (11, None, false),
        ] {
            assert_eq!(
                window(since, until).selects(&spanned),
                selected,
                "{since}..{until:?}"
            );
        }
        // Without a span: its time alone.
        assert!(!window(4, Some(6)).selects(&lost(None)));
        assert!(window(9, Some(10)).selects(&lost(None)));
    }

    #[test]
    fn bad_requests_say_why() {
        let both = GetFlowsRequest {
            first: true,
            follow: true,
            ..Default::default()
        };
        assert_eq!(
            FlowQuery::parse(&both).unwrap_err(),
            RequestError::FirstWithFollow
        );
        let window = GetFlowsRequest {
            since: Some(timestamp(5)),
            until: Some(timestamp(4)),
            ..Default::default()
        };
        assert_eq!(
            FlowQuery::parse(&window).unwrap_err(),
            RequestError::SinceAfterUntil
        );
        for nanos in [-5, 1_000_000_000] {
            let odd = GetFlowsRequest {
                until: Some(prost_types::Timestamp { seconds: 9, nanos }),
                ..Default::default()
            };
            assert_eq!(
                FlowQuery::parse(&odd).unwrap_err().to_string(),
                format!("until: nanos {nanos} is out of range (0 to 999999999)")
            );
        }
        // Past the year 9999 was taken: an empty answer, or a follow that
        // waited for ever.
        let far = GetFlowsRequest {
            since: Some(prost_types::Timestamp {
                seconds: 1_000_000_000_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        assert_eq!(
            FlowQuery::parse(&far).unwrap_err().to_string(),
            "since: 1000000000000000 seconds is outside the years 0001 to 9999"
        );
        let bad_ip = GetFlowsRequest {
            whitelist: vec![FlowFilter {
                source_ip: vec!["10.0.0.300".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mask = GetFlowsRequest {
            field_mask: Some(prost_types::FieldMask {
                paths: vec!["node_name".into(), "IP.src".into()],
            }),
            ..Default::default()
        };
        let status = tonic::Status::from(FlowQuery::parse(&mask).unwrap_err());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("\"IP.src\""), "{status:?}");
        let err = FlowQuery::parse(&bad_ip).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid flow filter: source_ip: invalid IP"),
            "{err}"
        );
        // The filter's error is in the message and not a source as well,
        // so a printed chain of causes says it once.
        assert!(std::error::Error::source(&err).is_none());
    }
}
