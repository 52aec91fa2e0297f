//! Policy on the real datapath: verdicts (FORWARDED with the allowing policy,
//! DROPPED with POLICY_DENIED or POLICY_DENY, AUDIT), connections that really
//! fail, changes applied while running without cutting an allowed connection,
//! enforcement that outlives a killed flow-probe, and malformed files that leave
//! the policy in force.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::probe_metrics::POLICY_GENERATION;
use e2e::{bpf_maps, ips, ports};
use flow_probe::kernel::sysfs;
use observe_lab::write_atomically;
use observe_lab::{Outcome, Scenario, run_traffic_once};
use observer_proto::flow::{DropReason, Flow, TraceObservationPoint, TrafficDirection, Verdict};

const SCENARIO: &str = r#"
endpoints:
  - {name: frontend, namespace: default, labels: {app: frontend}}
  - {name: api, namespace: default, labels: {app: api}}
  - {name: client, namespace: other, labels: {app: client}}
  - {name: audited, namespace: default, labels: {app: audited}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: api-allow-frontend, namespace: default}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      ingress:
        - fromEndpoints: [{matchLabels: {app: frontend}}]
          toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: audited-allow-nothing, namespace: default, annotations: {observe.io/audit: "true"}}
    spec:
      endpointSelector: {matchLabels: {app: audited}}
      ingress: [{}]
traffic:
  - {from: frontend, to: api, protocol: tcp, port: 8080}
  - {from: frontend, to: api, protocol: tcp, port: 8081, expect: dropped}
  - {from: client, to: api, protocol: tcp, port: 8080, expect: dropped}
  - {from: client, to: audited, protocol: tcp, port: 7000}
"#;

/// The scenario's first policy, as a file.
const ALLOW_FRONTEND: &str = r#"apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-allow-frontend, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
      toPorts:
        - ports:
            - {port: "8080", protocol: TCP}
"#;

const DENY_CLIENT: &str = r#"apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-deny-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: client, io.kubernetes.pod.namespace: other}}]
"#;

fn scenario() -> Scenario {
    Scenario::parse(SCENARIO, "policy-test.yaml").expect("scenario parses")
}

/// The SYN of `client → server:port` as the server's veth saw it (to-endpoint:
/// where the server's ingress policy is judged).
fn syn_at_server(
    flows: &[Flow],
    client: std::net::IpAddr,
    server: std::net::IpAddr,
    port: u16,
) -> Vec<&Flow> {
    flows
        .iter()
        .filter(|f| f.trace_observation_point == TraceObservationPoint::ToEndpoint as i32)
        .filter(|f| ips(f) == (client, server) && ports(f).is_some_and(|(_, d)| d == port))
        .filter(|f| f.summary.starts_with("TCP Flags: SYN") && !f.summary.contains("ACK"))
        .collect()
}

/// The flows of monitor type `kind` (1 Drop, 5 PolicyVerdict) of the denied
/// SYNs from `client` to `server`:`port`.
fn denial_at_server(
    flows: &[Flow],
    client: std::net::IpAddr,
    server: std::net::IpAddr,
    port: u16,
    kind: i32,
) -> Vec<&Flow> {
    flows
        .iter()
        .filter(|f| f.event_type.as_ref().is_some_and(|e| e.r#type == kind))
        .filter(|f| f.verdict == Verdict::Dropped as i32)
        .filter(|f| ips(f) == (client, server) && ports(f).is_some_and(|(_, d)| d == port))
        .collect()
}

fn policy_names(p: &[observer_proto::flow::Policy]) -> Vec<String> {
    p.iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_explicit_deny_and_audit_on_the_real_datapath() {
    let scenario = scenario();
    let env = e2e::start(&scenario, &[]);
    assert_eq!(
        env.metric(POLICY_GENERATION),
        1,
        "the policy is in force when the probe is ready"
    );
    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    let [ok, other_port, other_client, audited] = &report.items[..] else {
        panic!()
    };
    let api = ok.dst_ip;

    let flows = env
        .wait_for("the audited SYN", |f| {
            !syn_at_server(f, audited.src_ip, audited.dst_ip, 7000).is_empty()
        })
        .await;
    // Allowed: a policy verdict naming the policy, matched on identity and port.
    let allowed = syn_at_server(&flows, ok.src_ip, api, 8080);
    assert_eq!(allowed.len(), 1);
    let f = allowed[0];
    assert_eq!(f.verdict, Verdict::Forwarded as i32);
    assert_eq!(
        f.event_type.as_ref().map(|e| e.r#type),
        Some(5),
        "policy verdict event"
    );
    assert_eq!(
        policy_names(&f.ingress_allowed_by),
        ["default/api-allow-frontend"]
    );
    assert_eq!(f.policy_match_type, 2, "L3_L4");
    // Frontend has no policy: its side of the same SYN is a plain trace.
    let from = flows
        .iter()
        .find(|g| {
            ips(g) == (ok.src_ip, api)
                && g.trace_observation_point == TraceObservationPoint::FromEndpoint as i32
                && ports(g) == ports(f)
        })
        .unwrap();
    assert_eq!(
        (from.verdict, from.event_type.as_ref().unwrap().r#type),
        (Verdict::Forwarded as i32, 4)
    );

    // Default deny: wrong port, wrong peer. Every attempt (SYN and its
    // retransmissions) is dropped and reported.
    for (item, port) in [(other_port, 8081), (other_client, 8080)] {
        assert_eq!(item.outcome, Outcome::Dropped, "{item}");
        let drops = denial_at_server(&flows, item.src_ip, api, port, 1);
        assert!(!drops.is_empty(), "drops of {item}");
        for d in &drops {
            assert_eq!(d.verdict, Verdict::Dropped as i32);
            assert_eq!(d.drop_reason_desc, DropReason::PolicyDenied as i32);
            assert_eq!(
                d.event_type.as_ref().map(|e| (e.r#type, e.sub_type)),
                Some((1, 133))
            );
            // Cilium's drop: no observation point or reply bit, no policy.
            assert_eq!((d.trace_observation_point, d.is_reply), (0, None));
            assert!(d.ingress_denied_by.is_empty() && d.ingress_allowed_by.is_empty());
        }
        // Each drop has its PolicyVerdict, denied, with the same facts.
        let verdicts = denial_at_server(&flows, item.src_ip, api, port, 5);
        assert_eq!(verdicts.len(), drops.len(), "verdicts of {item}");
        for v in verdicts {
            assert_eq!(
                (v.verdict, v.drop_reason_desc, v.is_reply),
                (
                    Verdict::Dropped as i32,
                    DropReason::PolicyDenied as i32,
                    None
                )
            );
            assert_eq!(v.traffic_direction, TrafficDirection::Ingress as i32);
        }
    }
    // Audit: reported, not dropped; the connection completed.
    assert_eq!(audited.outcome, Outcome::Completed);
    let a = syn_at_server(&flows, audited.src_ip, audited.dst_ip, 7000);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].verdict, Verdict::Audit as i32);

    // An explicit deny, added while running: once in force, POLICY_DENY
    // naming the policy.
    std::fs::write(env.lab.policy_dir().join("50-deny.yaml"), DENY_CLIENT).unwrap();
    let in_force = tokio::task::block_in_place(|| env.wait_for_metric(POLICY_GENERATION, 2));
    assert_eq!(in_force, 2, "one new policy set");
    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    let item = &report.items[2];
    let explicit = |f: &[Flow], kind| -> Option<Flow> {
        denial_at_server(f, item.src_ip, api, 8080, kind)
            .into_iter()
            .rev()
            .find(|d| d.drop_reason_desc == DropReason::PolicyDeny as i32)
            .cloned()
    };
    let flows = env
        .wait_for("an explicit deny", |f| explicit(f, 1).is_some())
        .await;
    let d = explicit(&flows, 1).unwrap();
    assert_eq!(
        d.event_type.as_ref().map(|e| (e.r#type, e.sub_type)),
        Some((1, 181))
    );
    // The policy is named by the denial's PolicyVerdict, as Cilium names it.
    let v = explicit(&flows, 5).expect("the denial's policy verdict");
    assert_eq!(
        policy_names(&v.ingress_denied_by),
        ["default/api-deny-client"]
    );
    // And `observe flows --print-policy-names` prints it, as hubble does.
    let mut args: Vec<String> = [
        "flows",
        "--print-policy-names",
        "--type",
        "policy-verdict",
        "--from-ip",
        &item.src_ip.to_string(),
        "--last",
        "1000",
    ]
    .map(String::from)
    .into();
    args.extend(env.server_args(env.probe.addr));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = e2e::observe(&args);
    assert!(
        text.lines().any(|l| l.contains(
            "policy-verdict:L3-Only INGRESS DENIED BY api-deny-client (CiliumNetworkPolicy) (TCP Flags: SYN)"
        )),
        "{text}"
    );
}

/// A TCP stream from endpoint `from` to a server in `to`: the client writes
/// without pause from before `during` runs until after it returns, so packets
/// flow while it changes things. Returns (bytes written, bytes the server read).
fn stream_while(
    env: &e2e::Env,
    from: &str,
    to: &str,
    port: u16,
    during: impl FnOnce(),
) -> (usize, usize) {
    let server_ns = env.lab.endpoint(to).unwrap().netns.clone();
    let client_ns = env.lab.endpoint(from).unwrap().netns.clone();
    let dst: SocketAddr = (env.lab.endpoint(to).unwrap().ipv4, port).into();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        sysfs::enter_netns(&server_ns).unwrap();
        let listener = TcpListener::bind(dst).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut got = 0;
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        got
    });
    ready_rx.recv().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let client_done = done.clone();
    let client = std::thread::spawn(move || {
        sysfs::enter_netns(&client_ns).unwrap();
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(2)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let chunk = vec![7u8; 16 << 10];
        let mut sent = 0;
        loop {
            s.write_all(&chunk).unwrap();
            sent += chunk.len();
            if sent == chunk.len() {
                started_tx.send(()).unwrap();
            }
            if client_done.load(Ordering::Acquire) {
                return sent;
            }
        }
    });
    started_rx.recv().expect("the stream started");
    during();
    done.store(true, Ordering::Release);
    let sent = client.join().unwrap();
    (sent, server.join().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_policy_never_cuts_an_allowed_stream() {
    let scenario = scenario();
    let env = e2e::start(&scenario, &[]);
    let dir = env.lab.policy_dir();
    let (sent, got) = tokio::task::block_in_place(|| {
        stream_while(&env, "frontend", "api", 8080, || {
            // Rewrite the policy several times while the stream runs: add a
            // port and an unrelated deny, then go back with another deny. One
            // atomic rewrite per step, so each step is one policy set, and the
            // next starts once the probe enforces the last.
            let widened = ALLOW_FRONTEND.replace(
                "- {port: \"8080\", protocol: TCP}",
                "- {port: \"8080\", protocol: TCP}\n            - {port: \"8081\", protocol: TCP}",
            );
            assert_ne!(widened, ALLOW_FRONTEND);
            let before = env.metric(POLICY_GENERATION);
            for (i, allow) in [widened.as_str(), ALLOW_FRONTEND].into_iter().enumerate() {
                let deny = DENY_CLIENT.replace("api-deny-client", &format!("deny-{i}"));
                let file = dir.join("00-api-allow-frontend.yaml");
                write_atomically(&file, &format!("{allow}---\n{deny}")).unwrap();
                let step = before + 1 + i as u64;
                assert_eq!(env.wait_for_metric(POLICY_GENERATION, step), step);
            }
        })
    });
    assert!(sent > 0);
    assert_eq!(got, sent, "every byte of the allowed stream arrived");
    let flows = env.all_flows().await;
    // Policy drops only: the kernel-drop tracepoint also sees other labs, which
    // reuse the same addresses in their own namespaces.
    let drops: Vec<&Flow> = flows
        .iter()
        .filter(|f| f.verdict == Verdict::Dropped as i32 && f.kernel_drop.is_none())
        .filter(|f| ports(f).is_some_and(|(s, d)| s == 8080 || d == 8080))
        .collect();
    assert!(drops.is_empty(), "no drop on the stream: {drops:?}");
}

/// Denies frontend everything on api.
const DENY_FRONTEND: &str = r#"apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-deny-frontend, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
"#;

/// Connects from `port` of namespace `netns` to `dst` (waiting at most 1 s)
/// and, connected, sends a byte and waits for the server to close first;
/// the connect's error when it did not connect. While the port's last
/// connection still waits for its last ACK (LAST_ACK, a few ms on a busy
/// machine) its 4-tuple is taken (EADDRNOTAVAIL): asked again, for a
/// second at most.
fn connect_from_port(netns: &str, port: u16, dst: SocketAddr) -> std::io::Result<()> {
    let netns = netns.to_string();
    std::thread::spawn(move || {
        sysfs::enter_netns(&netns).unwrap();
        let mut tries = 0;
        let sock = loop {
            let sock = e2e::tcp_socket_on_port(port);
            match sock.connect_timeout(&dst.into(), Duration::from_secs(1)) {
                Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                done => break done.map(|()| sock)?,
            }
        };
        let mut s: TcpStream = sock.into();
        s.write_all(b"x").unwrap();
        let _ = s.read(&mut [0u8; 1]);
        Ok(())
    })
    .join()
    .unwrap()
}

/// A client port used again for a new connection (after the last one
/// closed, while its entry and tracking are still in the tables) opens a
/// connection that policy judges again: allowed, its SYN is a policy verdict
/// as any first one; denied by a policy changed meanwhile, it is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_port_used_again_is_judged_again() {
    let env = e2e::start(&scenario(), &[]);
    let api = env.lab.endpoint("api").unwrap().clone();
    let frontend = env.lab.endpoint("frontend").unwrap().clone();
    let dst: SocketAddr = (api.ipv4, 8080).into();
    // The server reads a byte and closes first, so the client's port is
    // free (its TIME_WAIT is the server's).
    let server_ns = api.netns.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        sysfs::enter_netns(&server_ns).unwrap();
        let listener = TcpListener::bind(dst).unwrap();
        ready_tx.send(()).unwrap();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.read(&mut [0u8; 1]);
        }
    });
    ready_rx.recv().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ns = frontend.netns.clone();
    // Each connect's error is told (a CI run once saw the second fail).
    for attempt in ["first", "second"] {
        if let Err(e) = tokio::task::block_in_place(|| connect_from_port(&ns, port, dst)) {
            panic!("the {attempt} connect from port {port}: {e}");
        }
    }
    let before = env.metric(POLICY_GENERATION);
    write_atomically(
        &env.lab.policy_dir().join("50-deny-frontend.yaml"),
        DENY_FRONTEND,
    )
    .unwrap();
    assert_eq!(
        env.wait_for_metric(POLICY_GENERATION, before + 1),
        before + 1
    );
    assert!(
        tokio::task::block_in_place(|| connect_from_port(&ns, port, dst)).is_err(),
        "the third connection is denied"
    );
    let (client, server) = (IpAddr::V4(frontend.ipv4), IpAddr::V4(api.ipv4));
    let verdicts = |flows: &[Flow]| -> Vec<(i32, bool)> {
        flows
            .iter()
            .filter(|f| f.event_type.as_ref().is_some_and(|e| e.r#type == 5))
            .filter(|f| ips(f) == (client, server) && ports(f) == Some((port, 8080)))
            .map(|f| (f.verdict, f.summary.starts_with("TCP Flags: SYN")))
            .collect()
    };
    let flows = env
        .wait_for("three policy verdicts of the port", |f| {
            verdicts(f).len() >= 3
        })
        .await;
    let (fwd, dropped) = (Verdict::Forwarded as i32, Verdict::Dropped as i32);
    // The denied SYN's retransmissions within the second are judged too.
    let seen = verdicts(&flows);
    assert_eq!(
        seen[..3],
        [(fwd, true), (fwd, true), (dropped, true)],
        "{seen:?}"
    );
    assert!(seen[3..].iter().all(|v| *v == (dropped, true)), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_survives_a_killed_probe_and_is_readopted() {
    let scenario = scenario();
    let mut env = e2e::start(&scenario, &[]);
    let node_ns = env.lab.node_netns("node1").unwrap().to_string();
    let pins = flow_probe::kernel::pins::pin_dir(Some(&node_ns));
    let pinned = || {
        let mut v: Vec<String> = std::fs::read_dir(&pins)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = pinned();
    assert_eq!(
        before.iter().filter(|n| n.starts_with("link_")).count(),
        8,
        "{before:?}"
    );
    let report = tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).unwrap();
    assert!(report.all_as_expected(), "{report}");

    // SIGKILL: no clean-up runs; the pinned links keep enforcing.
    env.kill_probe().await;
    let report = tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).unwrap();
    assert!(
        report.all_as_expected(),
        "still enforced without a probe: {report}"
    );
    assert_eq!(pinned(), before);
    // With no fd or pin left on TC_BODY the kernel emptied it: tc_egress
    // ran its own copy of the body for what the endpoints received.
    let own_copies: u64 = before
        .iter()
        .filter(|name| name.ends_with("_egress"))
        .map(|name| {
            let program = bpf_maps::program_of_pinned_link(&pins.join(name));
            bpf_maps::own_copy_runs(bpf_maps::map_of_program(program, "EGRESS_JUMP").unwrap())
        })
        .sum();
    assert!(own_copies > 0, "tc_egress ran its own copy");

    // Restart: the same pins are re-adopted, none added, enforcement unchanged.
    env.restart_probe();
    let log = std::fs::read_to_string(&env.probe.log).unwrap();
    assert!(
        log.contains(
            "re-adopted pinned maps [\"FLOW_SLOTS4\", \"FLOW_SLOTS6\", \"FLOWS4\", \"FLOWS6\", \"SLOT_SPILLS\", \"CT4\", \"CT6\", \"ENDPOINTS\", \"IPCACHE\", \"ENDPOINT_ADDRS\", \"POLICY\", \"SOCKS\"]"
        ),
        "{log}"
    );
    assert!(
        log.contains("(0 written, 0 removed)"),
        "the kernel already held exactly this policy: {log}"
    );
    assert_eq!(pinned(), before);
    let report = tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).unwrap();
    assert!(report.all_as_expected(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_stays_in_force_while_the_lab_restarts_a_probe() {
    let scenario = scenario();
    let mut env = e2e::start(&scenario, &[]);
    let report = tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).unwrap();
    assert!(report.all_as_expected(), "{report}");
    // A clean stop (SIGTERM), as `observe lab restart` does first.
    assert_eq!(env.lab.stop_process("flow-probe node1").unwrap(), 1);
    let report = tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).unwrap();
    assert!(
        report.all_as_expected(),
        "still enforced while no probe runs: {report}"
    );
    env.restart_probe();
    let report = tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).unwrap();
    assert!(report.all_as_expected(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_policy_file_leaves_the_policy_in_force() {
    let scenario = scenario();
    let env = e2e::start(&scenario, &[]);
    let bad = env.lab.policy_dir().join("70-bad.yaml");
    std::fs::write(&bad, DENY_CLIENT.replace("ingressDeny", "ingressDenny")).unwrap();
    // The CLI names the file, the field and the problem.
    let out = std::process::Command::new(e2e::observe_binary())
        .args(["policy", "check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("policy {}", bad.display())) && err.contains("ingressDenny"),
        "{err}"
    );
    // The probe reports it and keeps the previous policy.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&env.probe.log).unwrap();
        if log.contains("the previous policy stays in force") {
            assert!(
                log.contains("70-bad.yaml") && log.contains("ingressDenny"),
                "{log}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no error logged: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `observe status` says so too, not only the log.
    let mut args = vec!["status".to_string()];
    args.extend(env.server_args(env.probe.addr));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let status = e2e::observe(&args);
    let line = status
        .lines()
        .find(|l| l.trim_start().starts_with("policy "))
        .unwrap_or_else(|| panic!("no policy line: {status}"));
    let dir = env.lab.policy_dir().display().to_string();
    assert!(
        line.starts_with(&format!(
            "  policy   REFUSED      {dir}  policy {}",
            bad.display()
        )) && line.contains("ingressDenny")
            && line.ends_with("; the previous policy stays in force"),
        "{status}"
    );
    // And `-o json`, for scripts.
    let mut json_args = args.clone();
    json_args.extend(["-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&e2e::observe(&json_args)).unwrap();
    let file = &v["config_files"][0];
    assert_eq!(file["name"], "policy", "{v}");
    // protojson leaves a false boolean out.
    assert_eq!(file.get("in_force"), None, "{v}");
    assert!(
        file["detail"]
            .as_str()
            .is_some_and(|d| d.contains("ingressDenny")),
        "{v}"
    );
    // Emptied, as a truncated file is, the directory is in force again; the
    // file enforces nothing, and the status and the log say so.
    std::fs::write(&bad, "# emptied\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = e2e::observe(&args);
        if status.contains(&format!("  policy   in force     {dir}  ")) {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let line = status
        .lines()
        .find(|l| l.trim_start().starts_with("policy "))
        .unwrap();
    assert!(
        line.ends_with(" rules in force; generation 1; no policy in 70-bad.yaml"),
        "{status}"
    );
    let log = std::fs::read_to_string(&env.probe.log).unwrap();
    assert_eq!(
        log.matches(&format!(
            "policy file {}: holds no policy (empty, or only comments), so it enforces nothing",
            bad.display()
        ))
        .count(),
        1,
        "{log}"
    );
    let report = tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).unwrap();
    assert!(report.all_as_expected(), "{report}");
}

/// A bridge that has forgotten where a MAC lives floods the frame to every
/// port, so every endpoint's veth sees it going out. With learning off on
/// every port of the node's bridge, every frame is flooded; still, each SYN
/// is judged once, at its destination's veth, and no other endpoint counts,
/// judges, drops or audits it, nor reports the kernel's discard of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_frame_is_seen_only_at_its_destination() {
    let scenario = scenario();
    let env = e2e::start(&scenario, &[]);
    let endpoints: Vec<_> = ["frontend", "api", "client", "audited"]
        .map(|n| env.lab.endpoint(n).unwrap().clone())
        .into();
    flood_every_frame(env.lab.node_netns("node1").unwrap());

    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    let [ok, other_port, other_client, audited] = &report.items[..] else {
        panic!()
    };
    // One IPv6 datagram too: its neighbour solicitation goes to a multicast
    // group, which the node's bridge also delivers to the node itself.
    let (from, to) = (endpoints[0].netns.clone(), endpoints[1].ipv6);
    std::thread::spawn(move || {
        sysfs::enter_netns(&from).unwrap();
        let sock = std::net::UdpSocket::bind("[::]:0").unwrap();
        sock.send_to(b"v6", (to, 9)).unwrap();
    })
    .join()
    .unwrap();
    let flows = env
        .wait_for("the audited SYN", |f| {
            !syn_at_server(f, audited.src_ip, audited.dst_ip, 7000).is_empty()
        })
        .await;

    // Each SYN once at its destination, with its own verdict.
    let allowed = syn_at_server(&flows, ok.src_ip, ok.dst_ip, 8080);
    assert_eq!(allowed.len(), 1, "{allowed:#?}");
    assert_eq!(allowed[0].verdict, Verdict::Forwarded as i32);
    let a = syn_at_server(&flows, audited.src_ip, audited.dst_ip, 7000);
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0].verdict, Verdict::Audit as i32);
    for (item, port) in [(other_port, 8081), (other_client, 8080)] {
        assert!(!denial_at_server(&flows, item.src_ip, item.dst_ip, port, 1).is_empty());
    }
    // Nothing seen at an endpoint's veth is another endpoint's traffic.
    let (seen, others) = others_traffic(&flows, &endpoints);
    assert!(others.is_empty(), "{others:#?}");
    assert!(seen > 0);
    // Nor is the discard of a copy: of a flooded frame by an endpoint it was
    // not for, or of a multicast one (neighbour solicitations) by the node,
    // which has no IPv6.
    let discards: Vec<&Flow> = flows
        .iter()
        .filter(|f| {
            f.kernel_drop.as_ref().is_some_and(|k| {
                k.name.contains("OTHERHOST") || k.name == "IPV6DISABLED" || ips(f).1.is_multicast()
            })
        })
        .collect();
    assert!(discards.is_empty(), "{discards:#?}");
}

/// Makes node `netns`'s bridge flood every frame: no port learns, and what
/// it had learnt is forgotten (as a quiet bridge forgets after 300 s).
fn flood_every_frame(netns: &str) {
    let out = std::process::Command::new("ip")
        .args(["-n", netns, "-o", "link", "show", "master", "br0"])
        .output()
        .expect("ip (iproute2)");
    assert!(out.status.success(), "ip link show master br0");
    let ports: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap().to_string())
        .collect();
    assert!(!ports.is_empty(), "{netns}'s br0 has no ports");
    for port in &ports {
        let args = ["link", "set", "dev", port, "learning", "off"];
        let ok = std::process::Command::new("bridge")
            .args(["-n", netns])
            .args(args)
            .status()
            .expect("bridge (iproute2)");
        assert!(ok.success(), "bridge {args:?} in {netns}");
    }
    let ok = std::process::Command::new("bridge")
        .args(["-n", netns, "fdb", "flush", "dev", "br0"])
        .status()
        .unwrap();
    assert!(ok.success(), "bridge fdb flush in {netns}");
}

/// Of the flows seen at the veth of one of `endpoints`: how many there are
/// (kernel drops aside), and those that are not that endpoint's own traffic
/// (its link-local and multicast traffic aside: MLD reports, neighbour
/// discovery).
fn others_traffic<'a>(
    flows: &'a [Flow],
    endpoints: &[observe_lab::EndpointPlan],
) -> (usize, Vec<&'a Flow>) {
    let local = |a: IpAddr| match a {
        IpAddr::V6(a) => a.is_unicast_link_local() || a.is_multicast(),
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
    };
    let mut seen = 0;
    let mut others = Vec::new();
    for f in flows.iter().filter(|f| f.kernel_drop.is_none()) {
        let Some(i) = &f.interface else { continue };
        let Some(ep) = endpoints.iter().find(|e| e.host_interface == i.name) else {
            continue;
        };
        seen += 1;
        let (s, d) = ips(f);
        let own = [s, d].iter().any(|a| *a == ep.ipv4 || *a == ep.ipv6);
        if !(local(s) || local(d) || own) {
            others.push(f);
        }
    }
    (seen, others)
}

/// The scenario's frontend and api, and api-2, a replica of api on node2;
/// only api's policy; a connection from frontend to api and to api-2.
fn two_nodes() -> Scenario {
    let mut s = scenario();
    s.endpoints
        .retain(|e| ["frontend", "api"].contains(&e.name.as_str()));
    let mut replica = s.endpoints[1].clone();
    (replica.name, replica.node) = ("api-2".into(), "node2".into());
    s.endpoints.push(replica);
    s.policies.truncate(1);
    s.traffic.truncate(1);
    let mut to_replica = s.traffic[0].clone();
    to_replica.to = "api-2".into();
    s.traffic.push(to_replica);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_flooded_to_a_replica_on_another_node_is_not_judged_there() {
    let scenario = two_nodes();
    let env = e2e::start(&scenario, &[]);
    let endpoints: Vec<_> = ["frontend", "api", "api-2"]
        .map(|n| env.lab.endpoint(n).unwrap().clone())
        .into();
    let [frontend, api, api_2] = &endpoints[..] else {
        panic!()
    };
    // The lab's nodes share one L2 segment: a frame node1's bridge floods
    // crosses to node2's, which floods it to api-2, a replica of api.
    let node2 = env.lab.node_netns("node2").unwrap();
    for node in ["node1", "node2"] {
        flood_every_frame(env.lab.node_netns(node).unwrap());
    }
    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    let [to_api, to_api_2] = &report.items[..] else {
        panic!()
    };
    // Datagrams, which the policy denies: five to api, which reach api-2's
    // veth too, then one to api-2.
    let before = tx_packets(node2, &api_2.host_interface);
    send_datagrams(&frontend.netns, api.ipv4, 5);
    let flooded = tx_packets(node2, &api_2.host_interface) - before;
    assert!(flooded >= 5, "api-2's veth sent {flooded} frames");
    send_datagrams(&frontend.netns, api_2.ipv4, 1);

    // Each SYN once, at its destination's node, allowed there; each
    // datagram denied there.
    let node1 = env
        .server(env.probes[0].addr)
        .wait_for("the datagrams denied at api", |f| {
            denial_at_server(f, frontend.ipv4.into(), api.ipv4.into(), 9999, 1).len() == 5
        })
        .await;
    let node2 = env
        .server(env.probes[1].addr)
        .wait_for("the datagram denied at api-2", |f| {
            !denial_at_server(f, frontend.ipv4.into(), api_2.ipv4.into(), 9999, 1).is_empty()
        })
        .await;
    for (flows, item) in [(&node1, to_api), (&node2, to_api_2)] {
        let syn = syn_at_server(flows, item.src_ip, item.dst_ip, 8080);
        assert_eq!(syn.len(), 1, "{syn:#?}");
        assert_eq!(syn[0].verdict, Verdict::Forwarded as i32);
        assert_eq!(
            policy_names(&syn[0].ingress_allowed_by),
            ["default/api-allow-frontend"]
        );
    }
    // And nowhere else: not at the replica on the other node, whose
    // identity the destination shares.
    assert!(syn_at_server(&node2, to_api.src_ip, to_api.dst_ip, 8080).is_empty());
    assert!(syn_at_server(&node1, to_api_2.src_ip, to_api_2.dst_ip, 8080).is_empty());
    let to_api_at_node2 = denial_at_server(&node2, frontend.ipv4.into(), api.ipv4.into(), 9999, 1);
    assert!(to_api_at_node2.is_empty(), "{to_api_at_node2:#?}");
    for flows in [&node1, &node2] {
        let (seen, others) = others_traffic(flows, &endpoints);
        assert!(others.is_empty(), "{others:#?}");
        assert!(seen > 0);
    }
}

/// Frames interface `dev` of namespace `netns` has sent.
fn tx_packets(netns: &str, dev: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["-n", netns, "-s", "-j", "link", "show", "dev", dev])
        .output()
        .expect("ip (iproute2)");
    assert!(out.status.success(), "ip link show {dev} in {netns}");
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
    links[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .expect("tx packets")
}

/// Sends `n` datagrams from namespace `netns` to `to`, port 9999.
fn send_datagrams(netns: &str, to: std::net::Ipv4Addr, n: usize) {
    let netns = netns.to_string();
    std::thread::spawn(move || {
        sysfs::enter_netns(&netns).unwrap();
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..n {
            sock.send_to(b"udp", (to, 9999)).unwrap();
        }
    })
    .join()
    .unwrap();
}

/// Sends from `netns` an ICMP (IPv4) or ICMPv6 port unreachable to `to`
/// quoting a UDP datagram `to`:40000 → `quoted_dst`:40001 that `to` never
/// sent.
fn forged_port_unreachable(netns: &str, to: IpAddr, quoted_dst: IpAddr) {
    let (sport, dport) = (40_000u16, 40_001u16);
    let udp = [sport.to_be_bytes(), dport.to_be_bytes(), [0, 8], [0, 0]].concat();
    let (domain, protocol, icmp) = match (to, quoted_dst) {
        (IpAddr::V4(to), IpAddr::V4(quoted_dst)) => {
            // Destination unreachable, port; the quoted IPv4 header and UDP.
            let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
            icmp.extend([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
            icmp.extend(to.octets());
            icmp.extend(quoted_dst.octets());
            icmp.extend(&udp);
            let sum = icmp
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
                .sum::<u32>();
            let folded = (sum & 0xffff) + (sum >> 16);
            let checksum = !(((folded & 0xffff) + (folded >> 16)) as u16);
            icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
            (socket2::Domain::IPV4, socket2::Protocol::ICMPV4, icmp)
        }
        (IpAddr::V6(to), IpAddr::V6(quoted_dst)) => {
            // The same for IPv6; the kernel fills an ICMPv6 raw socket's
            // checksum.
            let mut icmp = vec![1, 4, 0, 0, 0, 0, 0, 0];
            icmp.extend([0x60, 0, 0, 0, 0, 8, 17, 64]);
            icmp.extend(to.octets());
            icmp.extend(quoted_dst.octets());
            icmp.extend(&udp);
            (socket2::Domain::IPV6, socket2::Protocol::ICMPV6, icmp)
        }
        _ => panic!("{to} and {quoted_dst}: one family"),
    };
    observe_lab::run_in_netns(netns, move || {
        let raw = socket2::Socket::new(domain, socket2::Type::RAW, Some(protocol))?;
        raw.send_to(&icmp, &SocketAddr::new(to, 0).into())?;
        Ok(())
    })
    .expect("the forged error is sent");
}

/// The ICMP destination unreachable messages from `from` to `to` (type 3
/// over IPv4, 1 over IPv6), those `to`'s veth handed on (to-endpoint) or
/// all of them: verdict, is_reply, event type.
fn unreachable(
    flows: &[Flow],
    to: IpAddr,
    from: IpAddr,
    handed_on: bool,
) -> Vec<(i32, Option<bool>, Option<i32>)> {
    flows
        .iter()
        .filter(|f| ips(f) == (from, to))
        .filter(|f| {
            !handed_on || f.trace_observation_point == TraceObservationPoint::ToEndpoint as i32
        })
        .filter(|f| icmp_type(f) == Some(if to.is_ipv4() { 3 } else { 1 }))
        .map(|f| {
            (
                f.verdict,
                f.is_reply,
                f.event_type.as_ref().map(|e| e.r#type),
            )
        })
        .collect()
}

/// A flow's ICMP or ICMPv6 type.
fn icmp_type(f: &Flow) -> Option<u32> {
    use observer_proto::flow::layer4::Protocol;
    match f.l4.as_ref()?.protocol.as_ref()? {
        Protocol::IcmPv4(i) => Some(i.r#type),
        Protocol::IcmPv6(i) => Some(i.r#type),
        _ => None,
    }
}

/// The dropped ones among `unreachable`'s: Cilium's pair, the policy
/// verdict, then the drop.
fn dropped_unreachable(flows: &[Flow], to: IpAddr, from: IpAddr) -> Vec<i32> {
    unreachable(flows, to, from, false)
        .into_iter()
        .filter(|(verdict, ..)| *verdict == Verdict::Dropped as i32)
        .filter_map(|(_, _, kind)| kind)
        .collect()
}

/// frontend and db, frontend taking nothing in (`ingress: [{}]`), with
/// these traffic items.
fn frontend_takes_nothing(traffic: &str) -> Scenario {
    const HEAD: &str = "endpoints:
  - {name: frontend, namespace: default, labels: {app: frontend}}
  - {name: db, namespace: default, labels: {app: db}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: frontend-takes-nothing, namespace: default}
    spec:
      endpointSelector: {matchLabels: {app: frontend}}
      ingress: [{}]
traffic:
";
    Scenario::parse(&format!("{HEAD}{traffic}"), "frontend-takes-nothing.yaml")
        .expect("scenario parses")
}

/// frontend takes nothing in (`ingress: [{}]`): the ICMP port unreachable
/// its UDP datagrams to a closed port of db get back is related to the
/// connection frontend opened, as Cilium's conntrack has it, and passes
/// as a reply would, IPv4 and IPv6: the send is refused, not lost to a
/// drop (path MTU discovery needs the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_icmp_error_about_an_allowed_connection_passes_a_default_deny() {
    let scenario = frontend_takes_nothing(
        "  - {from: frontend, to: db, protocol: udp, port: 5999, expect: refused}
  - {from: frontend, to: db, protocol: udp, port: 5999, family: ipv6, expect: refused}
  - {from: db, to: frontend, protocol: udp, port: 5998, expect: dropped}
",
    );
    let env = e2e::start(&scenario, &[]);
    let db = env.lab.endpoint("db").unwrap();
    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    let [v4, v6, _denied] = &report.items[..] else {
        panic!()
    };
    let at_frontend = |flows: &[Flow], item: &observe_lab::ItemReport| {
        unreachable(flows, item.src_ip, item.dst_ip, true)
    };
    let flows = env
        .wait_for("both unreachable messages at frontend", |f| {
            !at_frontend(f, v4).is_empty() && !at_frontend(f, v6).is_empty()
        })
        .await;
    for item in [v4, v6] {
        assert_eq!(
            at_frontend(&flows, item),
            [(Verdict::Forwarded as i32, Some(true), Some(4))],
            "{item}"
        );
    }
    // An error about nothing frontend sent is no reply: judged and dropped,
    // although one between the same two passed just before (it left no
    // entry that would let the next through).
    forged_port_unreachable(&db.netns, v4.src_ip, v4.dst_ip);
    let flows = env
        .wait_for("the forged error dropped", |f| {
            dropped_unreachable(f, v4.src_ip, v4.dst_ip).len() == 2
        })
        .await;
    assert_eq!(dropped_unreachable(&flows, v4.src_ip, v4.dst_ip), [5, 1]);
    assert_eq!(at_frontend(&flows, v4).len(), 1);
}

/// Neighbour discovery passes a policy unjudged, as ARP does, and so leaves
/// no entry either: the address pair's ICMPv6 entry would let every later
/// ICMPv6 message between the two but echo through unjudged. db's datagram
/// to frontend (dropped) makes db ask for frontend's address; frontend's
/// advertisement passes, told; an ICMPv6 error db forges right after is
/// still judged and dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbour_discovery_leaves_no_pass_for_other_icmpv6() {
    let scenario = frontend_takes_nothing(
        "  - {from: db, to: frontend, protocol: udp, port: 5998, family: ipv6, expect: dropped}\n",
    );
    let env = e2e::start(&scenario, &[]);
    let db = env.lab.endpoint("db").unwrap();
    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    let [udp] = &report.items[..] else { panic!() };
    let (db_ip, frontend_ip) = (udp.src_ip, udp.dst_ip);
    let advertised = |flows: &[Flow]| {
        flows
            .iter()
            .filter(|f| ips(f) == (frontend_ip, db_ip) && icmp_type(f) == Some(136))
            .map(|f| f.verdict)
            .collect::<Vec<_>>()
    };
    let flows = env
        .wait_for("frontend's neighbour advertisement to db", |f| {
            !advertised(f).is_empty()
        })
        .await;
    assert!(
        advertised(&flows)
            .iter()
            .all(|v| *v == Verdict::Forwarded as i32),
        "{:?}",
        advertised(&flows)
    );
    forged_port_unreachable(&db.netns, frontend_ip, db_ip);
    let flows = env
        .wait_for("the forged ICMPv6 error dropped", |f| {
            dropped_unreachable(f, frontend_ip, db_ip).len() == 2
        })
        .await;
    assert_eq!(dropped_unreachable(&flows, frontend_ip, db_ip), [5, 1]);
    assert_eq!(unreachable(&flows, frontend_ip, db_ip, true), []);
}

/// api and db, db taking `port` (`5432/TCP`) from api alone, then
/// `traffic` (a `traffic:` list, or nothing).
fn db_takes_api_on(port: &str, traffic: &str) -> Scenario {
    let (port, protocol) = port.split_once('/').unwrap();
    let yaml = format!(
        r#"
endpoints:
  - {{name: api, namespace: default, labels: {{app: api}}}}
  - {{name: db, namespace: default, labels: {{app: db}}}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {{name: db-takes-api, namespace: default}}
    spec:
      endpointSelector: {{matchLabels: {{app: db}}}}
      ingress:
        - fromEndpoints: [{{matchLabels: {{app: api}}}}]
          toPorts: [{{ports: [{{port: "{port}", protocol: {protocol}}}]}}]
{traffic}"#
    );
    Scenario::parse(&yaml, "db-takes-api.yaml").expect("scenario parses")
}

/// Sends from `netns` one raw IP packet (its header written here: IPv4's
/// checksum and length the kernel fills).
fn send_raw(netns: &str, to: IpAddr, packet: Vec<u8>) {
    let domain = if to.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    observe_lab::run_in_netns(netns, move || {
        // IPPROTO_RAW: the packet carries its own IP header.
        let raw = socket2::Socket::new(
            domain,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        )?;
        raw.send_to(&packet, &SocketAddr::new(to, 0).into())?;
        Ok(())
    })
    .expect("the raw packet is sent");
}

/// A TCP header's first 20 bytes: `sport` → `dport`, SYN.
fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut tcp = [sport.to_be_bytes(), dport.to_be_bytes()].concat();
    tcp.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    tcp
}

/// From the datapath review: a packet whose ports the probe cannot read
/// cannot be judged by a rule of ports, and passed unjudged: a first IPv4
/// fragment too short for its TCP header (the rest would come as later
/// fragments, judged by addresses alone), a TCP SYN behind five IPv6
/// extension headers (read as protocol 60, port 0). db takes TCP 5432 from
/// api only: both are dropped at db's veth, each told as one Drop with
/// Cilium's reason, no policy verdict (no rule was asked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_whose_ports_cannot_be_read_are_dropped_where_policy_applies() {
    let scenario = db_takes_api_on(
        "5432/TCP",
        "traffic:
  - {from: api, to: db, protocol: tcp, port: 5432}
  - {from: api, to: db, protocol: tcp, port: 5432, family: ipv6}
",
    );
    let env = e2e::start(&scenario, &[]);
    let api = env.lab.endpoint("api").unwrap();
    // At db's veth, where its ingress policy applies.
    let db_veth = Some(env.lab.endpoint("db").unwrap().host_interface.clone());
    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    let [v4, v6] = &report.items[..] else {
        panic!()
    };
    let (IpAddr::V4(api4), IpAddr::V4(db4)) = (v4.src_ip, v4.dst_ip) else {
        panic!("{v4}")
    };
    let (IpAddr::V6(api6), IpAddr::V6(db6)) = (v6.src_ip, v6.dst_ip) else {
        panic!("{v6}")
    };

    // IPv4: more fragments, offset 0, 8 bytes of TCP (ports and sequence).
    let mut first = vec![0x45, 0, 0, 28, 0x12, 0x34, 0x20, 0, 64, 6, 0, 0];
    first.extend(api4.octets());
    first.extend(db4.octets());
    first.extend(&tcp_syn(41_000, 22)[..8]);
    send_raw(&api.netns, IpAddr::V4(db4), first);
    // And a later fragment of an ICMP datagram (offset 8 bytes) whose first
    // was never sent: its type is not in it, and 0 (echo reply) was read,
    // which passed as the answer to an echo. Its ports are unknown: dropped.
    let mut later = vec![0x45, 0, 0, 28, 0x12, 0x35, 0, 1, 64, 1, 0, 0];
    later.extend(api4.octets());
    later.extend(db4.octets());
    later.extend([0; 8]);
    send_raw(&api.netns, IpAddr::V4(db4), later);
    // A later fragment of GRE (47), whose first was not sent either: GRE has
    // no ports, so the fragment has its whole key and is judged by it, as
    // before fragments were tracked: denied by policy.
    let mut gre = vec![0x45, 0, 0, 28, 0x12, 0x36, 0, 1, 64, 47, 0, 0];
    gre.extend(api4.octets());
    gre.extend(db4.octets());
    gre.extend([0; 8]);
    send_raw(&api.netns, IpAddr::V4(db4), gre);
    // IPv6: five destination options headers (8 bytes each, PadN), then a SYN.
    let syn = tcp_syn(41_001, 22);
    let mut packet = vec![0x60, 0, 0, 0];
    packet.extend(((5 * 8 + syn.len()) as u16).to_be_bytes());
    packet.extend([60, 64]);
    packet.extend(api6.octets());
    packet.extend(db6.octets());
    for i in 0..5 {
        let next = if i == 4 { 6 } else { 60 };
        packet.extend([next, 0, 1, 4, 0, 0, 0, 0]);
    }
    packet.extend(syn);
    send_raw(&api.netns, IpAddr::V6(db6), packet);

    let drops = |flows: &[Flow], from: IpAddr, to: IpAddr| {
        flows
            .iter()
            .filter(|f| ips(f) == (from, to) && f.verdict == Verdict::Dropped as i32)
            .map(|f| {
                (
                    f.drop_reason_desc,
                    f.event_type.as_ref().map(|e| (e.r#type, e.sub_type)),
                    f.trace_observation_point,
                    f.interface.as_ref().map(|i| i.name.clone()),
                )
            })
            .collect::<Vec<_>>()
    };
    let flows = env
        .wait_for("the unreadable packets and the fragment dropped", |f| {
            drops(f, v4.src_ip, v4.dst_ip).len() == 4 && !drops(f, v6.src_ip, v6.dst_ip).is_empty()
        })
        .await;
    // A Drop has no observation point, as Hubble's drops.
    let to_endpoint = TraceObservationPoint::UnknownPoint as i32;
    let denied = DropReason::PolicyDenied as i32;
    assert_eq!(
        drops(&flows, v4.src_ip, v4.dst_ip),
        [
            (
                DropReason::CtTruncatedOrInvalidHeader as i32,
                Some((1, 135)),
                to_endpoint,
                db_veth.clone()
            ),
            (
                DropReason::FirstLogicalDatagramFragmentNotFound as i32,
                Some((1, 175)),
                to_endpoint,
                db_veth.clone()
            ),
            // The GRE fragment: the policy's verdict, then the drop.
            (denied, Some((5, 0)), to_endpoint, db_veth.clone()),
            (denied, Some((1, 133)), to_endpoint, db_veth.clone()),
        ]
    );
    assert_eq!(
        drops(&flows, v6.src_ip, v6.dst_ip),
        [(
            DropReason::InvalidIpv6ExtensionHeader as i32,
            Some((1, 156)),
            to_endpoint,
            db_veth
        )]
    );
}

/// Binds UDP `port` on both of `netns`'s addresses `to` (IPv4, IPv6), for
/// `datagram_in_fragments`.
fn bind_udp(netns: &str, to: [IpAddr; 2], port: u16) -> Vec<std::net::UdpSocket> {
    let netns = netns.to_string();
    std::thread::spawn(move || {
        sysfs::enter_netns(&netns).unwrap();
        to.map(|ip| {
            let sock = std::net::UdpSocket::bind((ip, port)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            sock
        })
        .into()
    })
    .join()
    .unwrap()
}

/// Sends one datagram of `len` bytes from `netns` to `to`; returns its
/// source port.
fn send_datagram(netns: &str, to: SocketAddr, len: usize) -> u16 {
    let netns = netns.to_string();
    std::thread::spawn(move || {
        sysfs::enter_netns(&netns).unwrap();
        let any: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let sock = std::net::UdpSocket::bind(any).unwrap();
        assert_eq!(sock.send_to(&vec![7u8; len], to).unwrap(), len);
        sock.local_addr().unwrap().port()
    })
    .join()
    .unwrap()
}

/// From the datapath review: only a datagram's first fragment carries its
/// ports, and the later ones were judged by addresses alone, so a UDP
/// datagram larger than the MTU, allowed to its port, was dropped at the
/// receiver's veth (a DNS answer over 1,500 bytes, say). db takes UDP 5353
/// from api: a datagram of 3,000 bytes arrives whole over IPv4 and IPv6, and
/// db's veth counts its three fragments in its flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_in_fragments_passes_to_its_allowed_port() {
    let scenario = db_takes_api_on("5353/UDP", "");
    let env = e2e::start(&scenario, &["--report-interval", "1"]);
    let api = env.lab.endpoint("api").unwrap();
    let db = env.lab.endpoint("db").unwrap();
    let db_ips = [IpAddr::V4(db.ipv4), IpAddr::V6(db.ipv6)];
    let receivers = bind_udp(&db.netns, db_ips, 5353);

    let mut sports = Vec::new();
    for (receiver, ip) in receivers.iter().zip(db_ips) {
        let sport = send_datagram(&api.netns, SocketAddr::new(ip, 5353), 3000);
        let mut buf = [0u8; 4096];
        let (len, from) = receiver
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("the datagram to {ip} did not arrive whole: {e}"));
        assert_eq!((len, from.port()), (3000, sport), "to {ip}");
        sports.push(u32::from(sport));
    }
    // From the review of the first version: IPv6 allows extension headers
    // after the fragment header, which hide the protocol from the later
    // fragments; their record was keyed by it, missed, and the datagram
    // was dropped. Two fragments, sent raw: a destination options header
    // and UDP 41002 → 5353 in the first, the rest of the data in the second.
    let IpAddr::V6(db6) = db_ips[1] else { panic!() };
    let data = *b"sixteen bytes!!!";
    for fragment in ipv6_udp_in_two_fragments(api.ipv6, db6, 41_002, 5353, data) {
        send_raw(&api.netns, IpAddr::V6(db6), fragment);
    }
    let mut buf = [0u8; 64];
    let (len, from) = receivers[1]
        .recv_from(&mut buf)
        .expect("the datagram behind options arrived");
    assert_eq!((&buf[..len], from.port()), (&data[..], 41_002));
    sports.push(41_002);

    // db's veth's reports of each datagram's flow: (packets, bytes) from api.
    let db_veth = db.host_interface.clone();
    let reported = |flows: &[Flow], sport: u32| -> Vec<(u64, u64)> {
        flows
            .iter()
            .filter(|f| f.interface.as_ref().is_some_and(|i| i.name == db_veth))
            .filter(|f| test_support::flows::udp_ports(f) == Some((sport, 5353)))
            .filter_map(|f| f.volume.filter(|v| v.report))
            .map(|v| (v.fwd_packets, v.fwd_bytes))
            .collect()
    };
    let flows = env
        .wait_for("the datagrams' reports at db's veth", |f| {
            sports.iter().all(|&s| !reported(f, s).is_empty())
        })
        .await;
    // Frames of the MTU of 1,500: IPv4's fragments carry 1,480 bytes of the
    // 3,008 (UDP's header and the data), 1,480 and 48: 1,514 + 1,514 + 82;
    // IPv6's 1,448 (its fragment header takes 8), 1,448 and 112: 1,510 +
    // 1,510 + 174.
    assert_eq!(reported(&flows, sports[0])[0], (3, 3110), "IPv4");
    assert_eq!(reported(&flows, sports[1])[0], (3, 3194), "IPv6");
    // 14 + 40 + 8 + 8 + 8 (the headers) and 14 + 40 + 8 + 16 (the data).
    assert_eq!(reported(&flows, 41_002)[0], (2, 156), "IPv6 behind options");
    let dropped: Vec<_> = flows
        .iter()
        .filter(|f| f.verdict == Verdict::Dropped as i32)
        .map(observe_cli::flows::output::flow_line)
        .collect();
    assert_eq!(dropped, Vec::<String>::new(), "nothing dropped");
}

/// A UDP datagram `sport` → `dport` carrying `data`, as two raw IPv6
/// fragments: the first holds a fragment header, a destination options
/// header (PadN) and the UDP header, the second the data.
fn ipv6_udp_in_two_fragments(
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    sport: u16,
    dport: u16,
    data: [u8; 16],
) -> [Vec<u8>; 2] {
    let udp_len = 8 + data.len() as u16;
    // The checksum over IPv6's pseudo-header, the UDP header and the data.
    let mut summed = [src.octets(), dst.octets()].concat();
    summed.extend([0, 0].iter().chain(&udp_len.to_be_bytes()));
    summed.extend([0, 0, 0, 17]);
    let header = |checksum: u16| {
        [sport, dport, udp_len, checksum]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<_>>()
    };
    summed.extend(header(0));
    summed.extend(data);
    let sum = summed
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let checksum = !(((folded & 0xffff) + (folded >> 16)) as u16);
    let ip = |payload_len: usize| {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend((payload_len as u16).to_be_bytes());
        h.extend([44, 64]);
        h.extend(src.octets());
        h.extend(dst.octets());
        h
    };
    let id = [0x5e, 0xed, 0x00, 0x01];
    // Fragment header: next header 60, offset 0, more to come.
    let mut first_payload = vec![60, 0, 0, 1];
    first_payload.extend(id);
    first_payload.extend([17, 0, 1, 4, 0, 0, 0, 0]);
    first_payload.extend(header(checksum));
    // The offset of the second: the 16 bytes of options and UDP header.
    let mut second_payload = vec![60, 0, 0, 16];
    second_payload.extend(id);
    second_payload.extend(data);
    [
        [ip(first_payload.len()), first_payload].concat(),
        [ip(second_payload.len()), second_payload].concat(),
    ]
}
