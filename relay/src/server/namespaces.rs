//! GetNamespaces: the union of what the connected peers answer and what the
//! merged ring holds (so an unavailable node's recent namespaces still show),
//! each kept for the hour after it was last seen ([`NamespaceMemory`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use observer_proto::observer::{GetNamespacesRequest, Namespace};

use observer_runtime::namespaces::NamespaceMemory;

use crate::state::RelayState;

/// How long a peer gets to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) async fn union(state: &RelayState, memory: &NamespaceMemory) -> Vec<Namespace> {
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let calls =
        state
            .peers()
            .connected_clients()
            .into_iter()
            .map(|(name, mut client)| async move {
                let answer = tokio::time::timeout(
                    PEER_TIMEOUT,
                    client.get_namespaces(GetNamespacesRequest {}),
                )
                .await;
                match answer {
                    Ok(Ok(r)) => r.into_inner().namespaces,
                    Ok(Err(status)) => {
                        log::warn!("GetNamespaces on {name}: {}", status.message());
                        Vec::new()
                    }
                    Err(_) => {
                        log::warn!("GetNamespaces on {name}: no answer in time");
                        Vec::new()
                    }
                }
            });
    for ns in futures::future::join_all(calls).await.into_iter().flatten() {
        seen.insert((ns.cluster, ns.namespace));
    }
    let ring = memory.note_and_list(&state.store().snapshot(), Instant::now());
    seen.extend(ring.into_iter().map(|n| (n.cluster, n.namespace)));
    seen.into_iter()
        .map(|(cluster, namespace)| Namespace { cluster, namespace })
        .collect()
}
