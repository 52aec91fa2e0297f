//! Kernel drops on the real datapath: a packet a netfilter rule drops inside an
//! endpoint's namespace, on its way in or on its way out, comes back as a
//! DROPPED flow with the kernel's reason.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::{ips, ports};
use flow_probe::kernel::sysfs;
use observe_lab::{EndpointPlan, Scenario};
use observer_proto::flow::{Flow, Verdict};

const TWO: &str = "endpoints:\n  - {name: web, namespace: shop, labels: {app: web}}\n  - {name: cart, namespace: shop, labels: {app: cart}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_netfilter_drop_is_a_flow_with_its_kernel_reason() {
    let env = e2e::start(&Scenario::parse(TWO, "drops.yaml").unwrap(), &[]);
    let cart = env.lab.endpoint("cart").unwrap().clone();
    let web = env.lab.endpoint("web").unwrap().clone();
    // cart's own firewall drops everything to port 9000.
    e2e::firewall_drop_tcp_port(&cart.netns, 9000);

    let sport = connect_twice(&web.netns, (cart.ipv4, 9000).into()).await;

    let iface = |name: &str| {
        env.lab
            .endpoints_file()
            .endpoints
            .into_iter()
            .find(|e| e.name == name)
            .and_then(|e| e.interface)
            .expect("the endpoint's interface")
    };
    // The connection's flows in the order the kernel made them: the first SYN
    // at web's veth and at cart's (the retransmitted one brings no new flag, so
    // no new event), each SYN dropped by netfilter in cart, the retransmission
    // and the close of the never-established socket.
    let want = [
        (5, "TCP Flags: SYN".to_string(), Some(iface("web"))),
        (101, "TCP Flags: SYN".to_string(), Some(iface("cart"))),
        (
            0,
            "TCP Flags: SYN (kernel drop: NETFILTER_DROP)".into(),
            None,
        ),
        (0, "TCP retransmit #1".into(), None),
        (
            0,
            "TCP Flags: SYN (kernel drop: NETFILTER_DROP)".into(),
            None,
        ),
        (
            0,
            "TCP closed before it was established, 1 retransmit".into(),
            None,
        ),
    ];
    let of_connection = |flows: &[Flow]| of_ports(flows, (sport, 9000));
    let shape = |flows: &[Flow]| -> Vec<(i32, String, Option<String>)> {
        flows
            .iter()
            .map(|f| {
                let iface = f.interface.as_ref().map(|i| i.name.clone());
                (f.trace_observation_point, f.summary.clone(), iface)
            })
            .collect()
    };
    let flows = env
        .wait_for("the connection's six flows", |f| {
            of_connection(f).len() >= want.len()
        })
        .await;
    let flows = of_connection(&flows);
    assert_eq!(shape(&flows), want);
    assert_drops_from_web_to_cart(&flows, &web, &cart);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_on_the_senders_way_out_is_a_flow_too() {
    let env = e2e::start(&Scenario::parse(TWO, "drops-out.yaml").unwrap(), &[]);
    let cart = env.lab.endpoint("cart").unwrap().clone();
    let web = env.lab.endpoint("web").unwrap().clone();
    // web's own firewall drops what it sends to port 9001: the SYNs never
    // reach its interface, so no tc program sees them, and the dropped
    // packet has no device yet (its namespace is its socket's).
    e2e::firewall_drop_outgoing_tcp_port(&web.netns, 9001);
    let sport = connect_twice(&web.netns, (cart.ipv4, 9001).into()).await;
    let of_connection = |flows: &[Flow]| of_ports(flows, (sport, 9001));
    let flows = env
        .wait_for("both SYNs' drops and the close", |f| {
            of_connection(f)
                .iter()
                .any(|f| f.summary.starts_with("TCP closed"))
        })
        .await;
    let summaries: Vec<String> = of_connection(&flows)
        .into_iter()
        .map(|f| f.summary)
        .collect();
    assert_eq!(
        summaries,
        // The retransmission is told once it was sent, and it was dropped
        // on the way, in the same call: its drop comes first.
        [
            "TCP Flags: SYN (kernel drop: NETFILTER_DROP)",
            "TCP Flags: SYN (kernel drop: NETFILTER_DROP)",
            "TCP retransmit #1",
            "TCP closed before it was established, 1 retransmit",
        ]
    );
    assert_drops_from_web_to_cart(&of_connection(&flows), &web, &cart);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_port_used_again_after_a_failed_connect_is_a_new_connection() {
    let env = e2e::start(&Scenario::parse(TWO, "drops-again.yaml").unwrap(), &[]);
    let cart = env.lab.endpoint("cart").unwrap().clone();
    let web = env.lab.endpoint("web").unwrap().clone();
    e2e::firewall_drop_tcp_port(&cart.netns, 9002);
    let dst: SocketAddr = (cart.ipv4, 9002).into();
    // Two attempts from one client port: each new SYN (another sequence
    // number) opens a connection at web's veth, whose entry nothing closed
    // after the first (no answer, no FIN, no RST); its retransmission does
    // not.
    let sport = connect_twice(&web.netns, dst).await;
    assert_eq!(connect_twice_from(&web.netns, sport, dst).await, sport);
    let opened_at_web = |flows: &[Flow]| -> Vec<(u64, u64)> {
        of_ports(flows, (sport, 9002))
            .iter()
            .filter(|f| f.trace_observation_point == 5 && f.summary == "TCP Flags: SYN")
            .map(|f| {
                let v = f.volume.as_ref().expect("a tc flow's volume");
                (v.fwd_packets, v.fwd_bytes)
            })
            .collect()
    };
    let flows = env
        .wait_for("both attempts' close", |f| {
            of_ports(f, (sport, 9002))
                .iter()
                .filter(|f| f.summary.starts_with("TCP closed"))
                .count()
                == 2
        })
        .await;
    // Each attempt's first SYN, counted from itself: one packet of 74 bytes.
    assert_eq!(opened_at_web(&flows), [(1, 74), (1, 74)]);
}

/// The flows of the connection with these (client, server) ports.
fn of_ports(flows: &[Flow], ports_of_connection: (u16, u16)) -> Vec<Flow> {
    flows
        .iter()
        .filter(|f| ports(f) == Some(ports_of_connection))
        .cloned()
        .collect()
}

/// Every kernel drop among `flows` is a netfilter drop from web to cart,
/// named by its endpoints.
fn assert_drops_from_web_to_cart(flows: &[Flow], web: &EndpointPlan, cart: &EndpointPlan) {
    for drop in flows.iter().filter(|f| f.kernel_drop.is_some()) {
        assert_eq!(drop.kernel_drop.as_ref().unwrap().name, "NETFILTER_DROP");
        assert_eq!(drop.verdict, Verdict::Dropped as i32);
        assert_eq!(drop.event_type.as_ref().map(|e| e.r#type), Some(1));
        assert_eq!(
            ips(drop),
            (
                std::net::IpAddr::V4(web.ipv4),
                std::net::IpAddr::V4(cart.ipv4)
            )
        );
        assert_eq!(drop.source.as_ref().unwrap().pod_name, "web");
        assert_eq!(drop.destination.as_ref().unwrap().pod_name, "cart");
    }
}

/// Connects from namespace `netns` to `dst`, whose SYNs are dropped: exactly
/// two SYNs go out before the connect fails. The client's port.
async fn connect_twice(netns: &str, dst: SocketAddr) -> u16 {
    connect_twice_from(netns, 0, dst).await
}

/// [`connect_twice`] from client port `port` (0: any).
async fn connect_twice_from(netns: &str, port: u16, dst: SocketAddr) -> u16 {
    let netns = netns.to_string();
    tokio::task::spawn_blocking(move || {
        sysfs::enter_netns(&netns).unwrap();
        let sock = e2e::tcp_socket_on_port(port);
        let port = sock.local_addr().unwrap().as_socket().unwrap().port();
        // Exactly two SYNs, however late the timers fire: the first
        // retransmission (after 1 s) always goes out, as the kernel checks the
        // user timeout only once it has retransmitted; by the next one the
        // 500 ms are long past and the connect fails.
        sock.set_tcp_user_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let err = sock
            .connect_timeout(&dst.into(), Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::TimedOut,
            "the SYN is dropped, not refused"
        );
        port
    })
    .await
    .unwrap()
}
