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
    let client = |kind: Kind| {
        flows
            .iter()
            .find(|f| {
                f.tcp_lifecycle
                    .as_ref()
                    .is_some_and(|l| l.kind == kind as i32)
                    && ports(f) == Some((sport, 7000))
            })
            .unwrap()
    };
    let client_close = client(Kind::Closed);
    let duration = client_close.tcp_lifecycle.as_ref().unwrap().duration_ns;
    assert_eq!(client_close.source.as_ref().unwrap().pod_name, "web");
    assert_eq!(client_close.destination.as_ref().unwrap().pod_name, "cart");
    assert_eq!(
        client_close.summary,
        format!(
            "TCP closed after {:.3} ms, 0 retransmits",
            duration as f64 / 1e6
        )
    );
    // The duration is the kernel's time from established to closed, the gap
    // between the two flows' times. Those also carry the Unix offset, which
    // flow-probe re-reads now and then (two clock reads apart): equal to
    // within that, not to the nanosecond.
    let nanos = |f: &Flow| {
        let t = f.time.unwrap();
        i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
    };
    let gap = nanos(client_close) - nanos(client(Kind::Established));
    assert!(
        duration > 0 && (gap - i128::from(duration)).abs() < 1_000_000,
        "duration {duration} ns, flows {gap} ns apart"
    );

    // A peer that stops answering: cart's firewall starts dropping, web keeps
    // sending, the kernel retransmits; once two retransmissions are flows, web
    // resets the connection and the close reports the count.
    let server = serve(cart.netns.clone(), (cart.ipv4, 7001).into());
    let (web_ns, dst) = (web.netns.clone(), SocketAddr::from((cart.ipv4, 7001)));
    let cart_ns = cart.netns.clone();
    let (port_tx, port_rx) = tokio::sync::oneshot::channel();
    let (reset_tx, reset_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        sysfs::enter_netns(&web_ns).unwrap();
        let mut s = TcpStream::connect(dst).unwrap();
        e2e::firewall_drop_tcp_port(&cart_ns, 7001);
        s.write_all(b"are you there?").unwrap();
        port_tx.send(s.local_addr().unwrap().port()).unwrap();
        // Either the test says so or it is gone (panicked): reset either way.
        let _ = reset_rx.recv();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    });
    let sport = port_rx.await.expect("the client connected");
    let retransmit = Kind::Retransmit as i32;
    env.wait_for("two retransmissions", |f| {
        kinds(f, 7001)
            .iter()
            .filter(|k| k.0 == retransmit && k.1 == sport)
            .count()
            >= 2
    })
    .await;
    reset_tx.send(()).unwrap();
    client.join().unwrap();
    let flows = env
        .wait_for("the reset close", |f| {
            kinds(f, 7001).iter().any(|k| k.0 == closed && k.1 == sport)
        })
        .await;
    // web's socket, in order: established, each retransmission counted one
    // by one, the close with the count. How many retransmissions is the
    // kernel's timer's business (one more may fire before the reset): at
    // least the two waited for.
    let web_socket: Vec<(i32, u16, u16, u32)> = kinds(&flows, 7001)
        .into_iter()
        .filter(|k| k.1 == sport)
        .collect();
    let n = web_socket.iter().filter(|k| k.0 == retransmit).count() as u32;
    assert!(n >= 2, "{web_socket:?}");
    let mut want = vec![(est, sport, 7001, 0)];
    want.extend((1..=n).map(|i| (retransmit, sport, 7001, i)));
    want.push((closed, sport, 7001, n));
    assert_eq!(web_socket, want);
    // cart's socket was established; it closes only when its read times out.
    assert_eq!(
        kinds(&flows, 7001)
            .into_iter()
            .filter(|k| k.2 == sport && k.0 == est)
            .collect::<Vec<_>>(),
        [(est, 7001, sport, 0)]
    );
    drop(server);

    // A connect nobody answers with a SYN-ACK: cart has no listener on 7002
    // and resets; web's socket closes before it was established, with no
    // retransmission to make it known before.
    let (web_ns, dst) = (web.netns.clone(), SocketAddr::from((cart.ipv4, 7002)));
    let refused = std::thread::spawn(move || {
        sysfs::enter_netns(&web_ns).unwrap();
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from((web.ipv4, 0)).into()).unwrap();
        let sport = s.local_addr().unwrap().as_socket().unwrap().port();
        let err = s.connect(&dst.into()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        sport
    })
    .join()
    .unwrap();
    let flows = env
        .wait_for("the refused connect's close", |f| {
            kinds(f, 7002).iter().any(|k| k.0 == closed)
        })
        .await;
    assert_eq!(kinds(&flows, 7002), [(closed, refused, 7002, 0)]);
    let close = flows
        .iter()
        .find(|f| f.tcp_lifecycle.is_some() && ports(f) == Some((refused, 7002)))
        .unwrap();
    assert_eq!(
        close.summary,
        "TCP closed before it was established, 0 retransmits"
    );
    assert_eq!(close.tcp_lifecycle.as_ref().unwrap().duration_ns, 0);
}
