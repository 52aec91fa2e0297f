//! The service dependency graph: which workloads talk to which, built from flows.
//!
//! Flows go into a [`GraphBuilder`] ([`builder`]), which groups endpoints into nodes
//! ([`group`]), folds each request-direction flow into the edge between them
//! (counts, verdicts, ports, drops, and the datapath [`hops`] it was seen at),
//! counts each connection's bytes once, and can expire edges over a sliding
//! window. The result is a [`ServiceGraph`] (a petgraph `StableDiGraph`,
//! [`model`]) that renders as Graphviz DOT ([`dot`]), Mermaid ([`mermaid`]),
//! Grafana node-graph JSON ([`json`]) or text ([`text`]); [`labels`] holds the
//! label text they share. [`stream`] builds a graph from a whole `GetFlows` stream. [`diff`] compares
//! two graphs (a baseline window and the window of interest): new, vanished
//! and changed nodes and edges, rendered the same four ways.

pub mod builder;
pub mod diff;
pub mod dot;
pub mod group;
pub mod hops;
pub mod json;
pub mod labels;
pub mod mermaid;
pub mod model;
pub mod stream;
pub mod text;

pub use builder::{GraphBuilder, l4, unix_ns};
pub use diff::{Change, GraphDiff, Threshold};
pub use group::{Group, GroupKind, destination_group, group_of};
pub use hops::{Hop, HopKey, Hops};
pub use model::{Edge, EdgeView, ServiceGraph, Verdicts, human_bytes};
pub use stream::collect;
