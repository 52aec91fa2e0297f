//! `observe flows --input-file`: flows saved as JSON lines (`-o json`, ours or
//! `hubble observe -o jsonpb`'s, or a Cilium flow exporter's file) read back
//! and selected here, as `hubble observe --input-file` does: the filter
//! flags, `--since`/`--until`, `--first`/`--last`/`--all` apply (without a
//! count, every selected line), and the field mask too, which hubble's
//! reader leaves out; `--follow` and the server flags do not. A line that
//! is not a response is reported and skipped; the others are not lost for it.
//! Fields our .proto files do not hold (L7, auth, a newer Hubble's) are
//! skipped with one warning, as hubble's reader skips what it does not know;
//! an exporter's agent and debug events are no flows and print nothing.

use std::collections::VecDeque;
use std::io::{BufRead, Read};

use observer_proto::observer::{GetFlowsRequest, GetFlowsResponse, get_flows_response};
use observer_runtime::query::FlowQuery;

use super::request::{QueryArgs, Source};

/// Longer lines are refused: a flow is a few kilobytes, and a file without
/// line ends (`/dev/zero`) would otherwise be read whole.
pub const MAX_LINE: usize = 1 << 20;

/// `--last` keeps at most this many flows in memory, as Hubble's reader does.
pub const MAX_LAST: u64 = 1_000_000;

/// The request the flags make for a file: as for a server, but nothing to
/// follow, and without a count every selected line, as hubble reads a file
/// (a server's default of the last 20 is for its buffer).
pub fn request(query: &QueryArgs) -> anyhow::Result<GetFlowsRequest> {
    let query = QueryArgs {
        follow: false,
        ..query.clone()
    };
    let mut request = query.request_from(Source::File)?;
    if !query.has_count() {
        request.number = 0;
    }
    Ok(request)
}

/// Which responses of a file `req` selects: the server's own reading of the
/// request (window, filters, count, field mask).
pub struct Selection {
    query: FlowQuery,
    /// Whether the request has an allowlist: then a response that is not a
    /// flow (a node's status, lost events) matches none of it and is left
    /// out, as hubble's reader leaves it; a denylist alone keeps it.
    filtered: bool,
}

impl Selection {
    pub fn new(req: &GetFlowsRequest) -> anyhow::Result<Selection> {
        anyhow::ensure!(
            req.first || req.number <= MAX_LAST,
            "--last {} with --input-file: at most {MAX_LAST} flows are kept to print the last ones",
            req.number
        );
        Ok(Selection {
            query: FlowQuery::parse(req)?,
            filtered: !req.whitelist.is_empty(),
        })
    }

    /// Whether `resp` is one to show (before counting).
    fn wants(&self, resp: &GetFlowsResponse) -> bool {
        let flow = matches!(
            resp.response_types,
            Some(get_flows_response::ResponseTypes::Flow(_))
        );
        self.query.selects(resp) && (flow || !self.filtered)
    }
}

/// The records of Cilium's flow exporter files besides flows (an
/// `ExportEvent`'s other kinds), which a response does not hold.
const EXPORTER_EVENTS: [&str; 2] = ["agent_event", "debug_event"];

/// Reads `input` (named `name` in messages) and hands each selected response
/// to `show` in the file's order; `show` returns false to stop (the reader
/// went away). Lines that are not responses go to `skipped` as messages.
pub fn select(
    input: impl BufRead,
    name: &str,
    selection: &Selection,
    mut show: impl FnMut(&GetFlowsResponse) -> anyhow::Result<bool>,
    mut skipped: impl FnMut(String),
) -> anyhow::Result<()> {
    let (number, first) = (selection.query.number, selection.query.first);
    let keep_last = !first && number > 0;
    let mut last: VecDeque<GetFlowsResponse> = VecDeque::new();
    let mut shown = 0usize;
    let mut lines = Lines { input, number: 0 };
    let (mut warned_unknown, mut warned_exporter_event) = (false, false);
    while let Some(line) = lines.next_line(name)? {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let read = std::str::from_utf8(&line)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                observer_proto::json::from_json_stream_lenient::<GetFlowsResponse>(
                    "observer.GetFlowsResponse",
                    text.trim_end(),
                )
                .map_err(|e| position_in_line(&e.to_string()))
            });
        let resp = match read {
            Ok((mut responses, unknown)) if responses.len() == 1 => {
                match (unknown, warned_unknown) {
                    // A Cilium flow exporter's other records: not flows.
                    (Some(field), _) if EXPORTER_EVENTS.contains(&field.as_str()) => {
                        // Told once.
                        if !warned_exporter_event {
                            skipped(format!(
                                "{name} line {}: an exporter's {} (and any later one) is no \
                                 flow: not shown",
                                lines.number,
                                field.replace('_', " ")
                            ));
                        }
                        warned_exporter_event = true;
                    }
                    (Some(field), false) => {
                        warned_unknown = true;
                        let what = if field.starts_with("enum value") {
                            field
                        } else {
                            format!("field '{field}'")
                        };
                        skipped(format!(
                            "{name} line {}: {what} (and any other this build does not know, \
                             here and in later lines) ignored: observe reads the L3/L4 part of \
                             flows, without L7 or auth data",
                            lines.number
                        ));
                    }
                    _ => {}
                }
                responses.remove(0)
            }
            Ok((responses, _)) => {
                skipped(format!(
                    "{name} line {}: {} JSON objects, not one response; skipped",
                    lines.number,
                    responses.len()
                ));
                continue;
            }
            Err(e) => {
                skipped(format!(
                    "{name} line {}: not a flow response in JSON ({e}); skipped",
                    lines.number
                ));
                continue;
            }
        };
        if !selection.wants(&resp) {
            continue;
        }
        let resp = selection.query.masked(resp);
        if keep_last {
            if last.len() == number {
                last.pop_front();
            }
            last.push_back(resp);
            continue;
        }
        if !show(&resp)? {
            return Ok(());
        }
        shown += 1;
        if first && shown == number {
            return Ok(());
        }
    }
    for resp in &last {
        if !show(resp)? {
            break;
        }
    }
    Ok(())
}

/// A JSON error about one line, its position said as a column: the parser
/// counts lines within the text it was given, which is always its first.
fn position_in_line(error: &str) -> String {
    match error.rsplit_once(" at line 1 column ") {
        Some((what, column)) if column.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{what} at column {column}")
        }
        _ => error.to_string(),
    }
}

/// Lines of at most [`MAX_LINE`] bytes, counted from 1.
struct Lines<R> {
    input: R,
    number: usize,
}

impl<R: BufRead> Lines<R> {
    fn next_line(&mut self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let read = (&mut self.input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| anyhow::anyhow!("reading {name}: {e}"))?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        anyhow::ensure!(
            line.len() <= MAX_LINE || line.ends_with(b"\n"),
            "{name} line {}: longer than {} MiB, not a flow: is it a file of `observe flows -o json` lines?",
            self.number,
            MAX_LINE >> 20
        );
        Ok(Some(line))
    }
}
