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
use tonic::transport::Channel;

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
    /// Relay address, HOST:PORT.
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: String,
}

/// Runs the query and prints the answer to stdout, then on stderr how
/// many flows of its time range history is missing, if any.
pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let answer = ask(&args.server, &args.sql).await?;
    let mut out = std::io::stdout().lock();
    write(&mut out, args.output, &answer.schema, &answer.batches)?;
    out.flush()?;
    for line in missing_lines(&answer.missing) {
        eprintln!("{line}");
    }
    Ok(())
}

/// A query's answer and, per node, the flows of its time range that
/// history is missing (the relay dropped them: its writer fell behind).
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub missing: Vec<(String, u64)>,
}

/// `history is missing 1,234 flows of node1 in this range`, one per node.
pub fn missing_lines(missing: &[(String, u64)]) -> Vec<String> {
    missing
        .iter()
        .map(|(node, n)| {
            let digits = n.to_string();
            let mut grouped = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i).is_multiple_of(3) {
                    grouped.push(',');
                }
                grouped.push(c);
            }
            let flows = if *n == 1 { "flow" } else { "flows" };
            format!("history is missing {grouped} {flows} of {node} in this range")
        })
        .collect()
}

/// `history_missing<TAB>node<TAB>flows` lines of the relay's
/// `FlightInfo.app_metadata` (other lines are skipped).
fn decode_missing(app_metadata: &[u8]) -> Vec<(String, u64)> {
    String::from_utf8_lossy(app_metadata)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            (f.next()? == "history_missing").then_some(())?;
            let node = f.next()?.to_string();
            let flows = f.next()?.parse().ok()?;
            Some((node, flows))
        })
        .collect()
}

fn message(status: &tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", status.message())
}

/// Asks `server` to run `sql`: its schema and batches.
pub async fn query(server: &str, sql: &str) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let a = ask(server, sql).await?;
    Ok((a.schema, a.batches))
}

/// Asks `server` to run `sql`: its answer, with what history is missing.
pub async fn ask(server: &str, sql: &str) -> anyhow::Result<Answer> {
    let uri = if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    let channel = Channel::from_shared(uri.clone())
        .with_context(|| format!("invalid server address {server:?}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let mut client = FlightServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let command = CommandStatementQuery {
        query: sql.to_string(),
        transaction_id: None,
    };
    let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    let info: FlightInfo = client
        .get_flight_info(descriptor)
        .await
        .map_err(|s| message(&s))?
        .into_inner();
    let schema = std::sync::Arc::new(
        info.clone()
            .try_decode_schema()
            .context("the server's schema")?,
    );
    let missing = decode_missing(&info.app_metadata);
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
    Ok(Answer {
        schema,
        batches,
        missing,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
