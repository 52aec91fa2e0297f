//! Capture end to end, on the real kernel: the default lab's traffic (TCP, a
//! refused port, UDP, ICMP echo, over IPv4 and IPv6) becomes flows with exactly
//! the expected endpoints, identities, ports, flags, reply bits, directions,
//! observation points and byte counts.

use e2e::{connection, ips};
use observe_lab::{ItemReport, Scenario, run_traffic_once};
use observer_proto::flow::{
    Flow, TraceObservationPoint, TrafficDirection, Verdict, layer4::Protocol,
};

/// Frame sizes on the veth: Ethernet 14, IPv4 20 / IPv6 40, TCP 20 + options.
/// A SYN and SYN-ACK carry 20 bytes of options (MSS, SACK, timestamps, window
/// scale); every later segment carries the 12-byte timestamp option.
/// `mss` is the data a segment carries at the veth's MTU of 1,500 (less the
/// IP header, TCP's 20 and the timestamps' 12).
struct Headers {
    syn: u64,
    other: u64,
    udp: u64,
    icmp: u64,
    mss: u64,
}
const V4: Headers = Headers {
    syn: 14 + 20 + 40,
    other: 14 + 20 + 32,
    udp: 14 + 20 + 8,
    icmp: 14 + 20 + 8,
    mss: 1500 - 20 - 32,
};
const V6: Headers = Headers {
    syn: 14 + 40 + 40,
    other: 14 + 40 + 32,
    udp: 14 + 40 + 8,
    icmp: 14 + 40 + 8,
    mss: 1500 - 40 - 32,
};

struct Expect<'a> {
    env: &'a e2e::Env,
    identities: std::collections::HashMap<Vec<String>, u32>,
}

impl Expect<'_> {
    fn endpoint(&self, name: &str) -> cluster_spec::endpoints::Endpoint {
        self.env
            .lab
            .endpoints_file()
            .endpoints
            .into_iter()
            .find(|e| e.name == name)
            .expect("endpoint in file")
    }

    /// Source and destination are these endpoints, with their identities.
    fn assert_endpoints(&self, f: &Flow, src: &str, dst: &str) {
        for (ep, name) in [(&f.source, src), (&f.destination, dst)] {
            let ep = ep.as_ref().expect("endpoint set");
            let want = self.endpoint(name);
            assert_eq!(
                (
                    ep.pod_name.as_str(),
                    ep.namespace.as_str(),
                    ep.id,
                    ep.identity,
                    &ep.labels
                ),
                (
                    want.name.as_str(),
                    want.namespace.as_str(),
                    want.id,
                    self.identities[&want.identity_labels()],
                    &want.identity_labels()
                ),
                "endpoint of {}",
                f.summary
            );
            assert_eq!(ep.workloads[0].name, want.workload.as_ref().unwrap().name);
        }
    }

    /// The flows seen at one endpoint's interface, one direction.
    fn at<'f>(
        &self,
        flows: &'f [Flow],
        point: TraceObservationPoint,
        endpoint: &str,
        from: std::net::IpAddr,
    ) -> Vec<&'f Flow> {
        let iface = self.endpoint(endpoint).interface.unwrap();
        flows
            .iter()
            .filter(|f| f.trace_observation_point == point as i32)
            .filter(|f| f.interface.as_ref().is_some_and(|i| i.name == iface))
            .filter(|f| ips(f).0 == from)
            .collect()
    }

    fn assert_common(
        &self,
        f: &Flow,
        point: TraceObservationPoint,
        is_reply: bool,
        direction: TrafficDirection,
    ) {
        assert_eq!(f.verdict, Verdict::Forwarded as i32, "{}", f.summary);
        assert_eq!(f.node_name, "node1");
        assert_eq!(f.is_reply, Some(is_reply), "is_reply of {}", f.summary);
        assert_eq!(
            f.traffic_direction, direction as i32,
            "direction of {} at {point:?}",
            f.summary
        );
        let sub_type = if point == TraceObservationPoint::FromEndpoint {
            5
        } else {
            0
        };
        let et = f.event_type.as_ref().unwrap();
        assert_eq!((et.r#type, et.sub_type), (4, sub_type));
    }

    /// A TCP request/response: exact flags per direction at both interfaces, and
    /// exact bytes: payload + computable headers.
    fn tcp_exchange(&self, flows: &[Flow], item: &ItemReport, h: &Headers) {
        let conn = connection(
            flows,
            (item.src_ip, item.src_port.unwrap()),
            (item.dst_ip, item.dst_port.unwrap()),
        );
        for (point, fwd_dir, rev_dir, observer) in [
            (
                TraceObservationPoint::FromEndpoint,
                TrafficDirection::Egress,
                TrafficDirection::Ingress,
                &item.from,
            ),
            (
                TraceObservationPoint::ToEndpoint,
                TrafficDirection::Ingress,
                TrafficDirection::Egress,
                &item.to,
            ),
        ] {
            // At the client's veth we see its requests leave (from-endpoint) and
            // the replies arrive (to-endpoint); at the server's, the reverse.
            let (fwd_iface, rev_iface) = if point == TraceObservationPoint::FromEndpoint {
                (&item.from, &item.to)
            } else {
                (&item.to, &item.from)
            };
            let fwd = self.at(&conn, point, fwd_iface, item.src_ip);
            let rev = self.at(&conn, point, rev_iface, item.dst_ip);
            let names = |v: &[&Flow]| v.iter().map(|f| f.summary.clone()).collect::<Vec<_>>();
            // An event per direction for its first packet and for its FIN:
            // the flags a user learns from (not every new combination).
            assert_eq!(
                names(&fwd),
                ["TCP Flags: SYN", "TCP Flags: ACK, FIN"],
                "requests at {point:?} ({observer})"
            );
            assert_eq!(
                names(&rev),
                ["TCP Flags: SYN, ACK", "TCP Flags: ACK, FIN"],
                "replies at {point:?}"
            );
            for f in &fwd {
                self.assert_endpoints(f, &item.from, &item.to);
                self.assert_common(f, point, false, fwd_dir);
            }
            for f in &rev {
                self.assert_endpoints(f, &item.to, &item.from);
                self.assert_common(f, point, true, rev_dir);
            }
            let Some(Protocol::Tcp(tcp)) = fwd[0].l4.as_ref().unwrap().protocol.as_ref() else {
                panic!("not TCP")
            };
            assert_eq!(
                (tcp.source_port, tcp.destination_port),
                (
                    u32::from(item.src_port.unwrap()),
                    u32::from(item.dst_port.unwrap())
                )
            );
            assert!(tcp.flags.as_ref().unwrap().syn && !tcp.flags.as_ref().unwrap().ack);
            // Each direction's FIN is its last segment carrying data or flags.
            let client_fin = fwd[1].volume.as_ref().unwrap();
            assert_eq!(
                client_fin.fwd_bytes,
                item.bytes_sent + h.syn + h.other * (client_fin.fwd_packets - 1),
                "request bytes at {point:?}"
            );
            let server_fin = rev[1].volume.as_ref().unwrap();
            assert_eq!(
                server_fin.rev_bytes,
                item.bytes_received + h.syn + h.other * (server_fin.rev_packets - 1),
                "response bytes at {point:?}"
            );
            // The server sends nothing between its FIN and the client's.
            assert_eq!(
                (client_fin.rev_packets, client_fin.rev_bytes),
                (server_fin.rev_packets, server_fin.rev_bytes),
                "at {point:?}"
            );
            // Packet counts include pure ACKs, which the kernel sends or folds
            // into a later segment (delayed ACK) as timing goes: bounds, not
            // counts. Data counts as its segments (one GSO packet of two is
            // two). The client's FIN follows its SYN, ACK and request, and up
            // to two pure ACKs (of the response, of the server's FIN). By the
            // server's FIN each side has sent its SYN, its data and a FIN or
            // ACK, and maybe one pure ACK (the server's of the request, the
            // client's of the response).
            let request = item.bytes_sent.div_ceil(h.mss);
            let response = item.bytes_received.div_ceil(h.mss);
            assert!(
                (3 + request..=5 + request).contains(&client_fin.fwd_packets),
                "{client_fin:?}"
            );
            assert!(
                (2 + request..=3 + request).contains(&server_fin.fwd_packets)
                    && (2 + response..=3 + response).contains(&server_fin.rev_packets),
                "{server_fin:?} ({request} and {response} data segments)"
            );
        }
    }

    /// One datagram each way (UDP echo, ICMP echo): one flow per direction per
    /// interface, with exact frame sizes.
    fn datagram_exchange(&self, flows: &[Flow], item: &ItemReport, frame: u64, want: [&str; 2]) {
        for (point, fwd_iface, rev_iface, fwd_dir, rev_dir) in [
            (
                TraceObservationPoint::FromEndpoint,
                &item.from,
                &item.to,
                TrafficDirection::Egress,
                TrafficDirection::Ingress,
            ),
            (
                TraceObservationPoint::ToEndpoint,
                &item.to,
                &item.from,
                TrafficDirection::Ingress,
                TrafficDirection::Egress,
            ),
        ] {
            let fwd = self.at(flows, point, fwd_iface, item.src_ip);
            let rev = self.at(flows, point, rev_iface, item.dst_ip);
            assert_eq!(
                fwd.iter().map(|f| f.summary.as_str()).collect::<Vec<_>>(),
                [want[0]],
                "requests at {point:?}"
            );
            assert_eq!(
                rev.iter().map(|f| f.summary.as_str()).collect::<Vec<_>>(),
                [want[1]],
                "replies at {point:?}"
            );
            self.assert_endpoints(fwd[0], &item.from, &item.to);
            self.assert_endpoints(rev[0], &item.to, &item.from);
            self.assert_common(fwd[0], point, false, fwd_dir);
            self.assert_common(rev[0], point, true, rev_dir);
            let v = fwd[0].volume.as_ref().unwrap();
            assert_eq!(
                (v.fwd_packets, v.fwd_bytes, v.rev_packets),
                (1, frame, 0),
                "request volume at {point:?}"
            );
            let v = rev[0].volume.as_ref().unwrap();
            assert_eq!(
                (v.fwd_packets, v.fwd_bytes, v.rev_packets, v.rev_bytes),
                (1, frame, 1, frame),
                "reply volume at {point:?}"
            );
        }
    }
}

/// The packet flows of one item (TCP lifecycle flows are checked apart).
fn item_flows(flows: &[Flow], item: &ItemReport) -> Vec<Flow> {
    match (item.src_port, item.dst_port) {
        (Some(sp), Some(dp)) => {
            let mut c = connection(flows, (item.src_ip, sp), (item.dst_ip, dp));
            // Packets only: no lifecycle report, nor the periodic report a
            // stream alive at a tick (every 10 s) gets.
            c.retain(|f| f.tcp_lifecycle.is_none() && !f.volume.is_some_and(|v| v.report));
            c
        }
        _ => flows
            .iter()
            // Echo only: neighbour discovery between the same hosts is ICMPv6 too.
            .filter(|f| match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
                Some(Protocol::IcmPv4(i)) => matches!(i.r#type, 0 | 8),
                Some(Protocol::IcmPv6(i)) => matches!(i.r#type, 128 | 129),
                _ => false,
            })
            .filter(|f| {
                let (s, d) = ips(f);
                (s, d) == (item.src_ip, item.dst_ip) || (s, d) == (item.dst_ip, item.src_ip)
            })
            .cloned()
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_scenario_traffic_becomes_exact_flows() {
    let scenario = Scenario::builtin_capture();
    let env = e2e::start(&scenario, &[]);
    let report = {
        let lab_scenario = scenario.clone();
        let env_ref = &env;
        tokio::task::block_in_place(|| run_traffic_once(&env_ref.lab, &lab_scenario))
            .expect("traffic")
    };
    assert!(report.all_as_expected(), "{report}");
    let items = &report.items;
    // Wait for the last flow of every item: 2 interfaces × its events.
    let expected_events = [4, 4, 4, 2, 2, 2, 2, 2].map(|n| n * 2);
    let flows = env
        .wait_for("every item's flows", |flows| {
            items
                .iter()
                .zip(expected_events)
                .all(|(item, n)| item_flows(flows, item).len() >= n)
        })
        .await;
    for (item, n) in items.iter().zip(expected_events) {
        assert_eq!(item_flows(&flows, item).len(), n, "events of item {item}");
    }
    let expect = Expect {
        env: &env,
        identities: env.lab.endpoints_file().identities(),
    };

    expect.tcp_exchange(&flows, &items[0], &V4);
    // Both sockets of the first connection were established and closed, without
    // retransmissions; the refused one never was, and its client's socket closed.
    let closes = |fl: &[Flow], item: &ItemReport| {
        connection(
            fl,
            (item.src_ip, item.src_port.unwrap()),
            (item.dst_ip, item.dst_port.unwrap()),
        )
        .iter()
        .filter(|f| f.tcp_lifecycle.as_ref().is_some_and(|l| l.kind == 2))
        .count()
    };
    let env_flows = env
        .wait_for("both sockets closed, and the refused one", |fl| {
            closes(fl, &items[0]) == 2 && closes(fl, &items[3]) == 1
        })
        .await;
    let flows = env_flows;
    let lifecycle = |item: &ItemReport| {
        let (sp, dp) = (item.src_port.unwrap(), item.dst_port.unwrap());
        let mut v: Vec<(i32, u32)> = connection(&flows, (item.src_ip, sp), (item.dst_ip, dp))
            .iter()
            .filter_map(|f| f.tcp_lifecycle.as_ref().map(|l| (l.kind, l.retransmits)))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        lifecycle(&items[0]),
        [(1, 0), (1, 0), (2, 0), (2, 0)],
        "established ×2, closed ×2"
    );
    assert_eq!(
        lifecycle(&items[3]),
        [(2, 0)],
        "a refused connection is never established: only the client's close"
    );
    expect.tcp_exchange(&flows, &items[1], &V6);
    expect.tcp_exchange(&flows, &items[2], &V4);

    // Refused: SYN out, RST back, at both interfaces.
    let refused = &items[3];
    let conn = connection(
        &flows,
        (refused.src_ip, refused.src_port.unwrap()),
        (refused.dst_ip, 9999),
    );
    for (point, fwd_iface, rev_iface) in [
        (TraceObservationPoint::FromEndpoint, "client", "api"),
        (TraceObservationPoint::ToEndpoint, "api", "client"),
    ] {
        let fwd = expect.at(&conn, point, fwd_iface, refused.src_ip);
        let rev = expect.at(&conn, point, rev_iface, refused.dst_ip);
        assert_eq!(
            fwd.iter().map(|f| f.summary.as_str()).collect::<Vec<_>>(),
            ["TCP Flags: SYN"]
        );
        assert_eq!(
            rev.iter().map(|f| f.summary.as_str()).collect::<Vec<_>>(),
            ["TCP Flags: ACK, RST"]
        );
        assert_eq!(
            (fwd[0].is_reply, rev[0].is_reply),
            (Some(false), Some(true))
        );
        expect.assert_endpoints(rev[0], "api", "client");
    }

    let udp4 = item_flows(&flows, &items[4]);
    expect.datagram_exchange(&udp4, &items[4], V4.udp + 64, ["UDP", "UDP"]);
    let udp6 = item_flows(&flows, &items[5]);
    expect.datagram_exchange(&udp6, &items[5], V6.udp + 48, ["UDP", "UDP"]);
    let icmp4 = item_flows(&flows, &items[6]);
    expect.datagram_exchange(
        &icmp4,
        &items[6],
        V4.icmp + 56,
        ["ICMPv4 EchoRequest", "ICMPv4 EchoReply"],
    );
    let Some(Protocol::IcmPv4(req)) = icmp4
        .iter()
        .find(|f| f.is_reply == Some(false))
        .unwrap()
        .l4
        .as_ref()
        .unwrap()
        .protocol
    else {
        panic!()
    };
    assert_eq!((req.r#type, req.code), (8, 0));
    let icmp6 = item_flows(&flows, &items[7]);
    expect.datagram_exchange(
        &icmp6,
        &items[7],
        V6.icmp + 56,
        ["ICMPv6 EchoRequest", "ICMPv6 EchoReply"],
    );
    let Some(Protocol::IcmPv6(rep)) = icmp6
        .iter()
        .find(|f| f.is_reply == Some(true))
        .unwrap()
        .l4
        .as_ref()
        .unwrap()
        .protocol
    else {
        panic!()
    };
    assert_eq!((rep.r#type, rep.code), (129, 0));

    // IP version is set from the family.
    let v6 = flows.iter().find(|f| ips(f).0 == items[1].src_ip).unwrap();
    assert_eq!(
        v6.ip.as_ref().unwrap().ip_version,
        observer_proto::flow::IpVersion::IPv6 as i32
    );
}
