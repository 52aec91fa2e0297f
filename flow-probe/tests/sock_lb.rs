//! The socket load balancer in the kernel, without a lab: its programs attached
//! to a fresh cgroup, services programmed through the maps, and a client process
//! (test-support's `cgroup-client`) that puts itself in the cgroup and talks to
//! VIPs whose backends listen on loopback here.
//!
//! Checks: connect and unconnected sendmsg are translated (IPv4 and IPv6);
//! getpeername and recvmsg show the VIP again; a service without backends fails
//! the connect itself with ECONNREFUSED; every translation is an event on the
//! shared, pinned ring buffer with the socket cookie and the cgroup id; nothing
//! stays behind (cgroup, pins).

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aya::maps::{Map, MapData, RingBuf};
use cluster_spec::endpoints::EndpointsFile;
use cluster_spec::services::{ServicesFile, compile};
use flow_probe::kernel::events::{self, Event, SockXlateEvent, sock_hook, xlate_point};
use flow_probe::kernel::loader::ProbeConfig;
use flow_probe::kernel::sock_lb::{LoadedLb, cgroup_id};
use flow_probe::services::ServiceMaps;

/// The cgroup v2 mount point.
fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
        .expect("cgroup v2 is mounted")
}

/// A cgroup and a pin folder that go away with the test, also on panic.
struct Scratch {
    cgroup: PathBuf,
    pins: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        Self::named("")
    }

    /// Another test's scratch in the same process: its own cgroup and pins.
    fn named(name: &str) -> Self {
        test_support::require_root("it loads eBPF programs and makes a cgroup");
        let tag = format!("obs-lbtest{name}-{}", std::process::id());
        let cgroup = cgroup2_root().join(&tag);
        std::fs::create_dir_all(&cgroup).unwrap();
        let pins = Path::new(flow_probe::kernel::pins::PIN_ROOT).join(&tag);
        Scratch { cgroup, pins }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pins);
        let _ = std::fs::remove_dir(flow_probe::kernel::pins::PIN_ROOT);
        // Children have exited; a cgroup without tasks can go.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.cgroup).is_ok() || !self.cgroup.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("could not remove cgroup {}", self.cgroup.display());
    }
}

/// Runs `cgroup-client` in the cgroup with `action` against `target`; returns
/// its result line. The client is test-support's binary, found next to this
/// test (build it with `cargo build --bins`) or at `$CGROUP_CLIENT_BIN`.
fn client(cgroup: &Path, action: &str, target: &str) -> String {
    client_in(None, cgroup, action, target)
}

/// [`client`], in the named network namespace when one is given.
fn client_in(netns: Option<&Path>, cgroup: &Path, action: &str, target: &str) -> String {
    let bin = observe_lab::binaries::binary("cgroup-client").unwrap();
    let mut cmd = Command::new(&bin);
    if let Some(ns) = netns {
        test_support::netns::start_in(&mut cmd, ns).unwrap();
    }
    let out = cmd
        .arg(cgroup)
        .args([action, target])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "cgroup-client {action} {target} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The socket LB loaded into `scratch`'s cgroup (a small ring), and its
/// service maps.
fn load(scratch: &Scratch) -> (LoadedLb, ServiceMaps) {
    let cfg = ProbeConfig {
        ringbuf_bytes: 1 << 16,
        ..ProbeConfig::default()
    };
    let mut lb = LoadedLb::start(&cfg, &scratch.pins, &scratch.cgroup).expect("sock_lb loads");
    let maps = ServiceMaps::new(lb.take_maps().unwrap());
    (lb, maps)
}

fn events_of(pins: &Path) -> RingBuf<MapData> {
    let data = MapData::from_pin(pins.join("EVENTS")).unwrap();
    RingBuf::try_from(Map::RingBuf(data)).unwrap()
}

fn drain(ring: &mut RingBuf<MapData>) -> Vec<SockXlateEvent> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        if let Ok(Event::SockXlate(ev)) = events::decode(&item) {
            out.push(ev);
        }
    }
    out
}

/// A backend that answers one TCP connection: it echoes the client's 5 bytes.
fn tcp_echo_once(listener: TcpListener) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    })
}

/// A backend that echoes one datagram.
fn udp_echo_once(socket: UdpSocket) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        let (n, peer) = socket.recv_from(&mut buf).unwrap();
        socket.send_to(&buf[..n], peer).unwrap();
    })
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a);
    out
}

#[test]
fn connect_sendmsg_and_replies_are_translated_and_reported() {
    let scratch = Scratch::new();
    let tcp4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp6 = TcpListener::bind("[::1]:0").unwrap();
    let udp4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (p4, p6, pu) = (
        tcp4.local_addr().unwrap().port(),
        tcp6.local_addr().unwrap().port(),
        udp4.local_addr().unwrap().port(),
    );
    let endpoints = EndpointsFile::parse(
        "endpoints:\n  - {id: 1, name: be, namespace: default, labels: {app: be}, ipv4: 127.0.0.1, ipv6: \"::1\", node: n}\n",
        "eps",
    )
    .unwrap();
    let services = ServicesFile::parse(
        &format!(
            "services:\n  - {{name: tcp, namespace: default, vip: {{ipv4: 198.18.100.10, ipv6: \"fd42:100::10\"}}, ports: [{{port: 80, targetPort: {p4}}}], selector: {{app: be}}}}\n  - {{name: tcp6, namespace: default, vip: {{ipv6: \"fd42:100::11\"}}, ports: [{{port: 80, targetPort: {p6}}}], selector: {{app: be}}}}\n  - {{name: dns, namespace: default, vip: {{ipv4: 198.18.100.12}}, ports: [{{port: 53, protocol: UDP, targetPort: {pu}}}], selector: {{app: be}}}}\n  - {{name: none, namespace: default, vip: {{ipv4: 198.18.100.13}}, ports: [{{port: 80}}]}}\n"
        ),
        "svcs",
    )
    .unwrap();
    let (lb, mut maps) = load(&scratch);
    assert_eq!(lb.cgroup_id, cgroup_id(&scratch.cgroup).unwrap());
    assert!(!lb.adopted);
    let report = maps.sync(&compile(&services, &endpoints)).unwrap();
    assert_eq!((report.frontends, report.backends), (5, 4), "{report:?}");
    // A file past the frontend table (4,096) changes nothing: it filled
    // the table midway, leaving old and new services mixed.
    let many: String = (0..4097)
        .map(|i| {
            format!(
                "  - {{name: s{i}, namespace: default, vip: {{ipv4: 198.18.{}.{}}}, ports: [{{port: 80}}]}}\n",
                128 + i / 256,
                i % 256
            )
        })
        .collect();
    let many = ServicesFile::parse(&format!("services:\n{many}"), "many").unwrap();
    let before = maps.snapshot();
    let err = maps.sync(&compile(&many, &endpoints)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "4097 service frontends, more than the load balancer's table holds (4096); nothing was changed"
    );
    assert_eq!(maps.snapshot(), before);
    // 4,092 other services fit alone, not with the 5 frontends in force,
    // which go only after the new ones are in.
    let other: String = (0..4092)
        .map(|i| {
            format!(
                "  - {{name: o{i}, namespace: default, vip: {{ipv4: 198.19.{}.{}}}, ports: [{{port: 80}}]}}\n",
                i / 256,
                i % 256
            )
        })
        .collect();
    let other = ServicesFile::parse(&format!("services:\n{other}"), "other").unwrap();
    let err = maps.sync(&compile(&other, &endpoints)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "4097 service frontends, old and new together, more than the load balancer's table holds (4096); nothing was changed"
    );
    assert_eq!(maps.snapshot(), before);
    let mut ring = events_of(&scratch.pins);

    // TCP over IPv4: the backend on loopback answers; getpeername shows the VIP.
    let server = tcp_echo_once(tcp4);
    assert_eq!(
        client(&scratch.cgroup, "tcp", "198.18.100.10:80"),
        "peer=198.18.100.10:80"
    );
    server.join().unwrap();

    // TCP over IPv6.
    let server = tcp_echo_once(tcp6);
    assert_eq!(
        client(&scratch.cgroup, "tcp", "[fd42:100::11]:80"),
        "peer=[fd42:100::11]:80"
    );
    server.join().unwrap();

    // Unconnected UDP: sendmsg translated, the echo comes "from" the VIP.
    let server = udp_echo_once(udp4);
    assert_eq!(
        client(&scratch.cgroup, "udp", "198.18.100.12:53"),
        "from=198.18.100.12:53 bytes=4"
    );
    server.join().unwrap();

    // No backend: the connect itself is refused. The client runs in a
    // namespace of its own: the event names it.
    let ns = test_support::netns::TempNetns::new("lbtest");
    assert_eq!(
        client_in(
            Some(&ns.path()),
            &scratch.cgroup,
            "refused",
            "198.18.100.13:80"
        ),
        format!("errno={}", rustix::io::Errno::CONNREFUSED.raw_os_error())
    );
    let [Ok(facts)] = &flow_probe::kernel::sysfs::netns_facts(&[&ns.path()])[..] else {
        panic!("the client's namespace has a cookie")
    };
    let client_ns = &facts.cookie;
    let own_ns = flow_probe::kernel::sysfs::own_netns_cookie().unwrap();
    assert_ne!(*client_ns, own_ns);

    let evs = drain(&mut ring);
    let cg = cgroup_id(&scratch.cgroup).unwrap();
    assert!(
        evs.iter()
            .all(|e| e.cgroup_id == cg && e.socket_cookie != 0),
        "{evs:?}"
    );
    // Every call but the last came from this test's namespace.
    let (last, others) = evs.split_last().expect("events");
    assert_eq!(last.netns_cookie, *client_ns, "{last:?}");
    assert!(others.iter().all(|e| e.netns_cookie == own_ns), "{evs:?}");
    let fwd4 = evs
        .iter()
        .find(|e| e.vip == v4([198, 18, 100, 10]) && e.hook == sock_hook::CONNECT)
        .expect("connect event");
    assert_eq!(fwd4.xlate_point, xlate_point::POST_DIRECTION_FWD);
    assert_eq!(
        (fwd4.vip_port, fwd4.backend, fwd4.backend_port),
        (80, v4([127, 0, 0, 1]), p4)
    );
    assert_eq!((fwd4.family, fwd4.proto, fwd4.no_backend), (4, 6, 0));
    assert_eq!(
        (fwd4.src, fwd4.src_port),
        ([0; 16], 0),
        "a socket connects before it is bound"
    );
    let fwd6 = evs
        .iter()
        .find(|e| e.family == 6 && e.hook == sock_hook::CONNECT)
        .expect("connect6 event");
    assert_eq!(fwd6.backend, std::net::Ipv6Addr::LOCALHOST.octets());
    let send = evs
        .iter()
        .find(|e| e.hook == sock_hook::SENDMSG)
        .expect("sendmsg event");
    assert_eq!((send.proto, send.backend_port), (17, pu));
    assert_eq!(send.src, v4([127, 0, 0, 1]), "the bound source is reported");
    let rev = evs
        .iter()
        .find(|e| e.hook == sock_hook::RECVMSG)
        .expect("recvmsg event");
    assert_eq!(rev.xlate_point, xlate_point::POST_DIRECTION_REV);
    assert_eq!(rev.socket_cookie, send.socket_cookie);
    let none = evs
        .iter()
        .find(|e| e.no_backend == 1)
        .expect("no-backend event");
    assert_eq!(none.vip, v4([198, 18, 100, 13]));
    assert_eq!(none.xlate_point, xlate_point::PRE_DIRECTION_FWD);

    // Removing the backend from the service takes effect for the next connect.
    let report = maps
        .sync(&compile(&services, &EndpointsFile::default()))
        .unwrap();
    assert_eq!(report.backends_removed, 4, "{report:?}");
    assert_eq!(
        client(&scratch.cgroup, "refused", "198.18.100.10:80"),
        format!("errno={}", rustix::io::Errno::CONNREFUSED.raw_os_error())
    );

    drop(maps);
    drop(lb);
    assert!(
        !scratch.pins.join("link_cgroup_sock_connect4").exists(),
        "a clean stop removes the link pins"
    );
}

/// From the datapath review: a dual-stack socket (AF_INET6) reaching an IPv4
/// service through its mapped address (::ffff:a.b.c.d). A datagram goes
/// through sendmsg4 (the kernel hands it to IPv4's sendmsg) and was
/// translated, but its reply came back through recvmsg6, mapped, and was not
/// translated back: a resolver that checks the reply's source dropped it. A
/// connect through connect6 was not translated at all. Both now are, both
/// ways, and the events tell IPv4 addresses.
#[test]
fn dual_stack_sockets_reach_ipv4_services_both_ways() {
    let scratch = Scratch::named("-dual");
    let tcp4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (pt, pu) = (
        tcp4.local_addr().unwrap().port(),
        udp4.local_addr().unwrap().port(),
    );
    let endpoints = EndpointsFile::parse(
        "endpoints:\n  - {id: 1, name: be, namespace: default, labels: {app: be}, ipv4: 127.0.0.1, node: n}\n",
        "eps",
    )
    .unwrap();
    let services = ServicesFile::parse(
        &format!(
            "services:\n  - {{name: web, namespace: default, vip: {{ipv4: 198.18.100.20}}, ports: [{{port: 80, targetPort: {pt}}}], selector: {{app: be}}}}\n  - {{name: dns, namespace: default, vip: {{ipv4: 198.18.100.21}}, ports: [{{port: 53, protocol: UDP, targetPort: {pu}}}], selector: {{app: be}}}}\n"
        ),
        "svcs",
    )
    .unwrap();
    let (lb, mut maps) = load(&scratch);
    maps.sync(&compile(&services, &endpoints)).unwrap();
    let mut ring = events_of(&scratch.pins);

    let server = tcp_echo_once(tcp4);
    assert_eq!(
        client(&scratch.cgroup, "tcp", "[::ffff:198.18.100.20]:80"),
        "peer=[::ffff:198.18.100.20]:80"
    );
    server.join().unwrap();
    let server = udp_echo_once(udp4);
    assert_eq!(
        client(&scratch.cgroup, "udp", "[::ffff:198.18.100.21]:53"),
        "from=[::ffff:198.18.100.21]:53 bytes=4"
    );
    server.join().unwrap();

    let evs = drain(&mut ring);
    let shape: Vec<_> = evs
        .iter()
        .map(|e| {
            (
                e.family,
                e.vip,
                e.vip_port,
                e.backend,
                e.xlate_point,
                e.hook,
            )
        })
        .collect();
    let lo = v4([127, 0, 0, 1]);
    assert_eq!(
        shape,
        [
            (
                4,
                v4([198, 18, 100, 20]),
                80,
                lo,
                xlate_point::POST_DIRECTION_FWD,
                sock_hook::CONNECT
            ),
            (
                4,
                v4([198, 18, 100, 21]),
                53,
                lo,
                xlate_point::POST_DIRECTION_FWD,
                sock_hook::SENDMSG
            ),
            (
                4,
                v4([198, 18, 100, 21]),
                53,
                lo,
                xlate_point::POST_DIRECTION_REV,
                sock_hook::RECVMSG
            ),
        ]
    );
    drop(lb);
}
