use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::endpoints::{EndpointsFile, reserved};

use super::*;

/// Two namespaces; `api` runs twice (one label set, one identity); ids are not in
/// file order.
const ENDPOINTS: &str = "endpoints:
- {id: 15, name: client, namespace: other, labels: {app: client}, ipv4: 198.18.0.6, node: n1}
- {id: 11, name: frontend, namespace: default, labels: {app: frontend}, ipv4: 198.18.0.2, node: n1}
- {id: 12, name: api, namespace: default, labels: {app: api}, ipv4: 198.18.0.3, node: n1}
- {id: 13, name: api-2, namespace: default, labels: {app: api}, ipv4: 198.18.0.4, node: n2}
- {id: 14, name: db, namespace: default, labels: {app: db, tier: data}, ipv4: 198.18.0.5, node: n2}
- {id: 16, name: monitor, namespace: other, labels: {app: monitor}, node: n1}
";

const FRONTEND: u32 = 11;
const API: u32 = 12;
const API_2: u32 = 13;
const DB: u32 = 14;
const CLIENT: u32 = 15;
const MONITOR: u32 = 16;

use Direction::{Egress, Ingress};

fn endpoints() -> EndpointsFile {
    EndpointsFile::parse(ENDPOINTS, "eps.yaml").unwrap()
}

/// The identity of endpoint `id`.
fn identity(id: u32) -> u32 {
    let file = endpoints();
    let ep = file.endpoints.iter().find(|e| e.id == id).unwrap();
    file.identities()[&ep.identity_labels()]
}

fn policies(text: &str) -> Vec<Policy> {
    parse(text, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn compiled(text: &str) -> CompiledPolicy {
    compile(&policies(text), &endpoints())
}

/// A policy in namespace `default` with a flow-style `spec`.
fn doc(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n\
         metadata: {{name: {name}, namespace: default}}\nspec: {spec}\n"
    )
}

fn key(
    endpoint_id: u32,
    remote_identity: u32,
    dport: u16,
    proto: u8,
    direction: Direction,
) -> PolicyKey {
    PolicyKey {
        endpoint_id,
        remote_identity,
        dport,
        proto,
        direction,
    }
}

fn allow(policy_id: u32) -> PolicyValue {
    PolicyValue {
        action: Action::Allow,
        policy_id,
    }
}

fn deny(policy_id: u32) -> PolicyValue {
    PolicyValue {
        action: Action::Deny,
        policy_id,
    }
}

fn modes(c: &CompiledPolicy, endpoint_id: u32) -> (Enforcement, Enforcement) {
    let e = c.endpoint(endpoint_id).unwrap();
    (e.ingress, e.egress)
}

const NONE: (Enforcement, Enforcement) = (Enforcement::None, Enforcement::None);

const ALLOW_FRONTEND: &str = r#"apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: api-allow-frontend
  namespace: default
spec:
  endpointSelector:
    matchLabels: {app: api}
  ingress:
    - fromEndpoints:
        - matchLabels: {app: frontend}
      toPorts:
        - ports:
            - {port: "8080", protocol: TCP}
"#;

#[test]
fn frontend_may_reach_api_8080_tcp_only() {
    let c = compiled(ALLOW_FRONTEND);
    let fe = identity(FRONTEND);
    // Both api endpoints, one entry each; nothing else anywhere.
    assert_eq!(
        c.entries,
        BTreeMap::from([
            (key(API, fe, 8080, 6, Ingress), allow(0)),
            (key(API_2, fe, 8080, 6, Ingress), allow(0)),
        ])
    );
    assert_eq!(
        c.endpoint(API),
        Some(&EndpointPolicy {
            endpoint_id: API,
            identity: identity(API),
            ingress: Enforcement::Enforce,
            egress: Enforcement::None,
        })
    );
    assert_eq!(modes(&c, API_2), (Enforcement::Enforce, Enforcement::None));
    assert_eq!(identity(API), identity(API_2));
    for other in [FRONTEND, DB, CLIENT, MONITOR] {
        assert_eq!(modes(&c, other), NONE, "endpoint {other}");
    }
    // Every endpoint of the file, sorted by id.
    let ids: Vec<u32> = c.endpoints.iter().map(|e| e.endpoint_id).collect();
    assert_eq!(ids, [11, 12, 13, 14, 15, 16]);
    assert_eq!(
        c.policies,
        [PolicyRef {
            name: "api-allow-frontend".into(),
            namespace: "default".into(),
            labels: vec![
                "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy".into(),
                "k8s:io.cilium.k8s.policy.name=api-allow-frontend".into(),
                "k8s:io.cilium.k8s.policy.namespace=default".into(),
            ],
            audit: false,
        }]
    );
    assert!(c.cidrs.is_empty());
}

#[test]
fn the_parsed_policy() {
    let p = policies(ALLOW_FRONTEND);
    assert_eq!(
        p,
        [Policy {
            name: "api-allow-frontend".into(),
            namespace: "default".into(),
            audit: false,
            endpoint_selector: Selector {
                namespace: None,
                match_labels: BTreeMap::from([("app".into(), "api".into())]),
            },
            ingress: Some(vec![Rule {
                endpoints: vec![Selector {
                    namespace: None,
                    match_labels: BTreeMap::from([("app".into(), "frontend".into())]),
                }],
                cidrs: vec![],
                ports: vec![PortProtocol {
                    port: 8080,
                    protocol: Protocol::Tcp,
                }],
            }]),
            ingress_deny: None,
            egress: None,
            egress_deny: None,
            origin: "test.yaml".into(),
        }]
    );
}

#[test]
fn deny_wins_over_allow_for_the_same_key() {
    let allow_both = doc(
        "allow-both",
        "{endpointSelector: {matchLabels: {app: api}}, ingress: [{fromEndpoints: \
         [{matchLabels: {app: frontend}}, {matchLabels: {app: client, io.kubernetes.pod.namespace: other}}], \
         toPorts: [{ports: [{port: '8080', protocol: TCP}]}]}]}",
    );
    let deny_client = doc(
        "deny-client",
        "{endpointSelector: {matchLabels: {app: api}}, ingressDeny: [{fromEndpoints: \
         [{matchLabels: {app: client, io.kubernetes.pod.namespace: other}}], \
         toPorts: [{ports: [{port: '8080', protocol: TCP}]}]}]}",
    );
    let allow_frontend_again = doc(
        "allow-frontend-again",
        "{endpointSelector: {matchLabels: {app: api}}, ingress: [{fromEndpoints: \
         [{matchLabels: {app: frontend}}], toPorts: [{ports: [{port: '8080', protocol: TCP}]}]}]}",
    );
    let (fe, client) = (identity(FRONTEND), identity(CLIENT));
    let text = format!("{allow_both}---\n{deny_client}---\n{allow_frontend_again}");
    let c = compiled(&text);
    let expect = |ep| {
        [
            (key(ep, fe, 8080, 6, Ingress), allow(0)),
            (key(ep, client, 8080, 6, Ingress), deny(1)),
        ]
    };
    let want: BTreeMap<_, _> = expect(API).into_iter().chain(expect(API_2)).collect();
    assert_eq!(c.entries, want);
    assert_eq!(c.policies.len(), 3);

    // Order does not matter: the deny, now first, still wins.
    let text = format!("{deny_client}---\n{allow_both}");
    let c = compiled(&text);
    assert_eq!(c.entries[&key(API, client, 8080, 6, Ingress)], deny(0));
    assert_eq!(c.entries[&key(API, fe, 8080, 6, Ingress)], allow(1));

    // A deny on every port is its own entry; the datapath checks all four keys.
    let deny_all_ports = doc(
        "deny-all-ports",
        "{endpointSelector: {matchLabels: {app: api}}, ingressDeny: [{fromEndpoints: \
         [{matchLabels: {app: client, io.kubernetes.pod.namespace: other}}]}]}",
    );
    let c = compiled(&format!("{allow_both}---\n{deny_all_ports}"));
    assert_eq!(c.entries[&key(API, client, 0, 0, Ingress)], deny(1));
    assert_eq!(c.entries[&key(API, client, 8080, 6, Ingress)], allow(0));
}

#[test]
fn any_protocol_is_tcp_udp_and_sctp() {
    let text = doc(
        "ports",
        "{endpointSelector: {matchLabels: {app: db}}, ingress: [{toPorts: [{ports: [\
         {port: '53'}, {port: 8443, protocol: ANY}, {port: '5353', protocol: UDP}, \
         {port: '9000', protocol: SCTP}]}]}]}",
    );
    let c = compiled(&text);
    let keys: Vec<PolicyKey> = c.entries.keys().copied().collect();
    assert_eq!(
        keys,
        [
            key(DB, 0, 53, 6, Ingress),
            key(DB, 0, 53, 17, Ingress),
            key(DB, 0, 53, 132, Ingress),
            key(DB, 0, 5353, 17, Ingress),
            key(DB, 0, 8443, 6, Ingress),
            key(DB, 0, 8443, 17, Ingress),
            key(DB, 0, 8443, 132, Ingress),
            key(DB, 0, 9000, 132, Ingress),
        ]
    );
    assert!(c.entries.values().all(|v| *v == allow(0)));
}

#[test]
fn audit_mode_reports_unless_an_enforcing_policy_selects_the_endpoint() {
    let audited = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: db-audit
  namespace: default
  annotations: {observe.io/audit: \"true\", other.io/note: whatever}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: api}}]
  egress:
    - toPorts: [{ports: [{port: '53', protocol: UDP}]}]
";
    let c = compiled(audited);
    assert_eq!(modes(&c, DB), (Enforcement::Audit, Enforcement::Audit));
    assert!(c.policies[0].audit);
    assert_eq!(
        c.entries,
        BTreeMap::from([
            (key(DB, identity(API), 0, 0, Ingress), allow(0)),
            (key(DB, 0, 53, 17, Egress), allow(0)),
        ])
    );

    // An enforcing policy on db's ingress: enforced there, and the audit policy
    // adds nothing there; egress is still audit only.
    let enforcing = doc(
        "db-enforce",
        "{endpointSelector: {matchLabels: {tier: data}}, ingress: [{fromEndpoints: \
         [{matchLabels: {app: frontend}}], toPorts: [{ports: [{port: '5432', protocol: TCP}]}]}]}",
    );
    for text in [
        format!("{audited}---\n{enforcing}"),
        format!("{enforcing}---\n{audited}"),
    ] {
        let c = compiled(&text);
        let (audit_id, enforce_id) = if c.policies[0].audit { (0, 1) } else { (1, 0) };
        assert_eq!(modes(&c, DB), (Enforcement::Enforce, Enforcement::Audit));
        assert_eq!(
            c.entries,
            BTreeMap::from([
                (
                    key(DB, identity(FRONTEND), 5432, 6, Ingress),
                    allow(enforce_id)
                ),
                (key(DB, 0, 53, 17, Egress), allow(audit_id)),
            ])
        );
    }

    // "false" is not audit.
    let off = audited.replace("observe.io/audit: \"true\"", "observe.io/audit: \"false\"");
    let c = compiled(&off);
    assert!(!c.policies[0].audit);
    assert_eq!(modes(&c, DB), (Enforcement::Enforce, Enforcement::Enforce));
}

#[test]
fn from_cidr_gets_a_cidr_identity() {
    let text = doc(
        "api-from-lan",
        "{endpointSelector: {matchLabels: {app: api}}, ingress: [{fromCIDR: [10.0.0.0/8]}]}",
    );
    let c = compiled(&text);
    assert_eq!(
        c.cidrs,
        [CidrIdentity {
            addr: "10.0.0.0".parse().unwrap(),
            prefix_len: 8,
            identity: 23_278_678,
        }]
    );
    assert_eq!(
        c.entries,
        BTreeMap::from([
            (key(API, 23_278_678, 0, 0, Ingress), allow(0)),
            (key(API_2, 23_278_678, 0, 0, Ingress), allow(0)),
        ])
    );
}

#[test]
fn cidrs_get_identities_by_hash_and_select_the_cidrs_inside_them() {
    let text = doc(
        "cidrs",
        "{endpointSelector: {matchLabels: {app: frontend}}, \
         ingress: [{fromCIDR: [10.0.0.0/8]}, {fromCIDR: [10.1.2.3/16], toPorts: [{ports: [{port: '443', protocol: TCP}]}]}], \
         egress: [{toCIDR: [0.0.0.0/0]}, {toCIDR: ['2001:db8::/32', 192.0.2.7]}], \
         egressDeny: [{toCIDR: ['::/0'], toPorts: [{ports: [{port: '25', protocol: TCP}]}]}]}",
    );
    let c = compiled(&text);
    let cidrs: Vec<(String, u32)> = c
        .cidrs
        .iter()
        .map(|c| (format!("{}/{}", c.addr, c.prefix_len), c.identity))
        .collect();
    // Host bits cleared, a bare address is a /32, IPv4 first, /0 has none.
    assert_eq!(
        cidrs,
        [
            ("10.0.0.0/8".to_string(), 23_278_678),
            ("10.1.0.0/16".to_string(), 17_753_370),
            ("192.0.2.7/32".to_string(), 17_404_067),
            ("2001:db8::/32".to_string(), 21_797_381),
        ]
    );
    // A CIDR that sorts first moves no other CIDR's identity (numbered by
    // position, it moved them all).
    let more = compiled(&text.replace("[10.0.0.0/8]", "[1.2.3.0/24, 10.0.0.0/8]"));
    let again: Vec<(String, u32)> = more
        .cidrs
        .iter()
        .map(|c| (format!("{}/{}", c.addr, c.prefix_len), c.identity))
        .collect();
    assert_eq!(again[0], ("1.2.3.0/24".to_string(), 22_781_485));
    assert_eq!(again[1..], cidrs[..]);
    let world = reserved::WORLD;
    let f = FRONTEND;
    assert_eq!(
        c.entries,
        BTreeMap::from([
            // 10.0.0.0/8 also selects 10.1.0.0/16, whose addresses have its identity.
            (key(f, 23_278_678, 0, 0, Ingress), allow(0)),
            (key(f, 17_753_370, 0, 0, Ingress), allow(0)),
            (key(f, 17_753_370, 443, 6, Ingress), allow(0)),
            // 0.0.0.0/0: world and every IPv4 CIDR identity.
            (key(f, world, 0, 0, Egress), allow(0)),
            (key(f, 23_278_678, 0, 0, Egress), allow(0)),
            (key(f, 17_753_370, 0, 0, Egress), allow(0)),
            (key(f, 17_404_067, 0, 0, Egress), allow(0)),
            (key(f, 21_797_381, 0, 0, Egress), allow(0)),
            // ::/0: world and every IPv6 CIDR identity.
            (key(f, world, 25, 6, Egress), deny(0)),
            (key(f, 21_797_381, 25, 6, Egress), deny(0)),
        ])
    );
}

#[test]
fn namespaces_of_selectors() {
    let from = |selector: &str| {
        let text = doc(
            "p",
            &format!(
                "{{endpointSelector: {{matchLabels: {{app: api}}}}, ingress: [{{fromEndpoints: [{selector}]}}]}}"
            ),
        );
        let c = compiled(&text);
        let mut remotes: Vec<u32> = c
            .entries
            .keys()
            .filter(|k| k.endpoint_id == API)
            .map(|k| k.remote_identity)
            .collect();
        remotes.sort();
        remotes
    };
    let sorted = |mut v: Vec<u32>| {
        v.sort();
        v
    };
    // Without a namespace label: the policy's namespace, where no client runs.
    assert_eq!(from("{matchLabels: {app: client}}"), Vec::<u32>::new());
    assert_eq!(
        from("{matchLabels: {app: client, io.kubernetes.pod.namespace: other}}"),
        [identity(CLIENT)]
    );
    assert_eq!(
        from("{matchLabels: {k8s:app: client, k8s:io.kubernetes.pod.namespace: other}}"),
        [identity(CLIENT)]
    );
    // Only the namespace: all of it. Empty: all of the policy's namespace.
    assert_eq!(
        from("{matchLabels: {k8s:io.kubernetes.pod.namespace: other}}"),
        sorted(vec![identity(CLIENT), identity(MONITOR)])
    );
    assert_eq!(
        from("{}"),
        sorted(vec![identity(FRONTEND), identity(API), identity(DB)])
    );
    assert_eq!(from("{matchLabels: {}}"), from("{}"));

    // endpointSelector: only the policy's own namespace.
    let in_other = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n\
                    metadata: {name: p, namespace: other}\nspec: {endpointSelector: {}, ingress: [{}]}\n";
    let c = compiled(in_other);
    for id in [CLIENT, MONITOR] {
        assert_eq!(modes(&c, id), (Enforcement::Enforce, Enforcement::None));
    }
    for id in [FRONTEND, API, API_2, DB] {
        assert_eq!(modes(&c, id), NONE);
    }
    let api_in_other = in_other.replace(
        "endpointSelector: {}",
        "endpointSelector: {matchLabels: {app: api}}",
    );
    assert!(
        compiled(&api_in_other)
            .endpoints
            .iter()
            .all(|e| (e.ingress, e.egress) == NONE)
    );
    // No metadata.namespace: "default".
    let no_ns = in_other.replace(", namespace: other", "");
    assert_eq!(policies(&no_ns)[0].namespace, "default");
}

#[test]
fn rule_shapes() {
    let spec = |rules: &str| {
        compiled(&doc(
            "p",
            &format!("{{endpointSelector: {{matchLabels: {{app: frontend}}}}, {rules}}}"),
        ))
    };
    // A rule enforces, an empty rule too (it matches nothing: deny all); an
    // empty or null list does not, as in Cilium.
    for (rules, ingress) in [
        ("ingress: [{}]", Enforcement::Enforce),
        ("ingressDeny: [{}]", Enforcement::Enforce),
        ("ingress: []", Enforcement::None),
        ("ingress: ", Enforcement::None),
        ("ingressDeny: []", Enforcement::None),
    ] {
        let c = spec(rules);
        assert_eq!(modes(&c, FRONTEND), (ingress, Enforcement::None), "{rules}");
        assert!(c.entries.is_empty(), "{rules}");
    }
    // Selectors that select nobody match nothing (not "any peer").
    let c = spec(
        "egress: [{toEndpoints: [{matchLabels: {app: nobody}}], toPorts: [{ports: [{port: '80', protocol: TCP}]}]}]",
    );
    assert_eq!(
        modes(&c, FRONTEND),
        (Enforcement::None, Enforcement::Enforce)
    );
    assert!(c.entries.is_empty());
    // Egress to endpoints: keyed on the selected (sending) endpoint.
    let c = spec(
        "egress: [{toEndpoints: [{matchLabels: {app: db}}], toPorts: [{ports: [{port: '5432', protocol: TCP}]}]}]",
    );
    assert_eq!(
        c.entries,
        BTreeMap::from([(key(FRONTEND, identity(DB), 5432, 6, Egress), allow(0))])
    );
    // Peers of both kinds in one rule; duplicate keys are one entry.
    let c = spec(
        "ingress: [{fromEndpoints: [{matchLabels: {app: api}}, {}], fromCIDR: [10.0.0.0/8, 10.0.0.0/8]}]",
    );
    let remotes: Vec<u32> = c.entries.keys().map(|k| k.remote_identity).collect();
    let mut want = vec![identity(FRONTEND), identity(API), identity(DB), 23_278_678];
    want.sort();
    assert_eq!(remotes, want);
}

#[test]
fn a_policy_selecting_nothing_still_has_its_index() {
    let nobody = doc(
        "nobody",
        "{endpointSelector: {matchLabels: {app: nobody}}, ingress: [{}]}",
    );
    let c = compiled(&format!("{nobody}---\n{ALLOW_FRONTEND}"));
    assert_eq!(c.policies.len(), 2);
    assert_eq!(c.policies[0].name, "nobody");
    assert!(c.entries.values().all(|v| *v == allow(1)));
    assert_eq!(c.entries.len(), 2);
}

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("flow-probe-policy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names(p: &[Policy]) -> Vec<(&str, &str)> {
    p.iter()
        .map(|p| (p.name.as_str(), p.origin.as_str()))
        .collect()
}

#[test]
fn multi_document_files_and_sorted_directories() {
    let dir = TempDir::new("load");
    let two = format!(
        "# leading comment\n{}---\n{}---\n",
        doc("b-one", "{endpointSelector: {}, ingress: [{}]}"),
        doc("b-two", "{endpointSelector: {}, egress: [{}]}")
    );
    let b = dir.write("b.yaml", &two);
    dir.write("a.yml", &doc("a", "{endpointSelector: {}}"));
    dir.write("c.txt", "not a policy");
    dir.write(".hidden.yaml", "not a policy");
    std::fs::create_dir(dir.0.join("sub.yaml")).unwrap();
    dir.write("empty.yaml", "# nothing yet\n");

    let shown = |name: &str| dir.0.join(name).display().to_string();
    let from_file = load_file(&b).unwrap();
    let b1 = format!("{} (document 1)", shown("b.yaml"));
    let b2 = format!("{} (document 2)", shown("b.yaml"));
    assert_eq!(
        names(&from_file),
        [("b-one", b1.as_str()), ("b-two", b2.as_str())]
    );
    assert!(from_file[0].enforces(Ingress) && !from_file[0].enforces(Egress));
    assert!(from_file[1].enforces(Egress) && !from_file[1].enforces(Ingress));

    let loaded = load_dir_with_texts(&dir.0).unwrap();
    assert_eq!(loaded.without_policies, ["empty.yaml"]);
    let read: Vec<_> = loaded.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(read, ["a.yml", "b.yaml", "empty.yaml"]);
    let all = load_dir(&dir.0).unwrap();
    let a = shown("a.yml");
    assert_eq!(
        names(&all),
        [
            ("a", a.as_str()),
            ("b-one", b1.as_str()),
            ("b-two", b2.as_str())
        ]
    );

    // The same namespace/name in two files: the whole directory is refused.
    dir.write("d.yaml", &doc("a", "{endpointSelector: {}}"));
    let err = load_dir(&dir.0).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "policy {}: metadata.name: default/a is already defined in {}",
            shown("d.yaml"),
            shown("a.yml")
        )
    );
    // A bad file fails the directory, naming the file.
    std::fs::remove_file(dir.0.join("d.yaml")).unwrap();
    dir.write("e.yaml", "kind: [");
    let err = load_dir(&dir.0).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("policy {}: ", shown("e.yaml"))),
        "{err}"
    );

    let missing = dir.0.join("missing");
    let err = load_dir(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("policy {}: ", missing.display())) && err.contains("No such file"),
        "{err}"
    );
    let err = load_file(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("policy {}: ", missing.display())),
        "{err}"
    );
}

#[test]
fn fifos_devices_and_deep_nesting_are_refused_naming_the_file() {
    let dir = test_support::scratch::ScratchDir::new("policy-inputs");
    let shown = |name: &str| dir.path().join(name).display().to_string();
    let zero = dir.path().join("zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    assert_eq!(
        load_file(&zero).unwrap_err().to_string(),
        format!(
            "policy {}: not a regular file but a character device; only regular files are read",
            shown("zero.yaml")
        )
    );
    // In a policy folder, a FIFO named like a policy fails the folder by name
    // instead of hanging it or being skipped.
    std::fs::remove_file(&zero).unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        doc("a", "{endpointSelector: {}}"),
    )
    .unwrap();
    let fifo = dir.fifo("b.yaml");
    let message = format!(
        "policy {}: not a regular file but a FIFO; only regular files are read",
        shown("b.yaml")
    );
    assert_eq!(load_file(&fifo).unwrap_err().to_string(), message);
    assert_eq!(load_dir(dir.path()).unwrap_err().to_string(), message);
    std::fs::remove_file(&fifo).unwrap();
    let nested = dir.path().join("nested.yaml");
    std::fs::write(&nested, "[".repeat(200_000)).unwrap();
    assert_eq!(
        load_file(&nested).unwrap_err().to_string(),
        format!(
            "policy {}: nested deeper than the limit of 32 levels at line 1 column 33",
            shown("nested.yaml")
        )
    );
}

/// The error message for `text` read as `file`.
fn error(file: &str, text: &str) -> String {
    match parse(text, file) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => e.to_string(),
    }
}

/// A valid policy with `from` replaced by `to` (which must occur).
fn edited(from: &str, to: &str) -> String {
    assert!(ALLOW_FRONTEND.contains(from), "{from}");
    ALLOW_FRONTEND.replacen(from, to, 1)
}

#[test]
fn errors_name_the_file_the_field_and_the_problem() {
    let port = |p: &str| edited(r#"{port: "8080", protocol: TCP}"#, p);
    let cases: Vec<(String, &str)> = vec![
        (
            port(r#"{port: "80a", protocol: TCP}"#),
            r#"policy deny.yaml: spec.ingress[0].toPorts[0].ports[0].port: "80a" is not a port number"#,
        ),
        (
            port(r#"{port: http}"#),
            r#"policy deny.yaml: spec.ingress[0].toPorts[0].ports[0].port: "http": named ports are not supported"#,
        ),
        (
            port(r#"{port: "80-90"}"#),
            r#"policy deny.yaml: spec.ingress[0].toPorts[0].ports[0].port: "80-90": port ranges are not supported"#,
        ),
        (
            port(r#"{port: "80", endPort: 90}"#),
            "policy deny.yaml: spec.ingress[0].toPorts[0].ports[0].endPort: port ranges are not supported",
        ),
        (
            port(r#"{port: 70000}"#),
            r#"policy deny.yaml: spec.ingress[0].toPorts[0].ports[0].port: "70000" is out of range (1-65535)"#,
        ),
        (
            port(r#"{port: "0"}"#),
            r#"policy deny.yaml: spec.ingress[0].toPorts[0].ports[0].port: "0": port 0 (every port) is not supported; leave out toPorts to match every port"#,
        ),
        (
            port(r#"{port: "80", protocol: tcp}"#),
            r#"policy deny.yaml: spec.ingress[0].toPorts[0].ports[0].protocol: "tcp" is not a protocol (TCP, UDP, SCTP or ANY)"#,
        ),
        (
            edited("      toPorts:\n", "      toPorts:\n        - ports: []\n"),
            "policy deny.yaml: spec.ingress[0].toPorts[0].ports: must list at least one port",
        ),
        (
            edited(
                "            - {port: \"8080\", protocol: TCP}\n",
                "            - {port: \"8080\", protocol: TCP}\n          rules: {http: [{}]}\n",
            ),
            "policy deny.yaml: spec.ingress[0].toPorts[0].rules: L7 rules are not supported",
        ),
        (
            edited("kind: CiliumNetworkPolicy", "kind: NetworkPolicy"),
            r#"policy deny.yaml: kind: expected CiliumNetworkPolicy, got "NetworkPolicy""#,
        ),
        (
            edited(
                "apiVersion: cilium.io/v2",
                "apiVersion: networking.k8s.io/v1",
            ),
            r#"policy deny.yaml: apiVersion: expected cilium.io/v2, got "networking.k8s.io/v1""#,
        ),
        (
            edited("kind: CiliumNetworkPolicy\n", ""),
            "policy deny.yaml: kind: missing (expected CiliumNetworkPolicy)",
        ),
        (
            edited(
                "  ingress:\n",
                "  ingress:\n    - fromEndpoints: [{}]\n    - fromCIDR: [10.0.0.0/8, 10.0.0.0/33]\n",
            ),
            r#"policy deny.yaml: spec.ingress[1].fromCIDR[1]: "10.0.0.0/33" is not a CIDR"#,
        ),
        (
            edited(
                "  ingress:\n",
                "  egress:\n    - toCIDR: [10.0.0.0]\n    - toCIDR: ['10.0.0.0/']\n  ingress:\n",
            ),
            r#"policy deny.yaml: spec.egress[1].toCIDR[0]: "10.0.0.0/" is not a CIDR"#,
        ),
        (
            edited(
                "  ingress:\n",
                "  egressDeny:\n    - toCIDR: ['::ffff:10.0.0.0/104']\n  ingress:\n",
            ),
            r#"policy deny.yaml: spec.egressDeny[0].toCIDR[0]: "::ffff:10.0.0.0/104" is an IPv4-mapped range, which IPv4 traffic never matches; give 10.0.0.0/8"#,
        ),
        (
            edited("  name: api-allow-frontend\n", ""),
            "policy deny.yaml: metadata.name: missing",
        ),
        (
            edited("name: api-allow-frontend", "name: Api_Allow"),
            r#"policy deny.yaml: metadata.name: "Api_Allow" is not a valid name (at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"#,
        ),
        (
            edited("namespace: default", "namespace: a.b"),
            r#"policy deny.yaml: metadata.namespace: "a.b" is not a valid name (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)"#,
        ),
        (
            edited(
                "  namespace: default\n",
                "  namespace: default\n  annotations: {observe.io/audit: \"yes\"}\n",
            ),
            r#"policy deny.yaml: metadata.annotations.observe.io/audit: "yes" is neither "true" nor "false""#,
        ),
        (
            edited("  endpointSelector:\n    matchLabels: {app: api}\n", ""),
            "policy deny.yaml: spec.endpointSelector: missing",
        ),
        (
            edited(
                "matchLabels: {app: api}",
                "matchExpressions: [{key: app, operator: In, values: [api]}]",
            ),
            "policy deny.yaml: spec.endpointSelector.matchExpressions: not supported (use matchLabels)",
        ),
        (
            edited(
                "matchLabels: {app: frontend}",
                "matchLabels: {reserved:host: ''}",
            ),
            r#"policy deny.yaml: spec.ingress[0].fromEndpoints[0].matchLabels.reserved:host: label source "reserved" is not supported (only k8s: and any:)"#,
        ),
        (
            edited(
                "matchLabels: {app: frontend}",
                "matchLabels: {app: frontend, k8s:app: api}",
            ),
            r#"policy deny.yaml: spec.ingress[0].fromEndpoints[0].matchLabels.k8s:app: label "app" is given twice (with and without a source prefix)"#,
        ),
        // Shape errors: the field path and line (crate::yaml).
        (
            edited("  ingress:", "  ingressDenny:"),
            "policy deny.yaml: spec: unknown field `ingressDenny`, expected one of endpointSelector, \
             description, ingress, ingressDeny, egress, egressDeny at line 9 column 3",
        ),
        (
            edited("    - fromEndpoints:", "    - toEndpoints:"),
            "policy deny.yaml: spec.ingress[0]: unknown field `toEndpoints`, expected one of \
             fromEndpoints, fromCIDR, fromEntities, toPorts at line 10 column 7",
        ),
        (
            edited(
                "    - fromEndpoints:\n        - matchLabels: {app: frontend}\n",
                "    - fromEntities: [world]\n",
            ),
            "policy deny.yaml: spec.ingress[0].fromEntities: not supported: name the peers with \
             fromEndpoints (endpoints of the cluster) or fromCIDR (addresses; `world` is 0.0.0.0/0 \
             and ::/0)",
        ),
        (
            edited(
                "  ingress:\n    - fromEndpoints:\n        - matchLabels: {app: frontend}\n",
                "  egressDeny:\n    - toEntities: [cluster]\n",
            ),
            "policy deny.yaml: spec.egressDeny[0].toEntities: not supported: name the peers with \
             toEndpoints (endpoints of the cluster) or toCIDR (addresses; `world` is 0.0.0.0/0 and \
             ::/0)",
        ),
        (
            edited("  ingress:\n", "  ingress: {}\n  egress:\n"),
            "policy deny.yaml: spec.ingress: expected sequence start at line 9 column 12",
        ),
        (
            edited(
                "        - matchLabels: {app: frontend}",
                "        - app: frontend",
            ),
            "policy deny.yaml: spec.ingress[0].fromEndpoints[0]: unknown field `app`, expected one of \
             matchLabels, matchExpressions at line 11 column 11",
        ),
        (
            edited(
                "      toPorts:\n        - ports:",
                "      toPorts:\n        - ports: 80\n          x:",
            ),
            "policy deny.yaml: spec.ingress[0].toPorts[0].ports: expected sequence start at line 13 \
             column 18",
        ),
        (
            edited("metadata:\n", "metadata:\n  uid: x\n"),
            "policy deny.yaml: metadata: unknown field `uid`, expected one of name, namespace, \
             labels, annotations at line 4 column 3",
        ),
        (
            edited("    matchLabels: {app: api}", "    matchLabels: {app: api"),
            "policy deny.yaml: while parsing a flow mapping, did not find expected ',' or '}' at line 9 column 10",
        ),
        (
            "just text".to_string(),
            "policy deny.yaml: expected mapping start at line 1 column 1",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(text, want)| error("deny.yaml", text) != *want)
        .map(|(text, want)| {
            format!(
                "{text}\n  got:  {}\n  want: {want}",
                error("deny.yaml", text)
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn a_bad_document_fails_the_whole_file() {
    let bad = ALLOW_FRONTEND.replace("\"8080\"", "\"80a\"");
    let text = format!(
        "{ALLOW_FRONTEND}---\n{}",
        bad.replace("api-allow-frontend", "second")
    );
    assert_eq!(
        error("multi.yaml", &text),
        r#"policy multi.yaml (document 2): spec.ingress[0].toPorts[0].ports[0].port: "80a" is not a port number"#
    );
    // Shape errors in a later document carry the line in the file.
    let text = format!(
        "{ALLOW_FRONTEND}---\n{}",
        ALLOW_FRONTEND.replace("  ingress:", "  ingres:")
    );
    let err = error("multi.yaml", &text);
    assert!(
        err.starts_with("policy multi.yaml: spec: unknown field `ingres`"),
        "{err}"
    );
    assert!(err.ends_with("at line 24 column 3"), "{err}");
    // The header is checked in every document before any field.
    let text = format!(
        "{ALLOW_FRONTEND}---\n{}",
        "apiVersion: v1\nkind: ConfigMap\ndata: {}\n"
    );
    assert_eq!(
        error("multi.yaml", &text),
        r#"policy multi.yaml (document 2): kind: expected CiliumNetworkPolicy, got "ConfigMap""#
    );
    assert_eq!(
        error(
            "dup.yaml",
            &format!("{ALLOW_FRONTEND}---\n{ALLOW_FRONTEND}")
        ),
        "policy dup.yaml (document 2): metadata.name: default/api-allow-frontend is already \
         defined in dup.yaml (document 1)"
    );
    // Empty files and documents hold no policy.
    assert_eq!(parse("", "e.yaml").unwrap(), []);
    assert_eq!(parse("---\n# nothing\n---\n", "e.yaml").unwrap(), []);
}

#[test]
fn the_shipped_scenario_policies_parse() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab/scenarios/default.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let scenario: serde_json::Value = crate::yaml::from_str(&text).unwrap();
    let mut seen = Vec::new();
    for doc in scenario["policies"].as_array().unwrap() {
        let text = crate::yaml::to_string(doc).unwrap();
        for p in parse(&text, "default.yaml").unwrap_or_else(|e| panic!("{e}")) {
            seen.push((p.name, p.audit));
        }
    }
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(seen.iter().any(|(_, audit)| *audit), "{seen:?}");
}

#[test]
fn cidr_parsing() {
    let c = |s: &str| Cidr::parse(s).map(|c| c.to_string());
    assert_eq!(c("10.1.2.3/8").as_deref(), Some("10.0.0.0/8"));
    assert_eq!(c("10.1.2.3").as_deref(), Some("10.1.2.3/32"));
    assert_eq!(c("0.0.0.0/0").as_deref(), Some("0.0.0.0/0"));
    assert_eq!(c("2001:db8::1/32").as_deref(), Some("2001:db8::/32"));
    assert_eq!(c("::1").as_deref(), Some("::1/128"));
    for bad in [
        "10.0.0.0/33",
        "::/129",
        "10.0.0/8",
        "10.0.0.0/+8",
        "10.0.0.0/",
        "010.0.0.0/8",
        "fe80::1%eth0/64",
        "x",
        "",
    ] {
        assert_eq!(c(bad), None, "{bad}");
    }
    let outer = Cidr::parse("10.0.0.0/8").unwrap();
    assert!(outer.contains(&Cidr::parse("10.1.0.0/16").unwrap()));
    assert!(outer.contains(&outer));
    assert!(!outer.contains(&Cidr::parse("11.0.0.0/16").unwrap()));
    assert!(!Cidr::parse("10.1.0.0/16").unwrap().contains(&outer));
    assert!(!Cidr::parse("::/0").unwrap().contains(&outer));
}
