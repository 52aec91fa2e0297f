//! Endpoints and services files (YAML text) for the tests of their compilers:
//! the services file's `api` selects `api-1` and `api-2` in `default` (only
//! `api-2` has IPv6), never `api-3` of namespace `other`; `none` selects nothing.

/// Four endpoints on node1: a client and three `app: api`, one in another namespace.
pub const ENDPOINTS: &str = r#"
endpoints:
  - {id: 1, name: client, namespace: default, labels: {app: client}, ipv4: 198.18.1.10, ipv6: "fd42::1:10", node: node1}
  - {id: 2, name: api-2, namespace: default, labels: {app: api}, ipv4: 198.18.1.12, ipv6: "fd42::1:12", node: node1}
  - {id: 3, name: api-1, namespace: default, labels: {app: api, tier: x}, ipv4: 198.18.1.11, node: node1}
  - {id: 4, name: api-3, namespace: other, labels: {app: api}, ipv4: 198.18.1.13, node: node1}
"#;

/// `api` (IPv4 and IPv6 VIPs, 80 → 8080, `app: api`) and `none` (UDP 53, no selector).
pub const SERVICES: &str = r#"
services:
  - name: api
    namespace: default
    vip: {ipv4: 198.18.100.10, ipv6: "fd42:100::10"}
    ports: [{port: 80, targetPort: 8080}]
    selector: {app: api}
  - name: none
    namespace: default
    vip: {ipv4: 198.18.100.11}
    ports: [{port: 53, protocol: UDP}]
"#;
