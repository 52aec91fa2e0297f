//! Reading policy files and directories.

use std::collections::BTreeMap;
use std::path::Path;

use super::PolicyError;
use super::spec::{Header, Policy, RawPolicy, check_header};
use crate::yaml;

/// One policy file: its name in the policy directory and its text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyFile {
    pub name: String,
    pub text: String,
}

/// Reads every policy of a file (several YAML documents may be separated by `---`;
/// empty documents are skipped and not counted). Any problem fails the whole file.
pub fn load_file(path: &Path) -> Result<Vec<Policy>, PolicyError> {
    load_file_with_text(path).map(|(_, policies)| policies)
}

/// [`load_file`], with the text that was read and checked (what `observe
/// policy apply` installs, so that it is exactly what was validated).
pub fn load_file_with_text(path: &Path) -> Result<(String, Vec<Policy>), PolicyError> {
    let shown = path.display().to_string();
    let text = crate::input::read_text(path).map_err(|error| PolicyError::Io {
        path: shown.clone(),
        error,
    })?;
    let policies = parse(&text, &shown)?;
    Ok((text, policies))
}

/// Reads every `*.yaml` and `*.yml` file of a directory (not its subdirectories,
/// not hidden files), in file-name order. Any problem fails the whole directory.
pub fn load_dir(dir: &Path) -> Result<Vec<Policy>, PolicyError> {
    load_dir_with_texts(dir).map(|loaded| loaded.policies)
}

/// What [`load_dir_with_texts`] read.
#[derive(Debug, Default)]
pub struct LoadedDir {
    /// Each file's name and the text that was read and checked.
    pub files: Vec<PolicyFile>,
    pub policies: Vec<Policy>,
    /// Files that hold no policy (empty, or only comments): worth a warning,
    /// since a truncated file lifts what it used to enforce.
    pub without_policies: Vec<String>,
}

/// [`load_dir`], with each file's name and the text that was read and checked.
pub fn load_dir_with_texts(dir: &Path) -> Result<LoadedDir, PolicyError> {
    let io = |error| PolicyError::Io {
        path: dir.display().to_string(),
        error,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let yaml = path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml");
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        // Anything but a folder is read, so that a FIFO or a device named
        // `*.yaml` is refused by name instead of skipped.
        if yaml && !hidden && !path.is_dir() {
            files.push(path);
        }
    }
    files.sort();
    let mut out = LoadedDir::default();
    for file in files {
        let (text, policies) = load_file_with_text(&file)?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if policies.is_empty() {
            out.without_policies.push(name.clone());
        }
        out.files.push(PolicyFile { name, text });
        out.policies.extend(policies);
    }
    check_duplicates(&out.policies)?;
    Ok(out)
}

/// Parses the text of one file; `origin` names the file in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Policy>, PolicyError> {
    let yaml = |error| PolicyError::Yaml {
        file: origin.to_string(),
        error,
    };
    // First pass: YAML syntax, and what each document claims to be.
    let headers: Vec<Header> = yaml::documents(text).map_err(yaml)?;
    let several = headers.len() > 1;
    let label = |index: usize| {
        if several {
            format!("{origin} (document {})", index + 1)
        } else {
            origin.to_string()
        }
    };
    let invalid = |index: usize, (field, problem): (String, String)| PolicyError::Invalid {
        file: label(index),
        field,
        problem,
    };
    for (index, h) in headers.iter().enumerate() {
        check_header(h.api_version.as_deref(), h.kind.as_deref()).map_err(|p| invalid(index, p))?;
    }
    // Second pass: the full, strict shape, then validation.
    let mut out = Vec::new();
    let documents: Vec<RawPolicy> = yaml::documents(text).map_err(yaml)?;
    for (index, raw) in documents.into_iter().enumerate() {
        out.push(raw.validate(&label(index)).map_err(|p| invalid(index, p))?);
    }
    check_duplicates(&out)?;
    Ok(out)
}

/// A namespace and name may be defined once: in one file, or in the files
/// read together (errors name both files).
pub fn check_duplicates(policies: &[Policy]) -> Result<(), PolicyError> {
    let mut seen: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for p in policies {
        if let Some(first) = seen.insert((&p.namespace, &p.name), &p.origin) {
            return Err(PolicyError::Duplicate {
                file: p.origin.clone(),
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                first: first.to_string(),
            });
        }
    }
    Ok(())
}
