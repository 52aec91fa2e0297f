//! Picking up a peer's stream again after a reconnect without repeating flows.
//!
//! A new session asks for the peer's flows since the last one seen minus an
//! overlap (a node's flow times are not strictly ordered), and drops what was
//! already taken: flows by UUID (a bounded set of recent ones), other records by
//! time. A restarted relay still asks for the peer's whole ring (its own ring
//! starts empty), but knows where the peer's flows in history end
//! ([`Resume::seed`]): what history holds goes to the ring and not to history
//! again ([`Resume::in_history`]).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use prost_types::Timestamp;

use observer_proto::time::{event_time, timestamp};

use crate::history::tail::NodeTail;

/// Flow UUIDs remembered per peer.
const REMEMBERED: usize = 8192;

/// Where the previous sessions with a peer ended.
#[derive(Debug, Default)]
pub struct Resume {
    uuids: HashSet<String>,
    order: VecDeque<String>,
    /// Latest event time taken from the peer.
    last_time: Option<i128>,
    /// `last_time` when the current session started.
    floor: Option<i128>,
    /// Whether [`Self::seed`] was called.
    seeded: bool,
    /// What history held of the peer when the relay started.
    stored: Option<Stored>,
}

/// A peer's flows in history: every one before `before`, and those of
/// `uuids` from then on.
#[derive(Debug)]
struct Stored {
    before: i128,
    uuids: HashSet<String>,
}

impl Resume {
    /// The `since` of the next session's request: nothing on the first.
    pub fn since(&self, overlap: Duration) -> Option<Timestamp> {
        self.last_time
            .map(|t| timestamp(t - overlap.as_nanos() as i128))
    }

    /// Whether the first session is still to come and history was not asked.
    pub fn wants_seed(&self) -> bool {
        !self.seeded && self.last_time.is_none()
    }

    /// What history holds of the peer: its newest flow's time and the UUIDs
    /// of those within `overlap` of it (`None`: nothing).
    pub fn seed(&mut self, tail: Option<NodeTail>, overlap: Duration) {
        self.seeded = true;
        self.stored = tail.map(|t| Stored {
            before: i128::from(t.last) - overlap.as_nanos() as i128,
            uuids: t.uuids.into_iter().collect(),
        });
    }

    /// Whether history held `r` (a flow) when the relay started.
    pub fn in_history(&self, r: &GetFlowsResponse) -> bool {
        let Some(stored) = &self.stored else {
            return false;
        };
        if let Some(ResponseTypes::Flow(f)) = &r.response_types
            && stored.uuids.contains(&f.uuid)
        {
            return true;
        }
        event_time(r).is_some_and(|t| t < stored.before)
    }

    /// A new session starts now.
    pub fn start_session(&mut self) {
        self.floor = self.last_time;
    }

    /// Whether `r` is new (and remembers it).
    pub fn accept(&mut self, r: &GetFlowsResponse) -> bool {
        let time = event_time(r);
        let new = match &r.response_types {
            Some(ResponseTypes::Flow(f)) if !f.uuid.is_empty() => self.remember(&f.uuid),
            _ => !(self.floor.is_some() && time.is_some_and(|t| Some(t) <= self.floor)),
        };
        if new && let Some(t) = time {
            self.last_time = Some(self.last_time.map_or(t, |l| l.max(t)));
        }
        new
    }

    fn remember(&mut self, uuid: &str) -> bool {
        if self.uuids.contains(uuid) {
            return false;
        }
        if self.order.len() == REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.uuids.remove(&old);
        }
        self.uuids.insert(uuid.to_string());
        self.order.push_back(uuid.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use observer_proto::flow::{Flow, LostEvent};

    use super::*;

    fn flow(uuid: &str, t: i128) -> GetFlowsResponse {
        GetFlowsResponse {
            time: Some(timestamp(t)),
            response_types: Some(ResponseTypes::Flow(Flow {
                uuid: uuid.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn lost(t: i128) -> GetFlowsResponse {
        GetFlowsResponse {
            time: Some(timestamp(t)),
            response_types: Some(ResponseTypes::LostEvents(LostEvent::default())),
            ..Default::default()
        }
    }

    #[test]
    fn after_a_restart_what_history_holds_is_told_apart() {
        let mut r = Resume::default();
        assert!(r.wants_seed());
        r.seed(
            Some(NodeTail {
                last: 6_000_000_000,
                uuids: vec!["a".into(), "b".into()],
            }),
            Duration::from_secs(1),
        );
        assert!(!r.wants_seed());
        // The whole ring is asked for: the relay's own ring starts empty.
        assert_eq!(r.since(Duration::from_secs(1)), None);
        r.start_session();
        let old = flow("o", 4_999_999_999);
        let (a, b) = (flow("a", 5_200_000_000), flow("b", 6_000_000_000));
        let missed = flow("x", 5_800_000_000);
        let new = flow("c", 6_100_000_000);
        for f in [&old, &a, &b, &missed, &new] {
            assert!(r.accept(f), "new to this relay: {f:?}");
        }
        assert!(r.in_history(&old), "before the overlap");
        assert!(r.in_history(&a) && r.in_history(&b), "by UUID");
        assert!(!r.in_history(&missed), "within the overlap, not stored");
        assert!(!r.in_history(&new));
        // A reconnect drops them all as before.
        r.start_session();
        assert!(!r.accept(&a));
        assert!(!r.accept(&missed));
    }

    #[test]
    fn without_history_nothing_is_in_it() {
        let mut r = Resume::default();
        r.seed(None, Duration::from_secs(1));
        assert!(!r.wants_seed());
        assert_eq!(r.since(Duration::from_secs(1)), None);
        r.start_session();
        assert!(r.accept(&flow("a", 2_000)));
        assert!(!r.in_history(&flow("a", 2_000)));
    }

    #[test]
    fn a_reconnect_asks_with_overlap_and_drops_what_it_already_had() {
        let mut r = Resume::default();
        assert_eq!(r.since(Duration::from_secs(1)), None);
        r.start_session();
        assert!(r.accept(&flow("a", 5_000_000_000)));
        assert!(r.accept(&lost(5_500_000_000)));
        assert!(r.accept(&flow("b", 6_000_000_000)));
        assert_eq!(
            r.since(Duration::from_secs(1)),
            Some(timestamp(5_000_000_000))
        );
        r.start_session();
        // The peer's history again, then something new.
        assert!(!r.accept(&flow("a", 5_000_000_000)));
        assert!(!r.accept(&lost(5_500_000_000)));
        assert!(!r.accept(&flow("b", 6_000_000_000)));
        assert!(r.accept(&flow("c", 5_900_000_000)), "new though older");
        assert!(r.accept(&lost(6_100_000_000)));
    }
}
