//! `observe flows`: flags → request ([`request`], [`filters`], with `--not` split
//! off by [`negate`]), stream → text ([`output`]); or flows saved in a file
//! selected by the same flags ([`input_file`]).

pub mod filters;
pub mod input_file;
pub mod negate;
pub mod output;
pub mod request;

#[cfg(test)]
mod tests;

use std::io::IsTerminal;

use tokio_stream::StreamExt;

use crate::connect::Target;

/// How `observe flows` prints, as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Display {
    /// `-o`, if given: the TUI opens only without one.
    pub format: Option<output::Format>,
    pub print_node: bool,
    /// `--print-policy-names`.
    pub print_policies: bool,
    pub color: output::ColorChoice,
    /// `--debug`: informational node status too (to stderr).
    pub debug: bool,
    /// `--time-format`.
    pub time: output::TimeFormat,
    /// `--ip-translation`.
    pub ip_translation: bool,
    /// `--silent-errors`: nothing but a fatal error on stderr.
    pub silent: bool,
}

/// Whether `observe flows` opens the terminal UI: following, on a terminal,
/// with no `-o`. A given `-o` streams text, `-o compact` too, as
/// `hubble observe -f -o compact` does.
pub fn opens_tui(format: Option<output::Format>, follow: bool, terminal: bool) -> bool {
    follow && terminal && format.is_none()
}

/// Runs one `observe flows` invocation, printing to stdout until the stream ends.
pub async fn run_with(
    target: &Target,
    query: &request::QueryArgs,
    display: Display,
) -> anyhow::Result<()> {
    let req = query.request()?;
    let (mut client, used) = target.observer().await?;
    let mut stream = target.get_flows(&mut client, req.clone()).await?;
    let terminal = std::io::stdout().is_terminal();
    if opens_tui(display.format, query.follow, terminal) {
        let source = crate::tui::reconnect::GetFlowsSource::new(target, used, req);
        return crate::tui::run_follow(stream, source, query).await;
    }
    let mut printer = printer(display, query.follow);
    // Ctrl-C ends the stream as its end would, as Hubble's does: what was
    // held (a table) is printed, and the exit is a success.
    let interrupted = first_interrupt();
    second_interrupt_exits();
    tokio::pin!(interrupted);
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            () = &mut interrupted => break,
        };
        let Some(item) = item else { break };
        let resp = match item {
            Ok(resp) => resp,
            Err(e) => {
                // What was buffered (a table) is still worth printing.
                write_out(&printer.finish())?;
                return Err(target.stream_error(e, used));
            }
        };
        if !show(&mut printer, &resp, display.silent)? {
            return Ok(());
        }
    }
    write_out(&printer.finish())?;
    Ok(())
}

/// Ends at the first Ctrl-C from this call on. The listener is made here,
/// not when the future is first polled (as `tokio::signal::ctrl_c`'s is):
/// a Ctrl-C that came between would be missed, and the second one would
/// end the process with 130. Never ends if no listener can be made.
pub fn first_interrupt() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let listener = signal(SignalKind::interrupt()).ok();
    async move {
        match listener {
            Some(mut l) => {
                l.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// A second Ctrl-C ends the process at once (exit 130). The first is heard
/// between writes only, and a write to a stdout no one reads (a paused
/// pager, a terminal stopped with Ctrl-S) does not return.
pub fn second_interrupt_exits() {
    use tokio::signal::unix::{SignalKind, signal};
    if let Ok(mut interrupts) = signal(SignalKind::interrupt()) {
        tokio::spawn(async move {
            interrupts.recv().await;
            interrupts.recv().await;
            std::process::exit(130);
        });
    }
}

/// `observe flows --input-file PATH` (`-`: standard input): the flows saved
/// there that the flags select ([`input_file`]), printed as from a server.
pub fn run_from_file(
    path: &std::path::Path,
    query: &request::QueryArgs,
    display: Display,
) -> anyhow::Result<()> {
    let selection = input_file::Selection::new(&input_file::request(query)?)?;
    let stdin;
    let (input, name): (Box<dyn std::io::BufRead>, String) = if path.as_os_str() == "-" {
        stdin = std::io::stdin();
        (Box::new(stdin.lock()), "standard input".into())
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("--input-file {}: {e}", path.display()))?;
        (
            Box::new(std::io::BufReader::new(file)),
            path.display().to_string(),
        )
    };
    let mut printer = printer(display, false);
    let read = input_file::select(
        input,
        &name,
        &selection,
        |resp| show(&mut printer, resp, display.silent),
        |skipped| {
            if !display.silent {
                crate::pipe::eprint(&format!("observe: {skipped}\n"));
            }
        },
    );
    // What was read is shown before a read error (a table holds its rows
    // until the end), as hubble's printer is closed on the way out.
    write_out(&printer.finish())?;
    read
}

/// Refuses a field mask with a format that prints whole lines (compact,
/// dict, table, the terminal UI): their columns would be left blank, so, as
/// Hubble, only JSON takes one.
pub fn check_field_mask(mask: &[String], format: Option<output::Format>) -> anyhow::Result<()> {
    use output::Format;
    match format {
        _ if mask.is_empty() => Ok(()),
        Some(Format::Json | Format::Jsonpb) => Ok(()),
        other => {
            let name = match other {
                Some(Format::Dict) => "dict",
                Some(Format::Table) => "table",
                _ => "compact",
            };
            anyhow::bail!(
                "--experimental-field-mask: the {name} output shows whole flows and is not \
                 compatible with a field mask; use -o json or -o jsonpb"
            )
        }
    }
}

/// The printer `display` asks for, compact lines when it names no format.
fn printer(display: Display, follow: bool) -> output::Printer {
    output::Printer::new(output::Options {
        format: display.format.unwrap_or(output::Format::Compact),
        print_node: display.print_node,
        color: display.color.enabled(std::io::stdout().is_terminal()),
        follow,
        debug: display.debug,
        time: display.time,
        ip_translation: display.ip_translation,
        print_policies: display.print_policies,
    })
}

/// Prints one response (what goes to stderr only unless `silent`); `false`
/// when the reader went away.
fn show(
    printer: &mut output::Printer,
    resp: &observer_proto::observer::GetFlowsResponse,
    silent: bool,
) -> anyhow::Result<bool> {
    let emit = printer.push(resp)?;
    if !emit.err.is_empty() && !silent {
        crate::pipe::eprint(&emit.err);
    }
    write_out(&emit.out)
}

/// The filters the flags make, as `hubble observe --print-raw-filters` shows
/// them: each `FlowFilter` as one JSON line of an allowlist and a denylist
/// (a list left out when empty).
pub fn raw_filters(query: &request::QueryArgs) -> anyhow::Result<String> {
    let (allow, deny) = query.filter_lists()?;
    let mut out = String::new();
    for (name, list) in [("allowlist", allow), ("denylist", deny)] {
        if list.is_empty() {
            continue;
        }
        out += &format!("{name}:\n");
        for f in &list {
            let json = observer_proto::json::to_json("flow.FlowFilter", f)?;
            out += &format!("    - '{}'\n", json.replace('\'', "''"));
        }
    }
    if out.is_empty() {
        // No filter at all: an empty document, as hubble prints it.
        out.push_str("{}\n");
    }
    Ok(out)
}

/// Writes and flushes `text`; `false` when the reader went away.
fn write_out(text: &str) -> anyhow::Result<bool> {
    if text.is_empty() {
        return Ok(true);
    }
    match crate::pipe::print(text) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}
