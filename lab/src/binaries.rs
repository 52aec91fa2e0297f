//! Where the project's executables are: the lab starts `flow-probe` and
//! `relay`, and runs traffic clients through `observe lab client`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// The executable `name` (`flow-probe`, `relay`, `observe`): the path in
/// `$FLOW_PROBE_BIN` / `$RELAY_BIN` / `$OBSERVE_BIN` if set, this process if
/// it is `name`, else `name` next to this executable or one folder up (test
/// executables live in `target/debug/deps`).
pub fn binary(name: &str) -> Result<PathBuf> {
    let var = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(&var) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    if exe.file_name().is_some_and(|n| n == name) {
        return Ok(exe);
    }
    let dir = exe.parent().context("this executable has no folder")?;
    for candidate in [dir.join(name), dir.join("..").join(name)] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{name} not found next to {}; build it (cargo build --bins) or set {var}",
        exe.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_program_is_named_with_its_variable() {
        let err = binary("no-such-program").unwrap_err().to_string();
        assert!(
            err.starts_with("no-such-program not found next to "),
            "{err}"
        );
        assert!(
            err.ends_with("build it (cargo build --bins) or set NO_SUCH_PROGRAM_BIN"),
            "{err}"
        );
    }
}
