//! Services in flows: a socket translation event becomes a Hubble flow of type
//! SOCK, and tc flows to or from a backend get the service they belong to.
//!
//! A SOCK flow of a forward translation (connect, sendmsg) shows the connection
//! as the client made it: IP and L4 are client → VIP:port (the pre-translation
//! addresses), `destination` is the backend's endpoint, `destination_service`
//! the service, the summary names both ends, e.g.
//! `198.18.100.10:80 -> default/api-1:8080`; the translation point is
//! POST_DIRECTION_FWD and the verdict TRANSLATED. A service without backends
//! gives PRE_DIRECTION_FWD, verdict DROPPED and drop reason
//! SERVICE_BACKEND_NOT_FOUND (the client's call failed with ECONNREFUSED). A
//! reverse translation (recvmsg of a reply) is VIP → client with
//! `source` the backend and `source_service` the service, POST_DIRECTION_REV.
//!
//! Like Hubble, the SOCK flow carries the event type of Cilium's socket trace
//! (monitor message 7), the socket cookie and the cgroup id of the caller.

use std::net::{IpAddr, SocketAddr};

use observer_proto::flow::{
    CiliumEventType, DropReason, Endpoint, Flow, FlowType, Service, SocketTranslationPoint,
    TrafficDirection, Verdict,
};

use super::table::ServiceTable;
use crate::flow_builder::{FlowContext, addr, ipproto, ports};
use crate::kernel::events::{FlowKey, SockXlateEvent, xlate_point};
use cluster_spec::services::ServiceRef;

/// Cilium's monitor message type of socket traces (Hubble's event_type).
pub const MESSAGE_TYPE_TRACE_SOCK: i32 = 7;

fn proto_service(s: &ServiceRef) -> Service {
    Service {
        name: s.name.clone(),
        namespace: s.namespace.clone(),
    }
}

/// Builds the SOCK flow of a translation event.
pub fn sock_flow(ev: &SockXlateEvent, table: Option<&ServiceTable>, cx: FlowContext<'_>) -> Flow {
    let vip = addr(ev.family, &ev.vip);
    let backend = addr(ev.family, &ev.backend);
    let src = addr(ev.family, &ev.src);
    let src_known = !src.is_unspecified();
    let frontend = table.and_then(|t| t.frontend(ev.service_id));
    let service = frontend.as_ref().map(|f| f.service.clone());
    if let (Some(t), 0) = (table, ev.no_backend) {
        t.note_translation((backend, ev.backend_port, ev.proto), ev.service_id);
    }
    let reverse = ev.xlate_point == xlate_point::POST_DIRECTION_REV;
    let vip_at = SocketAddr::new(vip, ev.vip_port).to_string();
    let backend_name = table
        .and_then(|t| t.backend_endpoint(backend))
        .map(|e| format!("{e}:{}", ev.backend_port))
        .unwrap_or_else(|| SocketAddr::new(backend, ev.backend_port).to_string());
    let service_name = service
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| format!("service id {}", ev.service_id));
    let (verdict, summary) = if ev.no_backend != 0 {
        (
            Verdict::Dropped,
            format!(
                "{vip_at}: no backend for {service_name} ({})",
                DropReason::ServiceBackendNotFound.as_str_name()
            ),
        )
    } else if reverse {
        (Verdict::Translated, format!("{backend_name} -> {vip_at}"))
    } else {
        (Verdict::Translated, format!("{vip_at} -> {backend_name}"))
    };
    let point = match ev.xlate_point {
        xlate_point::PRE_DIRECTION_FWD => SocketTranslationPoint::SockXlatePointPreDirectionFwd,
        xlate_point::POST_DIRECTION_FWD => SocketTranslationPoint::SockXlatePointPostDirectionFwd,
        xlate_point::PRE_DIRECTION_REV => SocketTranslationPoint::SockXlatePointPreDirectionRev,
        xlate_point::POST_DIRECTION_REV => SocketTranslationPoint::SockXlatePointPostDirectionRev,
        _ => SocketTranslationPoint::SockXlatePointUnknown,
    };
    let unknown = |ip: IpAddr| (ip, None::<Endpoint>);
    // (address, endpoint) of each side, as the application sees the connection.
    let client = if src_known {
        (src, Some(cx.endpoint(src)))
    } else {
        unknown(src)
    };
    let server = (vip, (ev.no_backend == 0).then(|| cx.endpoint(backend)));
    let ((s_ip, s_ep), (d_ip, d_ep), (s_port, d_port)) = if reverse {
        (server, client, (ev.vip_port, ev.src_port))
    } else {
        (client, server, (ev.src_port, ev.vip_port))
    };
    let mut flow = Flow {
        verdict: verdict as i32,
        l4: ports(ev.proto, s_port, d_port, None),
        source: s_ep,
        destination: d_ep,
        event_type: Some(CiliumEventType {
            r#type: MESSAGE_TYPE_TRACE_SOCK,
            sub_type: 0,
        }),
        traffic_direction: if reverse {
            TrafficDirection::Ingress
        } else {
            TrafficDirection::Egress
        } as i32,
        is_reply: Some(reverse),
        sock_xlate_point: point as i32,
        socket_cookie: ev.socket_cookie,
        cgroup_id: ev.cgroup_id,
        summary,
        ..cx.flow(FlowType::Sock, ev.ktime_ns, s_ip, d_ip)
    };
    if ev.no_backend != 0 {
        let reason = DropReason::ServiceBackendNotFound as i32;
        flow.drop_reason = reason as u32;
        flow.drop_reason_desc = reason;
    }
    let svc = service.as_ref().map(proto_service);
    if reverse {
        flow.source_service = svc;
    } else {
        flow.destination_service = svc;
    }
    flow
}

/// Names the services of a tc flow: `destination_service` when it goes to a
/// backend address:port of a service, `source_service` when it comes from one.
pub fn annotate_tc_flow(table: &ServiceTable, key: &FlowKey, flow: &mut Flow) {
    if key.proto != ipproto::TCP && key.proto != ipproto::UDP {
        return;
    }
    let dst = addr(key.family, &key.daddr);
    let src = addr(key.family, &key.saddr);
    if let Some(s) = table.service_of_backend((dst, key.dport, key.proto)) {
        flow.destination_service = Some(proto_service(&s));
    }
    if let Some(s) = table.service_of_backend((src, key.sport, key.proto)) {
        flow.source_service = Some(proto_service(&s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow_builder::EndpointOf;
    use crate::kernel::events::{EVENT_SOCK_XLATE, EVENT_VERSION, EventHeader, sock_hook};
    use cluster_spec::endpoints::EndpointsFile;
    use cluster_spec::services::ServicesFile;
    use cluster_spec::services::compile;

    fn table() -> ServiceTable {
        let eps = EndpointsFile::parse(
            "endpoints:\n  - {id: 1, name: client, namespace: default, ipv4: 198.18.1.10, node: n}\n  - {id: 2, name: api-1, namespace: default, labels: {app: api}, ipv4: 198.18.1.11, node: n}\n",
            "eps",
        )
        .unwrap();
        let svcs = ServicesFile::parse(
            "services:\n  - {name: api, namespace: default, vip: {ipv4: 198.18.100.10}, ports: [{port: 80, targetPort: 8080}], selector: {app: api}}\n  - {name: none, namespace: default, vip: {ipv4: 198.18.100.11}, ports: [{port: 80}]}\n",
            "svcs",
        )
        .unwrap();
        let t = ServiceTable::new();
        t.set(compile(&svcs, &eps));
        t
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    fn event(t: &ServiceTable, name: &str) -> SockXlateEvent {
        let id = t.frontends_of(&ServiceRef {
            namespace: "default".into(),
            name: name.into(),
        })[0]
            .id;
        SockXlateEvent {
            hdr: EventHeader {
                r#type: EVENT_SOCK_XLATE,
                version: EVENT_VERSION,
                len: 96,
                _pad0: 0,
            },
            ktime_ns: 1_000,
            socket_cookie: 77,
            cgroup_id: 5,
            vip: v4([198, 18, 100, 10]),
            backend: v4([198, 18, 1, 11]),
            vip_port: 80,
            backend_port: 8080,
            family: 4,
            proto: 6,
            xlate_point: xlate_point::POST_DIRECTION_FWD,
            service_id: id,
            src: v4([198, 18, 1, 10]),
            src_port: 40000,
            hook: sock_hook::CONNECT,
            ..Default::default()
        }
    }

    fn cx<'a>(f: &'a dyn EndpointOf) -> FlowContext<'a> {
        FlowContext {
            uuid: "u".into(),
            node_name: "node1",
            unix_offset_ns: 0,
            endpoint_of: f,
        }
    }

    #[test]
    fn a_translation_is_a_sock_flow_from_client_to_vip_with_the_backend_endpoint() {
        let t = table();
        let ep = |ip: IpAddr| Endpoint {
            pod_name: format!("pod-{ip}"),
            namespace: "default".into(),
            ..Default::default()
        };
        let f = sock_flow(&event(&t, "api"), Some(&t), cx(&ep));
        assert_eq!(f.r#type, FlowType::Sock as i32);
        assert_eq!(f.verdict, Verdict::Translated as i32);
        assert_eq!(
            f.sock_xlate_point,
            SocketTranslationPoint::SockXlatePointPostDirectionFwd as i32
        );
        assert_eq!((f.socket_cookie, f.cgroup_id), (77, 5));
        let ip = f.ip.as_ref().unwrap();
        assert_eq!(
            (ip.source.as_str(), ip.destination.as_str()),
            ("198.18.1.10", "198.18.100.10")
        );
        assert_eq!(f.destination.as_ref().unwrap().pod_name, "pod-198.18.1.11");
        assert_eq!(
            f.destination_service,
            Some(Service {
                name: "api".into(),
                namespace: "default".into()
            })
        );
        assert_eq!(f.summary, "198.18.100.10:80 -> default/api-1:8080");
        assert_eq!(f.event_type.unwrap().r#type, MESSAGE_TYPE_TRACE_SOCK);

        // The tc flows of that connection name the service by backend address.
        let mut tc = Flow::default();
        let key = FlowKey {
            saddr: v4([198, 18, 1, 10]),
            daddr: v4([198, 18, 1, 11]),
            sport: 40000,
            dport: 8080,
            proto: 6,
            family: 4,
            ..Default::default()
        };
        annotate_tc_flow(&t, &key, &mut tc);
        assert_eq!(tc.destination_service.as_ref().unwrap().name, "api");
        assert_eq!(tc.source_service, None);
        let mut reply = Flow::default();
        let rkey = FlowKey {
            saddr: key.daddr,
            daddr: key.saddr,
            sport: 8080,
            dport: 40000,
            ..key
        };
        annotate_tc_flow(&t, &rkey, &mut reply);
        assert_eq!(reply.source_service.as_ref().unwrap().name, "api");
        assert_eq!(reply.destination_service, None);
        let mut other_port = Flow::default();
        annotate_tc_flow(&t, &FlowKey { dport: 9090, ..key }, &mut other_port);
        assert_eq!(other_port.destination_service, None);
    }

    #[test]
    fn a_service_without_backends_is_a_dropped_sock_flow() {
        let t = table();
        let world = |_: IpAddr| Endpoint::default();
        let ev = SockXlateEvent {
            no_backend: 1,
            backend: [0; 16],
            backend_port: 0,
            vip: v4([198, 18, 100, 11]),
            xlate_point: xlate_point::PRE_DIRECTION_FWD,
            src: [0; 16],
            src_port: 0,
            ..event(&t, "none")
        };
        let f = sock_flow(&ev, Some(&t), cx(&world));
        assert_eq!(f.verdict, Verdict::Dropped as i32);
        assert_eq!(
            f.drop_reason_desc,
            DropReason::ServiceBackendNotFound as i32
        );
        assert_eq!(
            f.summary,
            "198.18.100.11:80: no backend for default/none (SERVICE_BACKEND_NOT_FOUND)"
        );
        assert_eq!(f.destination, None);
        assert_eq!(f.source, None, "an unbound socket has no known source");
        assert_eq!(f.ip.unwrap().source, "0.0.0.0");
    }
}
