//! What `observe status` shows of the endpoint sources: each source's state
//! (connected, or its last problem) and each of this node's endpoints with
//! its interface and whether the programs and the policy cover it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use observer_proto::observe::v1::endpoint_status::State;
use observer_proto::observe::v1::{EndpointSourceStatus, EndpointStatus};
use tokio::sync::watch;

use super::EndpointWatch;

/// How one source is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceState {
    /// The file or socket it reads.
    pub address: String,
    pub connected: bool,
    /// The last problem, or what it last did.
    pub detail: String,
    /// Endpoints it knows of now.
    pub endpoints: usize,
}

/// Every source's state, shared by the sources and the status answer.
#[derive(Debug, Clone, Default)]
pub struct SourceStates(Arc<Mutex<BTreeMap<&'static str, SourceState>>>);

impl SourceStates {
    pub fn set(&self, source: &'static str, state: SourceState) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(source, state);
    }

    pub fn get(&self, source: &str) -> Option<SourceState> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(source)
            .cloned()
    }

    fn rows(&self) -> Vec<EndpointSourceStatus> {
        let states = self.0.lock().unwrap_or_else(|p| p.into_inner());
        states
            .iter()
            .map(|(name, s)| EndpointSourceStatus {
                name: name.to_string(),
                address: s.address.clone(),
                connected: s.connected,
                detail: s.detail.clone(),
                endpoints: u32::try_from(s.endpoints).unwrap_or(u32::MAX),
            })
            .collect()
    }
}

/// Answers the endpoint part of ServerStatus.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    endpoints: EndpointWatch,
    sources: SourceStates,
    /// The endpoint set version the policy in force was compiled from;
    /// `None` when no policy is enforced (then attached is ready).
    policy: Option<watch::Receiver<u64>>,
}

impl StatusBoard {
    pub fn new(
        endpoints: EndpointWatch,
        sources: SourceStates,
        policy: Option<watch::Receiver<u64>>,
    ) -> Self {
        StatusBoard {
            endpoints,
            sources,
            policy,
        }
    }

    /// This node's endpoints, in id order.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        let set = self.endpoints.borrow().clone();
        let identities = set.file.identities();
        let policy_at = self.policy.as_ref().map(|p| *p.borrow());
        set.endpoints
            .iter()
            .map(|local| {
                let found = &local.found;
                let ep = &found.endpoint;
                let labels = ep.identity_labels();
                let (state, detail) = match (&found.problem, local.ifindex) {
                    (Some(problem), _) => (State::NotAttached, problem.clone()),
                    (None, None) => (State::NotAttached, "not attached".to_string()),
                    (None, Some(_)) if policy_at.is_some_and(|v| v < local.since) => {
                        (State::Attaching, String::new())
                    }
                    (None, Some(_)) => (State::Ready, String::new()),
                };
                EndpointStatus {
                    source: local.source.to_string(),
                    id: ep.id,
                    namespace: ep.namespace.clone(),
                    name: ep.name.clone(),
                    identity: identities.get(&labels).copied().unwrap_or(0),
                    labels,
                    image: found.image.clone(),
                    ips: ep
                        .ipv4
                        .map(|a| a.to_string())
                        .into_iter()
                        .chain(ep.ipv6.map(|a| a.to_string()))
                        .collect(),
                    netns: found.netns.clone(),
                    interface: ep.interface.clone().unwrap_or_default(),
                    ifindex: local.ifindex.unwrap_or(0),
                    state: state as i32,
                    detail,
                }
            })
            .collect()
    }

    /// Every source, by name.
    pub fn sources(&self) -> Vec<EndpointSourceStatus> {
        self.sources.rows()
    }
}
