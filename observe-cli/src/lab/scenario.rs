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
//!     to: api
//!     protocol: tcp           # tcp | udp | icmp
//!     family: ipv4            # ipv4 (default) | ipv6
//!     port: 8080              # required for tcp and udp, not allowed for icmp
//!     request_bytes: 100      # payload the client sends: tcp 100, udp 64, icmp 56 by default
//!     response_bytes: 1000    # tcp only, default 1000; udp and icmp replies echo the request
//!     expect: ok              # ok (default) | refused: nothing listens (tcp RST,
//!                             # udp ICMP port unreachable); not for icmp
//! ```
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
//! Errors name the file, the field path and the problem, e.g.
//! `scenario lab.yaml: traffic[2].to: unknown endpoint "apii"`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use observer_proto::endpoints::Workload;
use serde::{Deserialize, Serialize};

use super::validate;

/// Node an endpoint lands on when the scenario names none.
pub const DEFAULT_NODE: &str = "node1";

/// Text of the built-in scenario (`observe-cli/scenarios/default.yaml`).
pub const BUILTIN_DEFAULT: &str = include_str!("../../scenarios/default.yaml");

/// How the built-in scenario is named in error messages.
pub const BUILTIN_ORIGIN: &str = "<built-in default>";

/// What can go wrong reading a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("scenario {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Not YAML of the expected shape (serde's message carries the field path).
    #[error("scenario {path}: {source}")]
    Parse {
        path: String,
        source: serde_yaml::Error,
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
}

/// One flow to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    pub from: String,
    pub to: String,
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
    /// refused TCP connection, which never carries data).
    pub fn request_bytes(&self) -> u32 {
        match (self.protocol, self.expect) {
            (Protocol::Tcp, Expect::Refused) => 0,
            (Protocol::Tcp, Expect::Ok) => self.request_bytes.unwrap_or(100),
            (Protocol::Udp, _) => self.request_bytes.unwrap_or(64),
            (Protocol::Icmp, _) => self.request_bytes.unwrap_or(56),
        }
    }

    /// Payload bytes the client should receive back (0 when refused).
    pub fn response_bytes(&self) -> u32 {
        match (self.protocol, self.expect) {
            (_, Expect::Refused) => 0,
            (Protocol::Tcp, Expect::Ok) => self.response_bytes.unwrap_or(1000),
            (Protocol::Udp | Protocol::Icmp, Expect::Ok) => self.request_bytes(),
        }
    }
}

impl Scenario {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// The built-in default scenario (`scenarios/default.yaml`).
    pub fn builtin_default() -> Self {
        Self::parse(BUILTIN_DEFAULT, BUILTIN_ORIGIN).expect("the built-in scenario is valid")
    }

    /// Parses and validates scenario text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let mut scenario: Scenario =
            serde_yaml::from_str(text).map_err(|source| ScenarioError::Parse {
                path: origin.to_string(),
                source,
            })?;
        scenario.origin = origin.to_string();
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks names, references, ports, sizes and addresses.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        validate::check(self).map_err(|e| ScenarioError::Invalid {
            path: self.origin_or_unnamed().to_string(),
            field: e.field,
            problem: e.problem,
        })
    }

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

    fn origin_or_unnamed(&self) -> &str {
        if self.origin.is_empty() {
            "<unnamed>"
        } else {
            &self.origin
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

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        })
    }
}
