//! Lab prefixes: `obs` and five hex digits, unique per lab instance.
//!
//! Every namespace of a lab is named `<prefix>-<name>`, so a prefix alone finds
//! all of a lab's leftovers, and parallel labs never collide.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use super::ip::netns_list;

/// What every generated prefix starts with.
pub const PREFIX_STEM: &str = "obs";

/// Checks that `prefix` is safe to select namespaces by: 3-12 characters of a-z
/// and 0-9, starting with a letter.
pub fn check(prefix: &str) -> Result<()> {
    let ok = (3..=12).contains(&prefix.len())
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok {
        bail!(
            "bad lab prefix {prefix:?}: need 3-12 characters of a-z and 0-9, starting with a letter"
        );
    }
    Ok(())
}

/// A fresh prefix no existing network namespace uses.
pub fn generate() -> Result<String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let existing = netns_list()?;
    for _ in 0..64 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = (
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed),
        );
        // RandomState is randomly keyed per process: a cheap source of randomness.
        let hash = RandomState::new().hash_one(seed);
        let prefix = format!("{PREFIX_STEM}{:05x}", hash & 0xf_ffff);
        let taken = existing
            .iter()
            .any(|name| name.starts_with(&format!("{prefix}-")));
        if !taken {
            return Ok(prefix);
        }
    }
    bail!("could not find an unused lab prefix")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked() {
        assert!(check("obs3f2a1").is_ok());
        assert!(check("").is_err());
        assert!(check("ob").is_err());
        assert!(check("obs-1").is_err());
        assert!(check("1obs").is_err());
        assert!(check("obs*").is_err());
    }

    #[test]
    fn generated_prefixes_are_valid_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert!(check(&a).is_ok(), "{a}");
        assert_eq!(a.len(), 8);
        assert_ne!(a, b);
    }
}
