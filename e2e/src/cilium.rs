//! Clients generated at build time from Cilium's own .proto files
//! (`tests/cilium/`, Apache-2.0, source and commit in its README), not from
//! this project's `proto/`: what they decode is what a stock Hubble
//! component would.

/// Cilium's `api/v1/peer/peer.proto`: the `Peer` client a hubble-relay
/// discovers nodes with.
pub mod peer {
    tonic::include_proto!("peer");
}
