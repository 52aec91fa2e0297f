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

/// Connects from `netns` to `dst`, writes and closes; returns the client port.
fn connect_write_close(netns: String, dst: SocketAddr) -> u16 {
    std::thread::spawn(move || {
        sysfs::enter_netns(&netns).unwrap();
        let mut s = TcpStream::connect(dst).unwrap();
        s.write_all(b"hello").unwrap();
        s.local_addr().unwrap().port()
    })
    .join()
    .unwrap()
}

/// A connection from `netns` to a server of [`serve`] at `dst`, held open
/// until [`Held::close`].
struct Held {
    port: u16,
    close: std::sync::mpsc::Sender<()>,
    client: std::thread::JoinHandle<()>,
    server: std::thread::JoinHandle<()>,
}

impl Held {
    fn open(client_netns: String, server_netns: String, dst: SocketAddr) -> Held {
        let server = serve(server_netns, dst);
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (close, close_rx) = std::sync::mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            sysfs::enter_netns(&client_netns).unwrap();
            let mut s = TcpStream::connect(dst).unwrap();
            s.write_all(b"hello").unwrap();
            port_tx.send(s.local_addr().unwrap().port()).unwrap();
            let _ = close_rx.recv(); // or the test is gone: close either way
        });
        let port = port_rx.recv().expect("connected");
        Held {
            port,
            close,
            client,
            server,
        }
    }

    /// Closes both ends; returns once the server's end is closed too.
    fn close(self) {
        self.close.send(()).unwrap();
        self.client.join().unwrap();
        self.server.join().unwrap();
    }
}

/// The close of the client socket of port `sport` to `dport`, and how long
/// that socket lived by the kernel's clock.
fn client_close(flows: &[Flow], sport: u16, dport: u16) -> (&Flow, Duration) {
    let close = flows
        .iter()
        .find(|f| {
            f.tcp_lifecycle
                .as_ref()
                .is_some_and(|l| l.kind == Kind::Closed as i32)
                && ports(f) == Some((sport, dport))
        })
        .unwrap();
    let lived = close.tcp_lifecycle.as_ref().unwrap().duration_ns;
    (close, Duration::from_nanos(lived))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_goes_on_while_the_probe_is_down() {
    let mut env = e2e::start(
        &Scenario::parse(TWO, "lifecycle-restart.yaml").unwrap(),
        &[],
    );
    let web = env.lab.endpoint("web").unwrap().clone();
    let cart = env.lab.endpoint("cart").unwrap().clone();
    let (est, closed) = (Kind::Established as i32, Kind::Closed as i32);
    let open = |port: u16| {
        let (web_ns, cart_ns) = (web.netns.clone(), cart.netns.clone());
        tokio::task::block_in_place(|| Held::open(web_ns, cart_ns, (cart.ipv4, port).into()))
    };

    // A and C: established while the probe runs. A closes while it is down,
    // C after it is back.
    let (a, c) = (open(7010), open(7012));
    let (sport_a, sport_c) = (a.port, c.port);
    env.wait_for("A and C established on both sides", |f| {
        [7010, 7012]
            .iter()
            .all(|p| kinds(f, *p).iter().filter(|k| k.0 == est).count() == 2)
    })
    .await;
    let held_from = std::time::Instant::now();
    env.kill_probe().await;
    // The kernel releases a dead process's BPF links a moment later, from a
    // work queue: without pinned links A's close must come after that to be
    // missed, as it would be in any real downtime.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| a.close());
    let a_held = held_from.elapsed();

    // B: opened and closed while the probe is down.
    let server_b = serve(cart.netns.clone(), (cart.ipv4, 7011).into());
    let sport_b = connect_write_close(web.netns.clone(), (cart.ipv4, 7011).into());
    server_b.join().unwrap();

    // The pinned tracepoint programs kept writing into the pinned ring; the
    // restarted probe reads it. What the killed one had read (A's and C's
    // establishment) went with it.
    env.restart_probe();
    tokio::task::block_in_place(|| c.close());
    let c_held = held_from.elapsed();
    let flows = env
        .wait_for("A's, B's and C's closes", |f| {
            [7010, 7011, 7012]
                .iter()
                .all(|p| kinds(f, *p).iter().filter(|k| k.0 == closed).count() == 2)
        })
        .await;
    let mut a = kinds(&flows, 7010);
    a.sort();
    assert_eq!(a, [(closed, 7010, sport_a, 0), (closed, sport_a, 7010, 0)]);
    let mut b = kinds(&flows, 7011);
    b.sort();
    assert_eq!(
        b,
        [
            (est, 7011, sport_b, 0),
            (est, sport_b, 7011, 0),
            (closed, 7011, sport_b, 0),
            (closed, sport_b, 7011, 0)
        ]
    );
    let mut c = kinds(&flows, 7012);
    c.sort();
    assert_eq!(c, [(closed, 7012, sport_c, 0), (closed, sport_c, 7012, 0)]);
    // Each close measures the whole life, from before the probe went down:
    // C's by the restarted probe's program, which found C in the pinned
    // socket map.
    let (a_close, a_lived) = client_close(&flows, sport_a, 7010);
    assert!(a_lived > a_held, "A lived {a_lived:?}, at least {a_held:?}");
    assert_eq!(a_close.source.as_ref().unwrap().pod_name, "web");
    let (_, c_lived) = client_close(&flows, sport_c, 7012);
    assert!(c_lived > c_held, "C lived {c_lived:?}, at least {c_held:?}");
}
