//! The `observe lab` commands as a person runs them: up starts a probe that
//! serves, traffic runs, status reports the kernel contract, down leaves nothing.
//! Malformed files get errors that name the file and the problem.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::prometheus::{query, start_prometheus};

fn observe(args: &[&str]) -> Output {
    Command::new(e2e::observe_binary())
        .args(args)
        .output()
        .expect("run observe")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Removes the lab's state folder when the test ends, first taking the lab
/// down if a failed assertion left it up: its namespaces, its probes on 4244
/// and 9965, its relay on 4245 and 9966 would otherwise fail the next run on
/// this machine.
struct LabCleanup(std::path::PathBuf);

impl Drop for LabCleanup {
    fn drop(&mut self) {
        if self.0.join("state.json").exists() {
            let _ = observe_lab::down(&self.0);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `observe nodes` of the lab in `state`: each node's name and whether it
/// is Connected.
fn connected_nodes(state: &str) -> Vec<String> {
    let nodes = observe(&["nodes", "--lab", state]);
    assert!(nodes.status.success(), "{}", text(&nodes));
    text(&nodes)
        .lines()
        .skip(1)
        .map(|l| {
            format!(
                "{} {}",
                l.split_whitespace().next().unwrap_or(""),
                if l.contains("Connected") {
                    "connected"
                } else {
                    "not connected"
                }
            )
        })
        .collect()
}

/// `node`'s age in whole seconds, as `observe nodes` shows it (`1m5s`).
fn node_age_secs(state: &str, node: &str) -> u64 {
    let nodes = observe(&["nodes", "--lab", state]);
    let listing = text(&nodes);
    let line = (listing.lines())
        .find(|l| l.split_whitespace().next() == Some(node))
        .unwrap_or_else(|| panic!("{node} not listed: {listing}"));
    let age = line.split_whitespace().nth(2).unwrap();
    // Up less than half a second: no age yet, as hubble shows it.
    if age == "N/A" && line.contains("Connected") {
        return 0;
    }
    let (mut secs, mut number) = (0, 0);
    for c in age.chars() {
        match c {
            '0'..='9' => number = number * 10 + u64::from(c as u8 - b'0'),
            'h' | 'm' | 's' => {
                secs += number * [3600, 60, 1]["hms".find(c).unwrap()];
                number = 0;
            }
            _ => panic!("not an age: {age} in {line}"),
        }
    }
    secs
}

#[test]
fn lab_up_traffic_status_down_leaves_nothing_behind() {
    test_support::require_root("`observe lab up` builds network namespaces");
    let dir = std::env::temp_dir().join(format!("observe-labcli-{}", std::process::id()));
    let _cleanup = LabCleanup(dir.clone());
    let state = dir.to_str().unwrap();
    let up = observe(&["lab", "up", "--state-dir", state]);
    assert!(up.status.success(), "{}", text(&up));
    let out = text(&up);
    let prefix = out.split_whitespace().nth(1).unwrap().to_string();
    assert!(prefix.starts_with("obs"), "{out}");
    let pid: u32 = out
        .split("(pid ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // `lab up` returns once the relay follows both nodes: listed right
    // away as connected, under their names.
    assert!(!out.contains("note:"), "{out}");
    assert_eq!(
        connected_nodes(state),
        ["node1 connected", "node2 connected"]
    );
    let netns = observe_lab::netns_list().unwrap();
    assert_eq!(
        netns
            .iter()
            .filter(|n| n.starts_with(&format!("{prefix}-")))
            .count(),
        7,
        "two nodes and five endpoints: {netns:?}"
    );

    // Prometheus finds every metrics endpoint through the lab's targets
    // file: node1's probe on Hubble's port, node2's on a free one, the relay.
    let node2_metrics = std::fs::read_to_string(dir.join("probe-node2.metrics")).unwrap();
    let targets: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("prometheus-targets.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        targets,
        serde_json::json!([
            {"targets": ["127.0.0.1:9965"], "labels": {"job": "flow-probe", "node": "node1"}},
            {"targets": [node2_metrics.trim()], "labels": {"job": "flow-probe", "node": "node2"}},
            {"targets": ["127.0.0.1:9966"], "labels": {"job": "relay"}},
        ])
    );
    let (_prometheus, prom) = start_prometheus(&format!(
        "  - job_name: observe-lab\n    file_sd_configs: [{{files: ['{}']}}]\n",
        dir.join("prometheus-targets.json").display()
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let up = || {
        let mut up: Vec<(String, String)> = query(prom, "up == 1")
            .iter()
            .map(|s| {
                let m = &s["metric"];
                (
                    m["job"].as_str().unwrap_or("").to_string(),
                    m["instance"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        up.sort();
        up
    };
    let want = vec![
        ("flow-probe".to_string(), "127.0.0.1:9965".to_string()),
        ("flow-probe".to_string(), node2_metrics.trim().to_string()),
        ("relay".to_string(), "127.0.0.1:9966".to_string()),
    ];
    let mut want_sorted = want.clone();
    want_sorted.sort();
    while up() != want_sorted {
        assert!(
            Instant::now() < deadline,
            "Prometheus scrapes {:?}, not {want:?}",
            up()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // A second lab would serve on the same ports: refused before it builds
    // anything.
    let second = dir.with_extension("second");
    let again = observe(&["lab", "up", "--state-dir", second.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        text(&again),
        "observe: 127.0.0.1:4244, where a lab serves, is taken (Address already in use (os error \
         98)): is a lab up already? `observe lab down --state-dir DIR` takes it down; `observe \
         demo` serves on free ports\n"
    );
    assert!(!second.exists());
    assert_eq!(observe_lab::netns_list().unwrap(), netns);

    let traffic = observe(&["lab", "traffic", "--state-dir", state]);
    assert!(traffic.status.success(), "{}", text(&traffic));
    assert_eq!(
        text(&traffic)
            .lines()
            .filter(|l| l.contains(": completed")
                || l.contains(": refused")
                || l.contains(": dropped"))
            .count(),
        10,
        "{}",
        text(&traffic)
    );
    assert!(
        text(&traffic).ends_with("\n1 round, 10 items, 0 not as expected\n"),
        "{}",
        text(&traffic)
    );

    // Rounds for a while, ended by Ctrl-C (SIGINT to the terminal's whole
    // process group): the round running ends, its clients untouched, then
    // the summary, and the exit is the rounds'.
    let mut rounds = Command::new(e2e::observe_binary())
        .args(["lab", "traffic", "--duration", "600", "--state-dir", state])
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run observe");
    let mut stdout = std::io::BufReader::new(rounds.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(
        first.starts_with("traffic for 600 s, rounds 1 s apart;"),
        "{first}"
    );
    // Into a round with a service item (a client process of its own).
    std::thread::sleep(Duration::from_millis(300));
    rustix::process::kill_process_group(
        rustix::process::Pid::from_child(&rounds),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = rounds.wait().unwrap();
    assert!(status.success(), "{status:?}: {rest}");
    // `N round(s), 10×N items, 0 not as expected`.
    let last = rest.lines().last().unwrap_or_default();
    let counts: Vec<u64> = last
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        matches!(counts[..], [r, i, 0] if r >= 1 && i == 10 * r)
            && last.ends_with(" items, 0 not as expected"),
        "{rest}"
    );

    // With db's port held by someone else, its item fails, says why, and the
    // command fails so that a script sees it.
    let db = observe_lab::Lab::attach(&dir)
        .unwrap()
        .endpoint("db")
        .unwrap()
        .clone();
    let held = observe_lab::run_in_netns(&db.netns, move || {
        Ok(std::net::TcpListener::bind((db.ipv4, 5432))?)
    })
    .unwrap();
    let blocked = observe(&["lab", "traffic", "--state-dir", state]);
    drop(held);
    let out = text(&blocked);
    assert_eq!(blocked.status.code(), Some(1), "{out}");
    let db_item = out.lines().find(|l| l.starts_with("[2] ")).unwrap();
    assert!(
        db_item.ends_with(&format!(
            ": failed: server: listening on {}:5432: Address already in use (os error 98), \
             sent 0 B, received 0 B (UNEXPECTED: wanted ok)",
            db.ipv4
        )),
        "{out}"
    );
    assert!(
        out.ends_with(
            "\n1 round, 10 items, 1 not as expected\nobserve: 1 of 10 items did not end as \
             the scenario expects: see the lines marked UNEXPECTED\n"
        ),
        "{out}"
    );

    // Everything in the lab talks mTLS: without its certificates the probe
    // refuses, and observe says which flags would do.
    let plain = observe(&["status", "--server", "127.0.0.1:4244"]);
    assert!(!plain.status.success());
    assert_eq!(
        text(&plain).trim(),
        "observe: the connection to the server failed: the server closed the connection or did not answer in HTTP/2: if it serves TLS, \
         give --tls with --tls-ca-cert-files (and --tls-client-cert-file and --tls-client-key-file for mTLS); \
         if its log says it is at its connection cap, wait or raise its --max-connections; \
         for a lab's servers, --lab STATE_DIR"
    );
    let status = observe(&["status", "--server", "127.0.0.1:4244", "--lab", state]);
    let s = text(&status);
    assert!(status.status.success(), "{s}");
    assert!(s.contains("Healthcheck (via 127.0.0.1:4244): Ok"), "{s}");
    assert!(s.contains("/4,095 ("), "{s}");
    assert!(
        s.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["tcx", "yes"]),
        "{s}"
    );
    // Through the lab's relay, which follows both probes over mTLS: both
    // nodes, connected.
    let relay = text(&observe(&["status", "--lab", state]));
    assert!(
        relay.contains("Healthcheck (via 127.0.0.1:4245): Ok")
            && relay.contains("Connected Nodes: 2/2"),
        "{relay}"
    );
    assert_eq!(
        connected_nodes(state),
        ["node1 connected", "node2 connected"]
    );

    // node2's probe and the relay restarted where they served; the lab
    // records the new processes (down stops them below) and the relay
    // follows node2's new probe.
    let node2_addr = std::fs::read_to_string(dir.join("probe-node2.addr")).unwrap();
    let restarting = std::time::Instant::now();
    let node2 = observe(&["lab", "restart", "node2", "--state-dir", state]);
    // It returned once the relay followed the new probe, not the old one
    // it may not have seen end yet: node2's age is the new probe's.
    let age = node_age_secs(state, "node2");
    assert!(
        age <= restarting.elapsed().as_secs(),
        "node2 is {age} s old, restarted {:?} ago",
        restarting.elapsed()
    );
    assert!(!text(&node2).contains("note:"), "{}", text(&node2));
    assert!(
        text(&node2).starts_with(&format!(
            "restarted node2's flow-probe on {} (pid ",
            node2_addr.trim()
        )),
        "{}",
        text(&node2)
    );
    // Meanwhile the relay's address stays published: a client that found
    // none would fall back to node1's probe on 4244 and take it for the
    // cluster.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let (done, address) = (done.clone(), dir.join("relay.addr"));
        std::thread::spawn(move || {
            let mut missing = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                missing += usize::from(!address.exists());
                std::thread::sleep(Duration::from_millis(1));
            }
            missing
        })
    };
    let relay = observe(&["lab", "restart", "relay", "--state-dir", state]);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    // The earlier relay's log stays, as the probes' do: both starts are in it.
    let relay_log = std::fs::read_to_string(dir.join("relay.log")).unwrap();
    assert_eq!(
        relay_log.matches("serving observer.Observer on ").count(),
        2,
        "{relay_log}"
    );
    assert_eq!(watch.join().unwrap(), 0, "polls that found no relay.addr");
    assert!(
        text(&relay).starts_with("restarted the relay on 127.0.0.1:4245 (pid "),
        "{}",
        text(&relay)
    );
    // node2's metrics are served where they were: its target is the same.
    let again = std::fs::read_to_string(dir.join("probe-node2.metrics")).unwrap();
    assert_eq!(again.trim(), node2_metrics.trim());
    let targets: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("prometheus-targets.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(targets[1]["targets"][0], node2_metrics.trim());
    // `lab restart relay` too returns once the new relay follows both.
    assert!(!text(&relay).contains("note:"), "{}", text(&relay));
    assert_eq!(
        connected_nodes(state),
        ["node1 connected", "node2 connected"]
    );
    let unknown = observe(&["lab", "restart", "node9", "--state-dir", state]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        text(&unknown),
        "observe: no node node9 in the lab: restart one of node1, node2 or relay\n"
    );

    let down = observe(&["lab", "down", "--state-dir", state]);
    assert!(down.status.success(), "{}", text(&down));
    assert_eq!(
        text(&down).trim(),
        format!("lab {prefix} removed: 7 network namespaces deleted, 3 processes stopped")
    );
    let left: Vec<String> = observe_lab::netns_list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    // Down again: nothing left to remove, and no failure (a script's trap).
    let again = observe(&["lab", "down", "--state-dir", state]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        text(&again).trim(),
        format!("no lab at {state}: nothing to remove")
    );
    // Reparented to init once `lab up` exited: gone, or a zombie until init reaps it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "flow-probe {pid} still runs: {stat}"
    );
    assert!(!dir.join("state.json").exists());
    assert!(!dir.join("prometheus-targets.json").exists());

    // SIGINT while it builds: `lab up` takes down what it built (before,
    // it died with the namespaces and probes made so far left up) and
    // exits as SIGINT's would, 130; its steps were on stderr.
    let child = Command::new(e2e::observe_binary())
        .args(["lab", "up", "--state-dir", state])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("state.json").exists() {
        assert!(Instant::now() < deadline, "no state.json from lab up");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let prefix = err
        .split("lab up: interrupted: taking lab ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no interruption line: {err}"));
    assert!(
        err.starts_with("lab up: building 5 endpoints on 2 node(s)\n"),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "observe: lab up interrupted: lab {prefix} taken down: stopped by SIGINT\n"
        )),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let left: Vec<String> = observe_lab::netns_list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    assert!(!dir.join("state.json").exists());
    for port in [4244, 4245] {
        std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("127.0.0.1:{port} still taken: {e}"));
    }
}

#[test]
fn malformed_scenario_and_endpoints_files_are_named() {
    let dir = std::env::temp_dir().join(format!("observe-badfiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("bad-scenario.yaml");
    std::fs::write(&scenario, "endpoints:\n  - {name: a, namespace: x}\ntraffic:\n  - {from: a, to: nobody, protocol: tcp, port: 80}\n").unwrap();
    let out = observe(&[
        "lab",
        "up",
        scenario.to_str().unwrap(),
        "--state-dir",
        dir.join("state").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "observe: scenario {}: traffic[0].to: unknown endpoint \"nobody\"",
            scenario.display()
        )
    );

    let endpoints = dir.join("bad-endpoints.yaml");
    std::fs::write(
        &endpoints,
        "endpoints:\n  - {id: 1, name: a, namespace: x, node: n, ipv4: 198.18.0.300}\n",
    )
    .unwrap();
    let probe = observe_lab::binaries::binary("flow-probe").unwrap();
    let out = Command::new(probe)
        .args([
            "--endpoints",
            endpoints.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().last().unwrap();
    assert!(
        line.starts_with(&format!(
            "flow-probe: endpoints file {}: endpoints[0]",
            endpoints.display()
        )),
        "{err}"
    );
    assert!(line.contains("invalid IPv4 address syntax"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
