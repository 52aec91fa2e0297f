//! The scenario file: which endpoints the lab builds and which traffic it sends.
//!
//! A scenario is YAML; unknown keys are errors everywhere.
//!
//! ```yaml
//! description: free text                       # optional
//! endpoints:
//!   - name: frontend          # unique in the file; [a-z0-9-], at most 20 characters
//!     namespace: default      # Kubernetes-style namespace of the endpoint
//!     labels: {app: frontend} # optional
//!     workload: {name: frontend, kind: Deployment}   # optional
//!     node: node1             # optional, default "node1"; same rules as names
//!     ipv4: 198.18.1.10       # optional, inside 198.18.0.0/15, else assigned
//!     ipv6: fd42:0:0:1::10    # optional, inside fd42::/16, else assigned
//! traffic:                    # optional; run in this order
//!   - from: frontend          # endpoint names
//!     to: api                 # or to_service: NAME, a service of `services`:
//!                             # the client connects to its VIP and `port`
//!     protocol: tcp           # tcp | udp | icmp
//!     family: ipv4            # ipv4 (default) | ipv6
//!     port: 8080              # required for tcp and udp, not allowed for icmp
//!     request_bytes: 100      # payload the client sends: tcp 100, udp 64, icmp 56 by default
//!     response_bytes: 1000    # tcp only, default 1000; udp and icmp replies echo the request
//!     expect: ok              # ok (default) | refused: nothing listens (tcp RST,
//!                             # udp ICMP port unreachable); not for icmp
//!                             # | dropped: the datapath drops it silently (no
//!                             # answer within DROP_WAIT)
//! services:                   # optional; see `lab::lb` and flow-probe's services file
//!   - {name: api, namespace: default, vip: {ipv4: 198.18.100.10},
//!      ports: [{port: 80, targetPort: 8080}], selector: {app: api}}
//! policies:                   # optional; CiliumNetworkPolicy documents, kept as
//!   - apiVersion: cilium.io/v2   # written (one file each) to the lab's policy
//!     kind: CiliumNetworkPolicy  # directory for flow-probe's --policy-dir
//!     metadata: {name: api-allow-frontend, namespace: default}
//!     spec:
//!       endpointSelector: {matchLabels: {app: api}}
//!       ingress:
//!         - fromEndpoints: [{matchLabels: {app: frontend}}]
//!           toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
//! ```
//!
//! Policies are checked here as flow-probe checks them when it reads the policy
//! directory (a mapping, `kind: CiliumNetworkPolicy`, a `metadata.name` usable in a
//! file name, no duplicate namespace/name, then the whole policy language): a
//! policy the probes would refuse would leave its endpoints open.
//!
//! What one traffic item does:
//! - `tcp`: a listener in `to` accepts one connection, reads `request_bytes`, writes
//!   `response_bytes` and closes; the client in `from` connects, writes the request
//!   and reads until the server closes.
//! - `udp`: a socket in `to` echoes one datagram; the client sends `request_bytes` and
//!   waits for the echo.
//! - `icmp`: one echo request (ICMP type 8 / ICMPv6 type 128) with `request_bytes` of
//!   payload; the kernel of `to` answers.
//!
//! With `expect: dropped` the same happens (TCP and UDP servers still run, so traffic
//! a policy wrongly lets through completes and shows up as unexpected), but the
//! client waits only `DROP_WAIT` for an answer: a TCP connect that gets neither
//! SYN-ACK nor RST, a UDP datagram or an echo request without reply.
//!
//! Errors name the file, the field path and the problem, e.g.
//! `scenario lab.yaml: traffic[2].to: unknown endpoint "apii"`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use cluster_spec::endpoints::Workload;
use cluster_spec::services::{Service, ServiceProtocol};
use serde::{Deserialize, Serialize};

/// Node an endpoint lands on when the scenario names none.
pub const DEFAULT_NODE: &str = "node1";

/// Text of the built-in scenario (`lab/scenarios/default.yaml`).
pub const BUILTIN_DEFAULT: &str = include_str!("../scenarios/default.yaml");

/// How the built-in scenario is named in error messages.
pub const BUILTIN_ORIGIN: &str = "<built-in default>";

/// Text of the built-in capture scenario (`lab/scenarios/capture.yaml`):
/// the default endpoints and a traffic mix without policies, for tests of flow
/// capture that must not depend on policy enforcement.
pub const BUILTIN_CAPTURE: &str = include_str!("../scenarios/capture.yaml");

/// How the built-in capture scenario is named in error messages.
pub const BUILTIN_CAPTURE_ORIGIN: &str = "<built-in capture>";

/// What can go wrong reading a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("scenario {path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// Not YAML of the expected shape (serde's message carries the field path).
    #[error("scenario {path}: {error}")]
    Parse {
        path: String,
        error: cluster_spec::yaml::YamlError,
    },
    /// Well-formed but inconsistent.
    #[error("scenario {path}: {field}: {problem}")]
    Invalid {
        path: String,
        field: String,
        problem: String,
    },
}

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub endpoints: Vec<EndpointSpec>,
    #[serde(default)]
    pub traffic: Vec<TrafficSpec>,
    /// CiliumNetworkPolicy documents, as written in the scenario (flow-probe parses
    /// them; [`super::Lab::up`] writes one file each into [`super::Lab::policy_dir`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<serde_json::Value>,
    /// Services for flow-probe's socket load balancer, in the format of its
    /// services file ([`super::Lab::up`] writes them to [`super::Lab::services_path`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    /// Where the scenario came from (file path or [`BUILTIN_ORIGIN`]), for errors.
    #[serde(skip)]
    pub origin: String,
}

/// One endpoint to build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    #[serde(default = "default_node")]
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
}

fn default_node() -> String {
    DEFAULT_NODE.to_string()
}

/// Transport of a traffic item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

/// Address family of a traffic item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    #[default]
    Ipv4,
    Ipv6,
}

/// What the traffic item should end with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The exchange completes (TCP response read, UDP echo or ICMP reply received).
    #[default]
    Ok,
    /// Nothing listens: TCP is reset, UDP gets ICMP port unreachable.
    Refused,
    /// The datapath drops the traffic silently: TCP gets neither SYN-ACK nor RST,
    /// UDP and ICMP get no reply (the client waits only `DROP_WAIT`).
    Dropped,
}

/// One flow to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    pub from: String,
    /// The endpoint the traffic goes to; empty when it goes to a service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
    /// The service (`name` or `namespace/name`) whose VIP the client connects
    /// to, instead of `to` (see [`super::lb`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_service: Option<String>,
    pub protocol: Protocol,
    #[serde(default)]
    pub family: Family,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<u32>,
    #[serde(default)]
    pub expect: Expect,
}

impl TrafficSpec {
    /// Payload bytes the client sends (defaults: tcp 100, udp 64, icmp 56; 0 for a
    /// refused or dropped TCP connection, which never carries data).
    pub fn request_bytes(&self) -> u32 {
        match (self.protocol, self.expect) {
            (Protocol::Tcp, Expect::Refused | Expect::Dropped) => 0,
            (Protocol::Tcp, Expect::Ok) => self.request_bytes.unwrap_or(100),
            (Protocol::Udp, _) => self.request_bytes.unwrap_or(64),
            (Protocol::Icmp, _) => self.request_bytes.unwrap_or(56),
        }
    }

    /// Payload bytes the client should receive back (0 when refused or dropped).
    pub fn response_bytes(&self) -> u32 {
        match (self.protocol, self.expect) {
            (_, Expect::Refused | Expect::Dropped) => 0,
            (Protocol::Tcp, Expect::Ok) => self.response_bytes.unwrap_or(1000),
            (Protocol::Udp | Protocol::Icmp, Expect::Ok) => self.request_bytes(),
        }
    }

    /// Request and response sizes of the exchange if it happens: what the client
    /// sends and the server answers when the traffic gets through. Same as
    /// [`Self::request_bytes`] and [`Self::response_bytes`] except for dropped
    /// items, whose servers still run and use the sizes of `expect: ok`.
    pub fn exchange_bytes(&self) -> (u32, u32) {
        let as_ok = |t: &TrafficSpec| (t.request_bytes(), t.response_bytes());
        match self.expect {
            Expect::Dropped => as_ok(&TrafficSpec {
                expect: Expect::Ok,
                ..self.clone()
            }),
            Expect::Ok | Expect::Refused => as_ok(self),
        }
    }
}

impl Scenario {
    /// The endpoint with this name.
    pub fn endpoint(&self, name: &str) -> Option<&EndpointSpec> {
        self.endpoints.iter().find(|ep| ep.name == name)
    }

    /// Node names in order of first appearance.
    pub fn nodes(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for ep in &self.endpoints {
            if !out.contains(&ep.node.as_str()) {
                out.push(&ep.node);
            }
        }
        out
    }

    /// The service a `to_service` reference names, among this scenario's services.
    pub fn service(&self, reference: &str) -> Option<&Service> {
        find_service(&self.services, reference)
    }

    /// The origin, or `<unnamed>` for a scenario built in code.
    pub(crate) fn origin_or_unnamed(&self) -> &str {
        if self.origin.is_empty() {
            "<unnamed>"
        } else {
            &self.origin
        }
    }
}

/// The service a `to_service` reference names: `name` or `namespace/name`.
pub fn find_service<'a>(services: &'a [Service], reference: &str) -> Option<&'a Service> {
    match reference.split_once('/') {
        Some((ns, name)) => services
            .iter()
            .find(|s| s.namespace == ns && s.name == name),
        None => services.iter().find(|s| s.name == reference),
    }
}

impl Protocol {
    /// The protocol of a service port this item can reach (none for icmp).
    pub fn service_protocol(self) -> Option<ServiceProtocol> {
        match self {
            Protocol::Tcp => Some(ServiceProtocol::Tcp),
            Protocol::Udp => Some(ServiceProtocol::Udp),
            Protocol::Icmp => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        })
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expect::Ok => "ok",
            Expect::Refused => "refused",
            Expect::Dropped => "dropped",
        })
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        })
    }
}
