//! Kernel drops on the real datapath: a packet a netfilter rule drops inside an
//! endpoint's namespace comes back as a DROPPED flow with the kernel's reason.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::{ips, ports};
use flow_probe::kernel::sysfs;
use observe_lab::Scenario;
use observer_proto::flow::Verdict;

const TWO: &str = "endpoints:\n  - {name: web, namespace: shop, labels: {app: web}}\n  - {name: cart, namespace: shop, labels: {app: cart}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_netfilter_drop_is_a_flow_with_its_kernel_reason() {
    let env = e2e::start(&Scenario::parse(TWO, "drops.yaml").unwrap(), &[]);
    let cart = env.lab.endpoint("cart").unwrap().clone();
    let web = env.lab.endpoint("web").unwrap().clone();
    // cart's own firewall drops everything to port 9000.
    let nft = "add table inet obs; add chain inet obs input { type filter hook input priority 0; }; add rule inet obs input tcp dport 9000 drop";
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &cart.netns, "nft", nft])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dst: SocketAddr = (cart.ipv4, 9000).into();
    let web_ns = web.netns.clone();
    let sport = tokio::task::spawn_blocking(move || {
        sysfs::enter_netns(&web_ns).unwrap();
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into())
            .unwrap();
        let port = sock.local_addr().unwrap().as_socket().unwrap().port();
        let err = sock
            .connect_timeout(&dst.into(), Duration::from_millis(1500))
            .unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::TimedOut,
            "the SYN is dropped, not refused"
        );
        port
    })
    .await
    .unwrap();

    let flows = env
        .wait_for("the kernel drop", |f| {
            f.iter()
                .any(|f| f.kernel_drop.is_some() && ports(f) == Some((sport, 9000)))
        })
        .await;
    let drop = flows
        .iter()
        .find(|f| f.kernel_drop.is_some() && ports(f) == Some((sport, 9000)))
        .unwrap();
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
    assert!(
        drop.summary.ends_with("(kernel drop: NETFILTER_DROP)"),
        "{}",
        drop.summary
    );
    // The SYN still crossed both veths before netfilter dropped it in cart.
    let seen_at_cart = flows
        .iter()
        .filter(|f| ports(f) == Some((sport, 9000)) && f.trace_observation_point == 101)
        .count();
    assert!(seen_at_cart >= 1);
}
