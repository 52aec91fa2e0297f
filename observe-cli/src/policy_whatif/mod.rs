//! `observe policy whatif FILE...`: what the draft policies would have done
//! to the flows in a relay's history. The drafts are checked here with the
//! parser flow-probe uses, then the relay evaluates them: its SQL table
//! function `policy_whatif` replays the first packet of every connection of
//! the window against the policy its node had in force when it passed and
//! against that policy with the drafts applied, with the matcher held to
//! the datapath's verdicts (`cluster_spec::policy::Judge`). One evaluation,
//! on the relay, next to the flows: the same a Grafana panel asks for.
//!
//! The answer is folded into a [`report::Report`]: flips grouped by
//! service-graph edge, printed as text, JSON, or the window's graph as DOT
//! with the flipped edges coloured ([`dot`]). The exit status is
//! [`WOULD_DENY`] when a flow allowed today would be denied (for CI of a
//! policy repository), 0 otherwise, 1 on errors.

pub mod dot;
pub mod report;

use crate::flows::output::escape_controls;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use cluster_spec::policy;
use observer_proto::time;

use crate::connect::ConnectArgs;
use crate::flows::request::parse_time;
use crate::graph_command::diff_args::rfc3339;
use crate::query_command::{self, DEFAULT_SERVER};
use report::Report;

/// Exit status when a flow allowed today would be denied.
pub const WOULD_DENY: i32 = 3;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WhatIfFormat {
    Table,
    Json,
    /// The window's service graph with the flipped edges coloured.
    Dot,
}

/// `observe policy whatif`'s arguments.
#[derive(Debug, clap::Args)]
pub struct WhatIfArgs {
    /// Draft policy files (CiliumNetworkPolicy YAML); a draft with the
    /// namespace and name of a policy in force replaces it.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Replay flows since a time: a duration ago (`24h`) or RFC 3339.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// ...until a time, same forms (default: now).
    #[arg(long)]
    pub until: Option<String>,
    /// Only flows from or to this namespace (repeat for several).
    #[arg(long)]
    pub namespace: Vec<String>,
    #[arg(long, short = 'o', ignore_case = true, value_enum, default_value_t = WhatIfFormat::Table)]
    pub output: WhatIfFormat,
    /// Examples kept per edge (the earliest flows).
    #[arg(long, default_value_t = 3)]
    pub examples: usize,
    /// The relay (default localhost:4245) and how to reach it.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `s` as a SQL string literal.
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The `policy_whatif` query of `drafts` over `window` (a condition).
pub fn whatif_sql(drafts: &[String], window: &str, namespaces: &[String]) -> String {
    let args: Vec<String> = drafts.iter().map(|d| sql_string(d)).collect();
    let mut sql = format!(
        "SELECT {} FROM policy_whatif({}) WHERE {window}",
        report::COLUMNS.join(", "),
        args.join(", ")
    );
    if !namespaces.is_empty() {
        let list: Vec<String> = namespaces.iter().map(|n| sql_string(n)).collect();
        let list = list.join(", ");
        sql.push_str(&format!(
            " AND (source_namespace IN ({list}) OR destination_namespace IN ({list}))"
        ));
    }
    sql
}

/// The drafts' texts, checked here so that errors name the files: each
/// must hold a policy (an empty or truncated file would flip nothing and
/// pass a CI gate), and no two may define the same namespace and name.
pub fn load_drafts(files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut drafts = Vec::new();
    let mut all = Vec::new();
    for f in files {
        let (text, policies) = policy::load_file_with_text(f)?;
        anyhow::ensure!(
            !policies.is_empty(),
            "{}: no CiliumNetworkPolicy in it, nothing to replay",
            f.display()
        );
        all.extend(policies);
        drafts.push(text);
    }
    policy::check_duplicates(&all)?;
    Ok(drafts)
}

/// Runs the what-if and prints it; `Ok(true)` when a flow allowed today
/// would be denied.
pub async fn run(args: WhatIfArgs) -> anyhow::Result<bool> {
    let drafts = load_drafts(&args.files)?;
    let now = SystemTime::now();
    let since = time::nanos(&parse_time("since", &args.since, now)?);
    let until = match &args.until {
        Some(u) => time::nanos(&parse_time("until", u, now)?),
        None => time::now_nanos(),
    };
    match &args.until {
        Some(u) => anyhow::ensure!(
            since <= until,
            "--since {} is after --until {u}: no flow can be between them",
            args.since
        ),
        None => anyhow::ensure!(
            since <= until,
            "--since {} is in the future: no flow is recorded there yet",
            args.since
        ),
    }
    let (since, until) = (rfc3339(since), rfc3339(until));
    let window = format!(
        "time >= {} AND time <= {}",
        sql_string(&since),
        sql_string(&until)
    );
    let target = args.connect.target(&[DEFAULT_SERVER])?;
    let mut report = Report::new(args.examples);
    let sql = whatif_sql(&drafts, &window, &args.namespace);
    let missing = query_command::for_each_batch(&target, &sql, |b| report.add(b)).await?;
    for line in query_command::missing_lines(&missing) {
        crate::pipe::eprint(&format!(
            "observe: note: {line}: its flows were not replayed\n"
        ));
    }
    for (problem, flows) in &report.unreplayed {
        crate::pipe::eprint(&format!(
            "observe: note: {flows} flow(s) not replayed: {problem}\n"
        ));
    }
    let names: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
    match args.output {
        WhatIfFormat::Table => crate::pipe::print(&escape_controls(&report.to_text()))?,
        WhatIfFormat::Json => crate::outln!(
            "{}",
            serde_json::to_string_pretty(&report.to_json((&since, &until), &names))?
        )?,
        WhatIfFormat::Dot => {
            let mut edges = BTreeMap::new();
            query_command::for_each_batch(&target, &dot::edges_sql(&window), |b| {
                dot::add_edges(&mut edges, b)
            })
            .await?;
            crate::pipe::print(&escape_controls(&dot::to_dot(&edges, &report)))?;
        }
    }
    Ok(report.would_deny())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_must_hold_policies_each_named_once() {
        let dir = test_support::scratch::ScratchDir::new("whatif-drafts");
        let draft = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n\
                     metadata: {name: dup, namespace: default}\n\
                     spec: {endpointSelector: {matchLabels: {app: api}}}\n";
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (a, b, empty) = (
            write("a.yaml", draft),
            write("b.yaml", draft),
            write("e.yaml", "---\n"),
        );
        assert_eq!(load_drafts(std::slice::from_ref(&a)).unwrap(), [draft]);
        let err = |files: &[PathBuf]| load_drafts(files).unwrap_err().to_string();
        assert_eq!(
            err(&[a.clone(), b.clone()]),
            format!(
                "policy {}: metadata.name: default/dup is already defined in {}",
                b.display(),
                a.display()
            )
        );
        assert_eq!(
            err(&[a.clone(), a.clone()]),
            format!(
                "policy {}: metadata.name: default/dup is already defined in {}",
                a.display(),
                a.display()
            )
        );
        assert_eq!(
            err(std::slice::from_ref(&empty)),
            format!(
                "{}: no CiliumNetworkPolicy in it, nothing to replay",
                empty.display()
            )
        );
    }

    #[test]
    fn drafts_become_string_literals_and_namespaces_a_condition() {
        let sql = whatif_sql(
            &["a: 'x'\n".into(), "b".into()],
            "time >= '1'",
            &["other".into(), "o'k".into()],
        );
        assert!(
            sql.contains(
                " FROM policy_whatif('a: ''x''\n', 'b') WHERE time >= '1' AND \
                 (source_namespace IN ('other', 'o''k') OR destination_namespace IN \
                 ('other', 'o''k'))"
            ),
            "{sql}"
        );
        assert!(
            sql.starts_with("SELECT time, node, uuid, source, target,"),
            "{sql}"
        );
    }
}
