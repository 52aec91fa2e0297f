//! GetNamespaces' memory: the namespaces of flows seen within the last hour,
//! as Hubble keeps them, not only those the ring still holds when asked (a
//! quiet namespace's flows leave a busy node's ring within seconds, and
//! the UI's namespace list would lose it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use observer_proto::observer::Namespace;
use observer_proto::observer::get_flows_response::ResponseTypes;

use crate::store::Entry;

/// How long a namespace is listed after its last flow was seen (Hubble's).
pub const REMEMBERED_FOR: Duration = Duration::from_secs(3600);

/// (cluster, namespace) → when a flow of it was last seen.
#[derive(Debug, Default)]
pub struct NamespaceMemory {
    seen: Mutex<HashMap<(String, String), Instant>>,
}

impl NamespaceMemory {
    /// Notes the namespaces of the flows in `entries` (seen `now`) and
    /// answers every one seen within [`REMEMBERED_FOR`] of `now`, sorted.
    pub fn note_and_list(&self, entries: &[Entry], now: Instant) -> Vec<Namespace> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for entry in entries {
            if let Some(ResponseTypes::Flow(f)) = &entry.response.response_types {
                for ep in [&f.source, &f.destination].into_iter().flatten() {
                    if !ep.namespace.is_empty() {
                        seen.insert((ep.cluster_name.clone(), ep.namespace.clone()), now);
                    }
                }
            }
        }
        seen.retain(|_, at| now.saturating_duration_since(*at) <= REMEMBERED_FOR);
        let mut list: Vec<Namespace> = seen
            .keys()
            .map(|(cluster, namespace)| Namespace {
                cluster: cluster.clone(),
                namespace: namespace.clone(),
            })
            .collect();
        list.sort_by(|a, b| (&a.cluster, &a.namespace).cmp(&(&b.cluster, &b.namespace)));
        list
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use observer_proto::flow::{Endpoint, Flow};
    use observer_proto::observer::GetFlowsResponse;

    use super::*;

    fn flow_in(namespace: &str) -> Entry {
        let ep = |ns: &str| {
            Some(Endpoint {
                namespace: ns.into(),
                ..Default::default()
            })
        };
        Entry {
            seq: 0,
            response: Arc::new(GetFlowsResponse {
                response_types: Some(ResponseTypes::Flow(Flow {
                    source: ep(namespace),
                    destination: ep(""),
                    ..Default::default()
                })),
                ..Default::default()
            }),
        }
    }

    fn names(list: Vec<Namespace>) -> Vec<String> {
        list.into_iter().map(|n| n.namespace).collect()
    }

    #[test]
    fn a_namespace_is_listed_for_an_hour_after_its_last_flow() {
        let m = NamespaceMemory::default();
        let t0 = Instant::now();
        assert_eq!(names(m.note_and_list(&[flow_in("quiet")], t0)), ["quiet"]);
        // Its flows left the ring; another namespace's fill it.
        let later = t0 + Duration::from_secs(1800);
        assert_eq!(
            names(m.note_and_list(&[flow_in("busy")], later)),
            ["busy", "quiet"]
        );
        let past_the_hour = t0 + REMEMBERED_FOR + Duration::from_secs(1);
        assert_eq!(
            names(m.note_and_list(&[flow_in("busy")], past_the_hour)),
            ["busy"]
        );
    }
}
