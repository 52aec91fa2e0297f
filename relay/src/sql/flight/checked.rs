//! [`Checked`]: the Flight service clients reach, around [`FlightSql`].
//! arrow-flight's dispatch decodes each command before our handlers see it,
//! and answers two things in a way a client would misread:
//!
//! - a command, ticket or action body that does not decode as the message
//!   it names is the client's fault, but the dispatch answers `INTERNAL` (as
//!   if the relay had failed): it is checked here first, `INVALID_ARGUMENT`
//!   (a message of a type Flight SQL does not know goes on, and is answered
//!   as not implemented);
//! - DoPut's command comes in its stream's first message, which the dispatch
//!   must keep for the handler, so it cannot be read here: the dispatch's
//!   `INTERNAL` for one that does not decode is turned into
//!   `INVALID_ARGUMENT` after the fact (`put_refusal`);
//! - ListActions lists every action of the protocol, transactions and
//!   query cancellation included, which this relay does not implement: it
//!   lists the two it does;
//! - GetSchema is not dispatched at all (arrow-flight answers
//!   `UNIMPLEMENTED`): here it answers the schema GetFlightInfo gives for
//!   the same descriptor (a query is planned, not run), as ADBC's
//!   `execute_schema` and JDBC's result metadata ask.

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, Any, Command,
};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, PollInfo, SchemaResult, Ticket,
};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::FlightSql;

/// Flight SQL's action names (the protocol's).
const CREATE_PREPARED_STATEMENT: &str = "CreatePreparedStatement";
const CLOSE_PREPARED_STATEMENT: &str = "ClosePreparedStatement";

/// [`FlightSql`] with its requests' messages checked first.
pub struct Checked(pub FlightSql);

type Inner = FlightSql;

/// `bytes` as a Flight SQL command (in an `Any`), or why not.
fn command(bytes: &[u8], what: &str) -> Result<(), Status> {
    let not = |e: &dyn std::fmt::Display| {
        Status::invalid_argument(format!("the {what} is not a Flight SQL command: {e}"))
    };
    let any = Any::decode(bytes).map_err(|e| not(&e))?;
    Command::try_from(any).map(drop).map_err(|e| not(&e))
}

/// An action's body as the message its type needs, or why not; other
/// types go on to the dispatch, which refuses them by name.
fn action_body(action: &Action) -> Result<(), Status> {
    fn unpacks<M: arrow_flight::sql::ProstMessageExt>(body: &[u8]) -> bool {
        Any::decode(body).is_ok_and(|any| matches!(any.unpack::<M>(), Ok(Some(_))))
    }
    let fits = match action.r#type.as_str() {
        CREATE_PREPARED_STATEMENT => unpacks::<ActionCreatePreparedStatementRequest>(&action.body),
        CLOSE_PREPARED_STATEMENT => unpacks::<ActionClosePreparedStatementRequest>(&action.body),
        _ => true,
    };
    if fits {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "the body of action {} is not its Flight SQL request message",
            action.r#type
        )))
    }
}

/// The dispatch's answer to a DoPut whose command names a Flight SQL
/// message but does not decode as it: `INTERNAL` with the Debug text of
/// the parse error. Ours never say that.
const DISPATCH_PARSE_ERROR: &str = "ParseError(";

/// `status` from DoPut's dispatch, the client's fault where it is.
fn put_refusal(status: Status) -> Status {
    match status.message().strip_prefix(DISPATCH_PARSE_ERROR) {
        Some(rest) if status.code() == tonic::Code::Internal => Status::invalid_argument(format!(
            "the DoPut descriptor is not a Flight SQL command: {}",
            rest.trim_end_matches(')').trim_matches('"')
        )),
        _ => status,
    }
}

/// The actions this relay implements.
fn actions() -> Vec<Result<ActionType, Status>> {
    [
        (
            CREATE_PREPARED_STATEMENT,
            "Checks and plans a query: a handle, the result's schema and the parameters'. \
             Request: ActionCreatePreparedStatementRequest; result: \
             ActionCreatePreparedStatementResult",
        ),
        (
            CLOSE_PREPARED_STATEMENT,
            "Closes a prepared statement. Request: ActionClosePreparedStatementRequest",
        ),
    ]
    .into_iter()
    .map(|(r#type, description)| {
        Ok(ActionType {
            r#type: r#type.into(),
            description: description.into(),
        })
    })
    .collect()
}

#[tonic::async_trait]
impl FlightService for Checked {
    type HandshakeStream = <Inner as FlightService>::HandshakeStream;
    type ListFlightsStream = <Inner as FlightService>::ListFlightsStream;
    type DoGetStream = <Inner as FlightService>::DoGetStream;
    type DoPutStream = <Inner as FlightService>::DoPutStream;
    type DoActionStream = <Inner as FlightService>::DoActionStream;
    type ListActionsStream = <Inner as FlightService>::ListActionsStream;
    type DoExchangeStream = <Inner as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(&self.0, request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        FlightService::list_flights(&self.0, request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command(&request.get_ref().cmd, "descriptor")?;
        FlightService::get_flight_info(&self.0, request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        FlightService::poll_flight_info(&self.0, request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        command(&request.get_ref().cmd, "descriptor")?;
        let info = FlightService::get_flight_info(&self.0, request).await?;
        Ok(Response::new(SchemaResult {
            schema: info.into_inner().schema,
        }))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        command(&request.get_ref().ticket, "ticket")?;
        FlightService::do_get(&self.0, request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(&self.0, request)
            .await
            .map_err(put_refusal)
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        FlightService::do_exchange(&self.0, request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        action_body(request.get_ref())?;
        FlightService::do_action(&self.0, request).await
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Ok(Response::new(Box::pin(futures::stream::iter(actions()))))
    }
}

#[cfg(test)]
mod tests {
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};

    use super::*;

    #[test]
    fn a_put_that_does_not_parse_is_the_clients_fault() {
        let dispatch = Status::internal(
            "ParseError(\"Unable to decode Any value: failed to decode Protobuf message\")",
        );
        let refused = put_refusal(dispatch);
        assert_eq!(
            (refused.code(), refused.message()),
            (
                tonic::Code::InvalidArgument,
                "the DoPut descriptor is not a Flight SQL command: \
                 Unable to decode Any value: failed to decode Protobuf message"
            )
        );
        // Our own faults stay ours.
        let ours = put_refusal(Status::internal("the query's task failed"));
        assert_eq!(ours.code(), tonic::Code::Internal);
    }

    #[test]
    fn garbage_is_the_clients_fault() {
        let query = CommandStatementQuery {
            query: "SELECT 1".into(),
            transaction_id: None,
        };
        assert!(command(&query.as_any().encode_to_vec(), "ticket").is_ok());
        // Not an Any at all, and a command whose message does not decode.
        for bad in [
            vec![0xff, 0xff, 0xff],
            Any {
                type_url: CommandStatementQuery::type_url().into(),
                value: vec![0xff, 0xff, 0xff].into(),
            }
            .encode_to_vec(),
        ] {
            let err = command(&bad, "ticket").unwrap_err();
            let said = err.message().split_once(": ").map(|(what, _)| what);
            assert_eq!(
                (err.code(), said),
                (
                    tonic::Code::InvalidArgument,
                    Some("the ticket is not a Flight SQL command")
                )
            );
        }
        // An action whose body is another message.
        let close = Action {
            r#type: CLOSE_PREPARED_STATEMENT.into(),
            body: query.as_any().encode_to_vec().into(),
        };
        assert_eq!(
            action_body(&close).unwrap_err().message(),
            "the body of action ClosePreparedStatement is not its Flight SQL request message"
        );
        let names: Vec<String> = actions().into_iter().map(|a| a.unwrap().r#type).collect();
        assert_eq!(names, [CREATE_PREPARED_STATEMENT, CLOSE_PREPARED_STATEMENT]);
    }
}
