//! Compiled services → the `SERVICES` and `BACKENDS` entries the socket load
//! balancer reads (`sock_lb.bpf.c`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use cluster_spec::services::{CompiledServices, Frontend};

use crate::kernel::events::{LbBackend, LbBackendKey, LbService, LbServiceKey};

/// 16-byte address as the kernel keys it (IPv4 in the first 4 bytes) and family.
pub fn addr_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 6),
    }
}

/// The `SERVICES` key of a frontend.
pub fn frontend_key(f: &Frontend) -> LbServiceKey {
    let (addr, family) = addr_bytes(f.vip);
    LbServiceKey {
        addr,
        port: f.port,
        family,
        proto: f.protocol.number(),
    }
}

/// The `SERVICES` and `BACKENDS` entries of `compiled`.
pub fn entries(
    compiled: &CompiledServices,
) -> (
    BTreeMap<LbServiceKey, LbService>,
    BTreeMap<LbBackendKey, LbBackend>,
) {
    let mut services = BTreeMap::new();
    let mut backends = BTreeMap::new();
    for f in &compiled.frontends {
        services.insert(
            frontend_key(f),
            LbService {
                service_id: f.id,
                backend_count: f.backends.len() as u16,
                _pad0: [0; 2],
            },
        );
        for (slot, b) in f.backends.iter().enumerate() {
            let (addr, family) = addr_bytes(b.addr);
            backends.insert(
                LbBackendKey {
                    service_id: f.id,
                    slot: slot as u16,
                    _pad0: [0; 2],
                },
                LbBackend {
                    addr,
                    port: b.port,
                    family,
                    _pad0: 0,
                },
            );
        }
    }
    (services, backends)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_spec::endpoints::EndpointsFile;
    use cluster_spec::services::{ServicesFile, compile};

    use test_support::specs::{ENDPOINTS, SERVICES};

    #[test]
    fn every_frontend_and_backend_slot_becomes_an_entry() {
        let eps = EndpointsFile::parse(ENDPOINTS, "eps").unwrap();
        let svcs = ServicesFile::parse(SERVICES, "svcs").unwrap();
        let c = compile(&svcs, &eps);
        let v4 = c
            .frontends
            .iter()
            .find(|f| f.vip == "198.18.100.10".parse::<IpAddr>().unwrap())
            .unwrap();
        let (services, backends) = entries(&c);
        assert_eq!(services.len(), 3);
        assert_eq!(backends.len(), 3);
        let key = frontend_key(v4);
        assert_eq!(key.family, 4);
        assert_eq!(key.proto, 6);
        assert_eq!(&key.addr[..4], &[198, 18, 100, 10]);
        assert_eq!(services[&key].backend_count, 2);
        let slot1 = LbBackendKey {
            service_id: v4.id,
            slot: 1,
            _pad0: [0; 2],
        };
        assert_eq!(&backends[&slot1].addr[..4], &[198, 18, 1, 12]);
    }
}
