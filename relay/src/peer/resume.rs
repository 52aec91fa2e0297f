//! Picking up a peer's stream again after a reconnect without repeating flows.
//!
//! A new session asks for the peer's flows since the last one seen minus an
//! overlap (a node's flow times are not strictly ordered), and drops what was
//! already taken: flows by UUID (a bounded set of recent ones), other records by
//! time. The relay's first session with a peer starts where the peer's flows
//! in history end ([`Resume::seed`]), so a restarted relay does not store the
//! flows a peer still buffers a second time.

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

    /// Starts from what history holds of the peer: its newest flow's time
    /// and the UUIDs of those near it (`None`: nothing, start from the
    /// peer's whole ring).
    pub fn seed(&mut self, tail: Option<NodeTail>) {
        self.seeded = true;
        if let Some(tail) = tail {
            self.last_time = Some(i128::from(tail.last));
            for uuid in &tail.uuids {
                self.remember(uuid);
            }
        }
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
    fn a_seeded_first_session_starts_where_history_ends() {
        let mut r = Resume::default();
        assert!(r.wants_seed());
        r.seed(Some(NodeTail {
            last: 6_000_000_000,
            uuids: vec!["a".into(), "b".into()],
        }));
        assert!(!r.wants_seed());
        assert_eq!(
            r.since(Duration::from_secs(1)),
            Some(timestamp(5_000_000_000))
        );
        r.start_session();
        // What history has, then what it missed within the overlap, then new.
        assert!(!r.accept(&flow("a", 5_200_000_000)));
        assert!(!r.accept(&flow("b", 6_000_000_000)));
        assert!(
            !r.accept(&lost(5_900_000_000)),
            "a loss from before history ends"
        );
        assert!(r.accept(&flow("x", 5_800_000_000)), "not in history");
        assert!(r.accept(&flow("c", 6_100_000_000)));
        assert!(r.accept(&lost(6_200_000_000)));
    }

    #[test]
    fn a_seed_without_history_asks_for_the_whole_ring() {
        let mut r = Resume::default();
        r.seed(None);
        assert!(!r.wants_seed());
        assert_eq!(r.since(Duration::from_secs(1)), None);
        r.start_session();
        assert!(r.accept(&lost(1_000)));
        assert!(r.accept(&flow("a", 2_000)));
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
