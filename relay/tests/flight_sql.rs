//! Flight SQL as a standard client sees it (arrow-rs's own
//! `FlightSqlServiceClient`, not `observe query`): SqlInfo, catalogs,
//! schemas, tables with their Arrow schemas, table types, XDBC type info,
//! and prepared statements with a `?` parameter, still read-only.

mod common;

use test_support::history_flows as flows;

use std::sync::Arc;

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, CommandGetXdbcTypeInfo, SqlInfo, XdbcDataType,
};
use arrow_flight::{FlightInfo, IpcMessage};
use common::{engine, ingest, scratch, table};
use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
use relay::sql::SqlEngine;
use tonic::transport::Channel;

/// A Flight SQL server over the golden flows on 127.0.0.1:0, a client, and
/// the engine behind.
async fn serve(name: &str) -> (FlightSqlServiceClient<Channel>, SqlEngine) {
    let e = engine(&ingest(&scratch(name), flows::golden(), 2));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(relay::sql::flight::service(e.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (FlightSqlServiceClient::new(channel), e)
}

async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let stream = client.do_get(endpoint.ticket.unwrap()).await.unwrap();
        batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    batches
}

fn pretty(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(column).unwrap();
            let c = c.as_any().downcast_ref::<StringArray>().unwrap();
            (0..c.len())
                .map(|i| c.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_answers_what_clients_ask_first() {
    let (mut c, _) = serve("flight-metadata").await;

    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .unwrap();
    let got = pretty(&fetch(&mut c, info).await);
    assert!(
        got.contains("| 0         | {string_value=observe relay} |"),
        "{got}"
    );
    assert!(
        got.contains("| 3         | {bool_value=true}            |"),
        "{got}"
    );

    let info = c.get_catalogs().await.unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "catalog_name"),
        ["observe"]
    );

    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("observe".into()),
            db_schema_filter_pattern: Some("pub%".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "db_schema_name"),
        ["public"]
    );

    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch(&mut c, info).await;
    assert_eq!(
        strings(&tables, "table_name"),
        ["flows", "graph_edges", "graph_nodes", "policy_states"]
    );
    assert_eq!(
        strings(&tables, "table_type"),
        ["TABLE", "VIEW", "VIEW", "TABLE"]
    );
    let schemas = tables[0]
        .column_by_name("table_schema")
        .unwrap()
        .as_any()
        .downcast_ref::<datafusion::arrow::array::BinaryArray>()
        .unwrap()
        .value(0)
        .to_vec();
    let flows_schema = Schema::try_from(IpcMessage(schemas.into())).unwrap();
    assert_eq!(flows_schema, *relay::history::schema::schema());

    let info = c
        .get_tables(CommandGetTables {
            catalog: Some("observe".into()),
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("graph%".into()),
            table_types: vec!["VIEW".into()],
            include_schema: false,
        })
        .await
        .unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "table_name"),
        ["graph_edges", "graph_nodes"]
    );

    // A filter past its limit is refused before a builder sees it.
    let err = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("%".repeat(2048)),
            table_types: vec![],
            include_schema: false,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the table name filter pattern is 2048 bytes; at most 1024 are taken"),
        "{err}"
    );

    let info = c.get_table_types().await.unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "table_type"),
        ["TABLE", "VIEW"]
    );

    let info = c
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let types = strings(&fetch(&mut c, info).await, "type_name");
    assert_eq!(types.len(), 10, "{types:?}");
    let info = c
        .get_xdbc_type_info(CommandGetXdbcTypeInfo {
            data_type: Some(XdbcDataType::XdbcVarchar as i32),
        })
        .await
        .unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "type_name"),
        ["VARCHAR"]
    );
}

/// The column names of `schema`.
fn names(schema: &Schema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// What a JDBC client asks of a table it shows (its keys) and of a query
/// before it runs it (GetSchema): both were UNIMPLEMENTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_answer_no_rows_and_get_schema_answers_a_planned_query() {
    use arrow_flight::FlightDescriptor;
    use arrow_flight::sql::{
        CommandGetCrossReference, CommandGetExportedKeys, CommandGetImportedKeys,
        CommandGetPrimaryKeys, CommandStatementQuery, ProstMessageExt,
    };
    use prost::Message;

    let (mut c, _e) = serve("flight-keys").await;
    let primary = [
        "catalog_name",
        "db_schema_name",
        "table_name",
        "column_name",
        "key_name",
        "key_sequence",
    ];
    let foreign = [
        "pk_catalog_name",
        "pk_db_schema_name",
        "pk_table_name",
        "pk_column_name",
        "fk_catalog_name",
        "fk_db_schema_name",
        "fk_table_name",
        "fk_column_name",
        "key_sequence",
        "fk_key_name",
        "pk_key_name",
        "update_rule",
        "delete_rule",
    ];
    let info = c
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "flows".into(),
        })
        .await
        .unwrap();
    assert_eq!(names(&info.clone().try_decode_schema().unwrap()), primary);
    let batches = fetch(&mut c, info).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);

    let exported = c
        .get_exported_keys(CommandGetExportedKeys {
            catalog: Some("observe".into()),
            db_schema: Some("public".into()),
            table: "flows".into(),
        })
        .await
        .unwrap();
    let imported = c
        .get_imported_keys(CommandGetImportedKeys {
            catalog: None,
            db_schema: None,
            table: "policy_states".into(),
        })
        .await
        .unwrap();
    let cross = c
        .get_cross_reference(CommandGetCrossReference {
            pk_catalog: None,
            pk_db_schema: None,
            pk_table: "flows".into(),
            fk_catalog: None,
            fk_db_schema: None,
            fk_table: "graph_edges".into(),
        })
        .await
        .unwrap();
    for info in [exported, imported, cross] {
        let schema = info.clone().try_decode_schema().unwrap();
        assert_eq!(names(&schema), foreign);
        assert_eq!(
            schema.field(11).data_type(),
            &DataType::UInt8,
            "update_rule"
        );
        let batches = fetch(&mut c, info).await;
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    }
    let err = c
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: String::new(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the table is empty: name a table, e.g. flows"),
        "{err}"
    );

    // GetSchema: the schema GetFlightInfo answers.
    let flight = c.inner_mut().clone();
    let schema_of = |cmd: Vec<u8>| {
        let mut flight = flight.clone();
        async move { flight.get_schema(FlightDescriptor::new_cmd(cmd)).await }
    };
    let query = |sql: &str| {
        CommandStatementQuery {
            query: sql.into(),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec()
    };
    let got = schema_of(query("SELECT uuid, destination_port AS port FROM flows"))
        .await
        .unwrap()
        .into_inner();
    let got = Schema::try_from(&got).unwrap();
    assert_eq!(names(&got), ["uuid", "port"]);
    assert_eq!(got.field(1).data_type(), &DataType::UInt32);
    let keys = CommandGetPrimaryKeys {
        catalog: None,
        db_schema: None,
        table: "flows".into(),
    };
    let got = schema_of(keys.as_any().encode_to_vec())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&Schema::try_from(&got).unwrap()), primary);
    let err = schema_of(query("SELECT no_such_column FROM flows"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(
        err.message().contains("no_such_column"),
        "{}",
        err.message()
    );
    let err = flight
        .clone()
        .get_schema(FlightDescriptor::new_path(vec!["flows".into()]))
        .await
        .unwrap_err();
    // As GetFlightInfo answers a path: Flight SQL names datasets by command.
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_take_parameters_and_stay_read_only() {
    let (mut c, e) = serve("flight-prepared").await;
    let mut p = c
        .prepare(
            "SELECT uuid FROM flows WHERE destination_port = ? ORDER BY uuid".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        p.parameter_schema().unwrap(),
        &Schema::new(vec![Field::new("$1", DataType::UInt32, true)])
    );
    assert_eq!(p.dataset_schema().unwrap().field(0).name(), "uuid");
    let port = |p: i64| {
        let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                p,
            ]))],
        )
        .unwrap()
    };
    p.set_parameters(port(8080)).unwrap();
    let info = p.execute().await.unwrap();
    let rows = fetch(&mut c, info).await;
    assert_eq!(
        strings(&rows, "uuid"),
        ["uuid-00000", "uuid-00030", "uuid-00100", "uuid-03605"]
    );
    // The rows of the same query with the value written in.
    let direct = "SELECT uuid FROM flows WHERE destination_port = 8080 ORDER BY uuid";
    assert_eq!(pretty(&rows), table(&e, direct).await);
    // Bound again, run again.
    p.set_parameters(port(5432)).unwrap();
    let info = p.execute().await.unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "uuid"),
        ["uuid-00010", "uuid-00040"]
    );
    p.close().await.unwrap();

    let err = c
        .prepare("DROP TABLE flows".into(), None)
        .await
        .unwrap_err();
    let arrow_flight::error::FlightError::Tonic(status) = err else {
        panic!("{err:?}");
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "refused: DROP is not allowed: history is read-only, only SELECT, WITH, EXPLAIN, \
         DESCRIBE, SHOW TABLES and SHOW COLUMNS run"
    );

    // Not SQL: the parser's own words, once.
    let err = c.prepare("SELEC 1".into(), None).await.unwrap_err();
    let arrow_flight::error::FlightError::Tonic(status) = err else {
        panic!("{err:?}");
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "SQL syntax error: Expected: an SQL statement, found: SELEC at Line: 1, Column: 1"
    );
}

/// Arrow takes a compressed buffer's stated length on trust and allocates
/// it before decompressing; a failed allocation ends the process. A DoPut
/// of such a batch is refused by name, and the relay goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_batch_bound_to_a_statement_is_refused() {
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use arrow_flight::sql::{
        ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
        CommandPreparedStatementQuery, ProstMessageExt,
    };
    use arrow_flight::{Action, FlightData, FlightDescriptor};
    use datafusion::arrow::array::BinaryArray;
    use datafusion::arrow::ipc::CompressionType;
    use datafusion::arrow::ipc::writer::IpcWriteOptions;
    use prost::Message;

    let (mut c, _e) = serve("flight-compressed-put").await;
    let create = Action {
        r#type: "CreatePreparedStatement".into(),
        body: ActionCreatePreparedStatementRequest {
            query: "SELECT $1".into(),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec()
        .into(),
    };
    let mut results = c.inner_mut().do_action(create).await.unwrap().into_inner();
    let created = results.message().await.unwrap().unwrap();
    let created: ActionCreatePreparedStatementResult = Any::decode(&*created.body)
        .unwrap()
        .unpack()
        .unwrap()
        .unwrap();
    let descriptor = FlightDescriptor::new_cmd(
        CommandPreparedStatementQuery {
            prepared_statement_handle: created.prepared_statement_handle,
        }
        .as_any()
        .encode_to_vec(),
    );
    let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Binary, false)]));
    let value = vec![0u8; 64];
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(BinaryArray::from(vec![value.as_slice()]))],
    )
    .unwrap();
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .unwrap();
    let mut messages: Vec<FlightData> = FlightDataEncoderBuilder::new()
        .with_options(options)
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter([Ok(batch)]))
        .try_collect()
        .await
        .unwrap();
    // The last message is the batch: its first compressed buffer (an LZ4
    // frame, magic 04 22 4d 18) is told to decompress to 2^60 bytes.
    let body = messages.last_mut().unwrap();
    let mut bytes = body.data_body.to_vec();
    let frame = bytes
        .windows(4)
        .position(|w| w == [0x04, 0x22, 0x4d, 0x18])
        .expect("an LZ4 frame in the body");
    bytes[frame - 8..frame].copy_from_slice(&(1i64 << 60).to_le_bytes());
    body.data_body = bytes.into();

    let put = c.do_put(futures::stream::iter(messages)).await;
    let status = match put {
        Err(arrow_flight::error::FlightError::Tonic(status)) => *status,
        Ok(mut results) => results.message().await.unwrap_err(),
        Err(other) => panic!("{other:?}"),
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "compressed Arrow IPC parameter values are not taken: send them uncompressed"
    );
    // Still answering.
    let info = c.execute("SELECT 1 AS one".into(), None).await.unwrap();
    assert_eq!(
        pretty(&fetch(&mut c, info).await),
        "+-----+\n| one |\n+-----+\n| 1   |\n+-----+"
    );
}

/// A ticket that is no Flight SQL message is the client's fault, not the
/// relay's; ListActions names only what the relay implements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_invalid_and_only_implemented_actions_are_listed() {
    use arrow_flight::sql::{Any, CommandStatementQuery, ProstMessageExt};
    use arrow_flight::{Empty, FlightData, FlightDescriptor, Ticket};
    use prost::Message;

    let (mut c, _e) = serve("flight-garbage").await;
    // A statement ticket whose message does not decode (arrow-flight's
    // dispatch alone answered INTERNAL).
    let ticket = Any {
        type_url: CommandStatementQuery::type_url().into(),
        value: vec![0xffu8, 0xff, 0xff].into(),
    };
    let err = c
        .inner_mut()
        .do_get(Ticket::new(ticket.encode_to_vec()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(
        err.message()
            .starts_with("the ticket is not a Flight SQL command: "),
        "{}",
        err.message()
    );
    // The same as DoPut's command, in its first message's descriptor.
    let put = FlightData {
        flight_descriptor: Some(FlightDescriptor::new_cmd(ticket.encode_to_vec())),
        ..Default::default()
    };
    let err = c
        .inner_mut()
        .do_put(futures::stream::iter([put]))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            tonic::Code::InvalidArgument,
            "the DoPut descriptor is not a Flight SQL command: \
             Unable to decode Any value: failed to decode Protobuf message: \
             invalid varint"
        )
    );
    let mut listed = c
        .inner_mut()
        .list_actions(Empty {})
        .await
        .unwrap()
        .into_inner();
    let mut names = Vec::new();
    while let Some(a) = listed.message().await.unwrap() {
        names.push(a.r#type);
    }
    assert_eq!(names, ["CreatePreparedStatement", "ClosePreparedStatement"]);
    // Still answering.
    let info = c.execute("SELECT 1 AS one".into(), None).await.unwrap();
    assert_eq!(
        pretty(&fetch(&mut c, info).await),
        "+-----+\n| one |\n+-----+\n| 1   |\n+-----+"
    );
}
