//! `observe policy check|apply|delete`: policy files are validated here with the
//! same parser flow-probe uses, then placed in the lab's policy directory, which
//! every node's flow-probe watches and applies without a restart.

use std::path::Path;

use anyhow::Context;
use cluster_spec::policy;

use observe_lab::Lab;

/// Parses a policy file and prints what it holds; errors name the file, the
/// field and the problem.
pub fn check(file: &Path) -> anyhow::Result<()> {
    let policies = policy::load_file(file)?;
    for p in &policies {
        crate::outln!("{}: ok", describe(p))?;
    }
    Ok(())
}

fn describe(p: &policy::Policy) -> String {
    format!("{}/{}", p.namespace, p.name)
}

/// Validates `file` and installs the text it validated in the lab's policy
/// directory atomically (written aside, owner-only, then renamed), so a probe
/// never reads half a file, and what is installed is what was checked.
pub fn apply(file: &Path, state_dir: &Path) -> anyhow::Result<()> {
    let (text, policies) = policy::load_file_with_text(file)?;
    let lab = Lab::attach(state_dir)?;
    let dir = lab.policy_dir();
    let name = file.file_name().context("policy file has no name")?;
    let target = dir.join(name);
    observe_lab::write_atomically(&target, &text)
        .with_context(|| format!("installing {} into {}", file.display(), dir.display()))?;
    for p in &policies {
        crate::outln!("{}: applied ({})", describe(p), target.display())?;
    }
    Ok(())
}

/// Removes an installed policy file by its file name.
pub fn delete(name: &str, state_dir: &Path) -> anyhow::Result<()> {
    let lab = Lab::attach(state_dir)?;
    let target = lab.policy_dir().join(name);
    std::fs::remove_file(&target).with_context(|| format!("removing {}", target.display()))?;
    crate::outln!("{name}: removed")?;
    Ok(())
}
