//! The policies this probe put in force, for the relay's history: each
//! generation [`crate::policy_watch`] applies is recorded with its version
//! (`cluster_spec::policy::PolicyState::version`), when it was applied, and
//! the policy files and endpoints it was compiled from. The enricher stamps
//! every flow with the generation and version in force ([`PolicyLog::stamp`]);
//! the `observe.v1.PolicyStates` service ([`PolicyStatesService`]) answers the
//! relay, which asks for the states behind the stamps it sees.
//!
//! The log keeps the last [`KEPT`] states: the relay asks every few seconds,
//! so only a burst of more changes than that between two of its questions
//! loses one (the answer says which generations are gone).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use cluster_spec::policy::PolicyState;
use observer_proto::observe::v1::policy_states_server::{PolicyStates, PolicyStatesServer};
use observer_proto::observe::v1::{
    GetPolicyStatesRequest, GetPolicyStatesResponse, PolicyFile, PolicyStamp,
    PolicyState as StateRecord,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// How many policy states the log keeps.
pub const KEPT: usize = 64;

/// The states put in force, newest last, and the stamp of the newest.
pub struct PolicyLog {
    states: Mutex<VecDeque<StateRecord>>,
    stamp: watch::Sender<Option<PolicyStamp>>,
    /// This run's start, Unix nanoseconds.
    run: u64,
}

fn unix_ns(t: SystemTime) -> i128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

impl PolicyLog {
    pub fn new() -> Arc<Self> {
        Arc::new(PolicyLog {
            states: Mutex::new(VecDeque::new()),
            stamp: watch::Sender::new(None),
            run: u64::try_from(unix_ns(SystemTime::now())).unwrap_or(0),
        })
    }

    /// `state` is in force as `generation` from now on. Fails only when the
    /// endpoints cannot be written as text; nothing is recorded then.
    pub fn record(
        &self,
        generation: u64,
        state: &PolicyState,
    ) -> Result<(), cluster_spec::policy::StateError> {
        let version = state.version()?;
        let record = StateRecord {
            generation,
            version: version.clone(),
            applied: Some(observer_proto::time::timestamp(unix_ns(SystemTime::now()))),
            files: state
                .files
                .iter()
                .map(|f| PolicyFile {
                    name: f.name.clone(),
                    text: f.text.clone(),
                })
                .collect(),
            endpoints: state.endpoints_yaml()?,
        };
        {
            let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
            if states.len() == KEPT {
                states.pop_front();
            }
            states.push_back(record);
        }
        self.stamp.send_replace(Some(PolicyStamp {
            generation,
            version,
        }));
        Ok(())
    }

    /// The stamp of the policy in force (none before the first).
    pub fn stamp(&self) -> watch::Receiver<Option<PolicyStamp>> {
        self.stamp.subscribe()
    }

    /// The states after `generation`, oldest first, and the oldest kept.
    pub fn after(&self, generation: u64) -> (u64, Vec<StateRecord>) {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = states.front().map_or(0, |s| s.generation);
        let newer = states
            .iter()
            .filter(|s| s.generation > generation)
            .cloned()
            .collect();
        (oldest, newer)
    }
}

/// `observe.v1.PolicyStates` over a [`PolicyLog`].
pub struct PolicyStatesService {
    log: Arc<PolicyLog>,
    node_name: String,
}

impl PolicyStatesService {
    pub fn new(log: Arc<PolicyLog>, node_name: &str) -> Self {
        PolicyStatesService {
            log,
            node_name: node_name.to_string(),
        }
    }

    pub fn into_server(self) -> PolicyStatesServer<Self> {
        PolicyStatesServer::new(self)
    }
}

#[tonic::async_trait]
impl PolicyStates for PolicyStatesService {
    async fn get_policy_states(
        &self,
        request: Request<GetPolicyStatesRequest>,
    ) -> Result<Response<GetPolicyStatesResponse>, Status> {
        let (oldest_kept, states) = self.log.after(request.into_inner().after_generation);
        Ok(Response::new(GetPolicyStatesResponse {
            node_name: self.node_name.clone(),
            run: self.log.run,
            oldest_kept,
            states,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_spec::policy::PolicyFile as File;

    fn state(text: &str) -> PolicyState {
        PolicyState {
            files: vec![File {
                name: "p.yaml".into(),
                text: text.into(),
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_service_answers_the_states_after_a_generation_and_flows_get_the_newest_stamp() {
        let log = PolicyLog::new();
        let stamp = log.stamp();
        assert_eq!(*stamp.borrow(), None);
        log.record(1, &state("a")).unwrap();
        log.record(2, &state("b")).unwrap();
        let want = state("b").version().unwrap();
        assert_eq!(
            *stamp.borrow(),
            Some(PolicyStamp {
                generation: 2,
                version: want.clone()
            })
        );
        let service = PolicyStatesService::new(log.clone(), "node1");
        let ask = |after| {
            service.get_policy_states(Request::new(GetPolicyStatesRequest {
                after_generation: after,
            }))
        };
        let all = ask(0).await.unwrap().into_inner();
        assert_eq!((all.node_name.as_str(), all.oldest_kept), ("node1", 1));
        assert_eq!(all.run, log.run);
        let seen: Vec<(u64, &str, &str)> = all
            .states
            .iter()
            .map(|s| (s.generation, s.version.as_str(), s.files[0].text.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (1, state("a").version().unwrap().as_str(), "a"),
                (2, want.as_str(), "b")
            ]
        );
        assert_eq!(all.states[1].endpoints, "endpoints: []\n");
        assert!(ask(2).await.unwrap().into_inner().states.is_empty());
    }

    #[test]
    fn the_log_keeps_the_newest_states() {
        let log = PolicyLog::new();
        for g in 1..=(KEPT as u64 + 3) {
            log.record(g, &state(&g.to_string())).unwrap();
        }
        let (oldest, states) = log.after(0);
        assert_eq!((oldest, states.len()), (4, KEPT));
        assert_eq!(states.last().unwrap().generation, KEPT as u64 + 3);
    }
}
