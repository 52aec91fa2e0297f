//! Datapath hops: where a flow was seen (a trace observation point, or another
//! event kind such as a drop), and an ordered, counted list of them per edge.
//!
//! Hops are ordered by their place on the path from the source endpoint to the
//! destination endpoint ([`HopKey::rank`]), then by when they were first seen.
//! Event kinds other than traces are keyed by monitor type and sub-type:
//! socket translation (`trace-sock`, at `connect()`, before the first packet
//! leaves the endpoint) comes first, a policy verdict (which the datapath
//! reports at the point it judged the packet) just before `to-endpoint`, and
//! a drop last: nothing sees a packet after it (a kernel drop after the
//! packet's delivery, or a denial after its verdict).

use observer_proto::flow::{Flow, TraceObservationPoint};

/// Cilium monitor message types.
const TYPE_DROP: i32 = 1;
const TYPE_TRACE: i32 = 4;
const TYPE_POLICY_VERDICT: i32 = 5;
const TYPE_TRACE_SOCK: i32 = 7;

/// One kind of place on the datapath.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HopKey {
    /// A trace event at an observation point.
    Point(TraceObservationPoint),
    /// Any other event, by monitor message type and sub-type.
    Event { r#type: i32, sub_type: i32 },
}

impl HopKey {
    /// Where `flow` was seen: a policy verdict, else its observation point,
    /// else its event type.
    pub fn of(flow: &Flow) -> Option<HopKey> {
        if let Some(t) = &flow.event_type
            && t.r#type == TYPE_POLICY_VERDICT
        {
            return Some(HopKey::Event {
                r#type: TYPE_POLICY_VERDICT,
                sub_type: t.sub_type,
            });
        }
        match TraceObservationPoint::try_from(flow.trace_observation_point) {
            Ok(TraceObservationPoint::UnknownPoint) | Err(_) => {}
            Ok(p) => return Some(HopKey::Point(p)),
        }
        let t = flow.event_type.as_ref()?;
        // A drop's sub-type is its reason, which the edge counts separately;
        // a socket translation's is its point, one hop all the same.
        let sub_type = if matches!(t.r#type, TYPE_DROP | TYPE_TRACE_SOCK) {
            0
        } else {
            t.sub_type
        };
        Some(HopKey::Event {
            r#type: t.r#type,
            sub_type,
        })
    }

    /// Position on the path from source to destination; smaller is earlier.
    pub fn rank(self) -> u8 {
        use TraceObservationPoint as P;
        match self {
            HopKey::Event {
                r#type: TYPE_TRACE_SOCK,
                ..
            } => 0,
            HopKey::Event {
                r#type: TYPE_POLICY_VERDICT,
                ..
            } => 80,
            HopKey::Event {
                r#type: TYPE_DROP, ..
            } => 95,
            HopKey::Point(p) => match p {
                P::FromEndpoint => 10,
                P::ToProxy => 12,
                P::FromProxy => 13,
                P::ToStack => 20,
                P::FromStack => 21,
                P::ToHost => 22,
                P::FromHost => 23,
                P::ToCrypto => 28,
                P::ToOverlay => 30,
                P::ToNetwork => 31,
                P::FromNetwork => 40,
                P::FromOverlay => 41,
                P::FromCrypto => 42,
                P::ToEndpoint => 90,
                P::UnknownPoint => 50,
            },
            HopKey::Event { .. } => 50,
        }
    }

    /// `from-endpoint`, `drop`, `policy-verdict:2`, ...
    pub fn name(self) -> String {
        match self {
            HopKey::Point(p) => point_name(p).to_string(),
            HopKey::Event { r#type, sub_type } => {
                let base = match r#type {
                    TYPE_DROP => "drop".to_string(),
                    TYPE_TRACE => "trace".to_string(),
                    TYPE_POLICY_VERDICT => "policy-verdict".to_string(),
                    TYPE_TRACE_SOCK => "trace-sock".to_string(),
                    n => format!("type-{n}"),
                };
                if sub_type == 0 {
                    base
                } else {
                    format!("{base}:{sub_type}")
                }
            }
        }
    }
}

pub use observer_proto::names::point_name;

/// One hop of an edge: how many of its flows were seen there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub key: HopKey,
    pub count: u64,
    /// Unix time in nanoseconds of the first flow seen there.
    pub first_seen_ns: i128,
}

/// The hops of an edge, in datapath order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hops(Vec<Hop>);

impl Hops {
    /// Counts one flow seen at `key` at time `t_ns`.
    pub fn record(&mut self, key: HopKey, t_ns: i128) {
        if let Some(h) = self.0.iter_mut().find(|h| h.key == key) {
            h.count += 1;
            h.first_seen_ns = h.first_seen_ns.min(t_ns);
        } else {
            self.0.push(Hop {
                key,
                count: 1,
                first_seen_ns: t_ns,
            });
        }
        self.0
            .sort_by_key(|h| (h.key.rank(), h.first_seen_ns, h.key));
    }

    pub fn iter(&self) -> impl Iterator<Item = &Hop> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `from-endpoint (3) -> to-endpoint (3)`.
    pub fn path(&self) -> String {
        self.0
            .iter()
            .map(|h| format!("{} ({})", h.key.name(), h.count))
            .collect::<Vec<_>>()
            .join(" -> ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::flow::CiliumEventType;

    #[test]
    fn hops_follow_the_datapath_not_arrival_order() {
        let mut h = Hops::default();
        h.record(HopKey::Point(TraceObservationPoint::ToEndpoint), 5);
        h.record(
            HopKey::Event {
                r#type: TYPE_POLICY_VERDICT,
                sub_type: 1,
            },
            9,
        );
        h.record(HopKey::Point(TraceObservationPoint::FromEndpoint), 7);
        h.record(HopKey::Point(TraceObservationPoint::ToEndpoint), 8);
        assert_eq!(
            h.path(),
            "from-endpoint (1) -> policy-verdict:1 (1) -> to-endpoint (2)"
        );
    }

    #[test]
    fn key_is_the_point_else_the_event_type() {
        let mut f = Flow {
            trace_observation_point: TraceObservationPoint::FromNetwork as i32,
            ..Default::default()
        };
        assert_eq!(
            HopKey::of(&f),
            Some(HopKey::Point(TraceObservationPoint::FromNetwork))
        );
        f.trace_observation_point = 0;
        assert_eq!(HopKey::of(&f), None);
        f.event_type = Some(CiliumEventType {
            r#type: TYPE_DROP,
            sub_type: 133,
        });
        let k = HopKey::of(&f).unwrap();
        assert_eq!((k.name().as_str(), k.rank()), ("drop", 95));
    }

    #[test]
    fn a_policy_verdict_is_its_own_hop_even_with_a_point() {
        let f = Flow {
            trace_observation_point: TraceObservationPoint::ToEndpoint as i32,
            event_type: Some(CiliumEventType {
                r#type: TYPE_POLICY_VERDICT,
                sub_type: 0,
            }),
            ..Default::default()
        };
        let k = HopKey::of(&f).unwrap();
        assert_eq!(k.name(), "policy-verdict");
        let sock = HopKey::Event {
            r#type: TYPE_TRACE_SOCK,
            sub_type: 0,
        };
        let mut h = Hops::default();
        h.record(HopKey::Point(TraceObservationPoint::ToEndpoint), 4);
        h.record(k, 3);
        h.record(HopKey::Point(TraceObservationPoint::FromEndpoint), 2);
        h.record(sock, 1);
        assert_eq!(
            h.path(),
            "trace-sock (1) -> from-endpoint (1) -> policy-verdict (1) -> to-endpoint (1)"
        );
    }
}
