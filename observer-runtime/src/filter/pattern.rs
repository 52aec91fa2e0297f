//! Address prefixes and the `*` name patterns Hubble accepts for FQDN and
//! node-name filters.

use std::net::IpAddr;

use ipnet::IpNet;

/// An address prefix; a bare address is a full-length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cidr(IpNet);

impl Cidr {
    /// Parses "addr" or "addr/len". Host bits may be set, as Go's
    /// `netip.ParsePrefix` allows; they are kept and ignored when matching
    /// (unlike a policy's CIDR, which clears them). The address is read by
    /// std, which like Go refuses leading zeros (`010.0.0.1`); ipnet alone
    /// would read them as decimal.
    pub(super) fn parse(text: &str) -> Option<Self> {
        let net = match text.split_once('/') {
            None => IpNet::from(text.parse::<IpAddr>().ok()?),
            Some((addr, _)) => {
                addr.parse::<IpAddr>().ok()?;
                text.parse().ok()?
            }
        };
        Some(Self(net))
    }

    /// The prefix as typed (host bits included).
    pub(super) fn net(self) -> IpNet {
        self.0
    }
}

/// A DNS-style name pattern where `*` stands for any run of `[-.0-9a-z]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Glob(Vec<u8>);

impl Glob {
    /// Canonicalises like Hubble (trim, lowercase, drop one trailing dot) and
    /// checks the characters.
    pub(super) fn parse(text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        let text = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        if text.is_empty() {
            return Err("empty pattern");
        }
        if text.ends_with('.') {
            return Err("multiple trailing dots");
        }
        if !text.bytes().all(|b| is_name_byte(b) || b == b'*') {
            return Err("only letters, digits, '-', '_', '.' and '*' are allowed");
        }
        let mut bytes = text.into_bytes();
        // `**` means what `*` means; one star keeps matching linear in stars.
        bytes.dedup_by(|a, b| *a == b'*' && *b == b'*');
        Ok(Self(bytes))
    }

    /// Whole-string match.
    pub(super) fn matches(&self, name: &str) -> bool {
        let (pat, text) = (&self.0, name.as_bytes());
        // reach[j]: pattern prefix consumed so far matches text[..j].
        let mut reach = vec![false; text.len() + 1];
        reach[0] = true;
        for &p in pat {
            if p == b'*' {
                for j in 1..=text.len() {
                    reach[j] = reach[j] || (reach[j - 1] && is_star_byte(text[j - 1]));
                }
            } else {
                for j in (1..=text.len()).rev() {
                    reach[j] = reach[j - 1] && text[j - 1] == p;
                }
                reach[0] = false;
                // Nothing left that can match: the rest of the pattern is moot.
                if !reach.contains(&true) {
                    return false;
                }
            }
        }
        reach[text.len()]
    }
}

/// Bytes a `*` may stand for; Hubble leaves out '_' here.
fn is_star_byte(b: u8) -> bool {
    b == b'-' || b == b'.' || b.is_ascii_digit() || b.is_ascii_lowercase()
}

fn is_name_byte(b: u8) -> bool {
    is_star_byte(b) || b == b'_'
}

/// True for a non-empty dotted name of `[-0-9_a-z]` labels: what an omitted
/// cluster or node part of a node pattern stands for.
fn is_plain_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .split('.')
            .all(|label| !label.is_empty() && label.bytes().all(is_name_byte))
}

/// A node-name filter: "node", "cluster/node", "cluster/" or "/node", each
/// part a [`Glob`]. An omitted part matches any plain name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NodePattern {
    cluster: Option<Glob>,
    node: Option<Glob>,
}

/// Cluster assumed for node names that carry none, as in Cilium.
const DEFAULT_CLUSTER: &str = "default";

impl NodePattern {
    pub(super) fn parse(text: &str) -> Result<Self, &'static str> {
        if text.is_empty() {
            return Err("empty pattern");
        }
        let mut parts = text.split('/');
        let (cluster, node) = match (parts.next(), parts.next(), parts.next()) {
            (Some(node), None, None) => ("", node),
            (Some(cluster), Some(node), None) => (cluster, node),
            _ => return Err("too many slashes"),
        };
        let part = |p: &str| (!p.is_empty()).then(|| Glob::parse(p)).transpose();
        Ok(Self {
            cluster: part(cluster)?,
            node: part(node)?,
        })
    }

    /// `name` is a flow's node name; one without a cluster is in "default".
    pub(super) fn matches(&self, name: &str) -> bool {
        if name.is_empty() {
            return false;
        }
        let (cluster, node) = name.split_once('/').unwrap_or((DEFAULT_CLUSTER, name));
        let part = |glob: &Option<Glob>, text: &str| match glob {
            Some(glob) => glob.matches(text),
            None => is_plain_name(text),
        };
        part(&self.cluster, cluster) && part(&self.node, node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    /// What a filter of this one entry matches.
    impl Cidr {
        fn contains(self, ip: IpAddr) -> bool {
            super::super::sets::IpSet::new([self.net()]).contains(ip)
        }
    }

    #[test]
    fn cidr_edges() {
        let net = Cidr::parse("10.0.0.0/8").expect("valid");
        assert!(net.contains(ip("10.255.255.255")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(!net.contains(ip("::ffff:10.0.0.1")), "families never mix");
        let all6 = Cidr::parse("::/0").expect("valid");
        assert!(all6.contains(ip("fd00::1")));
        assert!(!all6.contains(ip("10.0.0.1")));
        let host = Cidr::parse("fd00::1").expect("valid");
        assert!(host.contains(ip("fd00:0::1")) && !host.contains(ip("fd00::2")));
        // Host bits are kept as typed and ignored when matching.
        let typed = Cidr::parse("10.1.2.3/8").expect("valid");
        assert_eq!(typed, Cidr("10.1.2.3/8".parse().expect("valid")));
        assert!(typed.contains(ip("10.255.0.1")) && !typed.contains(ip("11.1.2.3")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/8/8",
            "10.0.0/8",
            "10.0.0.0/+8",
            "010.0.0.0/8",
            "010.0.0.1",
            "fe80::1%eth0/64",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn glob_star_class() {
        let g = Glob::parse("a*c").expect("valid");
        assert!(g.matches("abc") && g.matches("ac") && g.matches("a.b-9c"));
        assert!(!g.matches("a_c"), "'*' does not cover '_' in Hubble");
        assert!(!g.matches("abd") && !g.matches("xabc") && !g.matches("abcx"));
        let g = Glob::parse("a**c").expect("valid");
        assert_eq!(g, Glob(b"a*c".to_vec()), "a run of stars is one star");
        assert!(g.matches("abc") && g.matches("ac") && !g.matches("a_c"));
        let g = Glob::parse("*.*.com").expect("valid");
        assert!(g.matches("a.b.com") && g.matches("..com"));
        assert!(!g.matches("b.com.org"));
        assert_eq!(
            Glob::parse("a..").expect_err("invalid"),
            "multiple trailing dots"
        );
        assert!(Glob::parse("a/b").is_err() && Glob::parse("  ").is_err());
    }

    #[test]
    fn node_pattern_parts() {
        let p = NodePattern::parse("/k8s-*").expect("valid");
        assert!(p.matches("k8s-1") && p.matches("prod.eu/k8s-2"));
        assert!(
            !p.matches("prod..eu/k8s-2"),
            "omitted cluster must be a plain name"
        );
        assert!(!p.matches(""));
        assert!(!p.matches("a/b/k8s-1"));
    }
}
