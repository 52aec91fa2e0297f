//! Wire types and shared formats of the observer.
//!
//! - [`flow`], [`observer`], [`relay`]: Hubble-compatible protobuf types and
//!   the `Observer` gRPC client and server, generated from `proto/`. Package
//!   names and field numbers match Cilium's, so stock Hubble clients work.
//! - [`observe::v1`]: our extensions (per-direction flow volume, kernel
//!   feature report), carried in field numbers Hubble leaves unused.
//! - [`filter`]: Hubble's whitelist/blacklist semantics for `GetFlows`.
//! - [`endpoints`]: the endpoints file that maps addresses to endpoints.
//! - [`json`]: protojson output with the proto field names, as Hubble prints.
//! - [`names`]: Hubble's display names (observation points, trace sub-types).
//! - [`store`]: the ring of recent flows and its followers, and [`query`]: a
//!   validated `GetFlows` request over it (number, first, follow, since/until,
//!   filters), shared by flow-probe and the relay; [`time`]: flow time as one
//!   number.
//! - [`metrics_http`]: the `/metrics` endpoint both serve.

/// Flow events, endpoints and flow filters (protobuf package `flow`).
pub mod flow {
    tonic::include_proto!("flow");
}

/// The `Observer` gRPC service (protobuf package `observer`).
pub mod observer {
    tonic::include_proto!("observer");
}

/// Node status types shared with Hubble Relay (protobuf package `relay`).
pub mod relay {
    tonic::include_proto!("relay");
}

/// Our protobuf extensions.
pub mod observe {
    /// Protobuf package `observe.v1`.
    pub mod v1 {
        tonic::include_proto!("observe.v1");
    }
}

pub mod endpoints;
pub mod filter;
pub mod json;
pub mod metrics_http;
pub mod names;
pub mod query;
pub mod store;
pub mod time;

#[cfg(test)]
mod wire_tests;
