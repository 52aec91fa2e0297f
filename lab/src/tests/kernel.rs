//! Real-kernel lab tests (root): build labs, run traffic, check teardown.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use cluster_spec::endpoints::EndpointsFile;

use crate::*;

const TWO: &str = "endpoints:\n\
    - {name: a, namespace: ns}\n\
    - {name: b, namespace: ns}\n";

/// A state directory of its own for one test.
fn state_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("observe-lab-test-{}-{tag}-{n}", std::process::id()))
}

/// Names of namespaces with this lab prefix.
fn leftovers(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new(ip::ip_binary())
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Checks one reported item against what the scenario makes it do.
#[allow(clippy::too_many_arguments)]
fn check_item(
    item: &ItemReport,
    proto: Protocol,
    (src, dst): (&str, &str),
    port: Option<u16>,
    outcome: Outcome,
    (sent, received): (u64, u64),
    (server_received, server_sent): (u64, u64),
) {
    let at = format!("{item}");
    assert_eq!(item.protocol, proto, "{at}");
    assert_eq!((item.src_ip, item.dst_ip), (ip(src), ip(dst)), "{at}");
    assert_eq!(item.dst_port, port, "{at}");
    assert_eq!(item.outcome, outcome, "{at}");
    assert_eq!(
        (item.bytes_sent, item.bytes_received),
        (sent, received),
        "{at}"
    );
    assert_eq!(
        (item.server_bytes_received, item.server_bytes_sent),
        (server_received, server_sent),
        "{at}"
    );
    match proto {
        Protocol::Tcp | Protocol::Udp => {
            assert!(item.src_port.is_some_and(|p| p >= 1024), "{at}");
            assert_eq!((item.icmp_id, item.icmp_seq), (None, None), "{at}");
        }
        Protocol::Icmp => {
            assert!(item.icmp_id.is_some() && item.icmp_seq.is_some(), "{at}");
            assert_eq!(item.src_port, None, "{at}");
        }
    }
    assert!(
        item.started_unix_ns > 0 && item.finished_unix_ns >= item.started_unix_ns,
        "{at}"
    );
    assert!(item.as_expected(), "{at}");
}

#[test]
fn capture_lab_runs_every_item_exactly_and_drop_removes_everything() {
    test_support::require_root("the lab builds network namespaces");
    let dir = state_dir("capture");
    // The policy-free built-in scenario: without flow-probe nothing enforces the
    // default scenario's policies, so its dropped items would not be dropped.
    let scenario = Scenario::builtin_capture();
    let mut lab = Lab::up(&scenario, &LabOptions::with_state_dir(&dir)).unwrap();
    let prefix = lab.prefix().to_string();
    assert!(
        prefix.starts_with(PREFIX_STEM) && prefix.len() == 8,
        "{prefix}"
    );

    let mut names = leftovers(&prefix);
    names.sort();
    let mut want: Vec<String> = ["api", "client", "db", "frontend", "node1"]
        .iter()
        .map(|n| format!("{prefix}-{n}"))
        .collect();
    want.sort();
    assert_eq!(names, want);
    assert_eq!(
        lab.node_netns("node1"),
        Some(format!("{prefix}-node1").as_str())
    );

    let file = EndpointsFile::load(&lab.endpoints_path()).unwrap();
    assert_eq!(file, lab.endpoints_file());
    let ifaces: Vec<_> = file
        .endpoints
        .iter()
        .map(|e| e.interface.clone().unwrap())
        .collect();
    assert_eq!(ifaces, ["lxc1", "lxc2", "lxc3", "lxc4"]);
    let state = LabState::load(&dir).unwrap();
    assert_eq!(state.prefix, prefix);
    assert_eq!(state.node_netns, [format!("{prefix}-node1")]);
    // No policies: the policy directory exists and is empty.
    assert_eq!(lab.policy_dir(), dir.join("policies"));
    assert!(lab.policy_dir().is_dir());
    assert_eq!(std::fs::read_dir(lab.policy_dir()).unwrap().count(), 0);

    // A child to stop on drop, as flow-probe would be.
    let child = netns_command(lab.node_netns("node1").unwrap(), "sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let child_pid = child.id();
    lab.adopt_child(child, "sleep").unwrap();
    assert_eq!(LabState::load(&dir).unwrap().processes[0].pid, child_pid);

    let report = run_traffic_once(&lab, &scenario).unwrap();
    assert_eq!(report.items.len(), 8, "{report}");
    let (fe4, api4, db4, cl4) = ("198.18.1.10", "198.18.1.11", "198.18.1.12", "198.18.1.13");
    let (fe6, api6, db6, cl6) = (
        "fd42:0:0:1::10",
        "fd42:0:0:1::11",
        "fd42:0:0:1::12",
        "fd42:0:0:1::13",
    );
    let done = Outcome::Completed;
    let it = &report.items;
    check_item(
        &it[0],
        Protocol::Tcp,
        (fe4, api4),
        Some(8080),
        done.clone(),
        (100, 1000),
        (100, 1000),
    );
    check_item(
        &it[1],
        Protocol::Tcp,
        (fe6, api6),
        Some(8080),
        done.clone(),
        (200, 2000),
        (200, 2000),
    );
    check_item(
        &it[2],
        Protocol::Tcp,
        (api4, db4),
        Some(5432),
        done.clone(),
        (300, 3000),
        (300, 3000),
    );
    check_item(
        &it[3],
        Protocol::Tcp,
        (cl4, api4),
        Some(9999),
        Outcome::Refused,
        (0, 0),
        (0, 0),
    );
    check_item(
        &it[4],
        Protocol::Udp,
        (cl4, db4),
        Some(5353),
        done.clone(),
        (64, 64),
        (64, 64),
    );
    check_item(
        &it[5],
        Protocol::Udp,
        (cl6, db6),
        Some(5353),
        done.clone(),
        (48, 48),
        (48, 48),
    );
    check_item(
        &it[6],
        Protocol::Icmp,
        (cl4, fe4),
        None,
        done.clone(),
        (56, 56),
        (0, 0),
    );
    check_item(
        &it[7],
        Protocol::Icmp,
        (cl6, fe6),
        None,
        done,
        (56, 56),
        (0, 0),
    );
    assert_eq!(it[1].family, Family::Ipv6);
    // Each echo request is its own exchange: its own identifier.
    assert_ne!(it[6].icmp_id, it[7].icmp_id);

    drop(lab);
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    assert!(
        !std::path::Path::new(&format!("/proc/{child_pid}")).exists(),
        "child {child_pid} still there"
    );
    assert!(!dir.exists(), "state dir {} still there", dir.display());
}

#[test]
fn a_panic_inside_a_lab_scope_leaves_nothing_behind() {
    test_support::require_root("the lab builds network namespaces");
    let dir = state_dir("panic");
    let prefix = std::sync::Mutex::new(String::new());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let scenario = Scenario::parse(TWO, "two.yaml").unwrap();
        let lab = Lab::up(&scenario, &LabOptions::with_state_dir(&dir)).unwrap();
        *prefix.lock().unwrap() = lab.prefix().to_string();
        assert_eq!(leftovers(lab.prefix()).len(), 3);
        panic!("boom inside the lab scope");
    }));
    assert!(result.is_err());
    let prefix = prefix.into_inner().unwrap();
    assert!(!prefix.is_empty());
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    assert!(!dir.exists());
}

#[test]
fn two_nodes_traffic_loop_detach_and_down_from_the_state_dir() {
    test_support::require_root("the lab builds network namespaces");
    let dir = state_dir("twonodes");
    let scenario = Scenario::parse(
        "endpoints:\n\
         - {name: web, namespace: shop, labels: {app: web}}\n\
         - {name: cache, namespace: shop, labels: {app: cache}, node: node2}\n\
         traffic:\n\
         - {from: web, to: cache, protocol: tcp, port: 6379, family: ipv6, request_bytes: 10, response_bytes: 20}\n\
         - {from: cache, to: web, protocol: udp, port: 9000, request_bytes: 1400}\n\
         - {from: web, to: cache, protocol: udp, port: 9001, family: ipv6, expect: refused}\n\
         - {from: web, to: cache, protocol: icmp, family: ipv6, request_bytes: 0}\n",
        "two-nodes.yaml",
    )
    .unwrap();
    let mut lab = Lab::up(&scenario, &LabOptions::with_state_dir(&dir)).unwrap();
    let prefix = lab.prefix().to_string();
    assert_eq!(
        lab.endpoint("cache").unwrap().ipv4.to_string(),
        "198.18.2.10"
    );

    let report = run_traffic_once(&lab, &scenario).unwrap();
    assert!(report.all_as_expected(), "{report}");
    assert_eq!(report.items[1].bytes_received, 1400);
    assert_eq!(report.items[2].outcome, Outcome::Refused, "{report}");
    assert!(report.items[2].src_port.is_some());

    // A second lab cannot take over a state directory whose lab is up.
    let err = Lab::up(&scenario, &LabOptions::with_state_dir(&dir)).unwrap_err();
    assert!(format!("{err:#}").contains("which is still up"), "{err:#}");

    let stop = AtomicBool::new(false);
    let summary = run_traffic_with(
        &lab,
        &scenario,
        Duration::from_secs(20),
        Duration::from_millis(50),
        &stop,
        |round, _| {
            if round == 2 {
                stop.store(true, Ordering::Relaxed);
            }
        },
    )
    .unwrap();
    assert_eq!(
        (summary.rounds, summary.items, summary.unexpected),
        (2, 8, 0),
        "{summary:?}"
    );

    let mut child = netns_command(lab.node_netns("node2").unwrap(), "sleep")
        .arg("60")
        .spawn()
        .unwrap();
    lab.register_pid(child.id(), "sleep").unwrap();
    let state = lab.detach().unwrap();
    assert_eq!(leftovers(&prefix).len(), 4, "detached lab stays up");
    assert_eq!(state.processes.len(), 1);

    // A later process only has the state directory.
    let attached = Lab::attach(&dir).unwrap();
    assert!(
        run_traffic_once(&attached, attached.scenario())
            .unwrap()
            .all_as_expected()
    );
    drop(attached);
    assert_eq!(
        leftovers(&prefix).len(),
        4,
        "dropping an attached lab leaves it up"
    );

    let down_report = down(&dir).unwrap();
    assert_eq!(down_report.prefix, prefix);
    assert_eq!(down_report.stopped_processes.len(), 1);
    assert_eq!(down_report.deleted_netns.len(), 4, "{down_report:?}");
    assert!(
        child.wait().unwrap().code().is_none(),
        "sleep was killed by a signal"
    );
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    assert!(!dir.exists());
}

/// Sorted names of the files in `dir`.
fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// TCP's (ActiveOpens, OutSegs, RetransSegs) in `netns`, from its SNMP counters.
fn tcp_counters(netns: &str) -> (u64, u64, u64) {
    netns::run_in(netns, || {
        // thread-self: /proc/self/net is the main thread's namespace.
        let text = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
        let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
        let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
        let field = |name: &str| -> u64 {
            let i = names.split_whitespace().position(|n| n == name).unwrap();
            values.split_whitespace().nth(i).unwrap().parse().unwrap()
        };
        Ok((field("ActiveOpens"), field("OutSegs"), field("RetransSegs")))
    })
    .unwrap()
}

/// Runs `ip -n <netns> <args>` and asserts it worked.
fn ip_in(netns: &str, args: &[&str]) {
    let out = std::process::Command::new(ip::ip_binary())
        .args(["-n", netns])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip -n {netns} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn policy_files_are_written_and_dropped_items_get_no_answer() {
    test_support::require_root("the lab builds network namespaces");
    let dir = state_dir("policies");
    // A policy file left by an earlier lab must not survive into this one.
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    // Owner-only, as an earlier lab leaves its state folder.
    for d in [dir.clone(), dir.join("policies")] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    std::fs::write(dir.join("policies/07-stale.yaml"), "kind: Stale\n").unwrap();
    std::fs::write(dir.join("policies/notes.txt"), "stale\n").unwrap();
    let scenario = Scenario::parse(
        "endpoints:\n\
         - {name: a, namespace: ns, labels: {app: a}}\n\
         - {name: b, namespace: ns, labels: {app: b}}\n\
         - {name: c, namespace: ns, labels: {app: c}}\n\
         policies:\n\
         - apiVersion: cilium.io/v2\n  \
           kind: CiliumNetworkPolicy\n  \
           metadata: {name: b-allow-c, namespace: ns}\n  \
           spec:\n    \
             endpointSelector: {matchLabels: {app: b}}\n    \
             ingress: [{fromEndpoints: [{matchLabels: {app: c}}], toPorts: [{ports: [{port: '8080', protocol: TCP}]}]}]\n\
         - apiVersion: cilium.io/v2\n  \
           kind: CiliumNetworkPolicy\n  \
           metadata: {name: a.audit, namespace: ns, annotations: {observe.io/audit: 'true'}}\n  \
           spec: {endpointSelector: {matchLabels: {app: a}}, ingressDeny: [{fromCIDR: [198.18.0.0/15]}]}\n\
         traffic:\n\
         - {from: a, to: b, protocol: tcp, port: 8080, expect: dropped}\n\
         - {from: a, to: b, protocol: udp, port: 5353, family: ipv6, request_bytes: 40, expect: dropped}\n\
         - {from: a, to: b, protocol: icmp, expect: dropped}\n\
         - {from: a, to: b, protocol: icmp, family: ipv6, request_bytes: 8, expect: dropped}\n\
         - {from: c, to: b, protocol: tcp, port: 8080, family: ipv6, expect: dropped}\n\
         - {from: c, to: b, protocol: udp, port: 5353, expect: dropped}\n",
        "policies.yaml",
    )
    .unwrap();
    let lab = Lab::up(&scenario, &LabOptions::with_state_dir(&dir)).unwrap();
    let prefix = lab.prefix().to_string();

    // One file per policy, NN-<name>.yaml, parsing back to the scenario's document.
    let policy_dir = lab.policy_dir();
    assert_eq!(policy_dir, dir.join(POLICY_DIR));
    assert_eq!(
        file_names(&policy_dir),
        ["00-b-allow-c.yaml", "01-a.audit.yaml"]
    );
    assert_eq!(
        lab.policy_paths(),
        [
            policy_dir.join("00-b-allow-c.yaml"),
            policy_dir.join("01-a.audit.yaml")
        ]
    );
    for (i, path) in lab.policy_paths().iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.starts_with(&format!(
                "# CiliumNetworkPolicy policies[{i}] of lab {prefix} "
            )),
            "{text}"
        );
        let doc: serde_json::Value = cluster_spec::yaml::from_str(&text).unwrap();
        assert_eq!(doc, scenario.policies[i], "{}", path.display());
    }
    let audit: serde_json::Value =
        cluster_spec::yaml::from_str(&std::fs::read_to_string(&lab.policy_paths()[1]).unwrap())
            .unwrap();
    assert_eq!(
        audit["metadata"]["annotations"]["observe.io/audit"].as_str(),
        Some("true")
    );
    assert_eq!(
        audit["spec"]["ingressDeny"][0]["fromCIDR"][0].as_str(),
        Some("198.18.0.0/15")
    );
    // The state keeps the policies, and a later process finds the directory.
    assert_eq!(
        LabState::load(&dir).unwrap().scenario.policies,
        scenario.policies
    );
    let attached = Lab::attach(&dir).unwrap();
    assert_eq!(attached.policy_dir(), policy_dir);
    assert_eq!(attached.scenario().policies, scenario.policies);
    drop(attached);
    // Files added while the lab is up (as `observe policy apply` does) go with it.
    std::fs::write(policy_dir.join("50-extra.yaml"), "kind: Extra\n").unwrap();
    std::fs::write(policy_dir.join(".50-extra.yaml.tmp"), "").unwrap();

    // Without flow-probe nothing enforces the policies: make a's packets to b
    // vanish instead, with neighbour entries pointing at a MAC nobody has (the
    // bridge floods the frames, every eth0 discards them).
    let (a, b) = (lab.endpoint("a").unwrap(), lab.endpoint("b").unwrap());
    for addr in [b.ipv4.to_string(), b.ipv6.to_string()] {
        ip_in(
            &a.netns,
            &[
                "neigh",
                "replace",
                &addr,
                "lladdr",
                "02:00:00:00:0b:99",
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        );
    }

    let tcp_before = tcp_counters(&a.netns);
    let report = run_traffic_once(&lab, &scenario).unwrap();
    let tcp_after = tcp_counters(&a.netns);
    assert_eq!(report.items.len(), 6, "{report}");
    let it = &report.items;
    let dropped = Outcome::Dropped;
    check_item(
        &it[0],
        Protocol::Tcp,
        ("198.18.1.10", "198.18.1.11"),
        Some(8080),
        dropped.clone(),
        (0, 0),
        (0, 0),
    );
    check_item(
        &it[1],
        Protocol::Udp,
        ("fd42:0:0:1::10", "fd42:0:0:1::11"),
        Some(5353),
        dropped.clone(),
        (40, 0),
        (0, 0),
    );
    check_item(
        &it[2],
        Protocol::Icmp,
        ("198.18.1.10", "198.18.1.11"),
        None,
        dropped.clone(),
        (56, 0),
        (0, 0),
    );
    check_item(
        &it[3],
        Protocol::Icmp,
        ("fd42:0:0:1::10", "fd42:0:0:1::11"),
        None,
        dropped,
        (8, 0),
        (0, 0),
    );
    // a's only TCP item is the dropped connect: one connection opened and
    // one segment, its SYN, never retransmitted (the client gives up after
    // DROP_WAIT, before the first retransmission is due).
    assert_eq!(
        (
            tcp_after.0 - tcp_before.0,
            tcp_after.1 - tcp_before.1,
            tcp_after.2 - tcp_before.2
        ),
        (1, 1, 0),
        "a's TCP ActiveOpens, OutSegs, RetransSegs"
    );
    for item in &it[..4] {
        assert!(item.to_string().contains(": dropped, sent "), "{item}");
    }
    // Traffic that expects dropped but gets through completes with the sizes of
    // an ok item, and is unexpected.
    for (item, proto, sizes) in [
        (&it[4], Protocol::Tcp, (100, 1000)),
        (&it[5], Protocol::Udp, (64, 64)),
    ] {
        assert_eq!(item.protocol, proto, "{item}");
        assert_eq!(item.outcome, Outcome::Completed, "{item}");
        assert_eq!((item.bytes_sent, item.bytes_received), sizes, "{item}");
        assert_eq!(
            (item.server_bytes_received, item.server_bytes_sent),
            sizes,
            "{item}"
        );
        assert!(!item.as_expected(), "{item}");
        assert!(
            item.to_string().ends_with("(UNEXPECTED: wanted dropped)"),
            "{item}"
        );
    }
    assert_eq!(report.unexpected().len(), 2, "{report}");

    drop(lab);
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    assert!(!dir.exists(), "state dir {} still there", dir.display());
}

/// client and api, api also behind a service: an item to api, one to the
/// service.
fn client_and_api_service(name: &str) -> Scenario {
    Scenario::parse(
        "endpoints:\n\
         - {name: client, namespace: default, labels: {app: client}}\n\
         - {name: api, namespace: default, labels: {app: api}}\n\
         services:\n\
         - {name: api, namespace: default, vip: {ipv4: 198.18.100.10}, ports: [{port: 80, targetPort: 8080}], selector: {app: api}}\n\
         traffic:\n\
         - {from: client, to: api, protocol: tcp, port: 8080}\n\
         - {from: client, to_service: api, protocol: tcp, port: 80}\n",
        name,
    )
    .unwrap()
}

#[test]
fn a_services_file_that_cannot_be_read_fails_its_service_items_alone() {
    test_support::require_root("the lab builds network namespaces");
    let dir = state_dir("badservices");
    let scenario = client_and_api_service("bad-services.yaml");
    let lab = Lab::up(&scenario, &LabOptions::with_state_dir(&dir)).unwrap();
    // Being edited: an unknown field, as the exploratory run's typo.
    std::fs::write(lab.services_path(), "services: [{name: api, bogus: 1}]\n").unwrap();
    let report = run_traffic_once(&lab, &scenario).unwrap();
    assert_eq!(report.items[0].outcome, Outcome::Completed, "{report}");
    let Outcome::Failed { error } = &report.items[1].outcome else {
        panic!("{report}");
    };
    assert!(
        error.starts_with(&format!(
            "traffic[1].to_service: services file {}: ",
            lab.services_path().display()
        )) && error.contains("bogus"),
        "{error}"
    );
}

#[test]
fn a_server_port_held_by_someone_else_fails_the_item_saying_so() {
    test_support::require_root("the lab builds network namespaces");
    let dir = state_dir("heldport");
    let scenario = client_and_api_service("held-port.yaml");
    let lab = Lab::up(&scenario, &LabOptions::with_state_dir(&dir)).unwrap();
    let api = lab.endpoint("api").unwrap().clone();
    let held = crate::netns::run_in(&api.netns, move || {
        Ok(std::net::TcpListener::bind((api.ipv4, 8080))?)
    })
    .unwrap();
    let report = run_traffic_once(&lab, &scenario).unwrap();
    drop(held);
    let taken = format!(
        "listening on {}:8080: Address already in use (os error 98)",
        api.ipv4
    );
    let failures: Vec<_> = report.items.iter().map(|i| i.outcome.clone()).collect();
    assert_eq!(
        failures,
        [
            Outcome::Failed {
                error: format!("server: {taken}")
            },
            Outcome::Failed {
                error: format!("server on default/api: {taken}")
            },
        ],
        "{report}"
    );
}
