//! What the lab writes is its owner's alone: the state folder and the policy
//! folder are 0700; the state, endpoints, services and policy files and the
//! logs of the probe and the relay are 0600. A relay run as another user
//! starts over a history folder holding what it may not read or change.

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

/// The relay run as a user of its own over a history folder that holds
/// what it may not read or change: an ext4 volume's `lost+found` (root's,
/// 0700) and a file an admin copied in. It starts, naming each in a
/// warning (it refused to start: `opening …: Permission denied`).
#[test]
fn the_relay_as_another_user_starts_over_what_it_may_not_touch() {
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let dir = test_support::scratch::ScratchDir::new("relay-nobody");
    let root = dir.path();
    std::os::unix::fs::chown(root, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let history = root.join("history");
    std::fs::create_dir(&history).unwrap();
    std::os::unix::fs::chown(&history, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&history, std::fs::Permissions::from_mode(0o700)).unwrap();
    let lost = history.join("lost+found");
    std::fs::create_dir(&lost).unwrap();
    std::fs::set_permissions(&lost, std::fs::Permissions::from_mode(0o700)).unwrap();
    let notes = history.join("notes.txt");
    std::fs::write(&notes, "copied in by root\n").unwrap();
    std::fs::set_permissions(&notes, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The binary where that user can reach it (a clone's target folder may
    // be under a home it cannot enter).
    let relay = root.join("relay");
    let built = observe_lab::binaries::binary("relay").expect("relay binary");
    if std::fs::hard_link(&built, &relay).is_err() {
        std::fs::copy(&built, &relay).unwrap();
    }
    let log = root.join("relay.log");
    let ready = root.join("relay.addr");
    let mut child = std::process::Command::new(&relay)
        .args(["--listen", "127.0.0.1:0", "--peer", e2e::REFUSING_PEER])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .arg("--history-dir")
        .arg(&history)
        .arg("--ready-file")
        .arg(&ready)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .expect("relay starts");
    let deadline = std::time::Instant::now() + e2e::WAIT;
    let started = loop {
        if ready.exists() {
            break true;
        }
        if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(started, "the relay did not start: {text}");
    assert!(
        text.contains(&format!("history: {} cannot be read (", lost.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "history: {} is not the relay's to make owner-only (",
            notes.display()
        )),
        "{text}"
    );
}
