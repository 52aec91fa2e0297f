//! The cardinality cap on a real lab: UDP datagrams to 300 distinct destination
//! ports through a flow-probe capped at 50 label sets; `/metrics` keeps 50 port
//! series plus `__overflow__`, and nothing is lost: the series add up to the
//! forwarded request flows the probe returns.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use flow_probe::kernel::sysfs;
use observe_lab::Scenario;
use observer_proto::flow::{Flow, Verdict, layer4::Protocol};

const LAB: &str = "endpoints:\n  - {name: client, namespace: shop, labels: {app: client}}\n  - {name: server, namespace: shop, labels: {app: server}}\n  - {name: other, namespace: shop, labels: {app: other}}\n";

const FIRST_PORT: u16 = 20_000;
const PORTS: u16 = 300;
const CAP: usize = 50;

/// Removes a file when dropped (also during a panic).
struct RemoveFile(std::path::PathBuf);

impl Drop for RemoveFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn wait_file(path: &Path) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && let Ok(addr) = s.trim().parse()
        {
            return addr;
        }
        assert!(Instant::now() < deadline, "{} not written", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /metrics` over HTTP/1.0; the body.
fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    // HTTP/1.0 asked, HTTP/1.0 answered (hyper keeps the request's version).
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    body.to_string()
}

/// (labels, value) of every series of `name`.
fn series(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            (labels.is_empty() || labels.starts_with('{'))
                .then(|| (labels.to_string(), value.parse().expect("a number")))
        })
        .collect()
}

/// Runs `work` on a thread inside the network namespace `netns`.
fn in_netns<T: Send + 'static>(netns: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let netns = netns.to_string();
    std::thread::spawn(move || {
        sysfs::enter_netns(&netns).expect("enter the endpoint's namespace");
        work()
    })
    .join()
    .expect("namespace thread")
}

fn udp_dport(f: &Flow) -> Option<u16> {
    test_support::flows::udp_ports(f).map(|(_, d)| d as u16)
}

/// What the port metric counts: a request that passed, with an L4 port.
fn counted_by_port_metric(f: &Flow) -> bool {
    let passed = f.verdict == Verdict::Forwarded as i32 || f.verdict == Verdict::Redirected as i32;
    let l4 = f.l4.as_ref().and_then(|l| l.protocol.as_ref()).is_some();
    passed && f.is_reply == Some(false) && l4
}

fn to_our_ports(f: &Flow) -> bool {
    udp_dport(f).is_some_and(|p| (FIRST_PORT..FIRST_PORT + PORTS).contains(&p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_series_stay_under_the_cap_and_add_up_to_the_flows() {
    test_support::require_root("it builds a lab of namespaces and loads eBPF");
    let ready = std::env::temp_dir().join(format!(
        "observe-metrics-cardinality-{}.addr",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&ready);
    let _ready = RemoveFile(ready.clone());
    let cap = CAP.to_string();
    let env = e2e::start(
        &Scenario::parse(LAB, "cardinality.yaml").unwrap(),
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-ready-file",
            ready.to_str().unwrap(),
            "--metrics-max-label-sets",
            &cap,
        ],
    );
    let metrics = wait_file(&ready);
    let client = env.lab.endpoint("client").unwrap().clone();
    let server = env.lab.endpoint("server").unwrap().clone();

    // Listeners on every port (no ICMP port-unreachable errors), then one
    // datagram to each from a single client socket.
    let listeners: Vec<UdpSocket> = in_netns(&server.netns, || {
        (FIRST_PORT..FIRST_PORT + PORTS)
            .map(|p| UdpSocket::bind(("0.0.0.0", p)).expect("bind a UDP port"))
            .collect()
    });
    let target = server.ipv4;
    in_netns(&client.netns, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        for p in FIRST_PORT..FIRST_PORT + PORTS {
            sock.send_to(b"ping", (target, p)).expect("send a datagram");
        }
    });
    // Every datagram arrived.
    for l in &listeners {
        l.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = l.recv_from(&mut buf).expect("the datagram arrives");
        assert_eq!(&buf[..n], b"ping");
    }

    // Every port's request flow is in the probe, and the metric caught up.
    let flows = env
        .wait_for("a request flow to every port", |flows| {
            let mut seen: Vec<u16> = flows
                .iter()
                .filter(|f| counted_by_port_metric(f) && to_our_ports(f))
                .filter_map(udp_dport)
                .collect();
            seen.sort_unstable();
            seen.dedup();
            seen.len() == usize::from(PORTS)
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (flows, text) = {
        let mut flows = flows;
        loop {
            let text = scrape(metrics);
            let sum: f64 = series(&text, "hubble_port_distribution_total")
                .iter()
                .map(|(_, v)| v)
                .sum();
            let again = env.all_flows().await;
            let counted = again.iter().filter(|f| counted_by_port_metric(f)).count();
            if again.len() == flows.len() && sum == counted as f64 {
                break (again, text);
            }
            assert!(
                Instant::now() < deadline,
                "the port metric never matched the flows: sum {sum}, GetFlows {counted}"
            );
            flows = again;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };

    let ports = series(&text, "hubble_port_distribution_total");
    let overflow_set = r#"{port="__overflow__",protocol="__overflow__"}"#;
    let named: Vec<&(String, f64)> = ports.iter().filter(|(l, _)| l != overflow_set).collect();
    assert_eq!(
        named.len(),
        CAP,
        "{} port label sets besides the overflow one:\n{text}",
        named.len()
    );
    assert_eq!(
        ports.iter().filter(|(l, _)| l == overflow_set).count(),
        1,
        "exactly one overflow set:\n{text}"
    );
    let overflowed = series(&text, "observe_metrics_overflow_total")
        .into_iter()
        .find(|(l, _)| l == r#"{metric="hubble_port_distribution_total"}"#)
        .map(|(_, v)| v)
        .expect("overflow counter of the port metric");

    // One request flow per datagram at each veth: leaving the client's, and
    // arriving at the server's.
    let requests = flows
        .iter()
        .filter(|f| counted_by_port_metric(f) && to_our_ports(f))
        .count();
    assert_eq!(requests, 2 * usize::from(PORTS), "request flows");
    // The only other requests the metric may count are the kernel's own
    // ICMPv6 (MLD, neighbour and router discovery) of the fresh interfaces,
    // sent on timers of their own: accounted exactly, whatever their number.
    let others: Vec<&Flow> = flows
        .iter()
        .filter(|f| counted_by_port_metric(f) && !to_our_ports(f))
        .collect();
    for f in &others {
        assert!(
            matches!(
                f.l4.as_ref().and_then(|l| l.protocol.as_ref()),
                Some(Protocol::IcmPv6(_))
            ),
            "a request flow other than the datagrams: {}",
            observe_cli::flows::output::flow_line(f)
        );
    }
    let sum: f64 = ports.iter().map(|(_, v)| v).sum();
    assert_eq!(sum, (requests + others.len()) as f64, "{text}");
    // Every set that kept its own series is one of our ports, counting its
    // two flows, or the ICMPv6 one (port 0) if that came early enough.
    let icmp6_set = r#"{port="0",protocol="ICMPv6"}"#;
    let mut udp_named = 0;
    let mut icmp6_named = 0.0;
    for (labels, value) in &named {
        if labels == icmp6_set {
            assert_eq!(*value, others.len() as f64, "{text}");
            icmp6_named = *value;
            continue;
        }
        let port: u16 = labels
            .strip_prefix(r#"{port=""#)
            .and_then(|l| l.strip_suffix(r#"",protocol="UDP"}"#))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("an unexpected label set {labels}:\n{text}"));
        assert!((FIRST_PORT..FIRST_PORT + PORTS).contains(&port), "{labels}");
        assert_eq!(*value, 2.0, "port {port}");
        udp_named += 1;
    }
    let icmp6_has_a_set = usize::from(icmp6_named > 0.0);
    assert_eq!(udp_named + icmp6_has_a_set, CAP, "{text}");
    // What did not fit went to the overflow set, one observation at a time:
    // the other ports' two flows each, and the ICMPv6 requests without a set.
    let overflow_value = ports
        .iter()
        .find(|(l, _)| l == overflow_set)
        .map(|(_, v)| *v)
        .unwrap();
    let want = 2 * (usize::from(PORTS) - udp_named) + others.len() - icmp6_named as usize;
    assert_eq!(
        (overflow_value, overflowed),
        (want as f64, want as f64),
        "{text}"
    );
    drop(listeners);
}
