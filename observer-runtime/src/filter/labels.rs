//! Kubernetes-style label selectors over Cilium endpoint labels.
//!
//! Endpoint labels look like "k8s:app=frontend" (source, key, value). A
//! selector key may name the source ("k8s:app") or leave it out ("app"), in
//! which case any source matches, as in Hubble. Supported requirements, joined
//! by commas (AND): `key`, `!key`, `key=v`, `key==v`, `key!=v`,
//! `key in (a,b)`, `key notin (a,b)`, `key>n`, `key<n`.

/// A parsed selector: every requirement must hold. No requirements (an empty
/// selector) selects everything, as `labels.Parse("")` does in Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Selector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: Key,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    /// None, or "any", matches every source.
    source: Option<String>,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Exists,
    NotExists,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Greater(i64),
    Less(i64),
}

impl Selector {
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self(Vec::new()));
        }
        split_top_level(text)
            .into_iter()
            .map(parse_requirement)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// `labels` are one endpoint's labels in "source:key=value" form.
    pub(super) fn matches(&self, labels: &[String]) -> bool {
        self.0.iter().all(|req| {
            let value = lookup(labels, &req.key);
            match &req.op {
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
                Op::Equals(want) => value == Some(want.as_str()),
                Op::NotEquals(want) => value != Some(want.as_str()),
                Op::In(set) => value.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::NotIn(set) => !value.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::Greater(n) => number(value).is_some_and(|v| v > *n),
                Op::Less(n) => number(value).is_some_and(|v| v < *n),
            }
        })
    }
}

fn number(value: Option<&str>) -> Option<i64> {
    value?.parse().ok()
}

/// Value of the first label with a matching source and key.
fn lookup<'a>(labels: &'a [String], key: &Key) -> Option<&'a str> {
    labels.iter().find_map(|label| {
        let (source, name, value) = split_label(label);
        let source_ok = match key.source.as_deref() {
            None | Some("any") => true,
            Some(want) => want == source,
        };
        (source_ok && name == key.name).then_some(value)
    })
}

/// "k8s:app=web" → ("k8s", "app", "web"); a label without a source prefix
/// gets Cilium's "unspec".
fn split_label(label: &str) -> (&str, &str, &str) {
    let eq = label.find('=').unwrap_or(label.len());
    let (source, rest) = match label[..eq].split_once(':') {
        Some((source, _)) => (source, &label[source.len() + 1..]),
        None => ("unspec", label),
    };
    rest.split_once('=')
        .map_or((source, rest, ""), |(k, v)| (source, k, v))
}

/// Splits at commas outside parentheses, so `in (a,b)` stays whole.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(text: &str) -> Result<Requirement, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty requirement".into());
    }
    if let Some(key) = text.strip_prefix('!') {
        return Ok(Requirement {
            key: parse_key(key.trim())?,
            op: Op::NotExists,
        });
    }
    let Some(pos) = text.find(|c: char| "=!<>(".contains(c) || c.is_whitespace()) else {
        return Ok(Requirement {
            key: parse_key(text)?,
            op: Op::Exists,
        });
    };
    let key = parse_key(&text[..pos])?;
    let rest = text[pos..].trim_start();
    let op = if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
        Op::Equals(parse_value(v)?)
    } else if let Some(v) = rest.strip_prefix("!=") {
        Op::NotEquals(parse_value(v)?)
    } else if let Some(v) = rest.strip_prefix('>') {
        Op::Greater(parse_integer(v)?)
    } else if let Some(v) = rest.strip_prefix('<') {
        Op::Less(parse_integer(v)?)
    } else if let Some(v) = strip_keyword(rest, "notin") {
        Op::NotIn(parse_set(v)?)
    } else if let Some(v) = strip_keyword(rest, "in") {
        Op::In(parse_set(v)?)
    } else {
        return Err(format!("unexpected {rest:?} after key"));
    };
    Ok(Requirement { key, op })
}

/// `word` followed by whitespace or '(' (so "inx" is not "in").
fn strip_keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(word)?;
    rest.starts_with(|c: char| c.is_whitespace() || c == '(')
        .then_some(rest)
}

fn parse_key(text: &str) -> Result<Key, String> {
    let (source, name) = match text.split_once(':') {
        Some((source, name)) => (Some(source), name),
        None => (None, text),
    };
    // As Kubernetes' qualified names: an optional DNS-subdomain prefix and
    // `/`, then the name proper.
    let (prefix, proper) = name.rsplit_once('/').unwrap_or(("", name));
    let name_ok = !proper.is_empty()
        && proper.len() <= NAME_MAX
        && prefix.len() <= PREFIX_MAX
        && (name.len() == proper.len() || !prefix.is_empty())
        && ends_alphanumeric(proper)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    let source_ok = source.is_none_or(|s| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    });
    if !(name_ok && source_ok) {
        if proper.len() > NAME_MAX {
            return Err(format!(
                "invalid key {text:?}: its name is {} characters (at most {NAME_MAX})",
                proper.len()
            ));
        }
        return Err(format!("invalid key {text:?}"));
    }
    Ok(Key {
        source: source.map(str::to_owned),
        name: name.to_owned(),
    })
}

/// The longest label name and value Kubernetes takes (as Hubble checks
/// selectors, with Kubernetes' parser), and the longest key prefix.
const NAME_MAX: usize = 63;
const PREFIX_MAX: usize = 253;

/// Begins and ends with a letter or digit (empty is not).
fn ends_alphanumeric(text: &str) -> bool {
    let b = text.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Label values: possibly empty; else at most 63 of `[A-Za-z0-9._-]`,
/// beginning and ending with a letter or digit (Kubernetes' rule).
fn parse_value(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.len() > NAME_MAX {
        return Err(format!(
            "invalid value {text:?}: {} characters (at most {NAME_MAX})",
            text.len()
        ));
    }
    if text.is_empty()
        || (ends_alphanumeric(text)
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
    {
        Ok(text.to_owned())
    } else {
        Err(format!("invalid value {text:?}"))
    }
}

fn parse_integer(text: &str) -> Result<i64, String> {
    let text = text.trim();
    text.parse()
        .map_err(|_| format!("{text:?} is not an integer"))
}

fn parse_set(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised list, got {:?}", text.trim()))?;
    let values = inner
        .split(',')
        .map(parse_value)
        .collect::<Result<Vec<_>, _>>()?;
    if inner.trim().is_empty() {
        return Err("empty value list".into());
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_parts() {
        assert_eq!(split_label("k8s:app=web"), ("k8s", "app", "web"));
        assert_eq!(split_label("reserved:host"), ("reserved", "host", ""));
        assert_eq!(split_label("app=a:b"), ("unspec", "app", "a:b"));
        assert_eq!(
            split_label("k8s:io.kubernetes.pod.namespace=shop"),
            ("k8s", "io.kubernetes.pod.namespace", "shop")
        );
    }

    #[test]
    fn numeric_and_empty_selectors() {
        let labels = vec!["k8s:replicas=3".to_string(), "k8s:app=".to_string()];
        let sel = |s: &str| Selector::parse(s).expect("valid selector");
        assert!(sel("replicas>2").matches(&labels));
        assert!(!sel("replicas<3").matches(&labels));
        assert!(sel("app=").matches(&labels), "empty value is a value");
        assert!(sel("").matches(&[]), "empty selector selects everything");
        assert!(Selector::parse("a,,b").is_err());
        // Kubernetes' limits: names and values of at most 63 characters,
        // beginning and ending with a letter or digit; a prefix before `/`.
        let long = "a".repeat(64);
        assert_eq!(
            Selector::parse(&format!("{long}=b")).unwrap_err(),
            format!("invalid key \"{long}\": its name is 64 characters (at most 63)")
        );
        assert_eq!(
            Selector::parse(&format!("app={long}")).unwrap_err(),
            format!("invalid value \"{long}\": 64 characters (at most 63)")
        );
        for bad in [
            "app=-web",
            "app=web-",
            "-app=web",
            "/app",
            "app in (web,-x)",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
        let fine = [
            &"a".repeat(63),
            "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=shop",
            "app=",
            "app in (web,a.b_c-d)",
        ];
        for good in fine {
            assert!(Selector::parse(good).is_ok(), "{good}");
        }
    }
}
