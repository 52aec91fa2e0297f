//! TCP lifecycle on the real kernel: a connection's establishment and close
//! (with its duration) are flows, and a peer that stops answering shows up as
//! counted retransmissions.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use e2e::ports;
use flow_probe::kernel::sysfs;
use observe_lab::Scenario;
use observer_proto::flow::Flow;
use observer_proto::observe::v1::tcp_lifecycle::Kind;

const TWO: &str = "endpoints:\n  - {name: web, namespace: shop, labels: {app: web}}\n  - {name: cart, namespace: shop, labels: {app: cart}}\n";

fn kinds(flows: &[Flow], port: u16) -> Vec<(i32, u16, u16, u32)> {
    flows
        .iter()
        .filter_map(|f| {
            let lc = f.tcp_lifecycle.as_ref()?;
            let (s, d) = ports(f)?;
            (s == port || d == port).then_some((lc.kind, s, d, lc.retransmits))
        })
        .collect()
}

/// A server in `netns` on `port` that reads until EOF; returns once listening.
fn serve(netns: String, addr: SocketAddr) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        sysfs::enter_netns(&netns).unwrap();
        let l = TcpListener::bind(addr).unwrap();
        tx.send(()).unwrap();
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 4096];
        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
    });
    rx.recv().unwrap();
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn establishment_close_and_retransmissions_are_flows() {
    let env = e2e::start(&Scenario::parse(TWO, "lifecycle.yaml").unwrap(), &[]);
    let web = env.lab.endpoint("web").unwrap().clone();
    let cart = env.lab.endpoint("cart").unwrap().clone();

    // A clean connection: established on both sides, closed with a duration.
    let server = serve(cart.netns.clone(), (cart.ipv4, 7000).into());
    let (web_ns, dst) = (web.netns.clone(), SocketAddr::from((cart.ipv4, 7000)));
    let sport = std::thread::spawn(move || {
        sysfs::enter_netns(&web_ns).unwrap();
        let mut s = TcpStream::connect(dst).unwrap();
        s.write_all(b"hello").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        s.local_addr().unwrap().port()
    })
    .join()
    .unwrap();
    server.join().unwrap();
    let flows = env
        .wait_for("both sockets closed", |f| {
            kinds(f, 7000)
                .iter()
                .filter(|k| k.0 == Kind::Closed as i32)
                .count()
                == 2
        })
        .await;
    let mut got = kinds(&flows, 7000);
    got.sort();
    let est = Kind::Established as i32;
    let closed = Kind::Closed as i32;
    assert_eq!(
        got,
        [
            (est, 7000, sport, 0),
            (est, sport, 7000, 0),
            (closed, 7000, sport, 0),
            (closed, sport, 7000, 0)
        ]
    );
    let client_close = flows
        .iter()
        .find(|f| {
            f.tcp_lifecycle.as_ref().is_some_and(|l| l.kind == closed)
                && ports(f) == Some((sport, 7000))
        })
        .unwrap();
    assert!(client_close.tcp_lifecycle.as_ref().unwrap().duration_ns > 0);
    assert_eq!(client_close.source.as_ref().unwrap().pod_name, "web");
    assert_eq!(client_close.destination.as_ref().unwrap().pod_name, "cart");
    assert!(
        client_close.summary.starts_with("TCP closed after "),
        "{}",
        client_close.summary
    );

    // A peer that stops answering: cart's firewall starts dropping, web keeps
    // sending, the kernel retransmits; a reset close reports the count.
    let server = serve(cart.netns.clone(), (cart.ipv4, 7001).into());
    let (web_ns, dst) = (web.netns.clone(), SocketAddr::from((cart.ipv4, 7001)));
    let cart_ns = cart.netns.clone();
    let sport = std::thread::spawn(move || {
        sysfs::enter_netns(&web_ns).unwrap();
        let mut s = TcpStream::connect(dst).unwrap();
        let nft = "add table inet obs; add chain inet obs input { type filter hook input priority 0; }; add rule inet obs input tcp dport 7001 drop";
        let ok = std::process::Command::new("ip").args(["netns", "exec", &cart_ns, "nft", nft]).status().unwrap();
        assert!(ok.success());
        s.write_all(b"are you there?").unwrap();
        // The first retransmission comes after ~200 ms (the minimum RTO), the
        // next after twice that.
        std::thread::sleep(Duration::from_millis(1000));
        let port = s.local_addr().unwrap().port();
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
        port
    })
    .join()
    .unwrap();
    let flows = env
        .wait_for("the reset close", |f| {
            kinds(f, 7001).iter().any(|k| k.0 == closed && k.1 == sport)
        })
        .await;
    let got = kinds(&flows, 7001);
    let retrans: Vec<u32> = got
        .iter()
        .filter(|k| k.0 == Kind::Retransmit as i32 && k.1 == sport)
        .map(|k| k.3)
        .collect();
    assert!(!retrans.is_empty(), "{got:?}");
    assert_eq!(
        retrans,
        (1..=retrans.len() as u32).collect::<Vec<_>>(),
        "counted one by one"
    );
    let close = got.iter().find(|k| k.0 == closed && k.1 == sport).unwrap();
    assert_eq!(
        close.3,
        *retrans.last().unwrap(),
        "the close carries the count"
    );
    drop(server);
}
