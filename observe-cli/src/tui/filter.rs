//! The filter bar's language: the same flags as `observe flows` (`--to-pod
//! default/api --protocol tcp`), split into words (quotes group words), parsed
//! by clap into [`FilterArgs`] and compiled with Hubble's filter semantics.

use observer_proto::flow::Flow;
use observer_runtime::filter::{FlowMatcher, compile};

use crate::flows::filters::FilterArgs;
use crate::flows::request::QueryArgs;

/// The filter flags as the bar parses them.
#[derive(Debug, clap::Parser)]
#[command(name = "filter", no_binary_name = true, disable_help_flag = true)]
struct FilterLine {
    #[command(flatten)]
    args: FilterArgs,
}

/// A parsed, compiled filter and the text it came from.
#[derive(Debug, Clone, Default)]
pub struct LiveFilter {
    pub text: String,
    matcher: FlowMatcher,
}

impl LiveFilter {
    /// Parses the bar's text; the error is one line, fit for the bar.
    pub fn parse(text: &str) -> Result<LiveFilter, String> {
        let words = split_words(text)?;
        let line = <FilterLine as clap::Parser>::try_parse_from(&words).map_err(|e| {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            // A word that is no flag (`verdict:DROPPED`, Grafana's or a
            // query's habit): the bar takes `observe flows` flags.
            match first.strip_prefix("unexpected argument '") {
                Some(word) if !word.starts_with('-') => {
                    format!("{first}: filters are observe flows flags, e.g. --verdict DROPPED")
                }
                _ => first.to_string(),
            }
        })?;
        let whitelist = line.args.whitelist().map_err(|e| e.to_string())?;
        let matcher = compile(&whitelist, &[]).map_err(|e| e.to_string())?;
        Ok(LiveFilter {
            text: text.trim().to_string(),
            matcher,
        })
    }

    pub fn matches(&self, flow: &Flow) -> bool {
        self.matcher.matches(flow)
    }
}

/// Splits on whitespace; `'...'` and `"..."` keep their spaces.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_default().push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_default().push(c),
        }
    }
    if quote.is_some() {
        return Err("unclosed quote".into());
    }
    words.extend(word);
    Ok(words)
}

/// The command line's filters, which the server applies to the stream, as
/// the footer shows them: the flags, the negated ones after `--not`, and how
/// many raw `--allowlist` / `--denylist` filters there were.
pub fn describe_query(query: &QueryArgs) -> String {
    let mut parts = vec![describe(&query.filters)];
    let negated = describe(&query.negated);
    if !negated.is_empty() {
        parts.push(format!("--not ({negated})"));
    }
    for (flag, values) in [
        ("allowlist", &query.allowlist),
        ("denylist", &query.denylist),
    ] {
        match values.len() {
            0 => {}
            1 => parts.push(format!("--{flag} {}", values[0])),
            n => parts.push(format!("--{flag} ×{n}")),
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

/// The flags `args` was parsed from, as the bar shows them.
pub fn describe(args: &FilterArgs) -> String {
    // Destructured so that a new flag cannot be forgotten here.
    let FilterArgs {
        from_ip,
        to_ip,
        ip,
        from_pod,
        to_pod,
        pod,
        from_namespace,
        to_namespace,
        namespace,
        from_label,
        to_label,
        label,
        from_service,
        to_service,
        service,
        from_workload,
        to_workload,
        workload,
        from_identity,
        to_identity,
        identity,
        from_port,
        to_port,
        port,
        protocol,
        verdict,
        tcp_flags,
        event_type,
        node_name,
        node_label,
        from_cluster,
        to_cluster,
        cluster,
        from_fqdn,
        to_fqdn,
        fqdn,
        http_status,
        http_method,
        http_path,
        http_url,
        http_header,
        trace_id,
        ip_trace_id,
        snat_ip,
        encrypted,
        unencrypted,
        drop_reason_desc,
        interface,
        uuid,
        traffic_direction,
        ipv4,
        ipv6,
        ip_version,
        all_namespaces,
        from_all_namespaces,
        to_all_namespaces,
    } = args;
    let lists: [(&str, &Vec<String>); 49] = [
        ("from-ip", from_ip),
        ("to-ip", to_ip),
        ("ip", ip),
        ("from-pod", from_pod),
        ("to-pod", to_pod),
        ("pod", pod),
        ("from-namespace", from_namespace),
        ("to-namespace", to_namespace),
        ("namespace", namespace),
        ("from-label", from_label),
        ("to-label", to_label),
        ("label", label),
        ("from-port", from_port),
        ("to-port", to_port),
        ("port", port),
        ("from-service", from_service),
        ("to-service", to_service),
        ("service", service),
        ("from-workload", from_workload),
        ("to-workload", to_workload),
        ("workload", workload),
        ("from-identity", from_identity),
        ("to-identity", to_identity),
        ("identity", identity),
        ("protocol", protocol),
        ("verdict", verdict),
        ("tcp-flags", tcp_flags),
        ("type", event_type),
        ("node-name", node_name),
        ("node-label", node_label),
        ("from-cluster", from_cluster),
        ("to-cluster", to_cluster),
        ("cluster", cluster),
        ("from-fqdn", from_fqdn),
        ("to-fqdn", to_fqdn),
        ("fqdn", fqdn),
        ("http-status", http_status),
        ("http-method", http_method),
        ("http-path", http_path),
        ("http-url", http_url),
        ("http-header", http_header),
        ("trace-id", trace_id),
        ("ip-trace-id", ip_trace_id),
        ("snat-ip", snat_ip),
        ("drop-reason-desc", drop_reason_desc),
        ("interface", interface),
        ("uuid", uuid),
        ("traffic-direction", traffic_direction),
        ("ip-version", ip_version),
    ];
    let mut words = Vec::new();
    for (flag, values) in lists {
        for v in values {
            words.push(format!("--{flag}"));
            words.push(if v.is_empty() || v.contains(char::is_whitespace) {
                format!("'{v}'")
            } else {
                v.clone()
            });
        }
    }
    for (on, switch) in [
        (ipv4, "-4"),
        (ipv6, "-6"),
        (all_namespaces, "-A"),
        (from_all_namespaces, "--from-all-namespaces"),
        (to_all_namespaces, "--to-all-namespaces"),
        (encrypted, "--encrypted"),
        (unencrypted, "--unencrypted"),
    ] {
        if *on {
            words.push(switch.into());
        }
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::graph_flows as fixtures;

    #[test]
    fn parses_the_cli_flags() {
        let f = LiveFilter::parse(" --to-pod default/api  --protocol tcp ").unwrap();
        assert_eq!(f.text, "--to-pod default/api  --protocol tcp");
        let flows = fixtures::flows();
        let n = flows.iter().filter(|fl| f.matches(fl)).count();
        // The requests of both frontend → api connections and the host probe.
        assert_eq!(n, 9);
        assert!(LiveFilter::parse("").unwrap().matches(&flows[0]));
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(
            LiveFilter::parse("--bogus").unwrap_err(),
            "unexpected argument '--bogus' found"
        );
        assert_eq!(
            LiveFilter::parse("verdict:DROPPED").unwrap_err(),
            "unexpected argument 'verdict:DROPPED' found: filters are observe flows flags, e.g. \
             --verdict DROPPED"
        );
        assert_eq!(
            LiveFilter::parse("--verdict maybe").unwrap_err(),
            "--verdict \"maybe\": unknown verdict (FORWARDED, DROPPED, AUDIT, ERROR, ...)"
        );
        assert_eq!(
            LiveFilter::parse("--from-ip 10.0.0.0/99").unwrap_err(),
            "--from-ip \"10.0.0.0/99\": not an IP address or CIDR"
        );
        assert_eq!(
            LiveFilter::parse("--label 'app=a").unwrap_err(),
            "unclosed quote"
        );
    }

    #[test]
    fn describe_round_trips() {
        let args = FilterArgs {
            to_pod: vec!["default/api".into()],
            label: vec!["app in (a, b)".into()],
            ipv6: true,
            ..Default::default()
        };
        let text = describe(&args);
        assert_eq!(text, "--to-pod default/api --label 'app in (a, b)' -6");
        assert_eq!(
            split_words(&text).unwrap(),
            ["--to-pod", "default/api", "--label", "app in (a, b)", "-6"]
        );
    }
}
