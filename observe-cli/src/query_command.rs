//! `observe query "SELECT ..."`: read-only SQL over a relay's flow history,
//! asked over Arrow Flight SQL on the relay's gRPC port (default
//! localhost:4245), printed as a table, CSV or JSON lines. The table is
//! `flows`; its columns are documented in the README ("History and SQL").
//!
//! The SQL comes from the argument, or from a file (`-f FILE`) or stdin
//! (`-` or `-f -`) when it is longer than an argument may be. CSV and JSON
//! are printed as the batches arrive; a table needs its rows first, so it
//! shows at most `--max-rows` of them and says when there were more. When
//! the reader of stdout goes away (`observe query ... | head`), printing
//! stops quietly with success, and the relay's query is cancelled.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use futures::{StreamExt, TryStreamExt};
use prost::Message;

use crate::connect::{ConnectArgs, Target};
use crate::flows::output::escape_controls;
use tonic::transport::Channel;

/// The relay's default address.
pub const DEFAULT_SERVER: &str = "localhost:4245";

/// The longest statement read from a file or stdin: the relay's own limit
/// (it refuses longer ones), so a huge or endless input is not read whole.
pub const MAX_STATEMENT_BYTES: u64 = 1 << 20;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    Table,
    /// A header, then a row per line; a list or struct cell holds its
    /// value as JSON text.
    Csv,
    /// One JSON object per row.
    Json,
}

/// Rows a table shows by default: its widths need every row in memory.
pub const DEFAULT_TABLE_ROWS: usize = 10_000;

/// The largest message (one batch of the result) observe decodes.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// `observe query`'s arguments.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("statement").required(true).args(["sql", "file"])))]
pub struct QueryArgs {
    /// The SQL: SELECT, WITH or EXPLAIN over the tables `flows`, `graph_nodes`,
    /// `graph_edges`, `policy_states` and the table functions `policy_whatif`,
    /// `policy_replay` (SHOW TABLES and DESCRIBE flows list them); `-` reads it
    /// from stdin.
    // A statement may start with a `--` comment or a minus sign.
    #[arg(allow_hyphen_values = true)]
    pub sql: Option<String>,
    /// Read the SQL from FILE (`-`: stdin), for statements longer than an argument.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[arg(long, short = 'o', ignore_case = true, value_enum, default_value_t = QueryFormat::Table)]
    pub output: QueryFormat,
    /// The most rows a table shows (0: all); csv and json print every row.
    // A negative number is a value, refused by its own parser.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TABLE_ROWS, allow_negative_numbers = true)]
    pub max_rows: usize,
    /// The relay (default localhost:4245) and how to reach it.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs the query and prints the answer to stdout, then on stderr how
/// many flows of its time range history is missing, if any.
pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let sql = statement(&args)?;
    let target = args.connect.target(&[DEFAULT_SERVER])?;
    let mut out = Output::new(std::io::BufWriter::new(std::io::stdout()));
    let printed = print(&target, &sql, args.output, args.max_rows, &mut out).await;
    let flushed = printed.and_then(|printed| {
        out.flush()?;
        Ok(printed)
    });
    match flushed {
        Ok(printed) => {
            if let Some(shown) = printed.cut_at {
                crate::pipe::eprint(&format!("{}\n", cut_line(shown)));
            }
            for line in missing_lines(&printed.missing) {
                crate::pipe::eprint(&format!("{line}\n"));
            }
            Ok(())
        }
        // The reader went away: what it wanted is printed.
        Err(_) if out.closed => Ok(()),
        Err(e) => Err(e),
    }
}

/// `n` with a comma between groups of three digits.
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `history is missing 1,234 flows of node1 in this range`, one per node.
pub fn missing_lines(missing: &[(String, u64)]) -> Vec<String> {
    missing
        .iter()
        .map(|(node, n)| {
            let flows = if *n == 1 { "flow" } else { "flows" };
            format!(
                "history is missing {} {flows} of {node} in this range",
                grouped(*n)
            )
        })
        .collect()
}

/// What stderr says after a table cut at `shown` rows.
fn cut_line(shown: usize) -> String {
    format!(
        "showing the first {} rows; the answer has more: add a LIMIT, raise --max-rows \
         (0: all), or print them as they come with -o csv or -o json",
        grouped(shown as u64)
    )
}

/// A table's rows: at most `max` (0: no limit), and whether there were more.
struct TableRows {
    max: usize,
    rows: usize,
    batches: Vec<RecordBatch>,
    more: bool,
}

impl TableRows {
    fn new(max: usize) -> Self {
        TableRows {
            max: if max == 0 { usize::MAX } else { max },
            rows: 0,
            batches: Vec::new(),
            more: false,
        }
    }

    /// Keeps what fits of `batch`; false once the table is full and more
    /// rows came (nothing more is read then).
    fn push(&mut self, batch: RecordBatch) -> bool {
        let room = self.max - self.rows;
        if batch.num_rows() > room {
            self.more = true;
        }
        let keep = batch.num_rows().min(room);
        if keep > 0 {
            self.batches.push(batch.slice(0, keep));
            self.rows += keep;
        }
        !self.more
    }
}

/// `history_missing<TAB>node<TAB>flows` lines of the relay's
/// `FlightInfo.app_metadata` (other lines are skipped; the node as
/// [`observer_proto::tsv::field`] wrote it).
fn decode_missing(app_metadata: &[u8]) -> Vec<(String, u64)> {
    String::from_utf8_lossy(app_metadata)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            (f.next()? == "history_missing").then_some(())?;
            let node = observer_proto::tsv::unfield(f.next()?);
            let flows = f.next()?.parse().ok()?;
            Some((node, flows))
        })
        .collect()
}

/// The SQL text of `args`: the argument, the file, or stdin.
fn statement(args: &QueryArgs) -> anyhow::Result<String> {
    match (&args.sql, &args.file) {
        (Some(sql), _) if sql != "-" => Ok(sql.clone()),
        (Some(_), _) => read_bounded(std::io::stdin().lock(), "stdin"),
        (None, Some(path)) if path == Path::new("-") => {
            read_bounded(std::io::stdin().lock(), "stdin")
        }
        (None, Some(path)) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("reading the SQL in {}", path.display()))?;
            read_bounded(file, &path.display().to_string())
        }
        (None, None) => anyhow::bail!("give the SQL as an argument, or -f FILE"),
    }
}

/// At most [`MAX_STATEMENT_BYTES`] of UTF-8 text from `input`.
fn read_bounded(input: impl Read, name: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    input
        .take(MAX_STATEMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading the SQL from {name}"))?;
    if bytes.len() as u64 > MAX_STATEMENT_BYTES {
        anyhow::bail!(
            "the SQL in {name} is longer than {MAX_STATEMENT_BYTES} bytes (1 MiB), the \
             longest statement the relay accepts"
        );
    }
    let text =
        String::from_utf8(bytes).with_context(|| format!("the SQL in {name} is not UTF-8 text"))?;
    // Editors may start a UTF-8 file with a byte-order mark, which no SQL
    // parser reads as space.
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// stdout, remembering whether its reader went away.
struct Output<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> Output<W> {
    fn new(inner: W) -> Self {
        Output {
            inner,
            closed: false,
        }
    }

    fn noticed<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.closed = true;
        }
        r
    }
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.noticed(r)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.noticed(r)
    }
}

fn message(status: &tonic::Status) -> anyhow::Error {
    // tonic's words for a message over the client's decoding limit.
    if status
        .message()
        .contains("decoded message length too large")
    {
        return anyhow::anyhow!(
            "a batch of the result is larger than the {} MiB a message may carry ({}): \
             select fewer or shorter columns, or aggregate more",
            MAX_MESSAGE_BYTES >> 20,
            status.message()
        );
    }
    if status.code() == tonic::Code::Unimplemented {
        // A server without Flight SQL (a flow-probe) answers with no words.
        return anyhow::anyhow!(
            "the server does not answer SQL (Flight SQL is not implemented there{}): \
             SQL is the relay's, whose history it reads; give --server the relay's \
             address (default {DEFAULT_SERVER})",
            match status.message() {
                "" => String::new(),
                m => format!(": {m}"),
            }
        );
    }
    if status.message().is_empty() {
        return anyhow::anyhow!("the server failed without saying why ({:?})", status.code());
    }
    anyhow::anyhow!("{}", status.message())
}

/// A query asked of the relay: its schema, the tickets of its batches, and
/// per node the flows of its time range that history is missing (the relay
/// dropped them: its writer fell behind).
struct Asked {
    client: FlightServiceClient<Channel>,
    /// The server asked and the address that answered, to say why a
    /// stream broke.
    server: (Target, String),
    schema: SchemaRef,
    tickets: Vec<Ticket>,
    missing: Vec<(String, u64)>,
}

/// Asks `server` to plan `sql`.
async fn ask(server: &Target, sql: &str) -> anyhow::Result<Asked> {
    let (channel, address) = server.channel().await?;
    let address = address.to_string();
    let mut client = FlightServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let command = CommandStatementQuery {
        query: sql.to_string(),
        transaction_id: None,
    };
    let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    let info: FlightInfo = client
        .get_flight_info(descriptor)
        .await
        .map_err(|s| {
            server
                .connection_error(&s)
                .or_else(|| server.silence_error(&s))
                .unwrap_or_else(|| message(&s))
        })?
        .into_inner();
    let schema = std::sync::Arc::new(
        info.clone()
            .try_decode_schema()
            .context("the server's schema")?,
    );
    let missing = decode_missing(&info.app_metadata);
    let tickets = info
        .endpoint
        .into_iter()
        .map(|e| e.ticket.context("an endpoint without a ticket"))
        .collect::<anyhow::Result<_>>()?;
    Ok(Asked {
        client,
        server: (server.clone(), address),
        schema,
        tickets,
        missing,
    })
}

impl Asked {
    /// The batches behind `ticket`, as they come.
    async fn batches(
        &mut self,
        ticket: Ticket,
    ) -> anyhow::Result<impl futures::Stream<Item = anyhow::Result<RecordBatch>> + use<>> {
        let data = self
            .client
            .do_get(ticket)
            .await
            .map_err(|s| message(&s))?
            .into_inner()
            .map_err(|s| FlightError::Tonic(Box::new(s)));
        let (server, address) = self.server.clone();
        Ok(FlightRecordBatchStream::new_from_flight_data(data)
            .map_err(move |e| stream_failure(&server, &address, e)))
    }
}

/// Why reading the batches from `address` failed: the server's words, or
/// the connection broken or gone silent mid-way, said as `observe flows`
/// says it rather than in the transport's words.
fn stream_failure(server: &Target, address: &str, e: FlightError) -> anyhow::Error {
    match e {
        FlightError::Tonic(s) if std::error::Error::source(&*s).is_some() => {
            server.stream_error(*s, address)
        }
        FlightError::Tonic(s) => message(&s),
        other => anyhow::anyhow!("{other}"),
    }
}

/// Asks `server` to run `sql`: its schema and batches.
pub async fn query(server: &Target, sql: &str) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let (asked, batches) = ask_all(server, sql).await?;
    Ok((asked.schema, batches))
}

/// Asks `server` to run `sql` and hands each batch to `each` as it comes;
/// returns the flows history is missing in the query's range, per node.
pub async fn for_each_batch(
    server: &Target,
    sql: &str,
    mut each: impl FnMut(&RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<(String, u64)>> {
    let mut asked = ask(server, sql).await?;
    for ticket in std::mem::take(&mut asked.tickets) {
        let mut stream = asked.batches(ticket).await?.boxed();
        while let Some(batch) = stream.try_next().await? {
            each(&batch)?;
        }
    }
    Ok(asked.missing)
}

/// Asks `server` to run `sql` and reads all its batches.
async fn ask_all(server: &Target, sql: &str) -> anyhow::Result<(Asked, Vec<RecordBatch>)> {
    let mut asked = ask(server, sql).await?;
    let mut batches = Vec::new();
    for ticket in std::mem::take(&mut asked.tickets) {
        let mut stream = asked.batches(ticket).await?.boxed();
        while let Some(batch) = stream.try_next().await? {
            batches.push(batch);
        }
    }
    Ok((asked, batches))
}

/// What [`print`] printed.
struct Printed {
    /// The flows history is missing in the query's range, per node.
    missing: Vec<(String, u64)>,
    /// A table cut at this many rows (the answer had more).
    cut_at: Option<usize>,
}

/// Reads a table's rows (at most `max`, 0: all), and stops the query once
/// there are more.
async fn table_rows(server: &Target, sql: &str, max: usize) -> anyhow::Result<(Asked, TableRows)> {
    let mut asked = ask(server, sql).await?;
    let mut table = TableRows::new(max);
    'read: for ticket in std::mem::take(&mut asked.tickets) {
        let mut stream = asked.batches(ticket).await?.boxed();
        while let Some(batch) = stream.try_next().await? {
            if !table.push(batch) {
                break 'read;
            }
        }
    }
    Ok((asked, table))
}

/// Runs `sql` on `server` and prints the answer in `format` as it comes (a
/// table: at most `max_rows`, 0: all).
async fn print(
    server: &Target,
    sql: &str,
    format: QueryFormat,
    max_rows: usize,
    out: &mut impl Write,
) -> anyhow::Result<Printed> {
    if format == QueryFormat::Table {
        let (asked, table) = table_rows(server, sql, max_rows).await?;
        write(out, format, &asked.schema, &table.batches)?;
        return Ok(Printed {
            missing: asked.missing,
            cut_at: table.more.then_some(table.rows),
        });
    }
    let mut asked = ask(server, sql).await?;
    let schema = asked.schema.clone();
    // A batch seen, even empty, has had the CSV header written.
    let mut batches = 0;
    {
        let mut sink = match format {
            QueryFormat::Json => Sink::Json(json_lines(&mut *out)),
            _ => Sink::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut *out),
            ),
        };
        for ticket in std::mem::take(&mut asked.tickets) {
            let mut stream = asked.batches(ticket).await?.boxed();
            while let Some(batch) = stream.try_next().await? {
                batches += 1;
                match &mut sink {
                    Sink::Csv(w) => w.write(&flat(&batch)?)?,
                    // The JSON writer does not flush: rows are shown as
                    // they come, as CSV's are.
                    Sink::Json(w) => {
                        w.write(&unique_names(&json_ready(&batch)?)?)?;
                        w.get_mut().flush()?;
                    }
                }
            }
        }
        if let Sink::Json(mut w) = sink {
            w.finish()?;
        }
    }
    if format == QueryFormat::Csv && batches == 0 {
        // The header alone, as for a table without rows.
        write(out, format, &schema, &[])?;
    }
    Ok(Printed {
        missing: asked.missing,
        cut_at: None,
    })
}

/// Where streamed rows are written (one per query: its size does not matter).
#[expect(
    clippy::large_enum_variant,
    reason = "one value per query, on the stack"
)]
enum Sink<W: Write> {
    Csv(arrow::csv::Writer<W>),
    Json(arrow::json::LineDelimitedWriter<W>),
}

/// Prints `batches` in `format`.
pub fn write(
    out: &mut impl Write,
    format: QueryFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> anyhow::Result<()> {
    match format {
        QueryFormat::Table => {
            // Text is data: its control characters are shown, never obeyed
            // (an ESC in a pod name would drive the terminal). Names and
            // text, also inside lists, structs, maps and dictionaries
            // (their display text), are escaped before the table is laid
            // out, so it keeps its widths and a line end makes no row.
            // Each batch under its own schema: the plan's (the header's)
            // may differ from what execution gave in nullability.
            // An EXPLAIN's plan is the exception: its lines are the plan's
            // tree, shown as lines, as psql and DuckDB show them.
            let cell: fn(&str) -> String = if is_explain(schema) {
                |t| escape_controls(t).into_owned()
            } else {
                cell_text
            };
            let schema = escape_names(schema);
            let escaped = batches
                .iter()
                .map(|b| escape_text_columns(b, cell))
                .collect::<Result<Vec<_>, _>>()?;
            let table = arrow::util::pretty::pretty_format_batches_with_schema(schema, &escaped)?;
            writeln!(out, "{}", escape_controls(&table.to_string()))?;
        }
        QueryFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if batches.is_empty() {
                // The header alone, quoted as the writer quotes it.
                w.write(&flat(&RecordBatch::new_empty(schema.clone()))?)?;
            } else {
                for b in batches {
                    w.write(&flat(b)?)?;
                }
            }
        }
        QueryFormat::Json => {
            let mut w = json_lines(&mut *out);
            for b in batches {
                w.write(&unique_names(&json_ready(b)?)?)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}

/// Lists, structs, maps and unions: values made of values.
fn nested(t: &arrow::datatypes::DataType) -> bool {
    use arrow::datatypes::DataType;
    matches!(
        t,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::Struct(_)
            | DataType::Map(..)
            | DataType::Union(..)
    )
}

/// A JSON lines writer that keeps null columns (`"x":null`): a row has
/// every key of the result, whatever its values.
fn json_lines<W: Write>(out: W) -> arrow::json::LineDelimitedWriter<W> {
    arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build(out)
}

/// `batch` with the columns CSV cannot hold (lists, structs, maps: what
/// `array_agg` or a struct literal make) as JSON text, as `-o json` writes
/// them: a table's display text (`[a, b,c]`) does not say where a string
/// with a comma ends; JSON does, and scripts parse it.
fn flat(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| nested(f.data_type())) {
        return Ok(batch.clone());
    }
    let options = arrow::json::writer::EncoderOptions::default().with_explicit_nulls(true);
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !nested(field.data_type()) {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let mut text = arrow::array::StringBuilder::new();
        match arrow::json::writer::make_encoder(field, column.as_ref(), &options) {
            Ok(mut encoder) => {
                let mut json = Vec::new();
                for i in 0..column.len() {
                    if encoder.is_null(i) {
                        text.append_null();
                        continue;
                    }
                    json.clear();
                    encoder.encode(i, &mut json);
                    text.append_value(String::from_utf8_lossy(&json));
                }
            }
            // JSON has no form for it (a union, a map keyed by numbers):
            // the text a table shows.
            Err(_) => {
                fields.push(text_field(field));
                columns.push(display_text(column, |t| t)?);
                continue;
            }
        }
        fields.push(text_field(field));
        columns.push(std::sync::Arc::new(text.finish()) as arrow::array::ArrayRef);
    }
    let schema = arrow::datatypes::Schema::new(fields);
    Ok(RecordBatch::try_new(std::sync::Arc::new(schema), columns)?)
}

/// `batch` with the columns JSON has no form for (a map keyed by numbers,
/// a union) as the text a table shows; the others as they are, for the
/// JSON writer.
fn json_ready(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    let options = arrow::json::writer::EncoderOptions::default().with_explicit_nulls(true);
    let schema = batch.schema();
    let unwritable = |field: &arrow::datatypes::FieldRef, column: &arrow::array::ArrayRef| {
        nested(field.data_type())
            && arrow::json::writer::make_encoder(field, column.as_ref(), &options).is_err()
    };
    if !schema
        .fields()
        .iter()
        .zip(batch.columns())
        .any(|(f, c)| unwritable(f, c))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if unwritable(field, column) {
            fields.push(text_field(field));
            columns.push(display_text(column, |t| t)?);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    let schema = arrow::datatypes::Schema::new(fields);
    Ok(RecordBatch::try_new(std::sync::Arc::new(schema), columns)?)
}

/// `field`, named as it is, holding text.
fn text_field(field: &arrow::datatypes::Field) -> arrow::datatypes::Field {
    arrow::datatypes::Field::new(field.name(), arrow::datatypes::DataType::Utf8, true)
}

/// Each value of `column` as a table shows it, passed through `shown`;
/// nulls stay null.
fn display_text(
    column: &arrow::array::ArrayRef,
    shown: impl Fn(String) -> String,
) -> Result<arrow::array::ArrayRef, arrow::error::ArrowError> {
    let formatter = arrow::util::display::ArrayFormatter::try_new(
        column.as_ref(),
        &arrow::util::display::FormatOptions::default(),
    )?;
    let text: arrow::array::StringArray = (0..column.len())
        .map(|i| {
            column
                .is_valid(i)
                .then(|| shown(formatter.value(i).to_string()))
        })
        .collect();
    Ok(std::sync::Arc::new(text))
}

/// `batch` with each column name that repeats an earlier one numbered
/// (`node`, `node_2`, as a join of two tables gives): a JSON object holds
/// each key once.
fn unique_names(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    let schema = batch.schema();
    let mut seen = std::collections::HashSet::new();
    let mut renamed = false;
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut name = f.name().clone();
            let mut n = 1;
            while !seen.insert(name.clone()) {
                n += 1;
                name = format!("{}_{n}", f.name());
                renamed = true;
            }
            f.as_ref().clone().with_name(name)
        })
        .collect();
    if !renamed {
        return Ok(batch.clone());
    }
    let schema = arrow::datatypes::Schema::new(fields);
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(schema),
        batch.columns().to_vec(),
    )?)
}

/// `schema` with the control characters of its column names shown as
/// text, and the columns [`escape_text_columns`] turns into text typed so.
fn escape_names(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let field = f.as_ref().clone().with_name(cell_text(f.name()));
            if shown_as_text(f.data_type()) {
                field.with_data_type(arrow::datatypes::DataType::Utf8)
            } else {
                field
            }
        })
        .collect();
    std::sync::Arc::new(arrow::datatypes::Schema::new(fields))
}

/// Columns a table shows by their display text, escaped as text is.
fn shown_as_text(t: &arrow::datatypes::DataType) -> bool {
    nested(t) || matches!(t, arrow::datatypes::DataType::Dictionary(..))
}

/// Text as a table cell shows it: control characters as text, and a tab or
/// line end escaped too (either would break the table's columns or rows).
fn cell_text(text: &str) -> String {
    escape_controls(text)
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

/// The answer of an EXPLAIN (DataFusion's two text columns).
fn is_explain(schema: &SchemaRef) -> bool {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    names == ["plan_type", "plan"]
}

/// `batch`, under its own schema (names escaped), with its text as `cell`
/// shows it: of text columns, and the display text of the columns
/// [`shown_as_text`].
fn escape_text_columns(
    batch: &RecordBatch,
    cell: fn(&str) -> String,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::DataType;
    let schema = escape_names(&batch.schema());
    let columns = batch
        .columns()
        .iter()
        .map(|c| -> Result<ArrayRef, arrow::error::ArrowError> {
            if shown_as_text(c.data_type()) {
                return display_text(c, |t| cell(&t));
            }
            if !matches!(
                c.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) {
                return Ok(c.clone());
            }
            let text = arrow::compute::cast(c, &DataType::Utf8)?;
            let text = text.as_any().downcast_ref::<StringArray>();
            let Some(text) = text else {
                return Ok(c.clone());
            };
            let escaped: StringArray = text.iter().map(|v| v.map(cell)).collect();
            arrow::compute::cast(&escaped, c.data_type())
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan's schema (the header) may say non-null where execution gave
    /// nulls: the table prints as before.
    #[test]
    fn a_table_prints_batches_whose_nullability_differs_from_the_plan() {
        use arrow::array::StringArray;
        use arrow::datatypes::{DataType, Field, Schema};
        use std::sync::Arc;
        let planned = Arc::new(Schema::new(vec![Field::new("pod", DataType::Utf8, false)]));
        let batch = RecordBatch::try_from_iter([(
            "pod",
            Arc::new(StringArray::from(vec![None, Some("a")])) as _,
        )])
        .unwrap();
        let mut out = Vec::new();
        write(&mut out, QueryFormat::Table, &planned, &[batch]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "+-----+\n| pod |\n+-----+\n|     |\n| a   |\n+-----+\n"
        );
    }

    #[test]
    fn a_table_shows_control_characters_as_text() {
        use arrow::array::{Array, ListArray, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use std::sync::Arc;
        let names = ListArray::from_iter_primitive::<arrow::datatypes::Int32Type, _, _>(vec![
            Some(vec![Some(1)]),
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("pod\x1b", DataType::Utf8, true),
            Field::new("n", names.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    "\x1b]0;pwned\x07\x1b[2J\u{202e}cba\t",
                ])),
                Arc::new(names),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        write(&mut out, QueryFormat::Table, &schema, &[batch]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "+--------------------------------+-----+\n\
             | pod^[                          | n   |\n\
             +--------------------------------+-----+\n\
             | ^[]0;pwned^G^[[2J\\u{202e}cba\\t | [1] |\n\
             +--------------------------------+-----+\n"
        );
    }

    /// A value holding a line end is one row, and an empty answer's CSV
    /// header is quoted as a full answer's (DataFusion names columns after
    /// their expressions, commas and quotes included).
    #[test]
    fn a_line_end_stays_in_its_row_and_an_empty_csv_header_is_quoted() {
        use arrow::array::StringArray;
        use arrow::datatypes::{DataType, Field, Schema};
        use std::sync::Arc;
        let schema = Arc::new(Schema::new(vec![
            Field::new("summary", DataType::Utf8, true),
            Field::new(
                "date_trunc(Utf8(\"hour\"),flows.time)",
                DataType::Utf8,
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["x\nALLOWED 10.0.0.1"])),
                Arc::new(StringArray::from(vec!["h"])),
            ],
        )
        .unwrap();
        let printed = |format, batches: &[RecordBatch]| {
            let mut out = Vec::new();
            write(&mut out, format, &schema, batches).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            printed(QueryFormat::Table, std::slice::from_ref(&batch)),
            "+---------------------+-------------------------------------+\n\
             | summary             | date_trunc(Utf8(\"hour\"),flows.time) |\n\
             +---------------------+-------------------------------------+\n\
             | x\\nALLOWED 10.0.0.1 | h                                   |\n\
             +---------------------+-------------------------------------+\n"
        );
        // A column name with a line end or a tab reads as one header cell.
        let names = escape_names(&Arc::new(Schema::new(vec![
            Field::new("new\nline", DataType::Utf8, true),
            Field::new("t\tab", DataType::Utf8, true),
        ])));
        let names: Vec<&str> = names.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["new\\nline", "t\\tab"]);
        let header = "summary,\"date_trunc(Utf8(\"\"hour\"\"),flows.time)\"\n";
        assert_eq!(printed(QueryFormat::Csv, &[]), header);
        assert!(printed(QueryFormat::Csv, &[batch]).starts_with(header));
    }

    /// `batch` printed in `format` under its own schema.
    fn print_one(format: QueryFormat, batch: &RecordBatch) -> String {
        let mut out = Vec::new();
        write(
            &mut out,
            format,
            &batch.schema(),
            std::slice::from_ref(batch),
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_utc_timestamp_prints_in_every_format() {
        // History's `time`: nanoseconds, zone "UTC" (a name, not an offset).
        let time = arrow::array::TimestampNanosecondArray::from(vec![1_764_979_200_123_456_789])
            .with_timezone("UTC");
        let batch = RecordBatch::try_from_iter([("time", std::sync::Arc::new(time) as _)]).unwrap();
        let printed = |format| print_one(format, &batch);
        assert_eq!(
            printed(QueryFormat::Table),
            "+--------------------------------+\n\
             | time                           |\n\
             +--------------------------------+\n\
             | 2025-12-06T00:00:00.123456789Z |\n\
             +--------------------------------+\n"
        );
        assert_eq!(
            printed(QueryFormat::Csv),
            "time\n2025-12-06T00:00:00.123456789Z\n"
        );
        assert_eq!(
            printed(QueryFormat::Json),
            "{\"time\":\"2025-12-06T00:00:00.123456789Z\"}\n"
        );
    }

    /// What `SELECT a.node, b.node, array_agg(port)` of a self-join gives:
    /// two columns of one name and a list.
    #[test]
    fn a_list_prints_as_json_in_csv_and_repeated_names_are_numbered_in_json() {
        use arrow::array::{Array, ListArray, StringArray};
        use arrow::datatypes::{DataType, Field, Int32Type, Schema};
        use std::sync::Arc;
        let ports = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(53), Some(8080)]),
            None,
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("node", DataType::Utf8, true),
            Field::new("node", DataType::Utf8, true),
            Field::new("ports", ports.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["n1", "n2"])),
                Arc::new(StringArray::from(vec!["n3", "n4"])),
                Arc::new(ports),
            ],
        )
        .unwrap();
        let printed = |format| {
            let mut out = Vec::new();
            write(&mut out, format, &schema, std::slice::from_ref(&batch)).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            printed(QueryFormat::Csv),
            "node,node,ports\nn1,n3,\"[53,8080]\"\nn2,n4,\n"
        );
        assert_eq!(
            printed(QueryFormat::Json),
            "{\"node\":\"n1\",\"node_2\":\"n3\",\"ports\":[53,8080]}\n\
             {\"node\":\"n2\",\"node_2\":\"n4\",\"ports\":null}\n"
        );
    }

    /// `array_agg` of labels, some with commas, and a struct: each cell reads
    /// back as the values it holds.
    #[test]
    fn a_nested_cell_in_csv_says_where_each_string_ends() {
        use arrow::array::{ArrayRef, Int64Array, ListBuilder, StringBuilder, StructArray};
        use arrow::datatypes::{DataType, Field};
        use std::sync::Arc;
        let mut labels = ListBuilder::new(StringBuilder::new());
        labels.values().append_value("k8s:app=web,db");
        labels.values().append_value("say \"hi\"");
        labels.append(true);
        labels.values().append_null();
        labels.append(true);
        let pair = StructArray::from(vec![(
            Arc::new(Field::new("port", DataType::Int64, true)),
            Arc::new(Int64Array::from(vec![Some(53), None])) as ArrayRef,
        )]);
        let batch = RecordBatch::try_from_iter([
            ("labels", Arc::new(labels.finish()) as ArrayRef),
            ("pair", Arc::new(pair) as ArrayRef),
        ])
        .unwrap();
        let mut out = Vec::new();
        write(&mut out, QueryFormat::Csv, &batch.schema(), &[batch]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "labels,pair\n\
             \"[\"\"k8s:app=web,db\"\",\"\"say \\\"\"hi\\\"\"\"\"]\",\"{\"\"port\"\":53}\"\n\
             [null],\"{\"\"port\"\":null}\"\n",
            "{text}"
        );
    }

    /// A map keyed by numbers has no JSON form: its cell is the table's text.
    #[test]
    fn a_cell_json_cannot_hold_prints_as_the_table_shows_it() {
        use arrow::array::{ArrayRef, Int32Builder, MapBuilder, StringBuilder};
        use std::sync::Arc;
        let mut map = MapBuilder::new(None, Int32Builder::new(), StringBuilder::new());
        map.keys().append_value(1);
        map.values().append_value("a,b");
        map.append(true).unwrap();
        let batch =
            RecordBatch::try_from_iter([("m", Arc::new(map.finish()) as ArrayRef)]).unwrap();
        let printed = |format| print_one(format, &batch);
        assert_eq!(printed(QueryFormat::Csv), "m\n\"{1: a,b}\"\n");
        // The JSON writer refused it ("Only UTF8 keys supported"), and
        // the query failed.
        assert_eq!(printed(QueryFormat::Json), "{\"m\":\"{1: a,b}\"}\n");
    }

    /// An EXPLAIN's plan shows as its lines (it printed as one line of
    /// `\n`s); its control characters are still shown as text.
    #[test]
    fn an_explains_plan_keeps_its_lines() {
        use arrow::array::{ArrayRef, StringArray};
        use std::sync::Arc;
        let batch = RecordBatch::try_from_iter([
            (
                "plan_type",
                Arc::new(StringArray::from(vec!["logical_plan"])) as ArrayRef,
            ),
            (
                "plan",
                Arc::new(StringArray::from(vec![
                    "Projection: x\n  TableScan: \u{1b}flows",
                ])),
            ),
        ])
        .unwrap();
        assert_eq!(
            print_one(QueryFormat::Table, &batch),
            "+--------------+----------------------+\n\
             | plan_type    | plan                 |\n\
             +--------------+----------------------+\n\
             | logical_plan | Projection: x        |\n\
             |              |   TableScan: ^[flows |\n\
             +--------------+----------------------+\n"
        );
    }

    /// Text inside a list (`array_agg(summary)`) is escaped before the
    /// table is laid out, as a text column's: a line end made a row of
    /// its own, and an ESC put the borders out of line.
    #[test]
    fn text_in_a_list_is_escaped_before_the_table_is_laid_out() {
        use arrow::array::{ArrayRef, ListBuilder, StringBuilder};
        use std::sync::Arc;
        let mut summaries = ListBuilder::new(StringBuilder::new());
        summaries.values().append_value("SYN\nfake row");
        summaries.values().append_value("\u{1b}[31mred");
        summaries.append(true);
        summaries.append(false);
        let batch =
            RecordBatch::try_from_iter([("s", Arc::new(summaries.finish()) as ArrayRef)]).unwrap();
        assert_eq!(
            print_one(QueryFormat::Table, &batch),
            "+----------------------------+\n\
             | s                          |\n\
             +----------------------------+\n\
             | [SYN\\nfake row, ^[[31mred] |\n\
             |                            |\n\
             +----------------------------+\n"
        );
    }

    fn numbers(range: std::ops::Range<u32>) -> RecordBatch {
        let column = arrow::array::UInt32Array::from_iter_values(range);
        RecordBatch::try_from_iter([("n", std::sync::Arc::new(column) as _)]).unwrap()
    }

    fn kept(t: &TableRows) -> Vec<u32> {
        t.batches
            .iter()
            .flat_map(|b| {
                let c = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::UInt32Array>();
                c.unwrap().values().to_vec()
            })
            .collect()
    }

    #[test]
    fn a_table_keeps_at_most_its_rows_and_knows_there_were_more() {
        let mut t = TableRows::new(5);
        assert!(t.push(numbers(0..3)));
        assert!(!t.push(numbers(3..7)), "full, with rows left over");
        assert_eq!(kept(&t), [0, 1, 2, 3, 4]);
        assert!(t.more);

        let mut exact = TableRows::new(5);
        assert!(exact.push(numbers(0..5)));
        assert!(!exact.more, "exactly full is not cut");
        assert!(!exact.push(numbers(5..6)));
        assert_eq!(kept(&exact), [0, 1, 2, 3, 4]);
        assert!(exact.more);

        let mut all = TableRows::new(0);
        assert!(all.push(numbers(0..20_000)));
        assert_eq!(all.rows, 20_000);
        assert!(!all.more);
        assert_eq!(
            cut_line(10_000),
            "showing the first 10,000 rows; the answer has more: add a LIMIT, raise \
             --max-rows (0: all), or print them as they come with -o csv or -o json"
        );
    }

    #[test]
    fn a_batch_over_the_message_limit_says_what_to_do() {
        // As tonic's decoder words it.
        let status = tonic::Status::internal(
            "Error, decoded message length too large: found 69240977 bytes, the limit is: \
             67108864 bytes",
        );
        assert_eq!(
            message(&status).to_string(),
            "a batch of the result is larger than the 64 MiB a message may carry (Error, \
             decoded message length too large: found 69240977 bytes, the limit is: 67108864 \
             bytes): select fewer or shorter columns, or aggregate more"
        );
        assert_eq!(
            message(&tonic::Status::invalid_argument("refused: x")).to_string(),
            "refused: x"
        );
    }

    #[test]
    fn a_server_without_sql_or_without_words_is_named_so() {
        assert_eq!(
            message(&tonic::Status::unimplemented("")).to_string(),
            format!(
                "the server does not answer SQL (Flight SQL is not implemented there): SQL is \
                 the relay's, whose history it reads; give --server the relay's address \
                 (default {DEFAULT_SERVER})"
            )
        );
        assert_eq!(
            message(&tonic::Status::internal("")).to_string(),
            "the server failed without saying why (Internal)"
        );
    }

    #[test]
    fn a_stream_that_breaks_says_so_and_the_servers_words_stay_its_own() {
        #[derive(clap::Parser)]
        #[command(no_binary_name = true)]
        struct Line {
            #[command(flatten)]
            connect: ConnectArgs,
        }
        let line = <Line as clap::Parser>::try_parse_from(["--server", "127.0.0.1:4245"]);
        let target = line.unwrap().connect.target(&[DEFAULT_SERVER]).unwrap();
        let failure = |s: tonic::Status| {
            stream_failure(&target, "127.0.0.1:4245", FlightError::Tonic(Box::new(s))).to_string()
        };
        let broken = tonic::Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "error reading a body from connection",
        )));
        assert_eq!(
            failure(broken),
            "the connection to 127.0.0.1:4245 broke during the stream (did the server stop or \
             restart?): error reading a body from connection"
        );
        assert_eq!(
            failure(tonic::Status::deadline_exceeded(
                "the query ran past --sql-timeout 30s"
            )),
            "the query ran past --sql-timeout 30s"
        );
    }

    #[test]
    fn a_statement_is_read_whole_up_to_the_relay_limit() {
        let text = "SELECT 1 -- é\n";
        assert_eq!(read_bounded(text.as_bytes(), "t").unwrap(), text);
        // A file saved with a byte-order mark reads without it.
        assert_eq!(
            read_bounded("\u{feff}SELECT 1\n".as_bytes(), "t").unwrap(),
            "SELECT 1\n"
        );
        let limit = usize::try_from(MAX_STATEMENT_BYTES).unwrap();
        assert_eq!(
            read_bounded(&vec![b' '; limit][..], "t").unwrap().len(),
            limit
        );
        assert_eq!(
            read_bounded(std::io::repeat(b'x'), "/dev/zero")
                .unwrap_err()
                .to_string(),
            "the SQL in /dev/zero is longer than 1048576 bytes (1 MiB), the longest \
             statement the relay accepts"
        );
        assert_eq!(
            read_bounded(&b"SELECT '\xff'"[..], "f.sql")
                .unwrap_err()
                .to_string(),
            "the SQL in f.sql is not UTF-8 text"
        );
    }

    /// A writer whose reader has gone away.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_reader_is_noticed_through_the_csv_writer() {
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("v", arrow::datatypes::DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![std::sync::Arc::new(arrow::array::Int64Array::from(vec![1]))],
        )
        .unwrap();
        let mut out = Output::new(Closed);
        assert!(write(&mut out, QueryFormat::Csv, &schema, &[batch]).is_err());
        assert!(out.closed);
    }

    #[test]
    fn missing_flows_are_read_from_app_metadata_and_said_per_node() {
        let meta = b"history_missing\tnode1\t1234\nother\tx\t1\nhistory_missing\tnode2\t1\n";
        let missing = decode_missing(meta);
        assert_eq!(
            missing,
            [("node1".to_string(), 1_234), ("node2".to_string(), 1)]
        );
        assert_eq!(
            missing_lines(&missing),
            [
                "history is missing 1,234 flows of node1 in this range",
                "history is missing 1 flow of node2 in this range",
            ]
        );
        assert_eq!(
            missing_lines(&[("n".into(), 1_234_567)]),
            ["history is missing 1,234,567 flows of n in this range"]
        );
        assert!(decode_missing(b"").is_empty());
        // A node name with a tab and a line break, escaped by the relay.
        assert_eq!(
            decode_missing(b"history_missing\ta\\tb\\nx\t7\n"),
            [("a\tb\nx".to_string(), 7)]
        );
    }
}
