//! `observe graph`: the service dependency graph of the flows a probe or relay
//! holds, with the datapath hops each edge was observed on. The flows come
//! from GetFlows (so every Hubble filter flag applies, against a probe or a
//! relay) and go through `service_graph::GraphBuilder`, the builder behind
//! the relay's `graph_nodes` and `graph_edges` tables too.
//!
//! With `--diff` or `--against` ([`diff_args`]) it asks for two windows, builds
//! a graph of each and prints `service_graph::GraphDiff`: what is new, what
//! vanished, what changed; on stderr, notes of what may make a change that
//! is none ([`coverage`]: a node silent in one window, flows history lost).
//! A filter naming one side asks for the replies to that side too
//! ([`replies`]), so edges keep both directions' bytes.

pub mod coverage;
pub mod diff_args;
pub mod replies;

use std::io::IsTerminal;
use std::time::SystemTime;

use observer_proto::flow::FlowFilter;
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::time;
use service_graph::{GraphBuilder, GraphDiff, ServiceGraph};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::connect::Target;
use crate::flows::request::QueryArgs;
use diff_args::{DiffArgs, DiffPlan, Window};

/// Prints a `ServiceGraph` or a `GraphDiff` (they render the same four ways)
/// in a format other than the TUI.
macro_rules! print_as {
    ($what:expr, $format:expr) => {{
        let text = match $format {
            GraphFormat::Dot => $what.to_dot(),
            GraphFormat::Mermaid => $what.to_mermaid(),
            GraphFormat::Json => $what.to_json(),
            GraphFormat::Text => $what.to_text(),
            GraphFormat::Tui => String::new(),
        };
        // Names come from flows: shown, never obeyed (JSON escapes its own).
        let text = match $format {
            GraphFormat::Json => std::borrow::Cow::Borrowed(text.trim_end()),
            _ => crate::flows::output::escape_controls(text.trim_end()),
        };
        crate::outln!("{text}")?;
    }};
}

/// Output formats of `observe graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Tui,
    Dot,
    Mermaid,
    Json,
    Text,
}

/// Without a window, the graph covers 15 minutes, up to `--until` or now (a
/// graph of 20 flows, the `flows` default, shows almost nothing).
pub const DEFAULT_SINCE: &str = "15m";

/// `--since` when none is given: [`DEFAULT_SINCE`] before `--until` (when
/// that has passed), or before now (`--until 1h` draws from 1h15m ago to 1h
/// ago).
pub fn default_since(until: Option<&str>, now: SystemTime) -> anyhow::Result<String> {
    let Some(until) = until else {
        return Ok(DEFAULT_SINCE.to_string());
    };
    let parse = |flag, at| crate::flows::request::parse_time(flag, at, now);
    let until = time::nanos(&parse("until", until)?);
    if until >= time::nanos(&parse("since", "0s")?) {
        return Ok(DEFAULT_SINCE.to_string());
    }
    let span = time::parse_duration(DEFAULT_SINCE).map_or(0, |d| d.as_nanos() as i128);
    Ok(diff_args::rfc3339(until - span))
}

pub async fn run(
    target: &Target,
    query: &QueryArgs,
    diff: &DiffArgs,
    format: GraphFormat,
) -> anyhow::Result<()> {
    if format == GraphFormat::Tui && query.until.is_some() {
        anyhow::bail!(
            "-o tui is live: it follows new flows, so it takes no --until; the graph of a past \
             window prints with -o text, dot, mermaid or json"
        );
    }
    if format == GraphFormat::Tui && !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "-o tui draws on a terminal, and standard output is not one: use -o text, dot, mermaid or json"
        );
    }
    if query.follow && format != GraphFormat::Tui {
        anyhow::bail!(
            "--follow keeps the graph live, which only -o tui draws; the other formats \
             print the graph of one window (--since, {DEFAULT_SINCE} by default)"
        );
    }
    if let Some(plan) = diff.plan(query, SystemTime::now())? {
        return run_diff(target, query, &plan, format).await;
    }
    let mut query = query.clone();
    if !query.has_window() {
        query.since = Some(default_since(query.until.as_deref(), SystemTime::now())?);
    }
    query.follow = format == GraphFormat::Tui;
    let mut req = query.request()?;
    // Not in the TUI, whose filter bar shows the flows as asked, nor with a
    // count, which the replies would take a share of.
    if format != GraphFormat::Tui && req.number == 0 {
        req.whitelist = replies::with_reply_mirrors(req.whitelist);
    }
    let (mut client, used) = target.observer().await?;
    let stream = target.get_flows(&mut client, req.clone()).await?;
    if format == GraphFormat::Tui {
        let source = crate::tui::reconnect::GetFlowsSource::new(target, used, req);
        return crate::tui::run_graph(stream, source, &query).await;
    }
    let (graph, cover) = collect_covered(target, stream, &req.whitelist).await?;
    for note in coverage::lost_notes(&cover, "the window") {
        crate::pipe::eprint(&format!("observe: note: {note}\n"));
    }
    print_as!(graph, format);
    Ok(())
}

/// The graphs of both windows, compared.
async fn run_diff(
    target: &Target,
    query: &QueryArgs,
    plan: &DiffPlan,
    format: GraphFormat,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        format != GraphFormat::Tui,
        "--diff and --against print dot, mermaid, json or text; in the TUI, press c on the service map"
    );
    if let Some(note) = plan.length_note() {
        crate::pipe::eprint(&format!("observe: note: {note}\n"));
    }
    let (mut client, _) = target.observer().await?;
    let (before, before_cover) = window_graph(target, &mut client, query, plan.against).await?;
    let (after, after_cover) = window_graph(target, &mut client, query, plan.window).await?;
    let diff = GraphDiff::new(&before, &after, plan.threshold)
        .with_compared(plan.window.label(), plan.against.label());
    let labels = (
        format!("the baseline {}", plan.against.label()),
        format!("the window {}", plan.window.label()),
    );
    for note in coverage::notes(&before_cover, &after_cover, &labels.0, &labels.1) {
        crate::pipe::eprint(&format!("observe: note: {note}\n"));
    }
    print_as!(diff, format);
    Ok(())
}

/// The graph of the flows that pass the query's filters within `w`, and
/// which nodes sent them.
async fn window_graph(
    target: &Target,
    client: &mut ObserverClient<Channel>,
    query: &QueryArgs,
    w: Window,
) -> anyhow::Result<(ServiceGraph, coverage::Coverage)> {
    let mut req = query.request()?;
    req.whitelist = replies::with_reply_mirrors(req.whitelist);
    req.number = 0;
    req.first = false;
    req.follow = false;
    req.since = Some(time::timestamp(w.since));
    req.until = Some(time::timestamp(w.until));
    let whitelist = req.whitelist.clone();
    let stream = target.get_flows(client, req).await?;
    collect_covered(target, stream, &whitelist).await
}

/// The builder for a stream the request's `whitelist` selected: when every
/// entry asks for a service, the stream holds a socket translation's
/// connect to the VIP (which names the service) but never its
/// post-translation twin (which names the backend), so the connect counts.
fn builder_for(whitelist: &[FlowFilter]) -> GraphBuilder {
    let by_service =
        |f: &FlowFilter| !f.destination_service.is_empty() || !f.source_service.is_empty();
    if !whitelist.is_empty() && whitelist.iter().all(by_service) {
        GraphBuilder::new().counting_pre_translations()
    } else {
        GraphBuilder::new()
    }
}

/// The graph of `stream`'s flows (selected by `whitelist`), and which
/// nodes sent them and what history lost.
async fn collect_covered(
    target: &Target,
    stream: tonic::Streaming<GetFlowsResponse>,
    whitelist: &[FlowFilter],
) -> anyhow::Result<(ServiceGraph, coverage::Coverage)> {
    let mut cover = coverage::Coverage::default();
    let counted = stream.map(|r| {
        if let Ok(resp) = &r {
            cover.record(resp);
        }
        r
    });
    let graph = service_graph::stream::collect_with(builder_for(whitelist), counted)
        .await
        .map_err(|s| target.status_error(s))?;
    Ok((graph, cover))
}

#[cfg(test)]
mod tests {
    use observer_proto::flow::{Flow, Service, SocketTranslationPoint, Verdict};

    use super::*;

    #[test]
    fn without_since_the_window_ends_at_until() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_169_445);
        assert_eq!(default_since(None, now).unwrap(), "15m");
        assert_eq!(
            default_since(Some("2025-11-26T10:00:00Z"), now).unwrap(),
            "2025-11-26T09:45:00Z"
        );
        assert_eq!(default_since(Some("0s"), now).unwrap(), "15m");
        // 1h before now (2025-11-26T15:04:05Z), 15 minutes more.
        assert_eq!(
            default_since(Some("1h"), now).unwrap(),
            "2025-11-26T13:49:05Z"
        );
        assert!(default_since(Some("soon"), now).is_err());
        // Until a later time: the last 15 minutes, as without it.
        assert_eq!(
            default_since(Some("2999-01-01T00:00:00Z"), now).unwrap(),
            "15m"
        );
    }

    /// A connect from frontend to the VIP of default/api, before translation.
    fn connect_to_vip() -> Flow {
        Flow {
            destination: None,
            destination_service: Some(Service {
                name: "api".into(),
                namespace: "default".into(),
            }),
            ..test_support::graph_flows::sock_translation(
                SocketTranslationPoint::SockXlatePointPreDirectionFwd,
                Verdict::Traced,
            )
        }
    }

    #[test]
    fn a_stream_selected_by_service_counts_the_connects_to_its_vip() {
        let to_service = FlowFilter {
            destination_service: vec!["default/api".into()],
            ..Default::default()
        };
        let edges = |whitelist: Vec<FlowFilter>| {
            let mut b = builder_for(&replies::with_reply_mirrors(whitelist));
            b.add(&connect_to_vip());
            b.into_graph().edges().len()
        };
        assert_eq!(edges(vec![to_service.clone()]), 1);
        // Another entry lets post-translation twins through: they count.
        let pod = FlowFilter {
            source_pod: vec!["default/frontend".into()],
            ..Default::default()
        };
        assert_eq!(edges(vec![to_service, pod]), 0);
        assert_eq!(edges(Vec::new()), 0);
    }
}
