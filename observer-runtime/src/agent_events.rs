//! Agent events (`GetAgentEvents`): what changed in a flow-probe (its start,
//! policies, endpoints, ipcache entries, services), kept in a bounded log
//! with a broadcast to followers ([`AgentEventLog`]), and a request's checks
//! and selection ([`AgentEventQuery`]: number, first, follow, since/until, as
//! `GetFlows` has them), which flow-probe applies to its log and the relay
//! to what its nodes answer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use observer_proto::flow::AgentEvent;
use observer_proto::observer::{GetAgentEventsRequest, GetAgentEventsResponse};
use observer_proto::time::{nanos, now_nanos, timestamp};
use tokio::sync::broadcast;

use crate::query::RequestError;

/// Events a flow-probe keeps: a start lists every endpoint and address once,
/// so a few thousand, as Hubble's ring holds its agent events among flows.
pub const CAPACITY: usize = 4096;

/// How far a follower may fall behind before it misses events.
const FOLLOW_QUEUE: usize = 1024;

/// An event as served: shared by the log and every answer.
pub type Served = Arc<GetAgentEventsResponse>;

/// The recent agent events of one node, oldest first, and the live ones.
pub struct AgentEventLog {
    node_name: String,
    capacity: usize,
    inner: Mutex<Inner>,
    live: broadcast::Sender<Served>,
}

struct Inner {
    events: VecDeque<Served>,
    /// The time of the newest event: the next is stamped no earlier, so the
    /// log stays in time order when the clock steps back.
    newest: i128,
}

impl AgentEventLog {
    /// A log of at most `capacity` events of node `node_name`.
    pub fn new(node_name: impl Into<String>, capacity: usize) -> Arc<Self> {
        Arc::new(AgentEventLog {
            node_name: node_name.into(),
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                newest: i128::MIN,
            }),
            live: broadcast::channel(FOLLOW_QUEUE).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `events`, now, in order; the oldest go past capacity.
    pub fn push(&self, events: impl IntoIterator<Item = AgentEvent>) {
        let mut inner = self.lock();
        for event in events {
            let time = now_nanos().max(inner.newest);
            inner.newest = time;
            let served = Arc::new(GetAgentEventsResponse {
                agent_event: Some(event),
                node_name: self.node_name.clone(),
                time: Some(timestamp(time)),
            });
            if inner.events.len() == self.capacity {
                inner.events.pop_front();
            }
            inner.events.push_back(served.clone());
            // No follower: nothing to tell.
            let _ = self.live.send(served);
        }
    }

    /// The events kept, oldest first.
    pub fn snapshot(&self) -> Vec<Served> {
        self.lock().events.iter().cloned().collect()
    }

    /// The events kept and a receiver of every later one, atomically.
    pub fn snapshot_and_follow(&self) -> (Vec<Served>, broadcast::Receiver<Served>) {
        let inner = self.lock();
        let rx = self.live.subscribe();
        (inner.events.iter().cloned().collect(), rx)
    }
}

/// A `GetAgentEvents` request, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentEventQuery {
    pub number: usize,
    pub first: bool,
    pub follow: bool,
    pub since: Option<i128>,
    pub until: Option<i128>,
}

impl AgentEventQuery {
    /// Refuses what `GetFlows` refuses: `first` with `follow`, a timestamp
    /// protobuf does not allow, `since` after `until`.
    pub fn parse(req: &GetAgentEventsRequest) -> Result<Self, RequestError> {
        if req.first && req.follow {
            return Err(RequestError::FirstWithFollow);
        }
        let (since, until) = crate::query::window(req.since.as_ref(), req.until.as_ref())?;
        Ok(AgentEventQuery {
            number: usize::try_from(req.number).unwrap_or(usize::MAX),
            first: req.first,
            follow: req.follow,
            since,
            until,
        })
    }

    /// Whether `r` lies within since..=until (an event without a time does).
    pub fn selects(&self, r: &GetAgentEventsResponse) -> bool {
        let Some(t) = r.time.as_ref().map(nanos) else {
            return true;
        };
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }

    /// Whether a live event ends a follow: it is past `until`.
    pub fn is_past_until(&self, r: &GetAgentEventsResponse) -> bool {
        self.until
            .zip(r.time.as_ref().map(nanos))
            .is_some_and(|(u, t)| t > u)
    }

    /// Resolves once the wall clock is `grace` past `until` (never without
    /// one): a follow ends then, even when no event comes. A probe stamps
    /// its events as it logs them (no grace); a relay gives its nodes' the
    /// time it holds them to put them in order.
    pub async fn until_passed(&self, grace: std::time::Duration) {
        crate::query::clock_past(self.until, grace).await
    }

    /// The past events the request asks for, of `events` in time order: all
    /// within the window, or its last `number` (its first, with `first`); a
    /// follow without `number` or `since` starts with none, as `GetFlows`.
    pub fn history(&self, events: Vec<Served>) -> Vec<Served> {
        if self.follow && self.number == 0 && self.since.is_none() {
            return Vec::new();
        }
        let mut picked: Vec<Served> = events.into_iter().filter(|r| self.selects(r)).collect();
        if self.number != 0 && picked.len() > self.number {
            if self.first {
                picked.truncate(self.number);
            } else {
                picked.drain(..picked.len() - self.number);
            }
        }
        picked
    }

    /// What the relay asks each node: this request again (of all the
    /// nodes' answers, the relay keeps `number`).
    pub fn request(&self) -> GetAgentEventsRequest {
        GetAgentEventsRequest {
            number: u64::try_from(self.number).unwrap_or(u64::MAX),
            first: self.first,
            follow: self.follow,
            since: self.since.map(timestamp),
            until: self.until.map(timestamp),
        }
    }
}

#[cfg(test)]
mod tests {
    use observer_proto::flow::{AgentEventType, TimeNotification};

    use super::*;

    fn at(t: i128) -> Served {
        Arc::new(GetAgentEventsResponse {
            agent_event: Some(AgentEvent {
                r#type: AgentEventType::AgentStarted as i32,
                notification: None,
            }),
            node_name: "n1".into(),
            time: Some(timestamp(t)),
        })
    }

    fn times(picked: &[Served]) -> Vec<i128> {
        picked
            .iter()
            .map(|r| nanos(r.time.as_ref().unwrap()))
            .collect()
    }

    fn query(req: GetAgentEventsRequest) -> AgentEventQuery {
        AgentEventQuery::parse(&req).unwrap()
    }

    #[test]
    fn number_first_follow_and_the_window_pick_as_get_flows_does() {
        let all = || (1..=6).map(at).collect::<Vec<_>>();
        let req = GetAgentEventsRequest::default();
        assert_eq!(times(&query(req).history(all())), [1, 2, 3, 4, 5, 6]);
        let last2 = GetAgentEventsRequest { number: 2, ..req };
        assert_eq!(times(&query(last2).history(all())), [5, 6]);
        let first2 = GetAgentEventsRequest {
            first: true,
            ..last2
        };
        assert_eq!(times(&query(first2).history(all())), [1, 2]);
        let window = GetAgentEventsRequest {
            since: Some(timestamp(2)),
            until: Some(timestamp(4)),
            ..req
        };
        let q = query(window);
        assert_eq!(times(&q.history(all())), [2, 3, 4]);
        assert!(q.is_past_until(&at(5)) && !q.is_past_until(&at(4)));
        let follow = GetAgentEventsRequest {
            follow: true,
            ..req
        };
        assert!(query(follow).history(all()).is_empty());
        let follow_last = GetAgentEventsRequest {
            number: 1,
            ..follow
        };
        assert_eq!(times(&query(follow_last).history(all())), [6]);
    }

    #[test]
    fn bad_requests_are_refused_by_name() {
        let refused =
            |req: GetAgentEventsRequest| AgentEventQuery::parse(&req).unwrap_err().to_string();
        assert_eq!(
            refused(GetAgentEventsRequest {
                first: true,
                follow: true,
                ..Default::default()
            }),
            "first cannot be combined with follow"
        );
        assert_eq!(
            refused(GetAgentEventsRequest {
                since: Some(timestamp(5)),
                until: Some(timestamp(4)),
                ..Default::default()
            }),
            "since is after until"
        );
        let mut bad = timestamp(5);
        bad.nanos = -1;
        assert_eq!(
            refused(GetAgentEventsRequest {
                until: Some(bad),
                ..Default::default()
            }),
            "until: nanos -1 is out of range (0 to 999999999)"
        );
    }

    #[tokio::test]
    async fn the_log_keeps_the_newest_in_order_and_tells_followers() {
        let log = AgentEventLog::new("n1", 3);
        let started = |t: i128| AgentEvent {
            r#type: AgentEventType::AgentStarted as i32,
            notification: Some(observer_proto::flow::agent_event::Notification::AgentStart(
                TimeNotification {
                    time: Some(timestamp(t)),
                },
            )),
        };
        log.push((1..=2).map(started));
        let (kept, mut live) = log.snapshot_and_follow();
        assert_eq!(kept.len(), 2);
        log.push((3..=4).map(started));
        let start_of = |r: &Served| match &r.agent_event.as_ref().unwrap().notification {
            Some(observer_proto::flow::agent_event::Notification::AgentStart(t)) => {
                nanos(t.time.as_ref().unwrap())
            }
            _ => panic!("not a start: {r:?}"),
        };
        let kept: Vec<i128> = log.snapshot().iter().map(start_of).collect();
        assert_eq!(kept, [2, 3, 4], "the capacity keeps the newest three");
        assert_eq!(start_of(&live.recv().await.unwrap()), 3);
        assert_eq!(start_of(&live.recv().await.unwrap()), 4);
        let stamps = times(&log.snapshot());
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
        assert!(log.snapshot().iter().all(|r| r.node_name == "n1"));
    }
}
