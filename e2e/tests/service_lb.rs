//! Socket-level service load balancing on the real kernel: clients in the lab's
//! cgroup connect to a service VIP; the socket programs translate to a backend;
//! flows show the SOCK translation and the tc flows of the connection name the
//! service; backend changes take effect for new connections while running; a
//! service without backends refuses at once; nothing stays behind.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use e2e::probe_metrics::SERVICES_GENERATION;
use e2e::{ips, ports};
use flow_probe::kernel::sock_lb::open_pinned_maps;
use flow_probe::services::sync::snapshot;
use observe_lab::{ItemReport, Lab, Outcome, Scenario, run_traffic_once};
use observer_proto::flow::{
    DropReason, Flow, FlowFilter, FlowType, SocketTranslationPoint, Verdict,
};
use observer_proto::observer::GetFlowsRequest;

const SCENARIO: &str = r#"
endpoints:
  - {name: client, namespace: default, labels: {app: client}}
  - {name: api-1, namespace: default, labels: {app: api}}
  - {name: api-2, namespace: default, labels: {app: api}}
services:
  - name: api
    namespace: default
    vip: {ipv4: 198.18.100.10, ipv6: "fd42:100::10"}
    ports:
      - {port: 80, protocol: TCP, targetPort: 8080}
      - {port: 53, protocol: UDP, targetPort: 5353}
    selector: {app: api}
  - name: empty
    namespace: default
    vip: {ipv4: 198.18.100.11}
    ports: [{port: 80, targetPort: 8080}, {port: 53, protocol: UDP}]
    selector: {app: nothing}
traffic:
  - {from: client, to_service: api, protocol: tcp, port: 80}
  - {from: client, to_service: api, protocol: tcp, family: ipv6, port: 80}
  - {from: client, to_service: api, protocol: udp, port: 53}
  - {from: client, to_service: empty, protocol: tcp, port: 80, expect: refused}
  - {from: client, to_service: empty, protocol: udp, port: 53, expect: refused}
"#;

const VIP4: &str = "198.18.100.10";
const VIP6: &str = "fd42:100::10";

fn scenario() -> Scenario {
    Scenario::parse(SCENARIO, "service_lb.yaml").expect("scenario parses")
}

/// A scenario with only traffic item `i` of the test scenario.
fn item(i: usize) -> Scenario {
    let mut s = scenario();
    s.traffic = vec![s.traffic[i].clone()];
    s
}

/// Runs item `i` `n` times; every run must end as expected.
fn run(lab: &Lab, i: usize, n: usize) -> Vec<ItemReport> {
    let one = item(i);
    (0..n)
        .map(|_| {
            let report = run_traffic_once(lab, &one).expect("traffic runs");
            assert!(report.all_as_expected(), "{report}");
            report.items.into_iter().next().unwrap()
        })
        .collect()
}

/// Runs test-support's `cgroup-client` with `action` against `target` in the
/// cgroup of endpoint `name`'s node and in its network namespace (entered by
/// the child itself: `ip netns exec` would hide the cgroup mount); its result
/// line.
fn unbound_client(lab: &Lab, name: &str, action: &str, target: &str) -> String {
    let bin = observe_lab::binaries::binary("cgroup-client").unwrap();
    let endpoint = lab.endpoint(name).unwrap();
    let netns = Path::new("/var/run/netns").join(&endpoint.netns);
    let mut cmd = std::process::Command::new(&bin);
    test_support::netns::start_in(&mut cmd, &netns).unwrap();
    let out = cmd
        .arg(lab.node_cgroup_path(&endpoint.node))
        .args([action, target])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cgroup-client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn is_sock(f: &Flow) -> bool {
    f.r#type == FlowType::Sock as i32
}

fn service_of(s: &Option<observer_proto::flow::Service>) -> Option<String> {
    s.as_ref().map(|s| format!("{}/{}", s.namespace, s.name))
}

fn ip_of(lab: &Lab, name: &str, v6: bool) -> IpAddr {
    let ep = lab.endpoint(name).unwrap();
    if v6 {
        IpAddr::V6(ep.ipv6)
    } else {
        IpAddr::V4(ep.ipv4)
    }
}

/// The SOCK flow at translation point `point` of a connection from `client`
/// port `sport`.
fn sock_at(
    flows: &[Flow],
    point: SocketTranslationPoint,
    client: IpAddr,
    sport: u16,
) -> Option<&Flow> {
    flows.iter().find(|f| {
        is_sock(f)
            && f.sock_xlate_point == point as i32
            && ips(f).0 == client
            && ports(f).is_some_and(|(s, _)| s == sport)
    })
}

/// The pre-translation SOCK flow of a connection from `client` port `sport`:
/// the connection as the client made it, to the VIP.
fn sock_flow(flows: &[Flow], client: IpAddr, sport: u16) -> Option<&Flow> {
    let pre = SocketTranslationPoint::SockXlatePointPreDirectionFwd;
    sock_at(flows, pre, client, sport)
}

/// The post-translation SOCK flow of that connection: to the backend.
fn post_flow(flows: &[Flow], client: IpAddr, sport: u16) -> Option<&Flow> {
    let post = SocketTranslationPoint::SockXlatePointPostDirectionFwd;
    sock_at(flows, post, client, sport)
}

/// Backend counts (pod name → connections) of SOCK flows to `vip`.
fn per_backend(flows: &[Flow], vip: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let post = SocketTranslationPoint::SockXlatePointPostDirectionFwd as i32;
    for f in flows.iter().filter(|f| {
        is_sock(f) && f.sock_xlate_point == post && f.summary.starts_with(&format!("{vip}:"))
    }) {
        let pod = f
            .destination
            .as_ref()
            .map(|e| e.pod_name.clone())
            .unwrap_or_default();
        *out.entry(pod).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_the_vip_are_balanced_translated_and_observed() {
    let env = e2e::start(&scenario(), &[]);
    let lab = &env.lab;
    // The client's node's cgroup, where node1's probe balances.
    let cgroup = lab.node_cgroup_path("node1");
    assert!(
        cgroup.is_dir(),
        "the lab made its node's cgroup {}",
        cgroup.display()
    );
    let cgroup_id = std::fs::metadata(&cgroup).unwrap().ino();
    let client4 = ip_of(lab, "client", false);

    // TCP over IPv4, many connections: all complete, on both backends.
    let reports = tokio::task::block_in_place(|| run(lab, 0, 16));
    assert!(
        reports
            .iter()
            .all(|r| r.outcome == Outcome::Completed && r.to == "api")
    );
    let flows = env
        .wait_for("a SOCK flow of every connection", |flows| {
            reports
                .iter()
                .all(|r| sock_flow(flows, client4, r.src_port.unwrap()).is_some())
        })
        .await;
    for r in &reports {
        let sport = r.src_port.unwrap();
        // As Cilium reports it: before the translation, client → VIP naming
        // the service; after it, client → backend naming no service.
        let sock = sock_flow(&flows, client4, sport).unwrap();
        assert_eq!(sock.verdict, Verdict::Traced as i32);
        assert_eq!(
            ips(sock),
            (client4, VIP4.parse().unwrap()),
            "pre-translation"
        );
        assert_eq!(ports(sock), Some((sport, 80)));
        assert_eq!(
            service_of(&sock.destination_service).as_deref(),
            Some("default/api")
        );
        let post = post_flow(&flows, client4, sport).expect("the post-translation flow");
        assert_eq!(post.verdict, Verdict::Translated as i32);
        for f in [sock, post] {
            assert_ne!(f.socket_cookie, 0);
            assert_eq!(
                f.cgroup_id, cgroup_id,
                "the client ran in its node's cgroup"
            );
            assert_eq!(f.is_reply, None);
            assert_eq!(f.event_type.as_ref().map(|e| e.r#type), Some(7));
        }
        assert_eq!(post.socket_cookie, sock.socket_cookie);
        let backend = post.destination.as_ref().unwrap().pod_name.clone();
        assert!(backend == "api-1" || backend == "api-2", "{backend}");
        let backend_ip = ip_of(lab, &backend, false);
        assert_eq!(ips(post), (client4, backend_ip), "post-translation");
        assert_eq!(ports(post), Some((sport, 8080)));
        assert_eq!(post.destination_service, None);
        assert_eq!(sock.summary, format!("{VIP4}:80 -> default/{backend}:8080"));
        // On the wire the connection goes to the backend: its tc flows name
        // no service (Cilium names a service only at its frontend).
        let wire = e2e::connection(&flows, (client4, sport), (backend_ip, 8080));
        let syn = wire
            .iter()
            .find(|f| ips(f).0 == client4 && !is_sock(f))
            .unwrap_or_else(|| panic!("no tc flow {client4}:{sport} -> {backend_ip}:8080"));
        assert_eq!(syn.destination_service, None);
        assert!(
            wire.iter()
                .filter(|f| !is_sock(f))
                .all(|f| f.source_service.is_none() && f.destination_service.is_none())
        );
    }
    assert!(
        !flows
            .iter()
            .any(|f| !is_sock(f) && ips(f).1 == VIP4.parse::<IpAddr>().unwrap()),
        "no packet ever carries the VIP"
    );
    // Hubble's destination_service filter finds the flows to the frontend.
    let filtered = env
        .get_flows(GetFlowsRequest {
            whitelist: vec![FlowFilter {
                destination_service: vec!["default/api".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let pre = SocketTranslationPoint::SockXlatePointPreDirectionFwd as i32;
    assert!(!filtered.is_empty());
    assert!(filtered.iter().all(|f| is_sock(f)
        && f.sock_xlate_point == pre
        && service_of(&f.destination_service).as_deref() == Some("default/api")));
    let counts = per_backend(&flows, VIP4);
    assert_eq!(counts.values().sum::<usize>(), 16, "{counts:?}");
    assert!(counts.get("api-1").is_some_and(|n| *n > 0), "{counts:?}");
    assert!(counts.get("api-2").is_some_and(|n| *n > 0), "{counts:?}");

    // IPv6 VIP.
    let client6 = ip_of(lab, "client", true);
    let r6 = tokio::task::block_in_place(|| run(lab, 1, 2));
    let flows = env
        .wait_for("SOCK flows of the IPv6 connections", |flows| {
            r6.iter()
                .all(|r| sock_flow(flows, client6, r.src_port.unwrap()).is_some())
        })
        .await;
    for r in &r6 {
        let sock = sock_flow(&flows, client6, r.src_port.unwrap()).unwrap();
        assert_eq!(ips(sock).1, VIP6.parse::<IpAddr>().unwrap());
        assert!(
            sock.summary
                .starts_with(&format!("[{VIP6}]:80 -> default/api-")),
            "{}",
            sock.summary
        );
    }

    // UDP: the echo comes back through the VIP.
    let ru = tokio::task::block_in_place(|| run(lab, 2, 2));
    let flows = env
        .wait_for("SOCK flows of the UDP exchanges", |flows| {
            ru.iter()
                .all(|r| sock_flow(flows, client4, r.src_port.unwrap()).is_some())
        })
        .await;
    for r in &ru {
        let sock = sock_flow(&flows, client4, r.src_port.unwrap()).unwrap();
        assert_eq!(ports(sock), Some((r.src_port.unwrap(), 53)));
        assert!(sock.summary.ends_with(":5353"), "{}", sock.summary);
    }

    // No backends, TCP and UDP: the connect itself is refused (ECONNREFUSED,
    // nothing sent; a refusal by RST or ICMP port unreachable would come
    // after a packet left), and a flow says why.
    for (i, port) in [(3, 80), (4, 53)] {
        let r = tokio::task::block_in_place(|| run(lab, i, 1)).remove(0);
        assert_eq!(
            (&r.outcome, r.bytes_sent, r.server_bytes_received),
            (&Outcome::Refused, 0, 0)
        );
        let sport = r.src_port.unwrap();
        let flows = env
            .wait_for("the refused connect as a flow", |flows| {
                sock_flow(flows, client4, sport).is_some()
            })
            .await;
        let refused = sock_flow(&flows, client4, sport).unwrap();
        assert_eq!(refused.verdict, Verdict::Dropped as i32);
        assert_eq!(
            refused.drop_reason_desc,
            DropReason::ServiceBackendNotFound as i32
        );
        assert_eq!(
            refused.sock_xlate_point,
            SocketTranslationPoint::SockXlatePointPreDirectionFwd as i32
        );
        assert_eq!(
            service_of(&refused.destination_service).as_deref(),
            Some("default/empty")
        );
        assert_eq!(
            refused.summary,
            format!(
                "198.18.100.11:{port}: no backend for default/empty (SERVICE_BACKEND_NOT_FOUND)"
            )
        );
    }

    // A client that connects without binding first (as curl does): at the
    // connect its socket has no address yet, and the endpoint whose network
    // namespace made the call is named as the client.
    let out = unbound_client(lab, "client", "refused", "198.18.100.11:80");
    assert_eq!(out, format!("errno={}", libc::ECONNREFUSED));
    let flows = env
        .wait_for("the unbound client's refused connect", |flows| {
            sock_flow(flows, client4, 0).is_some()
        })
        .await;
    let unbound = sock_flow(&flows, client4, 0).unwrap();
    assert_eq!(unbound.verdict, Verdict::Dropped as i32);
    assert_eq!(
        unbound.source.as_ref().map(|s| s.pod_name.as_str()),
        Some("client")
    );
    assert_eq!(ips(unbound), (client4, "198.18.100.11".parse().unwrap()));
    assert_eq!(ports(unbound), Some((0, 80)));

    // `observe flows --to-service`, Hubble's flag: the SOCK flows to the
    // frontend of `empty`, in the namespace --to-namespace names.
    let mut args = vec![
        "flows".to_string(),
        "--all".into(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(env.server_args(env.probe.addr));
    args.extend(["--to-service", "empty", "--to-namespace", "default"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tokio::task::block_in_place(|| e2e::observe(&args));
    let empty_vip: IpAddr = "198.18.100.11".parse().unwrap();
    let want = env
        .all_flows()
        .await
        .iter()
        .filter(|f| service_of(&f.destination_service).as_deref() == Some("default/empty"))
        .count();
    // Three refused connects: TCP and UDP items, and the unbound client's.
    assert_eq!(want, 3);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("\"flow\"")).collect();
    assert_eq!(lines.len(), want, "{out}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains(&format!("\"destination\":\"{empty_vip}\""))
                && l.contains("\"DROPPED\"")),
        "{out}"
    );

    // Everything goes with the lab: cgroups, pins.
    let lab_cgroup = lab.cgroup_path();
    let pins =
        PathBuf::from(flow_probe::kernel::pins::PIN_ROOT).join(lab.node_netns("node1").unwrap());
    assert!(pins.join("SERVICES").exists());
    drop(env);
    assert!(!cgroup.exists(), "cgroup {} removed", cgroup.display());
    assert!(
        !lab_cgroup.exists(),
        "the lab's cgroup {} removed",
        lab_cgroup.display()
    );
    assert!(!pins.exists(), "pins {} removed", pins.display());
}

/// Backends of the IPv4 TCP frontend of `api` in the probe's pinned maps:
/// (backend count, backend ports by slot).
fn api_backends(pins: &Path) -> (u16, Vec<u16>) {
    let maps = open_pinned_maps(pins).expect("pinned service maps");
    let (_, service, backends) = snapshot(&maps)
        .into_iter()
        .find(|(k, _, _)| {
            k.family == 4 && k.proto == 6 && k.addr[..4] == [198, 18, 100, 10] && k.port == 80
        })
        .expect("the api frontend is programmed");
    (
        service.backend_count,
        backends.iter().map(|b| b.port).collect(),
    )
}

/// Writes `text` to `path` atomically, then waits until the probe has put
/// the change in force (its services generation advanced by one).
fn write_and_wait(env: &e2e::Env, path: &Path, text: &str) {
    let before = env.metric(SERVICES_GENERATION);
    observe_lab::write_atomically(path, text).unwrap();
    let now = env.wait_for_metric(SERVICES_GENERATION, before + 1);
    assert_eq!(now, before + 1, "one new set of services");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_changes_apply_to_new_connections_at_once() {
    let env = e2e::start(&scenario(), &[]);
    let lab = &env.lab;
    let pins =
        PathBuf::from(flow_probe::kernel::pins::PIN_ROOT).join(lab.node_netns("node1").unwrap());
    let client4 = ip_of(lab, "client", false);
    // In force when the probe is ready.
    assert_eq!(env.metric(SERVICES_GENERATION), 1);
    assert_eq!(api_backends(&pins), (2, vec![8080, 8080]));

    // api-2 leaves the endpoints file: new connections all go to api-1.
    let endpoints_text = std::fs::read_to_string(lab.endpoints_path()).unwrap();
    let mut without = lab.endpoints_file();
    without.endpoints.retain(|e| e.name != "api-2");
    let without = cluster_spec::yaml::to_string(&without).unwrap();
    tokio::task::block_in_place(|| write_and_wait(&env, &lab.endpoints_path(), &without));
    assert_eq!(api_backends(&pins), (1, vec![8080]));
    let reports = tokio::task::block_in_place(|| run(lab, 0, 8));
    let flows = env
        .wait_for("SOCK flows after the removal", |flows| {
            reports
                .iter()
                .all(|r| sock_flow(flows, client4, r.src_port.unwrap()).is_some())
        })
        .await;
    for r in &reports {
        let sock = sock_flow(&flows, client4, r.src_port.unwrap()).unwrap();
        assert_eq!(sock.summary, format!("{VIP4}:80 -> default/api-1:8080"));
    }

    // Back in: both serve again.
    tokio::task::block_in_place(|| write_and_wait(&env, &lab.endpoints_path(), &endpoints_text));
    assert_eq!(api_backends(&pins), (2, vec![8080, 8080]));

    // The services file edited: the selector matches nothing, connects fail fast.
    let services_text = std::fs::read_to_string(lab.services_path()).unwrap();
    let edited = services_text.replacen("app: api", "app: gone", 1);
    assert_ne!(edited, services_text);
    tokio::task::block_in_place(|| write_and_wait(&env, &lab.services_path(), &edited));
    assert_eq!(api_backends(&pins), (0, vec![]));
    let mut refused = item(0);
    refused.traffic[0].expect = observe_lab::Expect::Refused;
    let report = tokio::task::block_in_place(|| run_traffic_once(lab, &refused)).unwrap();
    assert!(report.all_as_expected(), "{report}");

    // And restored: connections complete again.
    tokio::task::block_in_place(|| write_and_wait(&env, &lab.services_path(), &services_text));
    assert_eq!(api_backends(&pins), (2, vec![8080, 8080]));
    tokio::task::block_in_place(|| run(lab, 0, 2));
}

/// How many programs are attached to `cgroup` for `attach_type`
/// (BPF_PROG_QUERY; 10 is BPF_CGROUP_INET4_CONNECT).
fn attached(cgroup: &std::path::Path, attach_type: u32) -> u32 {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(cgroup).unwrap();
    // union bpf_attr, query: target_fd, attach_type, query_flags, attach_flags,
    // prog_ids (u64), prog_cnt; the rest stays zero.
    let mut attr = [0u8; 64];
    attr[0..4].copy_from_slice(&(dir.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&attach_type.to_ne_bytes());
    const BPF_PROG_QUERY: libc::c_long = 16;
    // SAFETY: attr is a valid, zero-padded bpf_attr of the size passed; with
    // prog_ids null the kernel only writes attach_flags and prog_cnt into it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            attr.as_mut_ptr(),
            attr.len() as u32,
        )
    };
    assert_eq!(rc, 0, "BPF_PROG_QUERY: {}", std::io::Error::last_os_error());
    u32::from_ne_bytes(attr[24..28].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_balancer_survives_a_killed_probe_and_is_readopted() {
    const CONNECT4: u32 = 10;
    let mut env = e2e::start(&scenario(), &[]);
    let pins = PathBuf::from(flow_probe::kernel::pins::PIN_ROOT)
        .join(env.lab.node_netns("node1").unwrap());
    let cgroup = env.lab.node_cgroup_path("node1");
    let links = || {
        let mut v: Vec<String> = std::fs::read_dir(&pins)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.starts_with("link_cgroup_")
                    || ["SERVICES", "BACKENDS", "REVNAT"].contains(&n.as_str())
            })
            .collect();
        v.sort();
        v
    };
    let before = links();
    assert_eq!(before.len(), 11, "8 links and 3 maps: {before:?}");
    assert_eq!(attached(&cgroup, CONNECT4), 1);

    // SIGKILL: no clean-up runs; the pinned links keep balancing.
    env.kill_probe().await;
    tokio::task::block_in_place(|| run(&env.lab, 0, 4));
    assert_eq!(links(), before);

    // Restart: the new programs take over the pins, the old links are gone,
    // and the services in the maps were already right.
    env.restart_probe();
    let log = std::fs::read_to_string(&env.probe.log).unwrap();
    assert!(
        log.contains("replacing the pinned links of a previous probe"),
        "{log}"
    );
    assert!(
        log.contains("services in force: 6 frontends, 8 backends (0 frontends and 0 backends written, 0 and 0 removed)"),
        "{log}"
    );
    assert_eq!(links(), before);
    assert_eq!(
        attached(&cgroup, CONNECT4),
        1,
        "the previous probe's link was released"
    );
    let client4 = ip_of(&env.lab, "client", false);
    let reports = tokio::task::block_in_place(|| run(&env.lab, 0, 2));
    env.wait_for("SOCK flows from the new probe", |flows| {
        reports
            .iter()
            .all(|r| sock_flow(flows, client4, r.src_port.unwrap()).is_some())
    })
    .await;
}

/// Two nodes: the client on node2, a backend on each.
const TWO_NODES: &str = r#"
endpoints:
  - {name: client, namespace: default, labels: {app: client}, node: node2}
  - {name: api-1, namespace: default, labels: {app: api}, node: node1}
  - {name: api-2, namespace: default, labels: {app: api}, node: node2}
services:
  - name: api
    namespace: default
    vip: {ipv4: 198.18.100.10}
    ports: [{port: 80, protocol: TCP, targetPort: 8080}]
    selector: {app: api}
  - name: empty
    namespace: default
    vip: {ipv4: 198.18.100.11}
    ports: [{port: 80, targetPort: 8080}]
    selector: {app: nothing}
traffic:
  - {from: client, to_service: api, protocol: tcp, port: 80}
  - {from: client, to_service: empty, protocol: tcp, port: 80, expect: refused}
  - {from: client, to: api-1, protocol: tcp, port: 8080}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_balances_and_reports_only_its_own_clients_connects() {
    let scenario = Scenario::parse(TWO_NODES, "two_nodes.yaml").expect("scenario parses");
    let env = e2e::start(&scenario, &[]);
    let lab = &env.lab;
    let probe_of = |node: &str| {
        let p = env
            .probes
            .iter()
            .find(|p| p.node == node)
            .expect("a probe per node");
        env.server(p.addr)
    };
    let (node1, node2) = (probe_of("node1"), probe_of("node2"));
    let one = |i: usize| Scenario {
        traffic: vec![scenario.traffic[i].clone()],
        ..scenario.clone()
    };
    let completed: Vec<ItemReport> = tokio::task::block_in_place(|| {
        (0..4)
            .map(|_| {
                let r = run_traffic_once(lab, &one(0)).expect("traffic runs");
                assert!(r.all_as_expected(), "{r}");
                r.items.into_iter().next().unwrap()
            })
            .collect()
    });
    let refused = tokio::task::block_in_place(|| run_traffic_once(lab, &one(1)).unwrap());
    assert!(refused.all_as_expected(), "{refused}");
    let client4 = ip_of(lab, "client", false);
    // node2, the client's node, translated every connect and says so once.
    let flows = node2
        .wait_for("node2's SOCK flows of every connect", |flows| {
            completed
                .iter()
                .all(|r| post_flow(flows, client4, r.src_port.unwrap()).is_some())
        })
        .await;
    let socks: Vec<&Flow> = flows.iter().filter(|f| is_sock(f)).collect();
    for r in &completed {
        let sport = r.src_port.unwrap();
        let pre = socks
            .iter()
            .filter(|f| ports(f) == Some((sport, 80)) && f.verdict == Verdict::Traced as i32)
            .count();
        assert_eq!(pre, 1, "one pre-translation flow of port {sport}");
    }
    let not_found: Vec<&&Flow> = socks
        .iter()
        .filter(|f| f.drop_reason_desc == DropReason::ServiceBackendNotFound as i32)
        .collect();
    assert_eq!(not_found.len(), 1, "the refused connect, once");
    // node1's balancer is attached to node1's cgroup: it saw none of them.
    // A direct connection to api-1 afterwards marks how far node1 has read:
    // its SOCK flows, had there been any, came before.
    let direct = tokio::task::block_in_place(|| run_traffic_once(lab, &one(2)).unwrap());
    assert!(direct.all_as_expected(), "{direct}");
    let direct_port = direct.items[0].src_port.unwrap();
    let on_node1 = node1
        .wait_for("node1's flows of the direct connection", |flows| {
            flows
                .iter()
                .any(|f| ports(f) == Some((direct_port, 8080)) && !is_sock(f))
        })
        .await;
    let socks_on_node1: Vec<&str> = on_node1
        .iter()
        .filter(|f| is_sock(f))
        .map(|f| f.summary.as_str())
        .collect();
    assert_eq!(socks_on_node1, Vec::<&str>::new());
}
