//! Records the policies every flow-probe puts in force into history
//! ([`crate::history::policies`]): one task per peer asks its
//! `observe.v1.PolicyStates` for the states after the last generation it
//! has, every `status_interval`, over its own connection (TLS as the peer
//! session's), and keeps each state with when it was put in force. Flows
//! name the state they passed under; a what-if replays them against it.
//!
//! A probe keeps its last 64 states, so only more changes than that between
//! two questions lose one; its flows then name a version history lacks, and
//! a what-if reports them as not replayed. A probe without the service
//! (an older flow-probe) is asked again at the slowest backoff.

use std::sync::Arc;
use std::time::Duration;

use cluster_spec::policy::{PolicyFile, PolicyState};
use observer_proto::observe::v1::GetPolicyStatesRequest;
use observer_proto::observe::v1::policy_states_client::PolicyStatesClient;
use observer_runtime::backoff::Backoff;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::config::PeerOptions;
use crate::history::policies::{InForce, PolicyStates, RecordError};
use crate::peer::task::stopped;

/// Where a peer's answers left off: its node, run and last generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Cursor {
    node: String,
    run: u64,
    generation: u64,
}

/// Follows one peer's policy states until `stop` turns true.
pub(crate) async fn follow(
    uri: String,
    opts: PeerOptions,
    policies: Arc<PolicyStates>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(opts.backoff_min, opts.backoff_max);
    let mut client = None;
    let mut cursor = Cursor::default();
    let mut failing = false;
    loop {
        let delay = match ask(&uri, &opts, &mut client, &policies, &mut cursor).await {
            Ok(()) => {
                backoff.reset();
                failing = false;
                opts.status_interval
            }
            Err(e) => {
                client = None;
                if !failing {
                    log::info!(
                        "policy states of {uri}: {:?}: {}; asking again later",
                        e.code(),
                        e.message()
                    );
                }
                failing = true;
                match e.code() {
                    tonic::Code::Unimplemented => opts.backoff_max,
                    _ => backoff.next_delay(),
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// One question: the states after the cursor, each recorded.
async fn ask(
    uri: &str,
    opts: &PeerOptions,
    client: &mut Option<PolicyStatesClient<Channel>>,
    policies: &PolicyStates,
    cursor: &mut Cursor,
) -> Result<(), tonic::Status> {
    if client.is_none() {
        *client = Some(PolicyStatesClient::new(connect(uri, opts).await?));
    }
    let Some(c) = client.as_mut() else {
        return Ok(());
    };
    let request = GetPolicyStatesRequest {
        after_generation: cursor.generation,
    };
    let answer = tokio::time::timeout(opts.call_timeout, c.get_policy_states(request))
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer in time"))??
        .into_inner();
    if (answer.node_name.as_str(), answer.run) != (cursor.node.as_str(), cursor.run) {
        // Another run (or the first answer): what history has of it counts.
        let had = policies.last_generation(&answer.node_name, answer.run);
        *cursor = Cursor {
            node: answer.node_name.clone(),
            run: answer.run,
            generation: had.unwrap_or(0),
        };
    }
    if answer.oldest_kept > cursor.generation + 1 && cursor.generation > 0 {
        log::warn!(
            "policy states of {}: generations {}..{} were forgotten by the probe before the \
             relay asked; their flows cannot be replayed",
            answer.node_name,
            cursor.generation + 1,
            answer.oldest_kept - 1
        );
    }
    for s in answer.states {
        if s.generation <= cursor.generation {
            continue;
        }
        let files = s
            .files
            .into_iter()
            .map(|f| PolicyFile {
                name: f.name,
                text: f.text,
            })
            .collect();
        let at = InForce {
            node: answer.node_name.clone(),
            run: answer.run,
            generation: s.generation,
            version: s.version.clone(),
            applied_ns: s
                .applied
                .map(|t| i64::try_from(observer_proto::time::nanos(&t)).unwrap_or(i64::MAX))
                .unwrap_or(0),
        };
        let recorded = match PolicyState::from_parts(files, &s.endpoints) {
            Ok(state) => policies.record(at, state).map(|_| ()),
            Err(e) => Err(RecordError::Invalid {
                version: s.version.clone(),
                error: Box::new(e),
            }),
        };
        match recorded {
            Ok(()) => {}
            // The disk: asked again next time.
            Err(e @ RecordError::Io { .. }) => {
                log::warn!("policy states of {}: {e}; trying again", answer.node_name);
                return Ok(());
            }
            // The state itself: it will not get better.
            Err(e) => log::warn!(
                "policy states of {}: generation {} not kept: {e}",
                answer.node_name,
                s.generation
            ),
        }
        cursor.generation = s.generation;
    }
    Ok(())
}

/// A connection to the peer, with the relay's peer TLS.
async fn connect(uri: &str, opts: &PeerOptions) -> Result<Channel, tonic::Status> {
    let unavailable = |e: &dyn std::fmt::Display| tonic::Status::unavailable(e.to_string());
    let mut endpoint = Endpoint::from_shared(uri.to_string())
        .map_err(|e| unavailable(&e))?
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.call_timeout.max(Duration::from_millis(1)));
    if let Some(t) = &opts.tls {
        endpoint = t.apply(endpoint).map_err(|e| unavailable(&e))?;
    }
    endpoint.connect().await.map_err(|e| unavailable(&e))
}
