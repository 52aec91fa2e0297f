//! Services in flows: a socket translation event becomes Hubble's SOCK flows,
//! and a tc flow to or from a service frontend names the service.
//!
//! As Cilium reports a socket-level translation, a forward translation
//! (connect, sendmsg) is two flows: PRE_DIRECTION_FWD (verdict TRACED), the
//! connection as the client made it, client → VIP:port with
//! `destination_service` the service; then POST_DIRECTION_FWD (TRANSLATED),
//! client → backend:port with `destination` the backend's endpoint and no
//! service (a backend's address is no frontend). A reverse translation
//! (recvmsg of a reply) is PRE_DIRECTION_REV, backend → client, then
//! POST_DIRECTION_REV, VIP → client with `source_service`. The summary of
//! each names both ends, e.g. `198.18.100.10:80 -> default/api-1:8080`. A
//! service without backends is one PRE_DIRECTION_FWD flow, verdict DROPPED
//! and drop reason SERVICE_BACKEND_NOT_FOUND (the client's call failed with
//! ECONNREFUSED).
//!
//! The client is the socket's bound address, or, for a socket not bound yet
//! (a plain connect), the endpoint whose network namespace made the call,
//! with source port 0: the port is chosen after the translation.
//!
//! Like Hubble's, SOCK flows carry the event type of Cilium's socket trace
//! (monitor message 7, the translation point as sub-type), the socket cookie
//! and the cgroup id of the caller, and no direction or reply bit. tc flows
//! name a service only when addressed to its frontend, as Cilium does (with
//! socket load balancing the wire carries backend addresses, so none do).

use std::net::{IpAddr, SocketAddr};

use observer_proto::flow::{
    CiliumEventType, DropReason, Endpoint, Flow, FlowType, Service, SocketTranslationPoint, Verdict,
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

/// The far side of a socket (the client's peer) at one translation point.
struct Peer {
    ip: IpAddr,
    port: u16,
    endpoint: Option<Endpoint>,
    service: Option<Service>,
}

/// The SOCK flows of a translation event (see the module's overview);
/// `post_uuid` is the UUID of the post-translation flow (none is made, and it
/// may be empty, when the service has no backend). `unbound_client`: the
/// address of the endpoint whose network namespace made the call, the
/// client when the socket is not bound yet (its source port is then 0).
pub fn sock_flows(
    ev: &SockXlateEvent,
    table: Option<&ServiceTable>,
    cx: FlowContext<'_>,
    post_uuid: String,
    unbound_client: Option<IpAddr>,
) -> Vec<Flow> {
    let vip = addr(ev.family, &ev.vip);
    let backend = addr(ev.family, &ev.backend);
    let bound = addr(ev.family, &ev.src);
    let src = match unbound_client {
        Some(client) if bound.is_unspecified() => client,
        _ => bound,
    };
    let service = table
        .and_then(|t| t.frontend(ev.service_id))
        .map(|f| f.service);
    let reverse = matches!(
        ev.xlate_point,
        xlate_point::PRE_DIRECTION_REV | xlate_point::POST_DIRECTION_REV
    );
    let vip_at = SocketAddr::new(vip, ev.vip_port).to_string();
    let backend_name = table
        .and_then(|t| t.backend_endpoint(backend))
        .map(|e| format!("{e}:{}", ev.backend_port))
        .unwrap_or_else(|| SocketAddr::new(backend, ev.backend_port).to_string());
    let summary = if ev.no_backend != 0 {
        let name = service
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| format!("service id {}", ev.service_id));
        format!(
            "{vip_at}: no backend for {name} ({})",
            DropReason::ServiceBackendNotFound.as_str_name()
        )
    } else if reverse {
        format!("{backend_name} -> {vip_at}")
    } else {
        format!("{vip_at} -> {backend_name}")
    };
    let client_ep = (!src.is_unspecified()).then(|| cx.endpoint(src));
    // The VIP names the service; behind the backend's address is an endpoint.
    let frontend = || Peer {
        ip: vip,
        port: ev.vip_port,
        endpoint: None,
        service: service.as_ref().map(proto_service),
    };
    let backend_peer = || Peer {
        ip: backend,
        port: ev.backend_port,
        endpoint: Some(cx.endpoint(backend)),
        service: None,
    };
    // Forward: the client's VIP becomes the backend; reverse: the other way.
    let (pre_peer, post_peer, pre_point, post_point) = if reverse {
        (
            backend_peer(),
            frontend(),
            SocketTranslationPoint::SockXlatePointPreDirectionRev,
            SocketTranslationPoint::SockXlatePointPostDirectionRev,
        )
    } else {
        (
            frontend(),
            backend_peer(),
            SocketTranslationPoint::SockXlatePointPreDirectionFwd,
            SocketTranslationPoint::SockXlatePointPostDirectionFwd,
        )
    };
    let client = (src, ev.src_port, client_ep);
    let flow_to = |peer: Peer, point: SocketTranslationPoint, verdict: Verdict, base: Flow| {
        let (c_ip, c_port, c_ep) = client.clone();
        let (s, d) = if reverse {
            ((peer.ip, peer.port, peer.endpoint), (c_ip, c_port, c_ep))
        } else {
            ((c_ip, c_port, c_ep), (peer.ip, peer.port, peer.endpoint))
        };
        let (source_service, destination_service) = if reverse {
            (peer.service, None)
        } else {
            (None, peer.service)
        };
        let ip = base.ip.map(|mut ip| {
            ip.source = s.0.to_string();
            ip.destination = d.0.to_string();
            ip
        });
        Flow {
            verdict: verdict as i32,
            ip,
            l4: ports(ev.proto, s.1, d.1, None),
            source: s.2,
            destination: d.2,
            source_service,
            destination_service,
            event_type: Some(CiliumEventType {
                r#type: MESSAGE_TYPE_TRACE_SOCK,
                sub_type: point as i32,
            }),
            sock_xlate_point: point as i32,
            socket_cookie: ev.socket_cookie,
            cgroup_id: ev.cgroup_id,
            summary: summary.clone(),
            ..base
        }
    };
    let base = cx.flow(FlowType::Sock, ev.ktime_ns, src, vip);
    if ev.no_backend != 0 {
        let mut only = flow_to(pre_peer, pre_point, Verdict::Dropped, base);
        let reason = DropReason::ServiceBackendNotFound as i32;
        only.drop_reason = reason as u32;
        only.drop_reason_desc = reason;
        return vec![only];
    }
    let post_base = Flow {
        uuid: post_uuid,
        ..base.clone()
    };
    vec![
        flow_to(pre_peer, pre_point, Verdict::Traced, base),
        flow_to(post_peer, post_point, Verdict::Translated, post_base),
    ]
}

/// Names the services of a tc flow as Cilium does: `destination_service` when
/// it is addressed to a service frontend, `source_service` when it comes from
/// one.
pub fn annotate_tc_flow(table: &ServiceTable, key: &FlowKey, flow: &mut Flow) {
    if key.proto != ipproto::TCP && key.proto != ipproto::UDP {
        return;
    }
    let dst = addr(key.family, &key.daddr);
    let src = addr(key.family, &key.saddr);
    if let Some(s) = table.service_at((dst, key.dport, key.proto)) {
        flow.destination_service = Some(proto_service(&s));
    }
    if let Some(s) = table.service_at((src, key.sport, key.proto)) {
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
                len: 104,
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
            node_labels: &[],
            unix_offset_ns: 0,
            endpoint_of: f,
        }
    }

    #[test]
    fn a_translation_is_a_pre_and_a_post_translation_flow_as_cilium_reports_it() {
        let t = table();
        let ep = |ip: IpAddr| Endpoint {
            pod_name: format!("pod-{ip}"),
            namespace: "default".into(),
            ..Default::default()
        };
        // A bound socket's own address is the client, whatever namespace
        // made the call.
        let elsewhere = Some("198.18.1.99".parse().unwrap());
        let [pre, post] =
            &sock_flows(&event(&t, "api"), Some(&t), cx(&ep), "u2".into(), elsewhere)[..]
        else {
            panic!("two flows")
        };
        let shape = |f: &Flow| {
            let ip = f.ip.as_ref().unwrap();
            (
                f.uuid.clone(),
                f.verdict,
                f.sock_xlate_point,
                f.event_type.as_ref().map(|e| (e.r#type, e.sub_type)),
                ip.destination.clone(),
                f.l4,
                f.destination.as_ref().map(|d| d.pod_name.clone()),
                f.destination_service.clone(),
                f.is_reply,
            )
        };
        let api = Service {
            name: "api".into(),
            namespace: "default".into(),
        };
        assert_eq!(
            shape(pre),
            (
                "u".into(),
                Verdict::Traced as i32,
                SocketTranslationPoint::SockXlatePointPreDirectionFwd as i32,
                Some((MESSAGE_TYPE_TRACE_SOCK, 1)),
                "198.18.100.10".into(),
                ports(6, 40000, 80, None),
                None,
                Some(api),
                None,
            )
        );
        assert_eq!(
            shape(post),
            (
                "u2".into(),
                Verdict::Translated as i32,
                SocketTranslationPoint::SockXlatePointPostDirectionFwd as i32,
                Some((MESSAGE_TYPE_TRACE_SOCK, 2)),
                "198.18.1.11".into(),
                ports(6, 40000, 8080, None),
                Some("pod-198.18.1.11".into()),
                None,
                None,
            )
        );
        for f in [pre, post] {
            assert_eq!(f.r#type, FlowType::Sock as i32);
            assert_eq!((f.socket_cookie, f.cgroup_id), (77, 5));
            assert_eq!(f.ip.as_ref().unwrap().source, "198.18.1.10");
            assert_eq!(f.summary, "198.18.100.10:80 -> default/api-1:8080");
        }

        // tc flows to the backend name no service; one to the VIP does.
        let key = FlowKey {
            saddr: v4([198, 18, 1, 10]),
            daddr: v4([198, 18, 1, 11]),
            sport: 40000,
            dport: 8080,
            proto: 6,
            family: 4,
            ..Default::default()
        };
        let mut tc = Flow::default();
        annotate_tc_flow(&t, &key, &mut tc);
        assert_eq!((tc.source_service, tc.destination_service), (None, None));
        let mut to_vip = Flow::default();
        let vkey = FlowKey {
            daddr: v4([198, 18, 100, 10]),
            dport: 80,
            ..key
        };
        annotate_tc_flow(&t, &vkey, &mut to_vip);
        assert_eq!(to_vip.destination_service.as_ref().unwrap().name, "api");
        let mut from_vip = Flow::default();
        let rkey = FlowKey {
            saddr: vkey.daddr,
            daddr: vkey.saddr,
            sport: 80,
            dport: 40000,
            ..vkey
        };
        annotate_tc_flow(&t, &rkey, &mut from_vip);
        assert_eq!(from_vip.source_service.as_ref().unwrap().name, "api");
        assert_eq!(from_vip.destination_service, None);
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
        let flows = sock_flows(&ev, Some(&t), cx(&world), "u2".into(), None);
        assert_eq!(flows.len(), 1);
        let f = flows.into_iter().next().unwrap();
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
        assert_eq!(
            f.source, None,
            "an unbound socket of an unknown namespace has no known source"
        );
        assert_eq!(f.ip.unwrap().source, "0.0.0.0");

        // The same call from an endpoint's namespace: that endpoint is the
        // client, with no port yet.
        let pod = |ip: IpAddr| Endpoint {
            pod_name: format!("pod-{ip}"),
            ..Default::default()
        };
        let client = Some("198.18.1.10".parse().unwrap());
        let [f] = &sock_flows(&ev, Some(&t), cx(&pod), "u2".into(), client)[..] else {
            panic!("one flow")
        };
        assert_eq!(f.ip.as_ref().unwrap().source, "198.18.1.10");
        assert_eq!(f.source.as_ref().unwrap().pod_name, "pod-198.18.1.10");
        assert_eq!(f.l4, ports(6, 0, 80, None));
        assert_eq!(f.verdict, Verdict::Dropped as i32);
    }
}
