//! From scenario text to a checked [`Scenario`]: [`Scenario::load`],
//! [`Scenario::parse`] and [`Scenario::validate`], and the checks they run, in
//! this order, stopping at the first problem:
//!
//! - [`endpoints`]: names, nodes, labels and addresses;
//! - [`services`]: the services as flow-probe checks them, VIPs apart from
//!   endpoint addresses;
//! - [`traffic`]: the endpoints or service each item names, ports, sizes;
//! - [`policies`]: light checks of the CiliumNetworkPolicy documents.
//!
//! Every check reports a [`problem::Problem`]: the field path and what is wrong.

use std::path::Path;

use crate::scenario::{
    BUILTIN_CAPTURE, BUILTIN_CAPTURE_ORIGIN, BUILTIN_DEFAULT, BUILTIN_ORIGIN, Scenario,
    ScenarioError,
};

mod endpoints;
mod policies;
mod problem;
mod services;
mod traffic;

pub use policies::POLICY_KIND;

impl Scenario {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let shown = path.display().to_string();
        let text = cluster_spec::input::read_text(path).map_err(|error| ScenarioError::Io {
            path: shown.clone(),
            error,
        })?;
        Self::parse(&text, &shown)
    }

    /// The built-in default scenario (`scenarios/default.yaml`): five endpoints
    /// on two nodes, policies, a service, and traffic that the policies
    /// forward, drop and audit.
    pub fn builtin_default() -> Self {
        Self::parse(BUILTIN_DEFAULT, BUILTIN_ORIGIN).expect("the built-in scenario is valid")
    }

    /// The built-in capture scenario (`scenarios/capture.yaml`): the same four
    /// endpoints, no policies, and traffic that all gets through (one refused port).
    pub fn builtin_capture() -> Self {
        Self::parse(BUILTIN_CAPTURE, BUILTIN_CAPTURE_ORIGIN)
            .expect("the built-in capture scenario is valid")
    }

    /// Parses and validates scenario text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let mut scenario: Scenario =
            cluster_spec::yaml::from_str(text).map_err(|error| ScenarioError::Parse {
                path: origin.to_string(),
                error,
            })?;
        scenario.origin = origin.to_string();
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks names, references, ports, sizes and addresses.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let check = endpoints::check(self)
            .and_then(|()| services::check(self))
            .and_then(|()| traffic::check(self))
            .and_then(|()| policies::check(self));
        check.map_err(|e| ScenarioError::Invalid {
            path: self.origin_or_unnamed().to_string(),
            field: e.field,
            problem: e.problem,
        })
    }
}
