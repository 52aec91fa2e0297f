//! Network policy: files in a CiliumNetworkPolicy-like YAML subset (L3/L4),
//! compiled to the identity-based entries the datapath enforces. Pure Rust: this
//! crate never touches the kernel (flow-probe's `datapath` programs the maps).
//!
//! [`load_file`] / [`load_dir`] / [`parse`] read and validate policies;
//! [`compile`] turns them and the endpoints file into a [`CompiledPolicy`];
//! [`ipcache`] is the address → identity table the datapath programs from
//! it; [`judge`] decides a connection's first packet as the datapath does,
//! from the same compiled rules; [`state`] keeps a compiled policy's inputs
//! as text ([`PolicyState`], named by a digest), for the history of what
//! was in force.
//!
//! # Format
//! ```yaml
//! apiVersion: cilium.io/v2
//! kind: CiliumNetworkPolicy
//! metadata:
//!   name: api-allow-frontend
//!   namespace: default            # absent: "default"
//!   annotations:
//!     observe.io/audit: "true"    # optional: audit mode (our extension, below)
//! spec:
//!   endpointSelector: {matchLabels: {app: api}}
//!   ingress:                      # ingressDeny: the same shape
//!     - fromEndpoints: [{matchLabels: {app: frontend}}]
//!       fromCIDR: [10.0.0.0/8]
//!       toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
//!   egress:                       # egressDeny: the same shape
//!     - toEndpoints: [{matchLabels: {app: db}}]
//!       toCIDR: [192.0.2.0/24]
//!       toPorts: [{ports: [{port: "5432"}]}]
//! ```
//! A file may hold several documents separated by `---` (empty ones are skipped).
//! `metadata.labels` and `spec.description` are accepted and ignored. Refused,
//! each with its own message: unknown fields, `matchExpressions`, port ranges
//! (`endPort`, `"80-90"`), named ports, port 0, L7 `rules`, label sources other
//! than `k8s:` and `any:`. A namespace and name may be defined only once per file
//! and per directory.
//!
//! # Semantics (Cilium's)
//! - `endpointSelector` selects the endpoints of the policy's namespace whose
//!   labels contain every `matchLabels` pair (`{}`: all of them). Selector keys
//!   may carry a `k8s:` or `any:` prefix; endpoint labels are plain.
//! - `fromEndpoints`/`toEndpoints` selectors select endpoints the same way, in the
//!   policy's namespace unless they name one with `io.kubernetes.pod.namespace`.
//!   Selected peers become their security identities
//!   ([`EndpointsFile::identities`]): peers sharing a label set share one entry.
//!   Identities come from labels alone, so a rule admits every endpoint with the
//!   selected endpoints' labels, whatever its namespace (give endpoints a
//!   namespace label to keep namespaces apart).
//! - A rule with peers and no `toPorts` matches every port (dport 0, proto 0). A
//!   rule with `toPorts` and no peers matches any peer (identity 0). A rule with
//!   neither (`ingress: [{}]`) matches nothing. A rule whose selectors select no
//!   endpoint matches nothing (never "any peer"). `protocol: ANY` or absent gives
//!   one entry each for TCP, UDP and SCTP.
//! - A policy with a rule in `ingress` or `ingressDeny` (even the empty rule
//!   `{}`) makes the endpoints it selects default-deny for ingress; likewise
//!   egress. An empty or null list does not, as in Cilium.
//! - Deny beats allow on the same key; between two allows (or two denies) the
//!   lower policy index wins, so the output does not depend on map order.
//!
//! # Audit mode (our extension)
//! `metadata.annotations: {"observe.io/audit": "true"}` ("false" or absent: off)
//! puts a policy in audit mode: it reports what it would drop instead of dropping
//! it. Audit is decided per endpoint and direction: if every policy selecting the
//! endpoint in that direction is in audit mode it is [`Enforcement::Audit`] and
//! their entries are compiled as usual (a deny or the default deny is reported
//! as AUDIT and forwarded). If any enforcing policy selects it, it is
//! [`Enforcement::Enforce`] and the audit policies contribute no entries there:
//! the datapath cannot audit a single entry, so an audit policy's deny would drop
//! and its allow would let through what the enforcing policies drop.
//!
//! # CIDRs and world
//! Each distinct CIDR of any rule (host bits cleared; a bare address is a /32 or
//! /128) gets a CIDR identity from [`FIRST_CIDR_IDENTITY`] (2^24 + 1) on, by a hash
//! of the CIDR, so it keeps it when other CIDRs come or go; they are listed in
//! [`CompiledPolicy::cidrs`] in sorted order (IPv4 first). The datapath's
//! longest-prefix-match ipcache maps endpoint addresses to their identities, these
//! CIDRs to theirs, and anything else to world (2). Because an address gets the
//! identity of its most specific CIDR, a CIDR rule selects the identities of every
//! listed CIDR inside it. `0.0.0.0/0` and `::/0` get no CIDR identity: they select
//! world (2) and every CIDR identity of their family. Endpoint addresses always
//! resolve to the endpoint's identity, so CIDR rules never select endpoints.
//!
//! # The output, as the datapath reads it
//! An entry is keyed by the local endpoint, the peer's identity, the destination
//! port and protocol, and the direction. `dport` and `proto` are both set or both
//! 0, so four lookups cover every entry: (peer, port), (peer, any), (any, port),
//! (any, any). Any deny among them wins, then any allow; with none the endpoint's
//! [`Enforcement`] decides. [`PolicyValue::policy_id`] indexes
//! [`CompiledPolicy::policies`], which lists every input policy in input order.
//!
//! # Errors
//! Every [`PolicyError`] names the file (and, in a file of several documents, the
//! document), the field path and the problem, e.g.
//! `policy deny.yaml: spec.ingress[0].toPorts[0].ports[0].port: "80a" is not a port number`.
//! YAML and shape errors (syntax, unknown fields, wrong types) carry the field
//! path and line ([`crate::yaml`]). A file with any problem yields no policy at all.
//!
//! [`EndpointsFile::identities`]: crate::endpoints::EndpointsFile::identities

mod compile;
pub mod ipcache;
pub mod judge;
mod load;
mod spec;
pub mod state;
#[cfg(test)]
mod tests;

pub use compile::{
    Action, CidrIdentity, CompiledPolicy, EndpointPolicy, Enforcement, FIRST_CIDR_IDENTITY,
    PolicyKey, PolicyRef, PolicyValue, compile, subjects, unmatched_peers,
};
pub use ipcache::{Ipcache, IpcacheEntry};
pub use judge::{Decision, Denial, FirstPacket, Judge, Match, Verdict};
pub use load::{
    LoadedDir, PolicyFile, check_duplicates, load_dir, load_dir_with_texts, load_file,
    load_file_with_text, parse,
};
pub use spec::{
    API_VERSION, AUDIT_ANNOTATION, Cidr, DEFAULT_NAMESPACE, Direction, KIND, NAMESPACE_LABEL,
    Policy, PortProtocol, Protocol, Rule, Selector, policy_labels,
};
pub use state::{PolicyState, StateError};

/// Why policy files were refused. Every message starts with `policy <file>: `.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file or directory could not be read.
    #[error("policy {path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// Not YAML, or not of the policy's shape; the message has the field path and line.
    #[error("policy {file}: {error}")]
    Yaml {
        file: String,
        error: crate::yaml::YamlError,
    },
    /// A field holds a value the policy language does not accept.
    #[error("policy {file}: {field}: {problem}")]
    Invalid {
        file: String,
        field: String,
        problem: String,
    },
    /// A namespace and name defined a second time.
    #[error("policy {file}: metadata.name: {namespace}/{name} is already defined in {first}")]
    Duplicate {
        file: String,
        namespace: String,
        name: String,
        first: String,
    },
}
