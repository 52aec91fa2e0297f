//! What the lab writes is its owner's alone: the state folder and the policy
//! folder are 0700; the state, endpoints, services and policy files and the
//! logs of the probe and the relay are 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use observe_lab::Scenario;
use observe_lab::node_probes;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_state_folder_files_and_logs_are_owner_only() {
    let mut env = e2e::start(&Scenario::builtin_default(), &[]);
    let probe = env.probe.clone();
    let relay = node_probes::start_relay(&mut env.lab, std::slice::from_ref(&probe), 0)
        .expect("the relay starts");
    let state = env.state_dir.clone();
    let policies = env.lab.policy_dir();
    let mut modes = vec![
        (state.clone(), mode(&state)),
        (policies.clone(), mode(&policies)),
    ];
    let mut files = vec![
        state.join(observe_lab::STATE_FILE),
        env.lab.endpoints_path(),
        env.lab.services_path(),
        probe.log.clone(),
        relay.log.clone(),
    ];
    files.extend(env.lab.policy_paths());
    assert!(files.len() > 5, "the default scenario has policies");
    modes.extend(files.iter().map(|f| (f.clone(), mode(f))));
    let expected: Vec<_> = modes
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.clone(), if i < 2 { 0o700 } else { 0o600 }))
        .collect();
    assert_eq!(modes, expected);
}
