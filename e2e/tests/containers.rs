//! flow-probe `--containers` with real Podman containers, discovered through
//! the Docker Engine API of `podman system service`: flows named after the
//! containers with their labels and identity, a container that starts after
//! the probe, one that stops (its programs gone), policy that selects
//! containers by label, and the runtime going away and coming back.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use aya::programs::links::LinkType;
use aya::programs::{SchedClassifier, TcAttachType};
use cluster_spec::endpoints::{Endpoint, EndpointsFile};
use e2e::containers::ContainerEnv;
use e2e::{ips, ports};
use observer_proto::flow::{
    self, DropReason, Flow, TraceObservationPoint, TrafficDirection, Verdict,
};
use observer_proto::observe::v1::EndpointStatus;
use observer_proto::observe::v1::endpoint_status::State;
use observer_proto::observe::v1::tcp_lifecycle::Kind;

/// The label that makes a container's compose project its namespace.
const PROJECT: &str = "com.docker.compose.project";
/// busybox httpd serving `hello` on 8080.
const WEB: &[&str] = &[
    "sh",
    "-c",
    "echo hello > /index.html && exec httpd -f -p 8080 -h /",
];
const IDLE: &[&str] = &["sleep", "3600"];

/// The identities the probe gives these (namespace, labels) sets, computed
/// as every node computes them.
fn identities(sets: &[(&str, &[(&str, &str)])]) -> Vec<u32> {
    let endpoints: Vec<Endpoint> = sets
        .iter()
        .enumerate()
        .map(|(i, (ns, labels))| Endpoint {
            id: i as u32 + 1,
            name: format!("e{i}"),
            namespace: ns.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            workload: None,
            ipv4: None,
            ipv6: None,
            node: "node1".into(),
            interface: None,
            netns: None,
        })
        .collect();
    let file = EndpointsFile { endpoints };
    let ids = file.identities();
    file.endpoints
        .iter()
        .map(|e| ids[&e.identity_labels()])
        .collect()
}

/// A flow's endpoint as the probe names a container.
fn named(e: &EndpointStatus) -> flow::Endpoint {
    flow::Endpoint {
        id: e.id,
        identity: e.identity,
        namespace: e.namespace.clone(),
        labels: e.labels.clone(),
        pod_name: e.name.clone(),
        ..Default::default()
    }
}

/// The flows of `src → dst:dport` over `proto`'s first packet (not replies)
/// at `point`.
fn first_packets(
    flows: &[Flow],
    (src, dst, dport): (IpAddr, IpAddr, u16),
    point: TraceObservationPoint,
) -> Vec<&Flow> {
    flows
        .iter()
        .filter(|f| f.trace_observation_point == point as i32)
        .filter(|f| ips(f) == (src, dst) && ports(f).is_some_and(|(_, d)| d == dport))
        .filter(|f| f.is_reply == Some(false))
        .filter(|f| f.summary == "UDP" || f.summary.starts_with("TCP Flags: SYN"))
        .filter(|f| !f.summary.contains("ACK"))
        .collect()
}

/// The Drop flows of packets from `src` to `dst`:`dport` (as Cilium's, they
/// have no observation point and no reply bit).
fn drops_of(flows: &[Flow], (src, dst, dport): (IpAddr, IpAddr, u16)) -> Vec<&Flow> {
    flows
        .iter()
        .filter(|f| f.event_type.as_ref().is_some_and(|e| e.r#type == 1))
        .filter(|f| ips(f) == (src, dst) && ports(f).is_some_and(|(_, d)| d == dport))
        .collect()
}

/// `GET /` from inside `netns` to `server`; (local port, response).
fn http_get(netns: &str, server: SocketAddr) -> (u16, String) {
    observe_lab::run_in_netns(netns, move || {
        let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(s, "GET / HTTP/1.0\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok((s.local_addr()?.port(), text))
    })
    .expect("HTTP exchange")
}

/// Whether a TCP connect from inside `netns` to `server` gets no answer.
fn connect_is_dropped(netns: &str, server: SocketAddr) -> bool {
    observe_lab::run_in_netns(netns, move || {
        Ok(
            TcpStream::connect_timeout(&server, Duration::from_millis(500))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut),
        )
    })
    .expect("connect attempt")
}

/// Ids of the programs attached (tcx) to `ifname`, ingress then egress, with their names.
fn tcx_programs(ifname: &str) -> Vec<(u32, String)> {
    [TcAttachType::Ingress, TcAttachType::Egress]
        .into_iter()
        .flat_map(|dir| {
            SchedClassifier::query_tcx(ifname, dir)
                .expect("query tcx")
                .1
        })
        .map(|p| (p.id(), p.name_as_str().unwrap_or("").to_string()))
        .collect()
}

/// How many tcx links hold one of `programs`.
fn tcx_links_of(programs: &[u32]) -> usize {
    aya::programs::loaded_links()
        .filter_map(Result::ok)
        .filter(|l| l.link_type().is_ok_and(|t| t == LinkType::Tcx))
        .filter(|l| programs.contains(&l.program_id()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_named_in_flows_and_followed_as_they_start_and_stop() {
    let mut env = ContainerEnv::new(201);
    let web_labels = [("app", "web"), ("tier", "backend"), (PROJECT, "shop")];
    let web = env.run("web", 10, &web_labels, WEB);
    env.start_probe(&[]);
    // Running before the probe: found by listing.
    env.wait_ready(&[&web]).await;
    // Started after the probe: found by its start event, no restart.
    let client = env.run("client", 11, &[("app", "client"), (PROJECT, "shop")], IDLE);
    let eps = env.wait_ready(&[&client, &web]).await;
    let (w, c) = (&eps[&web], &eps[&client]);
    let ids = identities(&[
        ("shop", &[("app", "web"), ("tier", "backend")]),
        ("shop", &[("app", "client")]),
    ]);
    assert_eq!(
        (
            w.labels.clone(),
            w.identity,
            w.namespace.as_str(),
            w.source.as_str()
        ),
        (
            vec![
                "k8s:app=web".to_string(),
                "k8s:io.kubernetes.pod.namespace=shop".to_string(),
                "k8s:tier=backend".to_string()
            ],
            ids[0],
            "shop",
            "docker"
        )
    );
    assert_eq!(
        (c.labels.clone(), c.identity),
        (
            vec![
                "k8s:app=client".to_string(),
                "k8s:io.kubernetes.pod.namespace=shop".to_string()
            ],
            ids[1]
        )
    );
    assert_eq!(w.image, env.image);
    assert_eq!(w.ips, [env.ip(10).to_string()]);
    let pid = observe_lab::podman::pid(&web).unwrap();
    assert_eq!(
        w.netns,
        std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .unwrap()
            .display()
            .to_string()
    );
    for e in [w, c] {
        let index = std::fs::read_to_string(format!("/sys/class/net/{}/ifindex", e.interface));
        assert_eq!(index.unwrap().trim(), e.ifindex.to_string(), "{e:?}");
        let programs: Vec<String> = tcx_programs(&e.interface)
            .into_iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(programs, ["tc_ingress", "tc_egress"], "{}", e.interface);
    }

    // A TCP connection of the host's own, over loopback: no endpoint's.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_addr = host.local_addr().unwrap();
    let conn = TcpStream::connect(host_addr).unwrap();
    drop((conn, host.accept().unwrap()));

    // HTTP and UDP from client to web.
    let (web_ns, client_ns) = (env.name_netns(&web), env.name_netns(&client));
    let (web_ip, client_ip) = (IpAddr::V4(env.ip(10)), IpAddr::V4(env.ip(11)));
    let (sport, response) = http_get(&client_ns, SocketAddr::new(web_ip, 8080));
    assert!(
        response.starts_with("HTTP/1.") && response.ends_with("hello\n"),
        "{response}"
    );
    let echo = observe_lab::run_in_netns(&web_ns, move || Ok(UdpSocket::bind((web_ip, 5353))?))
        .expect("UDP server");
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        echo.set_read_timeout(Some(Duration::from_secs(5)))?;
        let (n, from) = echo.recv_from(&mut buf)?;
        echo.send_to(&buf[..n], from)
    });
    let uport = observe_lab::run_in_netns(&client_ns, move || {
        let s = UdpSocket::bind((client_ip, 0))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.send_to(b"ping", (web_ip, 5353))?;
        let mut buf = [0u8; 64];
        let n = s.recv(&mut buf)?;
        assert_eq!(&buf[..n], b"ping");
        Ok(s.local_addr()?.port())
    })
    .expect("UDP exchange");
    server.join().unwrap().expect("UDP echo");

    let probe = env.probe().addr.clone();
    let flows = probe
        .wait_for("the UDP datagram at web", |f| {
            !first_packets(
                f,
                (client_ip, web_ip, 5353),
                TraceObservationPoint::ToEndpoint,
            )
            .is_empty()
        })
        .await;
    for (dport, sport, summary) in [(8080, sport, "TCP Flags: SYN"), (5353, uport, "UDP")] {
        for (point, iface, direction) in [
            (
                TraceObservationPoint::FromEndpoint,
                c,
                TrafficDirection::Egress,
            ),
            (
                TraceObservationPoint::ToEndpoint,
                w,
                TrafficDirection::Ingress,
            ),
        ] {
            let at = first_packets(&flows, (client_ip, web_ip, dport), point);
            assert_eq!(at.len(), 1, "{summary} at {point:?}: {at:#?}");
            let f = at[0];
            assert_eq!(f.source, Some(named(c)), "{summary} at {point:?}");
            assert_eq!(f.destination, Some(named(w)), "{summary} at {point:?}");
            assert_eq!(ports(f), Some((sport, dport)));
            assert_eq!(f.summary, summary, "traced, no policy here");
            assert_eq!(
                (f.verdict, f.traffic_direction, f.node_name.as_str()),
                (Verdict::Forwarded as i32, direction as i32, "node1")
            );
            assert_eq!(
                f.interface.as_ref().map(|i| (i.name.as_str(), i.index)),
                Some((iface.interface.as_str(), iface.ifindex))
            );
        }
    }

    // TCP lifecycle: the HTTP connection's two sockets, the containers'; not
    // the host's loopback connection made before it (nor the host's other
    // sockets, the gRPC connections to the probe among them).
    let lifecycle = |flows: &[Flow]| -> Vec<(i32, IpAddr, u16, IpAddr, u16)> {
        let mut v: Vec<_> = flows
            .iter()
            .filter_map(|f| {
                let lc = f.tcp_lifecycle.as_ref()?;
                let ((s, d), (sp, dp)) = (ips(f), ports(f)?);
                Some((lc.kind, s, sp, d, dp))
            })
            .collect();
        v.sort();
        v
    };
    let established = Kind::Established as i32;
    let flows = probe
        .wait_for("both sockets of the HTTP connection established", |f| {
            lifecycle(f)
                .iter()
                .filter(|(k, _, _, _, _)| *k == established)
                .count()
                >= 2
        })
        .await;
    let seen = lifecycle(&flows);
    let foreign: Vec<_> = seen
        .iter()
        .filter(|(_, s, _, d, _)| ![s, d].contains(&&web_ip) && ![s, d].contains(&&client_ip))
        .collect();
    assert!(foreign.is_empty(), "{foreign:?}");
    let opened: Vec<_> = seen
        .iter()
        .filter(|(k, _, _, _, _)| *k == established)
        .copied()
        .collect();
    let mut want = vec![
        (established, client_ip, sport, web_ip, 8080),
        (established, web_ip, 8080, client_ip, sport),
    ];
    want.sort();
    assert_eq!(opened, want);

    // The client stops: detached, its programs' links gone, out of the status.
    let ours: Vec<u32> = tcx_programs(&w.interface)
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(tcx_links_of(&ours), 4, "two containers, two directions");
    observe_lab::podman::stop(&client).unwrap();
    env.wait_ready(&[&web]).await;
    env.wait_log(
        &format!("detached from {}: its endpoint is gone", c.interface),
        1,
    )
    .await;
    assert_eq!(tcx_links_of(&ours), 2, "only web's links remain");
    for direction in ["ingress", "egress"] {
        let pin = env
            .pin_dir()
            .join(format!("link_{}_{direction}", c.interface));
        assert!(!pin.exists(), "{} is gone", pin.display());
    }
    let programs: Vec<String> = tcx_programs(&w.interface)
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(
        programs,
        ["tc_ingress", "tc_egress"],
        "web keeps its programs"
    );
    assert!(
        !Path::new("/sys/class/net").join(&c.interface).exists()
            || std::fs::read_to_string(format!("/sys/class/net/{}/ifindex", c.interface))
                .is_ok_and(|i| i.trim() != c.ifindex.to_string()),
        "the client's veth went with it"
    );
}

/// A policy folder of the test with one policy: `app=web` of `shop` takes
/// TCP 8080 from `app=allowed` only.
fn web_allows_allowed(env: &ContainerEnv) -> std::path::PathBuf {
    let policies = env.dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("web.yaml"),
        r#"apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-allow-allowed, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: allowed}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
"#,
    )
    .unwrap();
    policies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_selecting_a_container_label_drops_denied_traffic() {
    let mut env = ContainerEnv::new(202);
    let policies = web_allows_allowed(&env);
    let web = env.run("web", 10, &[("app", "web"), (PROJECT, "shop")], WEB);
    let allowed = env.run(
        "allowed",
        11,
        &[("app", "allowed"), (PROJECT, "shop")],
        IDLE,
    );
    let denied = env.run("denied", 12, &[("app", "denied"), (PROJECT, "shop")], IDLE);
    env.start_probe(&["--policy-dir", policies.to_str().unwrap()]);
    // Ready: attached, and the policy in force was compiled with them.
    let eps = env.wait_ready(&[&allowed, &denied, &web]).await;
    let web_ip = IpAddr::V4(env.ip(10));
    let server = SocketAddr::new(web_ip, 8080);
    let (allowed_ns, denied_ns) = (env.name_netns(&allowed), env.name_netns(&denied));
    assert!(
        connect_is_dropped(&denied_ns, server),
        "denied gets no answer"
    );
    let (sport, response) = http_get(&allowed_ns, server);
    assert!(response.ends_with("hello\n"), "{response}");

    let (a_ip, d_ip) = (IpAddr::V4(env.ip(11)), IpAddr::V4(env.ip(12)));
    let flows = env
        .probe()
        .addr
        .wait_for("both SYNs at web", |f| {
            let at = |ip| first_packets(f, (ip, web_ip, 8080), TraceObservationPoint::ToEndpoint);
            !at(a_ip).is_empty() && !drops_of(f, (d_ip, web_ip, 8080)).is_empty()
        })
        .await;
    let at_web = |ip| {
        first_packets(
            &flows,
            (ip, web_ip, 8080),
            TraceObservationPoint::ToEndpoint,
        )
    };
    let drops = drops_of(&flows, (d_ip, web_ip, 8080));
    assert_eq!(drops.len(), 1, "{drops:#?}");
    let d = drops[0];
    assert_eq!(
        (d.verdict, d.drop_reason_desc),
        (Verdict::Dropped as i32, DropReason::PolicyDenied as i32)
    );
    assert_eq!(d.source, Some(named(&eps[&denied])));
    assert_eq!(d.destination, Some(named(&eps[&web])));
    let allows = at_web(a_ip);
    assert_eq!(allows.len(), 1, "{allows:#?}");
    let a = allows[0];
    assert_eq!(ports(a), Some((sport, 8080)));
    assert_eq!(a.verdict, Verdict::Forwarded as i32);
    assert_eq!(a.source, Some(named(&eps[&allowed])));
    let by: Vec<String> = a
        .ingress_allowed_by
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    assert_eq!(by, ["shop/web-allow-allowed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_probe_keeps_the_pinned_policy_until_the_runtime_lists_its_containers() {
    let mut env = ContainerEnv::new(204);
    let policies = web_allows_allowed(&env);
    let web = env.run("web", 10, &[("app", "web"), (PROJECT, "shop")], WEB);
    let denied = env.run("denied", 12, &[("app", "denied"), (PROJECT, "shop")], IDLE);
    let args = ["--policy-dir", policies.to_str().unwrap()];
    env.start_probe(&args);
    env.wait_ready(&[&denied, &web]).await;
    let (web_ip, d_ip) = (IpAddr::V4(env.ip(10)), IpAddr::V4(env.ip(12)));
    let server = SocketAddr::new(web_ip, 8080);
    let denied_ns = env.name_netns(&denied);
    assert!(connect_is_dropped(&denied_ns, server));

    // Killed, and started again while the runtime does not answer: the
    // probe is up, but knows no container yet. Compiled now, the policy
    // would have no endpoint to protect; the pinned one stays instead.
    let socket = env.api.socket().to_path_buf();
    env.api.stop();
    let old = &mut env.probe.as_mut().unwrap().child;
    old.kill().unwrap();
    old.wait().unwrap();
    env.start_probe(&args);
    env.wait_log("policy waits for every endpoint source's first list", 1)
        .await;
    assert!(
        connect_is_dropped(&denied_ns, server),
        "still denied:\n{}",
        env.log()
    );
    assert!(!env.log().contains("policy in force"), "{}", env.log());

    // The runtime is back: the policy is compiled with the containers, and
    // the drop that waited in the ring meanwhile is named after them.
    env.api = observe_lab::podman::ApiService::start(&socket, &env.dir.join("podman-again.log"))
        .expect("podman system service again");
    let eps = env.wait_ready(&[&denied, &web]).await;
    env.wait_log("policy in force: 1 policies", 1).await;
    let flows = env
        .probe()
        .addr
        .wait_for("the drop", |f| {
            !drops_of(f, (d_ip, web_ip, 8080)).is_empty()
        })
        .await;
    let drops = drops_of(&flows, (d_ip, web_ip, 8080));
    assert_eq!(drops.len(), 1, "{drops:#?}");
    assert_eq!(
        (drops[0].verdict, drops[0].drop_reason_desc),
        (Verdict::Dropped as i32, DropReason::PolicyDenied as i32)
    );
    assert_eq!(drops[0].source, Some(named(&eps[&denied])));
    assert_eq!(drops[0].destination, Some(named(&eps[&web])));
    assert!(connect_is_dropped(&denied_ns, server));
}

/// Runs `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip").args(args).status();
    assert!(status.is_ok_and(|s| s.success()), "ip {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_lifecycle_comes_from_the_containers_namespaces_not_others_with_their_addresses() {
    let mut env = ContainerEnv::new(205);
    let web = env.run("web", 10, &[("app", "web")], WEB);
    let client = env.run("client", 11, &[("app", "client")], IDLE);
    env.start_probe(&[]);
    env.wait_ready(&[&client, &web]).await;
    env.wait_log(
        "kernel drops and TCP lifecycle from 3 network namespaces",
        1,
    )
    .await;
    let (web_ip, client_ip) = (env.ip(10), env.ip(11));

    // Two namespaces of no container's, with the containers' addresses
    // (another lab, another runtime's containers): a connection there.
    let (fa, fb) = (
        test_support::netns::TempNetns::new("lc-fa205"),
        test_support::netns::TempNetns::new("lc-fb205"),
    );
    let (va, vb) = (
        format!("lca{}", std::process::id()),
        format!("lcb{}", std::process::id()),
    );
    ip(&[
        "link",
        "add",
        &va,
        "netns",
        fa.name(),
        "type",
        "veth",
        "peer",
        "name",
        &vb,
        "netns",
        fb.name(),
    ]);
    for (ns, dev, addr) in [(fa.name(), &va, client_ip), (fb.name(), &vb, web_ip)] {
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    let fb_name = fb.name().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        flow_probe::kernel::sysfs::enter_netns(&fb_name).unwrap();
        let l = std::net::TcpListener::bind((web_ip, 7300)).unwrap();
        tx.send(()).unwrap();
        let (mut c, _) = l.accept().unwrap();
        let _ = c.read_to_end(&mut Vec::new());
    });
    rx.recv().unwrap();
    let fa_name = fa.name().to_string();
    std::thread::spawn(move || {
        flow_probe::kernel::sysfs::enter_netns(&fa_name).unwrap();
        let mut s = TcpStream::connect((web_ip, 7300)).unwrap();
        s.write_all(b"not a container's").unwrap();
    })
    .join()
    .unwrap();
    server.join().unwrap();

    // Then the containers' own connection: once its sockets are reported,
    // the foreign ones would have been (the ring keeps the order).
    let client_ns = env.name_netns(&client);
    let (sport, _) = http_get(&client_ns, SocketAddr::new(IpAddr::V4(web_ip), 8080));
    let flows = env
        .probe()
        .addr
        .wait_for("the containers' connection closed on both sides", |f| {
            f.iter()
                .filter(|f| {
                    f.tcp_lifecycle
                        .as_ref()
                        .is_some_and(|l| l.kind == Kind::Closed as i32)
                        && ports(f).is_some_and(|p| p == (sport, 8080) || p == (8080, sport))
                })
                .count()
                == 2
        })
        .await;
    let foreign: Vec<&Flow> = flows
        .iter()
        .filter(|f| f.tcp_lifecycle.is_some())
        .filter(|f| ports(f).is_some_and(|(s, d)| s == 7300 || d == 7300))
        .collect();
    assert!(foreign.is_empty(), "{foreign:#?}");
}

/// Removes a container by name when dropped, also when the test panics:
/// for one renamed away from the name the test's set knows.
struct RemoveContainer(String);

impl Drop for RemoveContainer {
    fn drop(&mut self) {
        let _ = observe_lab::podman::remove_container(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_or_reconnected_container_is_followed() {
    let mut env = ContainerEnv::new(206);
    let first = env.run("first", 10, &[("app", "mover")], IDLE);
    env.start_probe(&[]);
    let before = env.wait_ready(&[&first]).await[&first].clone();

    // Renamed: the same container, named anew.
    let renamed = format!("{}-renamed", env.prefix);
    let _cleanup = RemoveContainer(renamed.clone());
    observe_lab::podman::podman(&["rename", &first, &renamed]).unwrap();
    let eps = env.wait_ready(&[&renamed]).await;
    assert_eq!(
        (eps[&renamed].interface.as_str(), eps[&renamed].ips.clone()),
        (before.interface.as_str(), vec![env.ip(10).to_string()])
    );

    // Disconnected and connected again at another address: a new veth.
    let network = env.network.clone();
    observe_lab::podman::podman(&["network", "disconnect", &network, &renamed]).unwrap();
    let new_ip = env.ip(41).to_string();
    observe_lab::podman::podman(&["network", "connect", "--ip", &new_ip, &network, &renamed])
        .unwrap();
    let eps = env
        .wait_endpoints("the container at its new address, attached", |eps| {
            eps.get(&renamed)
                .is_some_and(|e| e.ips == [new_ip.clone()] && e.state == State::Ready as i32)
        })
        .await;
    let after = &eps[&renamed];
    // Podman may give the new veth the old one's name: its index tells.
    assert_ne!(after.ifindex, before.ifindex, "a new veth");
    assert_eq!(
        tcx_programs(&after.interface).len(),
        2,
        "ingress and egress"
    );
    env.wait_log(
        &format!("detached from {}: its endpoint is gone", before.interface),
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_going_away_and_coming_back_is_retried_and_resumed() {
    let mut env = ContainerEnv::new(203);
    let web = env.run("web", 10, &[("app", "web")], WEB);
    env.start_probe(&[]);
    env.wait_ready(&[&web]).await;
    let socket = env.api.socket().display().to_string();

    // Gone: the probe says so, retries, and keeps what it has.
    env.api.stop();
    let log = env
        .wait_log(&format!("container runtime at {socket} unreachable"), 2)
        .await;
    let waits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("unreachable"))
        .filter_map(|l| l.rsplit("trying again in ").next())
        .take(2)
        .collect();
    assert_eq!(waits, ["250ms", "500ms"], "{log}");
    assert!(log.contains("keeping the 1 containers known"), "{log}");
    let status = env.status().await;
    let docker = &status.endpoint_sources[0];
    assert_eq!((docker.name.as_str(), docker.connected), ("docker", false));
    env.wait_ready(&[&web]).await;

    // A container that starts meanwhile is found once the runtime is back.
    let late = env.run("late", 11, &[("app", "late")], IDLE);
    env.api = observe_lab::podman::ApiService::start(
        Path::new(&socket),
        &env.dir.join("podman-again.log"),
    )
    .expect("podman system service again");
    env.wait_ready(&[&late, &web]).await;
    env.wait_log(": 2 running containers", 1).await;
    let status = env.status().await;
    assert_eq!(
        (
            status.endpoint_sources[0].connected,
            status.endpoint_sources[0].endpoints
        ),
        (true, 2)
    );
}
