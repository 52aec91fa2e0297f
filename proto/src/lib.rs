//! Wire types of the observer, and nothing else.
//!
//! - [`flow`], [`observer`], [`relay`], [`peer`]: Hubble-compatible protobuf
//!   types and the `Observer` and `Peer` gRPC clients and servers, generated
//!   from `proto/`. Package names and field numbers match Cilium's, so stock
//!   Hubble clients (and a stock hubble-relay, through `Peer`) work.
//! - [`health`]: the standard gRPC health service (`grpc.health.v1`),
//!   which `hubble status` checks first.
//! - [`observe::v1`]: our extensions (per-direction flow volume, the policy
//!   in force with its `PolicyStates` service, kernel
//!   feature report), carried in field numbers Hubble leaves unused.
//! - [`names`]: Hubble's display names of enum values (verdicts, drop reasons,
//!   observation points, trace sub-types), for every printer, metric and graph.
//! - [`hubble_text`]: texts Hubble derives from numbers (ICMP type and code,
//!   drop reason as `hubble observe` prints them).
//! - [`icmpv6`]: the ICMPv6 messages that keep a link working (neighbour
//!   discovery, multicast listeners), which graph, metrics and replies treat
//!   apart.
//! - [`json`]: protojson output with the proto field names, as Hubble prints.
//! - [`time`]: protobuf timestamps as nanoseconds since the Unix epoch, and the
//!   one parser of flag durations (`30s`, `2h`) and RFC 3339 times (jiff).
//! - [`tsv`]: a node name as one field of a tab-separated line (history files,
//!   the SQL answer's `app_metadata`).

/// Flow events, endpoints and flow filters (protobuf package `flow`).
pub mod flow {
    tonic::include_proto!("flow");
}

/// The `Observer` gRPC service (protobuf package `observer`).
#[expect(
    clippy::large_enum_variant,
    reason = "generated: GetFlowsResponse's oneof holds a Flow inline, as prost writes it"
)]
pub mod observer {
    tonic::include_proto!("observer");
}

/// Node status types shared with Hubble Relay (protobuf package `relay`).
pub mod relay {
    tonic::include_proto!("relay");
}

/// The `Peer` gRPC service a stock hubble-relay discovers nodes with
/// (protobuf package `peer`).
pub mod peer {
    tonic::include_proto!("peer");
}

/// The standard gRPC health service (protobuf package `grpc.health.v1`),
/// which `hubble status` asks before anything else.
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

/// Our protobuf extensions.
pub mod observe {
    /// Protobuf package `observe.v1`.
    pub mod v1 {
        tonic::include_proto!("observe.v1");
    }
}

pub mod hubble_text;
pub mod icmpv6;
pub mod json;
pub mod names;
pub mod time;
pub mod tsv;

#[cfg(test)]
mod wire_tests;
