//! Tests that load eBPF programs or build network namespaces need root. They
//! call [`require_root`] first: without root they fail with a message that
//! says so, never pass by returning early. CI runs them as root.

/// Fails the calling test unless the process runs as root; `what` says what
/// the test needs root for.
#[track_caller]
pub fn require_root(what: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root ({what}): run it as root, as scripts/test.sh and CI do"
    );
}
