//! Printing flows as `hubble observe -o …` does: `compact` (one line per flow),
//! `dict` (a block of `KEY: value` lines per flow), `table` (aligned columns),
//! and `json`/`jsonpb` (each `GetFlowsResponse` as one protojson line with the
//! proto field names — Hubble prints the response for both). Verdicts are
//! coloured in compact and dict when asked ([`ColorChoice`]); control
//! characters in the human formats read as text ([`escape`]).

mod color;
mod compact;
mod dict;
mod escape;
mod fields;
mod table;
mod time;

pub use color::{ColorChoice, paint_verdict};
pub use compact::{compact, flow_line, styled_flow_line};
pub use dict::SEPARATOR;
pub use escape::{escape_controls, escape_flow_text};
pub use fields::{Row, TCP_LIFECYCLE, flow_type, hosts, ports, row};
pub use table::Columns;
pub use time::{TimeFormat, timestamp, timestamp_as, utc};

use observer_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use observer_proto::relay::NodeState;

/// Output formats of `observe flows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Compact,
    Dict,
    Json,
    Jsonpb,
    #[value(alias = "tab")]
    Table,
}

/// How to print: the format and its switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub format: Format,
    /// `--print-node-name`: the node in every line, block or row.
    pub print_node: bool,
    /// ANSI colours on the verdicts (already decided against the terminal).
    pub color: bool,
    /// A followed stream: tables print as rows come, in fixed widths.
    pub follow: bool,
    /// `--debug`: informational node status (connected, gone) too.
    pub debug: bool,
    /// `--time-format`.
    pub time: TimeFormat,
    /// `--ip-translation` (Hubble's): hosts by pod, service or name; off,
    /// by address.
    pub ip_translation: bool,
    /// `--print-policy-names`: a policy verdict's deciders after it.
    pub print_policies: bool,
}

/// `resp` with no names for its flow's ends (pod, service, DNS names), so
/// that the human formats show addresses; identities stay.
fn untranslated(resp: &GetFlowsResponse) -> GetFlowsResponse {
    let mut r = resp.clone();
    if let Some(ResponseTypes::Flow(f)) = r.response_types.as_mut() {
        for ep in [f.source.as_mut(), f.destination.as_mut()]
            .into_iter()
            .flatten()
        {
            ep.pod_name.clear();
        }
        f.source_service = None;
        f.destination_service = None;
        f.source_names.clear();
        f.destination_names.clear();
    }
    r
}

/// What one response prints, to stdout and to stderr (each complete lines).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Emit {
    pub out: String,
    pub err: String,
}

/// Turns the responses of one stream into text, keeping what a format needs
/// across them (the dict separator, the table's rows).
#[derive(Debug)]
pub struct Printer {
    opts: Options,
    blocks: usize,
    table: table::Table,
}

impl Printer {
    pub fn new(opts: Options) -> Printer {
        Printer {
            opts,
            blocks: 0,
            // Colour codes would break a table's columns; Hubble's are plain.
            table: table::Table::new(opts.follow, opts.print_node, false),
        }
    }

    /// The text for one response. Node status goes to stderr, as Hubble
    /// prints it, so stdout holds flows alone; without `--debug` only a node
    /// that is unavailable or failing is told.
    pub fn push(&mut self, resp: &GetFlowsResponse) -> anyhow::Result<Emit> {
        let o = self.opts;
        let numeric;
        // Names give way to addresses in the text formats only; JSON keeps
        // every field, as hubble's does.
        let resp = if o.ip_translation || matches!(o.format, Format::Json | Format::Jsonpb) {
            resp
        } else {
            numeric = untranslated(resp);
            &numeric
        };
        let mut emit = Emit::default();
        // A response with nothing in it (a line of another kind of record
        // in a file: an exporter's agent event) prints nothing, as in Hubble.
        if resp.response_types.is_none() {
            return Ok(emit);
        }
        if let Some(ResponseTypes::NodeStatus(s)) = &resp.response_types {
            let told = matches!(
                NodeState::try_from(s.state_change),
                Ok(NodeState::NodeUnavailable | NodeState::NodeError)
            );
            if told || o.debug {
                emit.err = match o.format {
                    Format::Json | Format::Jsonpb => {
                        observer_proto::json::response_to_json(resp)? + "\n"
                    }
                    // A block like a flow's, after a separator, as Hubble's.
                    Format::Dict => {
                        let separator = if self.blocks > 0 {
                            format!("{}\n", dict::SEPARATOR)
                        } else {
                            self.blocks += 1;
                            String::new()
                        };
                        separator + &compact::node_status_block(resp, o.time)
                    }
                    Format::Compact | Format::Table => compact::node_status(resp, o.time) + "\n",
                };
            }
            return Ok(emit);
        }
        match o.format {
            Format::Json | Format::Jsonpb => {
                emit.out = observer_proto::json::response_to_json(resp)? + "\n";
            }
            Format::Compact => {
                if let Some(line) = compact(resp, &o) {
                    emit.out = line + "\n";
                }
            }
            Format::Dict => {
                if let Some(mut r) = row(resp, o.time, o.print_policies) {
                    // Hosts cyan with their ports yellow, as Hubble's dict.
                    if let (true, Some(ResponseTypes::Flow(f))) = (o.color, &resp.response_types) {
                        let (src, dst) = fields::painted_hosts(f, &|p| color::paint_port(p, true));
                        r.source = color::paint_host(&src, true);
                        r.destination = color::paint_host(&dst, true);
                    }
                    if self.blocks > 0 {
                        emit.out = format!("{}\n", dict::SEPARATOR);
                    }
                    self.blocks += 1;
                    emit.out += &dict::block(&r, o.print_node, o.color);
                }
            }
            Format::Table => {
                if let Some(r) = row(resp, o.time, o.print_policies) {
                    emit.out = self.table.push(&r);
                }
            }
        }
        Ok(emit)
    }

    /// How this printer prints.
    #[must_use]
    pub fn options(&self) -> Options {
        self.opts
    }

    /// What is left at the end of the stream: a buffered table.
    pub fn finish(&mut self) -> String {
        self.table.finish()
    }
}
