//! Arrow Flight SQL on the relay's gRPC port, next to `observer.Observer`,
//! for our `observe query` and for standard clients (ADBC, JDBC, Grafana):
//!
//! - statements: GetFlightInfo checks and plans the query and answers its
//!   schema and one endpoint whose ticket carries the SQL text; DoGet runs
//!   it and streams the batches as they come;
//! - [`prepared`] statements: CreatePreparedStatement (checked and planned:
//!   the result's schema and the parameters', `$1` or `?`), DoPut of one row
//!   of values, GetFlightInfo and DoGet, ClosePreparedStatement;
//! - [`metadata`]: GetSqlInfo, GetCatalogs, GetDbSchemas, GetTables (with
//!   each table's Arrow schema on request), GetTableTypes, GetXdbcTypeInfo,
//!   and the keys (GetPrimaryKeys, GetExportedKeys, GetImportedKeys,
//!   GetCrossReference: no table has any);
//! - [`checked`]: what clients reach, the requests' messages checked before
//!   arrow-flight's dispatch, GetSchema (the schema GetFlightInfo would
//!   answer, the query planned, not run), and ListActions naming what is
//!   implemented.
//!
//! Everything stays read-only: every run goes through the engine's guard.
//! A client that goes away drops its DoGet stream, which cancels the query.
//! Errors keep their message and map to gRPC codes: refused or malformed →
//! `INVALID_ARGUMENT`, memory or too many queries → `RESOURCE_EXHAUSTED`,
//! time → `DEADLINE_EXCEEDED`, no history → `FAILED_PRECONDITION`, shutting
//! down → `UNAVAILABLE`, a closed prepared statement → `NOT_FOUND`, history
//! unreadable or a fault in the relay → `INTERNAL`.

pub mod checked;
pub mod metadata;
pub mod prepared;

use std::pin::Pin;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc,
    Ticket,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use futures::{Stream, StreamExt};
use prost::Message;
use tonic::{Request, Response, Status};

use super::stream::QueryStream;
use super::{SqlEngine, SqlError};
use prepared::PreparedStatements;

/// The Flight SQL service over a [`SqlEngine`].
pub struct FlightSql {
    engine: SqlEngine,
    prepared: PreparedStatements,
    /// Built once; an error here is a bug, answered as `INTERNAL`.
    sql_info: Result<SqlInfoData, Status>,
    xdbc: Result<XdbcTypeInfoData, Status>,
}

/// The gRPC service to add to the relay's server.
pub fn service(engine: SqlEngine) -> FlightServiceServer<checked::Checked> {
    FlightServiceServer::new(checked::Checked(FlightSql {
        sql_info: metadata::sql_info(&engine.limits()),
        xdbc: metadata::xdbc_types(),
        prepared: PreparedStatements::default(),
        engine,
    }))
}

/// `e` as the gRPC status a client gets.
pub fn status(e: SqlError) -> Status {
    let msg = e.to_string();
    match e {
        SqlError::Parse(_)
        | SqlError::Refused(_)
        | SqlError::UnknownColumn { .. }
        | SqlError::Parameters(_)
        | SqlError::Query(_) => Status::invalid_argument(msg),
        SqlError::Memory { .. } | SqlError::MemoryTotal { .. } | SqlError::Busy { .. } => {
            Status::resource_exhausted(msg)
        }
        SqlError::Timeout(_) => Status::deadline_exceeded(msg),
        SqlError::ShuttingDown => Status::unavailable(msg),
        SqlError::NoHistory => Status::failed_precondition(msg),
        SqlError::Io(_) | SqlError::Fault(_) => Status::internal(msg),
    }
}

type DoGet = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// A running query's batches as Flight data.
fn rows(stream: QueryStream) -> Response<DoGet> {
    let schema = stream.schema();
    let batches = stream.map(|r| r.map_err(|e| FlightError::Tonic(Box::new(status(e)))));
    let data: DoGet = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map(|r| r.map_err(Status::from))
        .boxed();
    Response::new(data)
}

/// One metadata batch as Flight data.
fn batch(batch: RecordBatch) -> Response<DoGet> {
    let data: DoGet = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::once(async { Ok(batch) }))
        .map(|r| r.map_err(Status::from))
        .boxed();
    Response::new(data)
}

/// A FlightInfo with `schema` and one endpoint whose ticket is `ticket`.
fn info(
    schema: &Schema,
    ticket: Vec<u8>,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(request.into_inner());
    Ok(Response::new(info))
}

/// The FlightInfo of a foreign-keys request: no rows, the protocol's schema.
fn foreign_keys_info(
    ticket: Vec<u8>,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    info(&metadata::foreign_keys_schema(), ticket, request)
}

/// A foreign-keys answer: no table has a key.
fn no_foreign_keys() -> Response<DoGet> {
    batch(RecordBatch::new_empty(metadata::foreign_keys_schema()))
}

/// A schema as Arrow IPC bytes.
fn ipc(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(message.0)
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let described = self
            .engine
            .describe(&query.query, None)
            .await
            .map_err(status)?;
        // Flows history lacks in the query's range, for `observe query`.
        let missing = self.engine.missing_in(described.reads.as_ref());
        let handle = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        let response = info(&described.schema, handle.as_any().encode_to_vec(), request)?;
        Ok(response.map(|i| i.with_app_metadata(super::missing::encode(&missing))))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("the ticket is not UTF-8 SQL"))?;
        let stream = self.engine.stream(&sql, Vec::new()).await.map_err(status)?;
        Ok(rows(stream))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let described = self
            .engine
            .describe(&query.query, None)
            .await
            .map_err(status)?;
        let parameters = Schema::new(
            described
                .parameters
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Field::new(
                        format!("${}", i + 1),
                        t.clone().unwrap_or(DataType::Null),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: self
                .prepared
                .open(query.query, request.remote_addr().map(|a| a.ip()))?,
            dataset_schema: ipc(&described.schema)?,
            parameter_schema: ipc(&parameters)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = query.prepared_statement_handle;
        // A handle not open is told before any value is read.
        self.prepared.get(&handle)?;
        let values = prepared::values(request.into_inner()).await?;
        self.prepared.bind(&handle, values)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.prepared.get(&query.prepared_statement_handle)?;
        let described = self
            .engine
            .describe(&p.sql, Some(p.values))
            .await
            .map_err(status)?;
        info(&described.schema, query.as_any().encode_to_vec(), request)
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let p = self.prepared.get(&query.prepared_statement_handle)?;
        let stream = self.engine.stream(&p.sql, p.values).await.map_err(status)?;
        Ok(rows(stream))
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        self.prepared.close(&query.prepared_statement_handle)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let data = self.sql_info.as_ref().map_err(Clone::clone)?;
        let query = metadata::check_sql_info(query)?;
        info(&data.schema(), query.as_any().encode_to_vec(), request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let data = self.sql_info.as_ref().map_err(Clone::clone)?;
        let b = metadata::check_sql_info(query)?
            .into_builder(data)
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(batch(b))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let data = self.xdbc.as_ref().map_err(Clone::clone)?;
        info(&data.schema(), query.as_any().encode_to_vec(), request)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let data = self.xdbc.as_ref().map_err(Clone::clone)?;
        let b = query
            .into_builder(data)
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(batch(b))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request)
    }

    async fn do_get_catalogs(
        &self,
        _query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(batch(metadata::catalogs()?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata::check_schemas(&query)?;
        let schema = query.clone().into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(batch(metadata::schemas(query)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata::check_tables(&query)?;
        let schema = query.clone().into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(batch(metadata::tables_batch(query)?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(batch(metadata::table_types(query)?))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata::check_key_table("table", &query.table)?;
        info(
            &metadata::primary_keys_schema(),
            query.as_any().encode_to_vec(),
            request,
        )
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        metadata::check_key_table("table", &query.table)?;
        Ok(batch(RecordBatch::new_empty(
            metadata::primary_keys_schema(),
        )))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata::check_key_table("table", &query.table)?;
        foreign_keys_info(query.as_any().encode_to_vec(), request)
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        metadata::check_key_table("table", &query.table)?;
        Ok(no_foreign_keys())
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata::check_key_table("table", &query.table)?;
        foreign_keys_info(query.as_any().encode_to_vec(), request)
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        metadata::check_key_table("table", &query.table)?;
        Ok(no_foreign_keys())
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata::check_key_table("pk_table", &query.pk_table)?;
        metadata::check_key_table("fk_table", &query.fk_table)?;
        foreign_keys_info(query.as_any().encode_to_vec(), request)
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        metadata::check_key_table("pk_table", &query.pk_table)?;
        metadata::check_key_table("fk_table", &query.fk_table)?;
        Ok(no_foreign_keys())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
