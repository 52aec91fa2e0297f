//! Policies: each is a mapping with `kind: CiliumNetworkPolicy` and a
//! `metadata.name` fit for a file name, no two share namespace and name, and
//! each passes the whole policy language's checks, as flow-probe makes them
//! when it reads the policy directory: a policy the probes would refuse would
//! leave its endpoints open, so the scenario is refused before anything is
//! built.

use std::collections::HashMap;

use cluster_spec::policy::PolicyError;
use serde_json::Value;

use super::problem::{Problem, fail};
use crate::scenario::Scenario;

/// The only policy kind a scenario may carry.
pub const POLICY_KIND: &str = cluster_spec::policy::KIND;
/// Longest policy name (a Kubernetes object name; it also names the policy file).
pub const MAX_POLICY_NAME_LEN: usize = 253;

/// Checks every policy document, stopping at the first problem.
pub(super) fn check(s: &Scenario) -> Result<(), Problem> {
    let mut seen: HashMap<(Option<&str>, &str), usize> = HashMap::new();
    for (i, policy) in s.policies.iter().enumerate() {
        let at = format!("policies[{i}]");
        let Some(doc) = policy.as_object() else {
            return fail(
                at,
                format!(
                    "must be a mapping (a {POLICY_KIND} document), not {}",
                    kind_of(policy)
                ),
            );
        };
        match doc.get("kind") {
            None => return fail(format!("{at}.kind"), "missing"),
            Some(Value::String(kind)) if kind == POLICY_KIND => {}
            Some(Value::String(kind)) => {
                return fail(
                    format!("{at}.kind"),
                    format!("{kind:?} is not supported (only {POLICY_KIND})"),
                );
            }
            Some(other) => {
                return fail(
                    format!("{at}.kind"),
                    format!("must be the string {POLICY_KIND}, not {}", kind_of(other)),
                );
            }
        }
        let metadata = match doc.get("metadata") {
            None => return fail(format!("{at}.metadata.name"), "missing"),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return fail(
                    format!("{at}.metadata"),
                    format!("must be a mapping, not {}", kind_of(other)),
                );
            }
        };
        let name = match metadata.get("name") {
            None => return fail(format!("{at}.metadata.name"), "missing"),
            Some(Value::String(name)) => name.as_str(),
            Some(other) => {
                return fail(
                    format!("{at}.metadata.name"),
                    format!("must be a string, not {}", kind_of(other)),
                );
            }
        };
        check_object_name(&format!("{at}.metadata.name"), name)?;
        let namespace = match metadata.get("namespace") {
            None => None,
            Some(Value::String(ns)) => Some(ns.as_str()),
            Some(other) => {
                return fail(
                    format!("{at}.metadata.namespace"),
                    format!("must be a string, not {}", kind_of(other)),
                );
            }
        };
        if let Some(first) = seen.insert((namespace, name), i) {
            let shown = match namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_string(),
            };
            return fail(
                format!("{at}.metadata.name"),
                format!("duplicate policy {shown:?} (also policies[{first}])"),
            );
        }
    }
    // Then, each well-formed, the language (its first problem only: the
    // checks above come first for every policy).
    for (i, policy) in s.policies.iter().enumerate() {
        check_language(&format!("policies[{i}]"), policy)?;
    }
    Ok(())
}

/// The policy as flow-probe will read it: written as the lab writes its file
/// (probe_files), parsed and validated by the same code.
fn check_language(at: &str, policy: &Value) -> Result<(), Problem> {
    let text = match cluster_spec::yaml::to_string(policy) {
        Ok(text) => text,
        Err(e) => return fail(at, format!("cannot be written as YAML: {e}")),
    };
    match cluster_spec::policy::parse(&text, at) {
        Ok(_) => Ok(()),
        Err(PolicyError::Invalid { field, problem, .. }) => fail(format!("{at}.{field}"), problem),
        // Lines would count in the text written here, not the scenario's.
        Err(PolicyError::Yaml { error, .. }) if !error.path.is_empty() => {
            fail(format!("{at}.{}", error.path), error.message)
        }
        Err(PolicyError::Yaml { error, .. }) => fail(at, error.message),
        Err(other) => fail(at, other.to_string()),
    }
}

/// A Kubernetes object name: `[a-z0-9]([a-z0-9.-]*[a-z0-9])?`, at most
/// [`MAX_POLICY_NAME_LEN`] characters.
fn check_object_name(field: &str, name: &str) -> Result<(), Problem> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.len() > MAX_POLICY_NAME_LEN
        || !ok_chars
        || !edge_ok(name.bytes().next())
        || !edge_ok(name.bytes().last())
    {
        return fail(
            field,
            format!(
                "name {name:?} must be 1-{MAX_POLICY_NAME_LEN} characters of a-z, 0-9, '-' \
                 and '.', starting and ending with a letter or digit"
            ),
        );
    }
    Ok(())
}

/// What kind of YAML value this is, for error messages (read into JSON's
/// value type, which holds every document a policy can be).
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}
