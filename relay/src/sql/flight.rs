//! Arrow Flight SQL on the relay's gRPC port, next to `observer.Observer`:
//! `CommandStatementQuery` only. GetFlightInfo checks and plans the query and
//! answers its schema and one endpoint whose ticket carries the SQL text;
//! DoGet runs it and streams the batches. Errors keep their message and map
//! to gRPC codes: refused or malformed → `INVALID_ARGUMENT`, memory →
//! `RESOURCE_EXHAUSTED`, time → `DEADLINE_EXCEEDED`, no history →
//! `FAILED_PRECONDITION`.

use std::pin::Pin;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery};
use arrow_flight::{FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use futures::{Stream, StreamExt};
use prost::Message;
use tonic::{Request, Response, Status};

use super::{SqlEngine, SqlError};

/// The Flight SQL service over a [`SqlEngine`].
pub struct FlightSql {
    engine: SqlEngine,
}

/// The gRPC service to add to the relay's server.
pub fn service(engine: SqlEngine) -> FlightServiceServer<FlightSql> {
    FlightServiceServer::new(FlightSql { engine })
}

fn status(e: SqlError) -> Status {
    let msg = e.to_string();
    match e {
        SqlError::Parse(_)
        | SqlError::Refused(_)
        | SqlError::UnknownColumn { .. }
        | SqlError::Query(_) => Status::invalid_argument(msg),
        SqlError::Memory { .. } => Status::resource_exhausted(msg),
        SqlError::Timeout(_) => Status::deadline_exceeded(msg),
        SqlError::NoHistory => Status::failed_precondition(msg),
        SqlError::Io(_) => Status::internal(msg),
    }
}

type DoGet = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.engine.schema(&query.query).await.map_err(status)?;
        // Flows history lacks in the query's range, for `observe query`.
        let missing = self.engine.history_missing(&query.query).await;
        let handle = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        let ticket = Ticket::new(handle.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(request.into_inner())
            .with_app_metadata(super::missing::encode(&missing.unwrap_or_default()));
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("the ticket is not UTF-8 SQL"))?;
        let result = self.engine.query(&sql).await.map_err(status)?;
        let batches = futures::stream::iter(result.batches.into_iter().map(Ok));
        let stream: DoGet = FlightDataEncoderBuilder::new()
            .with_schema(result.schema)
            .build(batches)
            .map(|r| r.map_err(Status::from))
            .boxed();
        Ok(Response::new(stream))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
