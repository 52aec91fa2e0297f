//! `observe flows --input-file`: flows saved as JSON lines (`-o json`, ours or
//! `hubble observe -o jsonpb`'s) read back and selected here, as `hubble
//! observe --input-file` does: the filter flags, `--since`/`--until`,
//! `--first`/`--last`/`--all` and the field mask apply (without a count, the
//! last 20); `--follow` and the server flags do not. A line that is not a
//! response is reported and skipped; the others are not lost for it.

use std::collections::VecDeque;
use std::io::{BufRead, Read};

use observer_proto::observer::{GetFlowsRequest, GetFlowsResponse, get_flows_response};
use observer_proto::time::nanos;
use observer_runtime::field_mask::FieldMask;
use observer_runtime::filter::{FlowMatcher, compile};

/// Longer lines are refused: a flow is a few kilobytes, and a file without
/// line ends (`/dev/zero`) would otherwise be read whole.
pub const MAX_LINE: usize = 1 << 20;

/// `--last` keeps at most this many flows in memory, as Hubble's reader does.
pub const MAX_LAST: u64 = 1_000_000;

/// Which responses of a file `req` selects.
pub struct Selection {
    matcher: FlowMatcher,
    filtered: bool,
    since: Option<i128>,
    until: Option<i128>,
    /// `--first N`: stop after N; `--last N`: keep the last N; 0: all.
    number: u64,
    first: bool,
    /// The fields each flow keeps, as a server applies the request's mask.
    mask: Option<FieldMask>,
}

impl Selection {
    pub fn new(req: &GetFlowsRequest) -> anyhow::Result<Selection> {
        anyhow::ensure!(
            req.first || req.number <= MAX_LAST,
            "--last {} with --input-file: at most {MAX_LAST} flows are kept to print the last ones",
            req.number
        );
        Ok(Selection {
            matcher: compile(&req.whitelist, &req.blacklist)?,
            filtered: !req.whitelist.is_empty() || !req.blacklist.is_empty(),
            since: req.since.as_ref().map(nanos),
            until: req.until.as_ref().map(nanos),
            number: req.number,
            first: req.first,
            mask: FieldMask::parse(req.field_mask.as_ref().map_or(&[][..], |m| &m.paths[..]))?,
        })
    }

    /// `resp` with its flow cut to the field mask, if there is one.
    fn masked(&self, mut resp: GetFlowsResponse) -> GetFlowsResponse {
        if let (Some(mask), Some(get_flows_response::ResponseTypes::Flow(flow))) =
            (&self.mask, &mut resp.response_types)
        {
            *flow = mask.apply(flow);
        }
        resp
    }

    /// Whether `resp` is one to show (before counting). A response that is
    /// not a flow (a node's status, lost events) passes only without filters.
    fn wants(&self, resp: &GetFlowsResponse) -> bool {
        let time = resp.time.as_ref().map(nanos);
        if let (Some(since), Some(t)) = (self.since, time)
            && t < since
        {
            return false;
        }
        if let (Some(until), Some(t)) = (self.until, time)
            && t > until
        {
            return false;
        }
        match &resp.response_types {
            Some(get_flows_response::ResponseTypes::Flow(flow)) => self.matcher.matches(flow),
            _ => !self.filtered,
        }
    }
}

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
    let keep_last = !selection.first && selection.number > 0;
    let mut last: VecDeque<GetFlowsResponse> = VecDeque::new();
    let mut shown = 0u64;
    let mut lines = Lines { input, number: 0 };
    while let Some(line) = lines.next_line(name)? {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let resp = match std::str::from_utf8(&line)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                observer_proto::json::from_json_stream::<GetFlowsResponse>(
                    "observer.GetFlowsResponse",
                    text,
                )
                .map_err(|e| e.to_string())
            }) {
            Ok(mut responses) if responses.len() == 1 => responses.remove(0),
            Ok(responses) => {
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
        let resp = selection.masked(resp);
        if keep_last {
            if last.len() as u64 == selection.number {
                last.pop_front();
            }
            last.push_back(resp);
            continue;
        }
        if !show(&resp)? {
            return Ok(());
        }
        shown += 1;
        if selection.first && shown == selection.number {
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
