//! The services file: Kubernetes-style services with a virtual IP (VIP) per
//! address family, ports, and a label selector that picks the backends among the
//! endpoints of the endpoints file.
//!
//! ```yaml
//! services:
//!   - name: api                 # DNS label: [a-z0-9-], at most 63 characters
//!     namespace: default        # backends come from this namespace only
//!     vip: {ipv4: 198.18.100.10, ipv6: "fd42:100::10"}   # one or both
//!     ports:
//!       - port: 80              # the VIP's port, 1-65535
//!         protocol: TCP         # TCP (default) | UDP
//!         targetPort: 8080      # the backends' port; default: port
//!     selector: {app: api}      # endpoints with all these labels are backends;
//!                               # leave it out for a service without backends
//! ```
//!
//! Unknown keys are errors everywhere. Errors name the file, the field and the
//! problem, e.g. `services file svc.yaml: services[0].ports[1].port: must be
//! between 1 and 65535`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What can go wrong reading a services file.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// The file could not be read.
    #[error("services file {path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// Not YAML of the expected shape (serde's message carries the field path).
    #[error("services file {path}: {error}")]
    Parse {
        path: String,
        error: crate::yaml::YamlError,
    },
    /// Well-formed but inconsistent.
    #[error("services file {path}: {field}: {problem}")]
    Invalid {
        path: String,
        field: String,
        problem: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesFile {
    #[serde(default)]
    pub services: Vec<Service>,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub vip: Vip,
    pub ports: Vec<ServicePort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
}

/// The service's virtual addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
}

impl Vip {
    /// The addresses given, IPv4 first.
    pub fn addrs(&self) -> Vec<IpAddr> {
        let v4 = self.ipv4.map(IpAddr::V4);
        let v6 = self.ipv6.map(IpAddr::V6);
        v4.into_iter().chain(v6).collect()
    }

    /// The address of one family, if given.
    pub fn of_family(&self, ipv6: bool) -> Option<IpAddr> {
        if ipv6 {
            self.ipv6.map(IpAddr::V6)
        } else {
            self.ipv4.map(IpAddr::V4)
        }
    }
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    pub port: u16,
    #[serde(default)]
    pub protocol: ServiceProtocol,
    #[serde(
        rename = "targetPort",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target_port: Option<u16>,
}

impl ServicePort {
    /// The backends' port.
    pub fn target(&self) -> u16 {
        self.target_port.unwrap_or(self.port)
    }
}

/// Transport of a service port, spelled as Kubernetes does.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum ServiceProtocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

impl ServiceProtocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            ServiceProtocol::Tcp => 6,
            ServiceProtocol::Udp => 17,
        }
    }
}

impl fmt::Display for ServiceProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceProtocol::Tcp => "TCP",
            ServiceProtocol::Udp => "UDP",
        })
    }
}

impl ServicesFile {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ServicesError> {
        let shown = path.display().to_string();
        let text = crate::input::read_text(path).map_err(|error| ServicesError::Io {
            path: shown.clone(),
            error,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses and validates file text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ServicesError> {
        // An empty file (or one with only comments) is a file without services.
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(ServicesFile::default());
        }
        let file: ServicesFile =
            crate::yaml::from_str(text).map_err(|error| ServicesError::Parse {
                path: origin.to_string(),
                error,
            })?;
        file.validate()
            .map_err(|(field, problem)| ServicesError::Invalid {
                path: origin.to_string(),
                field,
                problem,
            })?;
        Ok(file)
    }

    /// The service with this namespace and name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
    }

    /// Checks names, addresses, ports and that no frontend is claimed twice;
    /// returns (field path, problem).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut names: HashMap<(&str, &str), usize> = HashMap::new();
        let mut frontends: HashMap<(IpAddr, u16, ServiceProtocol), String> = HashMap::new();
        for (i, svc) in self.services.iter().enumerate() {
            let at = format!("services[{i}]");
            check_label(&svc.name).map_err(|p| (format!("{at}.name"), p))?;
            check_label(&svc.namespace).map_err(|p| (format!("{at}.namespace"), p))?;
            if let Some(j) = names.insert((&svc.namespace, &svc.name), i) {
                return Err((
                    at,
                    format!(
                        "service {}/{} is already defined by services[{j}]",
                        svc.namespace, svc.name
                    ),
                ));
            }
            if svc.vip.ipv4.is_none() && svc.vip.ipv6.is_none() {
                return Err((format!("{at}.vip"), "give ipv4, ipv6 or both".into()));
            }
            for (key, addr) in [
                ("ipv4", svc.vip.ipv4.map(IpAddr::V4)),
                ("ipv6", svc.vip.ipv6.map(IpAddr::V6)),
            ] {
                // Loopback: every process's own address, in every namespace;
                // translating it would take over the node's own connections.
                if let Some(a) = addr
                    && (a.is_unspecified() || a.is_multicast() || a.is_loopback())
                {
                    return Err((
                        format!("{at}.vip.{key}"),
                        format!("{a} cannot be a service address"),
                    ));
                }
                // An IPv4 connection from a dual-stack socket is looked up
                // under this form: `::ffff:127.0.0.1` would be loopback.
                if let Some(IpAddr::V6(a)) = addr
                    && let Some(v4) = a.to_ipv4_mapped()
                {
                    return Err((
                        format!("{at}.vip.{key}"),
                        format!("{a} is an IPv4-mapped address; give {v4} as ipv4"),
                    ));
                }
            }
            if svc.ports.is_empty() {
                return Err((format!("{at}.ports"), "must list at least one port".into()));
            }
            for (k, p) in svc.ports.iter().enumerate() {
                let pat = format!("{at}.ports[{k}]");
                if p.port == 0 {
                    return Err((format!("{pat}.port"), "must be between 1 and 65535".into()));
                }
                if p.target_port == Some(0) {
                    return Err((
                        format!("{pat}.targetPort"),
                        "must be between 1 and 65535".into(),
                    ));
                }
                if svc.ports[..k]
                    .iter()
                    .any(|q| q.port == p.port && q.protocol == p.protocol)
                {
                    return Err((
                        pat,
                        format!("port {}/{} is listed twice", p.port, p.protocol),
                    ));
                }
                for vip in svc.vip.addrs() {
                    let owner = format!("{}/{}", svc.namespace, svc.name);
                    if let Some(other) = frontends.insert((vip, p.port, p.protocol), owner.clone())
                        && other != owner
                    {
                        return Err((
                            pat,
                            format!(
                                "{} {} is already a frontend of service {other}",
                                std::net::SocketAddr::new(vip, p.port),
                                p.protocol
                            ),
                        ));
                    }
                }
            }
            if svc.selector.as_ref().is_some_and(BTreeMap::is_empty) {
                return Err((
                    format!("{at}.selector"),
                    "must not be empty (leave it out for a service without backends)".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A Kubernetes DNS label: 1-63 of [a-z0-9-], not starting or ending with '-'.
fn check_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    let ok = s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS label ([a-z0-9-], at most 63 characters, no '-' at either end)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read() {
        let dir = test_support::scratch::ScratchDir::new("services-device");
        let zero = dir.path().join("services.yaml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert_eq!(
            ServicesFile::load(&zero).unwrap_err().to_string(),
            format!(
                "services file {}: not a regular file but a character device; only regular files are read",
                zero.display()
            )
        );
    }

    const GOOD: &str = r#"
services:
  - name: api
    namespace: default
    vip: {ipv4: 198.18.100.10, ipv6: "fd42:100::10"}
    ports: [{port: 80, protocol: TCP, targetPort: 8080}, {port: 53, protocol: UDP}]
    selector: {app: api}
  - name: empty
    namespace: default
    vip: {ipv4: 198.18.100.11}
    ports: [{port: 80}]
"#;

    fn err(text: &str) -> String {
        ServicesFile::parse(text, "svc.yaml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parses_a_good_file() {
        let f = ServicesFile::parse(GOOD, "svc.yaml").unwrap();
        assert_eq!(f.services.len(), 2);
        let api = f.service("default", "api").unwrap();
        assert_eq!(
            api.vip.addrs(),
            vec![
                "198.18.100.10".parse::<IpAddr>().unwrap(),
                "fd42:100::10".parse().unwrap()
            ]
        );
        assert_eq!(api.ports[0].target(), 8080);
        assert_eq!(api.ports[1].target(), 53);
        assert_eq!(api.ports[1].protocol, ServiceProtocol::Udp);
        let empty = f.service("default", "empty").unwrap();
        assert_eq!(empty.ports[0].protocol, ServiceProtocol::Tcp);
        assert_eq!(empty.selector, None);
        assert_eq!(
            ServicesFile::parse("# nothing yet\n", "x").unwrap(),
            ServicesFile::default()
        );
        assert_eq!(
            ServicesFile::parse("services: []\n", "x").unwrap(),
            ServicesFile::default()
        );
    }

    #[test]
    fn errors_name_the_file_the_field_and_the_problem() {
        let svc = |body: &str| format!("services:\n  - name: api\n    namespace: default\n{body}");
        let vip = "    vip: {ipv4: 198.18.100.10}\n";
        let ports = "    ports: [{port: 80, targetPort: 8080}]\n";
        assert_eq!(
            err(&svc(&format!("{vip}    ports: [{{port: 0}}]\n"))),
            "services file svc.yaml: services[0].ports[0].port: must be between 1 and 65535"
        );
        assert_eq!(
            err(&svc(&format!(
                "{vip}    ports: [{{port: 80}}, {{port: 81, targetPort: 0}}]\n"
            ))),
            "services file svc.yaml: services[0].ports[1].targetPort: must be between 1 and 65535"
        );
        assert_eq!(
            err(&svc(&format!("{vip}    ports: []\n"))),
            "services file svc.yaml: services[0].ports: must list at least one port"
        );
        assert_eq!(
            err(&svc(&format!("    vip: {{}}\n{ports}"))),
            "services file svc.yaml: services[0].vip: give ipv4, ipv6 or both"
        );
        assert_eq!(
            err(&svc(&format!("    vip: {{ipv4: 0.0.0.0}}\n{ports}"))),
            "services file svc.yaml: services[0].vip.ipv4: 0.0.0.0 cannot be a service address"
        );
        assert_eq!(
            err(&svc(&format!("    vip: {{ipv4: 127.0.0.1}}\n{ports}"))),
            "services file svc.yaml: services[0].vip.ipv4: 127.0.0.1 cannot be a service address"
        );
        assert_eq!(
            err(&svc(&format!("    vip: {{ipv6: \"::1\"}}\n{ports}"))),
            "services file svc.yaml: services[0].vip.ipv6: ::1 cannot be a service address"
        );
        assert_eq!(
            err(&svc(&format!(
                "    vip: {{ipv6: \"::ffff:127.0.0.1\"}}\n{ports}"
            ))),
            "services file svc.yaml: services[0].vip.ipv6: ::ffff:127.0.0.1 is an IPv4-mapped address; give 127.0.0.1 as ipv4"
        );
        assert_eq!(
            err(&svc(&format!("{vip}{ports}    selector: {{}}\n"))),
            "services file svc.yaml: services[0].selector: must not be empty (leave it out for a service without backends)"
        );
        assert_eq!(
            err(&svc(&format!(
                "{vip}    ports: [{{port: 80}}, {{port: 80, protocol: TCP}}]\n"
            ))),
            "services file svc.yaml: services[0].ports[1]: port 80/TCP is listed twice"
        );
        assert_eq!(
            err(
                "services:\n  - {name: Api, namespace: default, vip: {ipv4: 198.18.100.10}, ports: [{port: 80}]}\n"
            ),
            "services file svc.yaml: services[0].name: \"Api\" is not a DNS label ([a-z0-9-], at most 63 characters, no '-' at either end)"
        );
        let two = "services:\n  - {name: a, namespace: default, vip: {ipv4: 198.18.100.10}, ports: [{port: 80}]}\n  - {name: b, namespace: default, vip: {ipv4: 198.18.100.10}, ports: [{port: 80}]}\n";
        assert_eq!(
            err(two),
            "services file svc.yaml: services[1].ports[0]: 198.18.100.10:80 TCP is already a frontend of service default/a"
        );
        let dup = "services:\n  - {name: a, namespace: default, vip: {ipv4: 198.18.100.10}, ports: [{port: 80}]}\n  - {name: a, namespace: default, vip: {ipv4: 198.18.100.11}, ports: [{port: 80}]}\n";
        assert_eq!(
            err(dup),
            "services file svc.yaml: services[1]: service default/a is already defined by services[0]"
        );
        // Shape errors come from crate::yaml, with the field path and the position.
        assert_eq!(
            err(&svc(&format!(
                "{vip}    ports: [{{port: 80, protocol: SCTP}}]\n"
            ))),
            "services file svc.yaml: services[0].ports[0].protocol: unknown variant `SCTP`, expected one of TCP, UDP at line 5 column 34"
        );
        assert_eq!(
            err(&svc(&format!("{vip}{ports}    selectr: {{app: api}}\n"))),
            "services file svc.yaml: services[0]: unknown field `selectr`, expected one of name, namespace, vip, ports, selector at line 6 column 5"
        );
        assert_eq!(
            err(&svc(&format!("{vip}    ports: [{{port: 70000}}]\n"))),
            "services file svc.yaml: services[0].ports[0].port: invalid u16 at line 5 column 20"
        );
    }
}
