//! `observe flows --follow` as a terminal UI: a live, filterable flow table with
//! a detail pane, and the service map and top talkers of the same flows.
//!
//! [`run_follow`] sets up the terminal ([`terminal`]) and runs the [`App`]
//! ([`app`]): its loop selects over a tick, terminal events, the flow stream
//! and the signals that end it ([`signals`]); when the relay goes away,
//! [`reconnect`] gets the stream back from the newest flow shown. Flows land
//! in a bounded buffer ([`buffer`]) and, when they pass the live filter
//! ([`filter`]: the `observe flows` flags), in the table and the service
//! graph (`service_graph`). Keys ([`input`]) move the cursor
//! ([`cursor`]), pause, edit the filter, open the detail pane ([`detail`],
//! with the connection's hops from [`path`]), switch tabs and, on the service
//! map, show what changed ([`changes`]: the newest window against the one
//! before it); [`view`] draws it all, using [`text`] for field formatting and
//! [`stats`] for the header (rate, nodes, lost events).

pub mod app;
pub mod buffer;
pub mod changes;
pub mod cursor;
pub mod detail;
pub mod filter;
pub mod input;
pub mod path;
pub mod reconnect;
pub mod signals;
pub mod stats;
pub mod terminal;
pub mod text;
pub mod view;

#[cfg(test)]
mod tests;

pub use app::{App, Control, Mode, Tab};

use crossterm::event::EventStream;
use observer_proto::observer::GetFlowsResponse;
use tokio_stream::Stream;

use crate::flows::request::QueryArgs;
use reconnect::FlowSource;

/// Runs the TUI over `stream` until the user quits, reopening it from
/// `source` when it ends or fails. `query`'s filters are the server's; the
/// filter bar narrows within them on the client.
pub async fn run_follow(
    stream: impl Stream<Item = Result<GetFlowsResponse, tonic::Status>> + 'static,
    source: impl FlowSource,
    query: &QueryArgs,
) -> anyhow::Result<()> {
    run(stream, source, query, Tab::Flows).await
}

/// [`run_follow`] opened on the service map tab (`observe graph -o tui`):
/// a stream that ends or fails is reopened from `source`, as the flows'.
pub async fn run_graph(
    stream: impl Stream<Item = Result<GetFlowsResponse, tonic::Status>> + 'static,
    source: impl FlowSource,
    query: &QueryArgs,
) -> anyhow::Result<()> {
    run(stream, source, query, Tab::ServiceMap).await
}

async fn run(
    stream: impl Stream<Item = Result<GetFlowsResponse, tonic::Status>> + 'static,
    source: impl FlowSource,
    query: &QueryArgs,
    tab: Tab,
) -> anyhow::Result<()> {
    // The command line's filters are the server's: the footer shows them,
    // and the bar starts empty (a copy there only took the footer's room).
    let mut app = App::new("").map_err(|e| anyhow::anyhow!("filter: {e}"))?;
    app.tab = tab;
    app.server_filter = filter::describe_query(query);
    // Said before the screen switches, where it could not be read.
    let signals = signals::Signals::install()
        .inspect_err(|e| {
            log::warn!(
                "cannot handle SIGTERM/SIGHUP/SIGINT ({e}): one would leave the terminal raw"
            )
        })
        .ok();
    let stop = async {
        match signals {
            Some(mut s) => s.recv().await,
            None => std::future::pending().await,
        }
    };
    let mut guard = terminal::enter()?;
    let result = app
        .run(
            &mut guard.terminal,
            stream,
            source,
            EventStream::new(),
            stop,
        )
        .await;
    drop(guard);
    result
}
