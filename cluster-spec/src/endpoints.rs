//! The endpoints file: the metadata source that maps addresses to endpoints.
//!
//! The lab writes it; flow-probe reads it to enrich flows. Every label set gets a
//! numeric security identity, derived from its labels and namespace alone (as
//! Cilium's identities carry `k8s:io.kubernetes.pod.namespace`), so that every
//! node that reads the same file agrees on the numbers and equal labels in two
//! namespaces never share an identity.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Reserved identities, with Cilium's numbers.
pub mod reserved {
    pub const UNKNOWN: u32 = 0;
    pub const HOST: u32 = 1;
    pub const WORLD: u32 = 2;
    pub const UNMANAGED: u32 = 3;
    pub const HEALTH: u32 = 4;
    pub const INIT: u32 = 5;
    pub const REMOTE_NODE: u32 = 6;
    /// First identity handed to a label set.
    pub const FIRST_CLUSTER_LOCAL: u32 = 256;
}

/// What can go wrong reading an endpoints file.
#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    /// The file could not be read.
    #[error("endpoints file {path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// The file is not valid YAML of the expected shape.
    #[error("endpoints file {path}: {error}")]
    Parse {
        path: String,
        error: crate::yaml::YamlError,
    },
    /// The file parsed but its content is inconsistent.
    #[error("endpoints file {path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// One workload that owns an endpoint (a Deployment, a DaemonSet, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    #[serde(default)]
    pub kind: String,
}

/// One endpoint: a pod-like network identity on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Endpoint ID, unique in the file.
    pub id: u32,
    /// Pod name.
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// Node the endpoint runs on.
    pub node: String,
    /// Host-side interface (veth) of the endpoint, where its probes attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The endpoint's network namespace (an `ip netns` name), so kernel drops
    /// inside it can be told from other namespaces' that reuse its addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointsFile {
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// A name the kernel or `ip netns` keeps as one path component: a netns
/// name becomes `/var/run/netns/NAME`, an interface's `/sys/class/net/NAME`.
fn plain_name(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("not a name".into());
    }
    if name.len() > max {
        return Err(format!("longer than {max} bytes"));
    }
    match name
        .chars()
        .find(|c| *c == '/' || c.is_whitespace() || c.is_control())
    {
        Some(c) => Err(format!("holds {c:?}")),
        None => Ok(()),
    }
}

impl EndpointsFile {
    /// Reads and validates a file; errors name the file and the problem.
    pub fn load(path: &Path) -> Result<Self, EndpointsError> {
        let shown = path.display().to_string();
        let text = crate::input::read_text(path).map_err(|error| EndpointsError::Io {
            path: shown.clone(),
            error,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses and validates file text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, EndpointsError> {
        let file: EndpointsFile =
            crate::yaml::from_str(text).map_err(|error| EndpointsError::Parse {
                path: origin.to_string(),
                error,
            })?;
        file.validate().map_err(|problem| EndpointsError::Invalid {
            path: origin.to_string(),
            problem,
        })?;
        Ok(file)
    }

    fn validate(&self) -> Result<(), String> {
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for (i, ep) in self.endpoints.iter().enumerate() {
            let at = format!("endpoints[{i}] ({}/{})", ep.namespace, ep.name);
            if ep.name.is_empty() || ep.namespace.is_empty() {
                return Err(format!("{at}: name and namespace must not be empty"));
            }
            if !ids.insert(ep.id) {
                return Err(format!("{at}: duplicate id {}", ep.id));
            }
            if let Some(v6) = ep.ipv6
                && let Some(v4) = v6.to_ipv4_mapped()
            {
                return Err(format!(
                    "{at}: ipv6 {v6} is an IPv4-mapped address; give {v4} as ipv4"
                ));
            }
            if let Some(n) = &ep.netns
                && let Err(why) = plain_name(n, usize::from(u8::MAX))
            {
                return Err(format!("{at}: netns {n:?}: {why} (an `ip netns` name)"));
            }
            if let Some(i) = &ep.interface
                && let Err(why) = plain_name(i, 15)
            {
                return Err(format!(
                    "{at}: interface {i:?}: {why} (a Linux interface name)"
                ));
            }
            let v4 = ep.ipv4.map(std::net::IpAddr::V4);
            let v6 = ep.ipv6.map(std::net::IpAddr::V6);
            for addr in v4.into_iter().chain(v6) {
                if !addrs.insert(addr) {
                    return Err(format!("{at}: address {addr} is used by another endpoint"));
                }
            }
        }
        Ok(())
    }

    /// Numeric identity per label set ([`Endpoint::identity_labels`]), as a map
    /// from the sorted `k8s:k=v` list.
    ///
    /// The number comes from a hash of the labels, probed in the order of the sorted
    /// label sets so that the same file always gives the same numbers on every node.
    pub fn identities(&self) -> HashMap<Vec<String>, u32> {
        let sets: BTreeSet<Vec<String>> = self
            .endpoints
            .iter()
            .map(Endpoint::identity_labels)
            .collect();
        let span = 65_536 - reserved::FIRST_CLUSTER_LOCAL;
        let mut taken = BTreeSet::new();
        let mut out = HashMap::new();
        for set in sets {
            let mut n = fnv1a(set.join(",").as_bytes()) % span;
            while !taken.insert(n) {
                n = (n + 1) % span;
            }
            out.insert(set, reserved::FIRST_CLUSTER_LOCAL + n);
        }
        out
    }
}

/// The label of a pod's namespace, which Cilium adds to every endpoint's labels.
pub const NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";

impl Endpoint {
    /// The labels of the endpoint's security identity, as Cilium prints them in
    /// flows: its own labels plus its namespace's, `k8s:key=value`, sorted.
    pub fn identity_labels(&self) -> Vec<String> {
        let mut all = self.labels.clone();
        all.entry(NAMESPACE_LABEL.to_string())
            .or_insert_with(|| self.namespace.clone());
        label_strings(&all)
    }
}

/// Labels as Cilium prints them: `k8s:key=value`, sorted as whole strings
/// (`k8s:app.kubernetes.io/name=x` before `k8s:app=y`, where the keys alone
/// sort the other way).
pub fn label_strings(labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut all: Vec<String> = labels.iter().map(|(k, v)| format!("k8s:{k}={v}")).collect();
    all.sort_unstable();
    all
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_as_cilium_prints_them() {
        let labels = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("app.kubernetes.io/name".to_string(), "shop".to_string()),
        ]);
        assert_eq!(
            label_strings(&labels),
            ["k8s:app.kubernetes.io/name=shop", "k8s:app=web"]
        );
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = test_support::scratch::ScratchDir::new("endpoints-fifo");
        let fifo = dir.fifo("endpoints.yaml");
        assert_eq!(
            EndpointsFile::load(&fifo).unwrap_err().to_string(),
            format!(
                "endpoints file {}: not a regular file but a FIFO; only regular files are read",
                fifo.display()
            )
        );
    }

    /// A netns or interface name is joined into a path: one that climbs out
    /// of `/var/run/netns` or names a FIFO elsewhere would have been opened
    /// (and blocked the agent); a mapped IPv6 address hid a duplicate IPv4.
    #[test]
    fn names_joined_into_paths_and_mapped_addresses_are_refused() {
        let one = |extra: &str| {
            let text = format!(
                "endpoints:\n- {{id: 1, name: a, namespace: ns, ipv4: 198.18.0.2, node: n1, {extra}}}\n"
            );
            EndpointsFile::parse(&text, "e.yaml")
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let refused = |problem: &str| {
            Err(format!(
                "endpoints file e.yaml: endpoints[0] (ns/a): {problem}"
            ))
        };
        assert_eq!(
            one("netns: ../../tmp/x"),
            refused(r#"netns "../../tmp/x": holds '/' (an `ip netns` name)"#)
        );
        assert_eq!(
            one("netns: /tmp/x"),
            refused(r#"netns "/tmp/x": holds '/' (an `ip netns` name)"#)
        );
        assert_eq!(
            one("netns: '..'"),
            refused(r#"netns "..": not a name (an `ip netns` name)"#)
        );
        assert_eq!(
            one("interface: lxc-with-a-long-name"),
            refused(
                r#"interface "lxc-with-a-long-name": longer than 15 bytes (a Linux interface name)"#
            )
        );
        assert_eq!(
            one("interface: 'a b'"),
            refused(r#"interface "a b": holds ' ' (a Linux interface name)"#)
        );
        assert_eq!(
            one("ipv6: '::ffff:198.18.0.2'"),
            refused("ipv6 ::ffff:198.18.0.2 is an IPv4-mapped address; give 198.18.0.2 as ipv4")
        );
        assert_eq!(
            one("netns: lab-a, interface: lxc-a, ipv6: 'fd42::2'"),
            Ok(())
        );
    }

    const TWO: &str = "endpoints:\n\
        - {id: 1, name: a, namespace: ns, labels: {app: a}, ipv4: 198.18.0.2, node: n1}\n\
        - {id: 2, name: b, namespace: ns, labels: {app: b}, ipv4: 198.18.0.3, node: n1}\n\
        - {id: 3, name: a2, namespace: ns, labels: {app: a}, ipv4: 198.18.0.4, node: n2}\n";

    #[test]
    fn same_labels_share_an_identity_and_numbers_are_stable() {
        let file = EndpointsFile::parse(TWO, "t.yaml").unwrap();
        let ids = file.identities();
        assert_eq!(ids.len(), 2);
        let labels = |app: &str| {
            vec![
                format!("k8s:app={app}"),
                "k8s:io.kubernetes.pod.namespace=ns".to_string(),
            ]
        };
        let (a, b) = (ids[&labels("a")], ids[&labels("b")]);
        assert_ne!(a, b);
        assert!(a >= reserved::FIRST_CLUSTER_LOCAL && b >= reserved::FIRST_CLUSTER_LOCAL);
        let again = EndpointsFile::parse(TWO, "t.yaml").unwrap().identities();
        assert_eq!(again, ids);
    }

    #[test]
    fn equal_labels_in_two_namespaces_are_two_identities() {
        let text = "endpoints:\n\
            - {id: 1, name: a, namespace: ns1, labels: {app: a}, ipv4: 198.18.0.2, node: n1}\n\
            - {id: 2, name: a, namespace: ns2, labels: {app: a}, ipv4: 198.18.0.3, node: n1}\n";
        let file = EndpointsFile::parse(text, "t.yaml").unwrap();
        let [one, two] = [&file.endpoints[0], &file.endpoints[1]];
        assert_eq!(
            one.identity_labels(),
            ["k8s:app=a", "k8s:io.kubernetes.pod.namespace=ns1"]
        );
        let ids = file.identities();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[&one.identity_labels()], ids[&two.identity_labels()]);
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dup = "endpoints:\n- {id: 1, name: a, namespace: ns, node: n}\n- {id: 1, name: b, namespace: ns, node: n}\n";
        let err = EndpointsFile::parse(dup, "eps.yaml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "endpoints file eps.yaml: endpoints[1] (ns/b): duplicate id 1"
        );
        let bad_ip = "endpoints:\n- {id: 1, name: a, namespace: ns, node: n, ipv4: 300.1.1.1}\n";
        let err = EndpointsFile::parse(bad_ip, "eps.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("endpoints file eps.yaml: endpoints[0]"),
            "{err}"
        );
        assert!(err.contains("invalid IPv4 address syntax"), "{err}");
        let unknown = "endpoints:\n- {id: 1, name: a, namespace: ns, node: n, color: red}\n";
        let err = EndpointsFile::parse(unknown, "eps.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `color`"), "{err}");
    }
}
