//! `observe flows`: flags → request ([`request`], [`filters`]), stream → lines
//! ([`output`]).

pub mod filters;
pub mod output;
pub mod request;

use std::io::Write;

use tokio_stream::StreamExt;

/// Runs one `observe flows` invocation, printing to stdout until the stream ends.
pub async fn run(
    server: Option<&str>,
    query: &request::QueryArgs,
    format: output::Format,
    print_node: bool,
) -> anyhow::Result<()> {
    let req = query.request()?;
    let mut client = request::connect(server).await?;
    let mut stream = client
        .get_flows(req)
        .await
        .map_err(status_error)?
        .into_inner();
    // On a terminal, following opens the TUI; piped, it streams lines.
    if query.follow && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return crate::tui::run_follow(stream, &query.filters).await;
    }
    let stdout = std::io::stdout();
    while let Some(item) = stream.next().await {
        let resp = item.map_err(status_error)?;
        if let Some(line) = output::render(&resp, format, print_node)? {
            let mut out = stdout.lock();
            if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// A gRPC error as a person reads it.
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("server: {} ({:?})", s.message(), s.code())
}
