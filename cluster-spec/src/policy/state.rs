//! [`PolicyState`]: everything a compiled policy comes from, kept as text so
//! it can be recorded and compiled again later: the policy files as they
//! were read and the endpoints they were compiled against. flow-probe
//! records one per policy generation it puts in force; the relay keeps them
//! in history, so a what-if replays each flow against what was in force when
//! it passed.
//!
//! A state's [`version`](PolicyState::version) is a digest of its content:
//! equal states have equal versions on every node and across restarts, and
//! the relay checks a state it receives against the version it is named by.

use std::fmt::Write as _;
use std::path::Path;

use crate::endpoints::{EndpointsError, EndpointsFile};

use super::load::{self, LoadedDir, PolicyFile};
use super::{CompiledPolicy, Policy, PolicyError, compile, parse};

/// The policy files and the endpoints one compiled policy came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// In the order they were read (file-name order).
    pub files: Vec<PolicyFile>,
    pub endpoints: EndpointsFile,
}

/// Why a recorded state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Endpoints(#[from] EndpointsError),
    /// The endpoints could not be written as YAML.
    #[error("endpoints: {0}")]
    Encode(crate::yaml::YamlError),
}

/// Hex digits of a version (the first 64 bits of the SHA-256 of the state).
pub const VERSION_DIGITS: usize = 16;

impl PolicyState {
    /// Reads every policy file of `dir` (none: no policy) as
    /// [`super::load_dir`] does, with their texts; the rest of what was
    /// read comes alongside (its `files` moved into the state).
    pub fn read(
        dir: Option<&Path>,
        endpoints: EndpointsFile,
    ) -> Result<(PolicyState, LoadedDir), PolicyError> {
        let mut loaded = match dir {
            Some(d) => load::load_dir_with_texts(d)?,
            None => LoadedDir::default(),
        };
        let files = std::mem::take(&mut loaded.files);
        Ok((PolicyState { files, endpoints }, loaded))
    }

    /// A state from its recorded parts: the files and the endpoints file's
    /// text (as [`PolicyState::endpoints_yaml`] wrote it).
    pub fn from_parts(files: Vec<PolicyFile>, endpoints_yaml: &str) -> Result<Self, StateError> {
        let endpoints = EndpointsFile::parse(endpoints_yaml, "recorded endpoints")?;
        Ok(PolicyState { files, endpoints })
    }

    /// The endpoints as the text of an endpoints file.
    pub fn endpoints_yaml(&self) -> Result<String, StateError> {
        crate::yaml::to_string(&self.endpoints).map_err(StateError::Encode)
    }

    /// The policies of every file, read again; errors name the file.
    pub fn policies(&self) -> Result<Vec<Policy>, PolicyError> {
        let mut out = Vec::new();
        for f in &self.files {
            out.extend(parse(&f.text, &f.name)?);
        }
        load::check_duplicates(&out)?;
        Ok(out)
    }

    /// The compiled policy of this state.
    pub fn compile(&self) -> Result<CompiledPolicy, PolicyError> {
        Ok(compile(&self.policies()?, &self.endpoints))
    }

    /// The digest that names this state: [`VERSION_DIGITS`] hex digits.
    pub fn version(&self) -> Result<String, StateError> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut field = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_le_bytes());
            ctx.update(bytes);
        };
        field(&(self.files.len() as u64).to_le_bytes());
        for f in &self.files {
            field(f.name.as_bytes());
            field(f.text.as_bytes());
        }
        field(self.endpoints_yaml()?.as_bytes());
        let digest = ctx.finish();
        let mut out = String::with_capacity(VERSION_DIGITS);
        for b in &digest.as_ref()[..VERSION_DIGITS / 2] {
            let _ = write!(out, "{b:02x}");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINTS: &str = "endpoints:
- {id: 1, name: api, namespace: default, labels: {app: api}, ipv4: 198.18.0.3, node: n1}
";

    const POLICY: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api}
spec: {endpointSelector: {matchLabels: {app: api}}, ingress: []}
";

    fn state(text: &str) -> PolicyState {
        PolicyState {
            files: vec![PolicyFile {
                name: "api.yaml".into(),
                text: text.into(),
            }],
            endpoints: EndpointsFile::parse(ENDPOINTS, "e").unwrap(),
        }
    }

    #[test]
    fn the_version_names_the_content_and_survives_a_round_trip() {
        let s = state(POLICY);
        let v = s.version().unwrap();
        assert_eq!(v.len(), VERSION_DIGITS);
        assert!(v.bytes().all(|b| b.is_ascii_hexdigit()), "{v}");
        let again = PolicyState::from_parts(s.files.clone(), &s.endpoints_yaml().unwrap()).unwrap();
        assert_eq!(again, s);
        assert_eq!(again.version().unwrap(), v);
        assert_ne!(
            state(&format!("{POLICY}# a comment\n")).version().unwrap(),
            v
        );
        assert_ne!(PolicyState::default().version().unwrap(), v);
    }

    #[test]
    fn a_state_compiles_its_files_and_names_the_file_of_a_problem() {
        let compiled = state(POLICY).compile().unwrap();
        assert_eq!(compiled.policies.len(), 1);
        let err = state("kind: Nope\n").compile().unwrap_err().to_string();
        assert!(err.starts_with("policy api.yaml: kind:"), "{err}");
        let mut twice = state(POLICY);
        twice.files.push(PolicyFile {
            name: "again.yaml".into(),
            text: POLICY.into(),
        });
        let err = twice.compile().unwrap_err().to_string();
        assert!(err.contains("already defined in api.yaml"), "{err}");
    }
}
