//! Picking up a peer's stream again after a reconnect without repeating flows.
//!
//! A new session asks for the peer's flows since the last one seen minus an
//! overlap (a node's flow times are not strictly ordered), and drops what was
//! already taken: flows by UUID (a bounded set of recent ones), other records by
//! time. A restarted relay's ring starts with history's newest flows, and it
//! knows where each peer's flows in history end ([`Resume::seed`]): of the
//! peer's whole ring, what history holds is not taken again
//! ([`Resume::in_history`]).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use prost_types::Timestamp;

use observer_proto::time::{event_time, timestamp};

use crate::flow_numbers::run_and_number;
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
    /// Whether flows an earlier relay run recorded lost may still come
    /// (`History::retaken`): from a seed that knew what history holds until
    /// the first flow that cannot, over every session.
    pub giving_back: bool,
    /// What history held of the peer when the relay started.
    stored: Option<Stored>,
    /// The highest flow-probe flow number taken from the peer.
    numbered: Option<Numbered>,
    /// The probe run of this session's flows, while they all have one: a
    /// flow-probe's session is one run in number order. A peer that merges
    /// several (a relay) sends runs interleaved and each in time order,
    /// whose numbers say nothing of losses.
    session_run: SessionRun,
    /// Whether the peer's last session was one flow-probe run (a probe, not
    /// a relay merging several): a later session opening on another run
    /// means the probe restarted.
    probe_peer: bool,
}

/// What this session's flows said of their runs so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum SessionRun {
    #[default]
    NoneYet,
    One(u64),
    /// Several runs, or a flow without a probe's number.
    Mixed,
}

/// A flow-probe flow's place in its probe's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Numbered {
    run: u64,
    number: u64,
    time: i128,
}

/// Flows of a peer the relay never read: after the one numbered highest so
/// far, before the one now taken. Between two sessions its buffer dropped
/// them; within one, the relay fell so far behind that the peer's queue to
/// it let them go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub flows: u64,
    /// The time of the last flow taken before the gap and of the first after.
    pub after: i128,
    pub before: i128,
}

fn numbered(r: &GetFlowsResponse) -> Option<Numbered> {
    let Some(ResponseTypes::Flow(f)) = &r.response_types else {
        return None;
    };
    let (run, number) = run_and_number(&f.uuid)?;
    Some(Numbered {
        run,
        number,
        time: event_time(r)?,
    })
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
        if let Some(t) = &tail
            && let Some((run, _)) = t.uuids.last().and_then(|u| run_and_number(u))
        {
            // The highest number of the newest flow's run near history's end.
            self.numbered = t
                .uuids
                .iter()
                .filter_map(|u| run_and_number(u))
                .filter(|(r, _)| *r == run)
                .map(|(_, number)| number)
                .max()
                .map(|number| Numbered {
                    run,
                    number,
                    time: i128::from(t.last),
                });
        }
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
        match self.session_run {
            SessionRun::One(_) => self.probe_peer = true,
            SessionRun::Mixed => self.probe_peer = false,
            SessionRun::NoneYet => {}
        }
        self.session_run = SessionRun::NoneYet;
    }

    /// For each flow, before it is taken: the flows of the same probe
    /// run never read, when its number is past the next one expected. A
    /// probe keeps its flows in number order and a session reads them in
    /// that order, so a number skipped is a flow lost (a flow a session's
    /// `since` left out too: it never reached the relay). Not once the
    /// session has mixed runs (the peer merges several probes). A session
    /// of a probe that opens on a new run (it restarted since the last one)
    /// lacks that run's flows before its first: the new probe's buffer let
    /// them go before the relay came back (a kernel backlog fills it fast).
    #[cfg(test)]
    fn gap(&self, r: &GetFlowsResponse) -> Option<Gap> {
        self.gap_to(numbered(r))
    }

    /// Whether `r` is new (remembering it), and the gap before it (see
    /// `gap`), its UUID read once: every flow of a session goes through here.
    pub fn take(&mut self, r: &GetFlowsResponse) -> (bool, Option<Gap>) {
        let n = numbered(r);
        let gap = self.gap_to(n);
        (self.accept_numbered(r, n), gap)
    }

    fn gap_to(&self, now: Option<Numbered>) -> Option<Gap> {
        if self.session_run == SessionRun::Mixed {
            return None;
        }
        let before = self.numbered?;
        let now = now?;
        if now.run == before.run {
            return (now.number > before.number + 1).then(|| Gap {
                flows: now.number - before.number - 1,
                after: before.time,
                before: now.time,
            });
        }
        // A run's numbers start at 1 (flow-probe's FlowIds).
        (self.probe_peer && self.session_run == SessionRun::NoneYet && now.number > 1).then(|| {
            Gap {
                flows: now.number - 1,
                after: before.time.min(now.time - 1),
                before: now.time,
            }
        })
    }

    /// Whether this session's flows so far are one flow-probe run: its
    /// gaps are counted from the numbers.
    pub fn counts_gaps(&self) -> bool {
        matches!(self.session_run, SessionRun::One(_))
    }

    /// Whether `r` is new (and remembers it).
    #[cfg(test)]
    fn accept(&mut self, r: &GetFlowsResponse) -> bool {
        self.accept_numbered(r, numbered(r))
    }

    fn accept_numbered(&mut self, r: &GetFlowsResponse, n: Option<Numbered>) -> bool {
        let time = event_time(r);
        let new = match &r.response_types {
            Some(ResponseTypes::Flow(f)) if !f.uuid.is_empty() => self.remember(&f.uuid),
            _ => !(self.floor.is_some() && time.is_some_and(|t| Some(t) <= self.floor)),
        };
        if new && let Some(t) = time {
            self.last_time = Some(self.last_time.map_or(t, |l| l.max(t)));
        }
        if matches!(r.response_types, Some(ResponseTypes::Flow(_))) {
            let run = n.map(|n| n.run);
            self.session_run = match (self.session_run, run) {
                (SessionRun::NoneYet, Some(run)) => SessionRun::One(run),
                (SessionRun::One(one), Some(run)) if one == run => SessionRun::One(one),
                _ => SessionRun::Mixed,
            };
        }
        if new && let Some(n) = n {
            // A new run (the probe restarted) replaces the old one's count:
            // at once in a probe's session, which is one run; by time where
            // runs are interleaved.
            let newer = self.numbered.is_none_or(|o| {
                if o.run == n.run {
                    n.number > o.number
                } else {
                    self.session_run == SessionRun::One(n.run) || n.time >= o.time
                }
            });
            if newer {
                self.numbered = Some(n);
            }
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
        // The whole ring is asked for (the gap check wants its first flow).
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

    /// A flow-probe UUID: run `run`, flow `n`.
    fn probe_uuid(run: u64, n: u64) -> String {
        let hi = (run & !0xf000) | 0x8000;
        let lo = n | (0b10 << 62);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }

    #[test]
    fn a_flow_past_the_next_number_reports_the_gap() {
        let run = 0x0abc_0000_0000_0123;
        let f = |n: u64, t: i128| flow(&probe_uuid(run, n), t);
        let mut r = Resume::default();
        r.start_session();
        assert_eq!(r.gap(&f(1, 1_000)), None, "nothing before");
        for n in 1..=20 {
            assert_eq!(r.gap(&f(n, 1_000 * n as i128)), None);
            assert!(r.accept(&f(n, 1_000 * n as i128)));
        }
        // The next session's first flow is 31: 21..=30 were lost.
        r.start_session();
        assert_eq!(r.gap(&lost(25_000)), None, "only flows count");
        assert_eq!(
            r.gap(&f(31, 31_000)),
            Some(Gap {
                flows: 10,
                after: 20_000,
                before: 31_000
            })
        );
        assert!(r.accept(&f(31, 31_000)));
        // Within the session: 32..=39 never came.
        assert_eq!(r.gap(&f(32, 32_000)), None, "the next one");
        assert_eq!(
            r.gap(&f(40, 40_000)).map(|g| (g.flows, g.after)),
            Some((8, 31_000))
        );
        assert!(r.accept(&f(40, 40_000)));
        // The ring again from 25 (overlap): no gap.
        r.start_session();
        assert_eq!(r.gap(&f(25, 25_000)), None);
        assert!(!r.accept(&f(31, 31_000)), "taken before");
        assert_eq!(r.gap(&f(41, 41_000)), None);
        assert!(r.accept(&f(41, 41_000)));
        // The probe restarted: its new run's first 899 flows left its
        // buffer before this session (seen in the lab QA: a backlog of
        // 12,000 events in the kernel's ring, a buffer of 4,095).
        r.start_session();
        let restarted = |n: u64, t: i128| flow(&probe_uuid(run + 1, n), t);
        assert_eq!(
            r.gap(&restarted(900, 50_000)),
            Some(Gap {
                flows: 899,
                after: 41_000,
                before: 50_000
            })
        );
        assert!(r.accept(&restarted(900, 50_000)));
        assert_eq!(r.gap(&restarted(901, 50_100)), None, "told once");
        assert!(r.accept(&restarted(901, 50_100)));
        // A new run's first flow older than the last run's newest: the
        // gap's span still ends before it.
        r.start_session();
        assert_eq!(
            r.gap(&flow(&probe_uuid(run + 2, 5), 45_000)),
            Some(Gap {
                flows: 4,
                after: 44_999,
                before: 45_000
            })
        );
        assert!(r.accept(&flow(&probe_uuid(run + 2, 5), 45_000)));
        assert_eq!(
            r.gap(&flow(&probe_uuid(run + 2, 7), 45_100))
                .map(|g| g.flows),
            Some(1)
        );
        // From its start: nothing lost.
        r.start_session();
        assert_eq!(r.gap(&flow(&probe_uuid(run + 3, 1), 60_000)), None);
        // Seeded from history: its newest numbered flow is the reference.
        let mut seeded = Resume::default();
        seeded.seed(
            Some(NodeTail {
                last: 20_000,
                uuids: vec![probe_uuid(run, 19), probe_uuid(run, 20)],
            }),
            Duration::from_secs(1),
        );
        seeded.start_session();
        assert_eq!(seeded.gap(&f(23, 23_000)).map(|g| g.flows), Some(2));
    }

    /// A peer that merges several probes (a relay) sends their runs
    /// interleaved, each in time order: no gap is counted from them.
    #[test]
    fn a_session_of_several_runs_counts_no_gaps() {
        let (a, b) = (0x0a00_0000_0000_0001, 0x0b00_0000_0000_0001);
        let f = |run: u64, n: u64, t: i128| flow(&probe_uuid(run, n), t);
        let mut r = Resume::default();
        r.start_session();
        assert!(r.accept(&f(a, 1, 1_000)));
        assert!(r.counts_gaps());
        assert!(r.accept(&f(b, 1, 1_100)));
        assert!(!r.counts_gaps());
        // a's 7 before its 6 (their times the other way round), then a gap.
        assert_eq!(r.gap(&f(a, 7, 1_200)), None);
        assert!(r.accept(&f(a, 7, 1_200)));
        assert_eq!(r.gap(&f(a, 20, 1_300)), None);
        // Nor when its next session opens on a run not seen before.
        r.start_session();
        assert_eq!(r.gap(&f(0x0c00_0000_0000_0001, 50, 1_400)), None);
        // A flow without a probe's number mixes a session too.
        r.start_session();
        assert!(r.accept(&flow("not-a-probe-uuid", 2_000)));
        assert!(!r.counts_gaps());
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
