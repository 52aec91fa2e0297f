//! `observe query "SELECT ..."`: read-only SQL over a relay's flow history,
//! asked over Arrow Flight SQL on the relay's gRPC port (default
//! localhost:4245), printed as a table, CSV or JSON lines. The table is
//! `flows`; its columns are documented in the README ("History and SQL").

use std::io::Write;

use anyhow::Context;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::{FlightDescriptor, FlightInfo};
use futures::{StreamExt, TryStreamExt};
use prost::Message;

use crate::connect::{ConnectArgs, Target};

/// The relay's default address.
pub const DEFAULT_SERVER: &str = "localhost:4245";

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    Table,
    Csv,
    /// One JSON object per row.
    Json,
}

/// `observe query`'s arguments.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The SQL: SELECT, WITH or EXPLAIN over the tables `flows`, `graph_nodes`, `graph_edges`.
    pub sql: String,
    #[arg(long, short = 'o', value_enum, default_value_t = QueryFormat::Table)]
    pub output: QueryFormat,
    /// The relay (default localhost:4245) and how to reach it.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs the query and prints the answer to stdout.
pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let (schema, batches) = query(&args.connect.target(&[DEFAULT_SERVER])?, &args.sql).await?;
    let mut out = std::io::stdout().lock();
    write(&mut out, args.output, &schema, &batches)?;
    out.flush()?;
    Ok(())
}

fn message(status: &tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", status.message())
}

/// Asks `server` to run `sql`: its schema and batches.
pub async fn query(server: &Target, sql: &str) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let (channel, _) = server.channel().await?;
    let mut client = FlightServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let command = CommandStatementQuery {
        query: sql.to_string(),
        transaction_id: None,
    };
    let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    let info: FlightInfo = client
        .get_flight_info(descriptor)
        .await
        .map_err(|s| server.connection_error(&s).unwrap_or_else(|| message(&s)))?
        .into_inner();
    let schema = std::sync::Arc::new(
        info.clone()
            .try_decode_schema()
            .context("the server's schema")?,
    );
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.context("an endpoint without a ticket")?;
        let data = client
            .do_get(ticket)
            .await
            .map_err(|s| message(&s))?
            .into_inner()
            .map_err(|s| FlightError::Tonic(Box::new(s)));
        let mut stream = FlightRecordBatchStream::new_from_flight_data(data).boxed();
        while let Some(batch) = stream.try_next().await.map_err(|e| match e {
            FlightError::Tonic(s) => message(&s),
            other => anyhow::anyhow!("{other}"),
        })? {
            batches.push(batch);
        }
    }
    Ok((schema, batches))
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
            let table =
                arrow::util::pretty::pretty_format_batches_with_schema(schema.clone(), batches)?;
            writeln!(out, "{table}")?;
        }
        QueryFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if batches.is_empty() {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                drop(w);
                writeln!(out, "{}", names.join(","))?;
            } else {
                for b in batches {
                    w.write(b)?;
                }
            }
        }
        QueryFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut *out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}
