//! `observe graph`: the service dependency graph of the flows a probe or relay
//! holds, with the datapath hops each edge was observed on. The flows come
//! from GetFlows (so every Hubble filter flag applies, against a probe or a
//! relay) and go through `service_graph::GraphBuilder`, the builder behind
//! the relay's `graph_nodes` and `graph_edges` tables too.

use crate::flows::{request, request::QueryArgs, status_error};

/// Output formats of `observe graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Tui,
    Dot,
    Mermaid,
    Json,
}

/// Without a window, the graph covers the last 15 minutes (a graph of 20 flows,
/// the `flows` default, shows almost nothing).
pub const DEFAULT_SINCE: &str = "15m";

pub async fn run(
    server: Option<&str>,
    query: &QueryArgs,
    format: GraphFormat,
) -> anyhow::Result<()> {
    let mut query = query.clone();
    if query.since.is_none() && query.last.is_none() && query.first.is_none() {
        query.since = Some(DEFAULT_SINCE.to_string());
    }
    query.follow = format == GraphFormat::Tui;
    let req = query.request()?;
    let mut client = request::connect(server).await?;
    let stream = client
        .get_flows(req)
        .await
        .map_err(status_error)?
        .into_inner();
    if format == GraphFormat::Tui {
        return crate::tui::run_graph(stream, &query.filters).await;
    }
    let graph = service_graph::collect(stream).await.map_err(status_error)?;
    let text = match format {
        GraphFormat::Dot => graph.to_dot(),
        GraphFormat::Mermaid => graph.to_mermaid(),
        GraphFormat::Json => graph.to_json(),
        GraphFormat::Tui => unreachable!("handled above"),
    };
    crate::outln!("{text}")?;
    Ok(())
}
