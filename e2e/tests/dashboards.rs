//! The Grafana dashboards in `dashboards/`: every file parses, uids are unique,
//! panel ids are unique per dashboard, every variable used is defined (or one of
//! Grafana's built-ins), every metric a PromQL query names is exported by the
//! probe or the relay, and every metric is on some panel. The service map's SQL
//! targets (Flight SQL data source) must pass the relay's read-only guard and
//! read its tables; `dashboard_service_map.rs` runs them against a real relay.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use serde_json::Value;

/// Grafana's Flight SQL data source plugin.
const FLIGHT_SQL: &str = "influxdata-flightsql-datasource";

fn dashboards() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("dashboards/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("readable");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            out.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                json,
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every panel, also those nested in rows.
fn panels(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(panels(p));
    }
    out
}

/// Every string in `v`, recursively.
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Names used as `$name`, `${name}` or `${name:format}`.
fn variables(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let braced = b.get(i + 1) == Some(&b'{');
            let start = i + 1 + usize::from(braced);
            let mut end = start;
            while end < b.len() && ident(b[end]) {
                end += 1;
            }
            if end > start {
                out.push(s[start..end].to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Metric names of a PromQL expression: identifiers followed by a selector
/// (`{` or `[`), and every `hubble_…` / `observe_…` identifier; strings and
/// `$variables` skipped.
pub fn promql_metrics(expr: &str) -> BTreeSet<String> {
    metric_uses(expr).into_iter().map(|(m, _)| m).collect()
}

/// Each metric of [`promql_metrics`] where it is used, with the function it
/// is the first argument of (`rate` in `rate(m{…}[5m])`), if any.
fn metric_uses(expr: &str) -> Vec<(String, Option<String>)> {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'$' {
            i += 1;
            while i < b.len() && (ident(b[i]) || b[i] == b'{' || b[i] == b'}') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let next = expr[i..].trim_start().bytes().next();
            let selector = matches!(next, Some(b'{' | b'['));
            // `by (a, b)` label lists are followed by `)`, not selectors.
            if selector || word.starts_with("hubble_") || word.starts_with("observe_") {
                let before = expr[..start].trim_end();
                let func = before.strip_suffix('(').map(|f| {
                    let f = f.trim_end();
                    let from = f.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
                    f[from.map_or(0, |i| i + 1)..].to_string()
                });
                out.push((word.to_string(), func.filter(|f| !f.is_empty())));
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn dashboards_are_consistent_with_the_exporters() {
    let exported: HashSet<&str> = flow_probe::metrics::metric_names()
        .into_iter()
        .chain(relay::metrics::metric_names())
        .collect();
    let all = dashboards();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "health.json",
            "overview.json",
            "servicemap.json",
            "workloads.json"
        ]
    );
    let mut uids = HashSet::new();
    let mut used_metrics = BTreeSet::new();
    for (file, d) in &all {
        let uid = d["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} used twice");
        assert!(
            d["schemaVersion"].as_u64().unwrap_or(0) >= 39,
            "{file}: schemaVersion < 39"
        );
        let ps = panels(d);
        assert!(!ps.is_empty(), "{file}: no panels");
        let mut ids = HashSet::new();
        for p in &ps {
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{file}: panel without id"));
            assert!(ids.insert(id), "{file}: panel id {id} used twice");
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{file}: panel {id}"
            );
        }
        let defined: HashSet<&str> = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert!(
            defined.contains("datasource"),
            "{file}: no datasource variable"
        );
        // The variables' own queries (`label_values(metric, label)`) name
        // exported metrics too.
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            for q in [&v["query"]["query"], &v["definition"]] {
                let Some(q) = q.as_str().filter(|q| q.starts_with("label_values(")) else {
                    continue;
                };
                for m in promql_metrics(q) {
                    assert!(
                        exported.contains(m.as_str()),
                        "{file}: {m} (in {q:?}) is not exported"
                    );
                }
            }
        }
        let mut texts = Vec::new();
        strings(d, &mut texts);
        for var in texts.iter().flat_map(|s| variables(s)) {
            assert!(
                var.starts_with("__") || defined.contains(var.as_str()),
                "{file}: ${var} is used but not defined in templating"
            );
        }
        let mut exprs = 0;
        for p in &ps {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(sql) = t["queryText"].as_str() {
                    assert_eq!(p["datasource"]["type"], FLIGHT_SQL, "{file}: SQL on {p}");
                    // Read-only, of the relay's tables, once Grafana expands its macro.
                    let expanded = sql.replace(
                        "$__timeFilter(time)",
                        "time >= '2024-05-01T10:00:00Z' AND time <= '2024-05-01T11:00:00Z'",
                    );
                    if let Err(e) = relay::sql::guard::check(&expanded) {
                        panic!("{file}: {sql:?}: {e}");
                    }
                    assert!(
                        relay::sql::guard::TABLES
                            .iter()
                            .any(|t| sql.contains(&format!("FROM {t}"))),
                        "{file}: {sql:?} reads none of the relay's tables"
                    );
                    exprs += 1;
                    continue;
                }
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: target without expr or queryText"));
                exprs += 1;
                // The volume metrics count a transfer at each end that
                // observed it (the sender's veth, `observed_at="source"`;
                // the receiver's, `"destination"`): by source and
                // destination, a panel takes the sender's, or the
                // receiver's where the sender was not observed (world).
                // `direction` is the connection's: it cannot tell them apart.
                if expr.contains("observe_flow_") && expr.contains("by (source_workload") {
                    assert!(
                        expr.contains(r#"observed_at="source"}"#)
                            && expr.contains(" or ")
                            && expr.contains(r#"observed_at="destination"}"#)
                            && !expr.contains("direction="),
                        "{file}: {expr:?} counts each transfer twice, or loses one"
                    );
                }
                // Counters (and a histogram's series) only through a rate;
                // a gauge never.
                for (m, func) in metric_uses(expr) {
                    let counter = ["_total", "_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| m.ends_with(s));
                    let rated = matches!(func.as_deref(), Some("rate" | "irate" | "increase"));
                    assert_eq!(
                        counter, rated,
                        "{file}: {m} in {expr:?}: a counter needs rate() or increase(), a gauge \
                         neither"
                    );
                }
                let metrics = promql_metrics(expr);
                assert!(!metrics.is_empty(), "{file}: {expr:?} names no metric");
                for m in metrics {
                    // A histogram's series: `_bucket`, `_sum`, `_count`.
                    let family = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| m.strip_suffix(s))
                        .filter(|f| exported.contains(f))
                        .map_or(m.clone(), str::to_string);
                    let m = family;
                    assert!(
                        exported.contains(m.as_str()),
                        "{file}: {m} (in {expr:?}) is not exported"
                    );
                    used_metrics.insert(m);
                }
            }
        }
        assert!(exprs > 0, "{file}: no queries");
    }
    // The dashboards show every exported metric.
    let mut unused: Vec<&str> = exported
        .iter()
        .copied()
        .filter(|m| !used_metrics.contains(*m))
        .collect();
    unused.sort_unstable();
    assert_eq!(unused, Vec::<&str>::new(), "metrics no dashboard shows");
}

#[test]
fn promql_metric_extraction() {
    let got = promql_metrics(
        r#"topk(10, sum by (protocol, port) (increase(hubble_port_distribution_total{instance=~"$instance", x="a{b}"}[$__range])))"#,
    );
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        ["hubble_port_distribution_total"]
    );
    assert_eq!(
        metric_uses(
            r#"sum(rate(a_total{x="1"}[5m])) / sum(increase (b_count[1h])) + max(observe_c_bytes) + d_bytes{}"#
        ),
        [
            ("a_total".to_string(), Some("rate".to_string())),
            ("b_count".to_string(), Some("increase".to_string())),
            ("observe_c_bytes".to_string(), Some("max".to_string())),
            ("d_bytes".to_string(), None),
        ]
    );
    assert_eq!(
        variables("a ${datasource} $__rate_interval ${x:csv}"),
        ["datasource", "__rate_interval", "x"]
    );
}
