//! A graph from a finished `GetFlows` stream (`observe graph -o dot|mermaid|json`).

use observer_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use tokio_stream::{Stream, StreamExt};

use crate::builder::GraphBuilder;
use crate::model::ServiceGraph;

/// Folds every flow of `stream` into a graph (no window); other responses are skipped.
pub async fn collect(
    stream: impl Stream<Item = Result<GetFlowsResponse, tonic::Status>> + Unpin,
) -> Result<ServiceGraph, tonic::Status> {
    collect_with(GraphBuilder::new(), stream).await
}

/// As [`collect`], into `b` (a builder with its options set).
pub async fn collect_with(
    mut b: GraphBuilder,
    mut stream: impl Stream<Item = Result<GetFlowsResponse, tonic::Status>> + Unpin,
) -> Result<ServiceGraph, tonic::Status> {
    while let Some(resp) = stream.next().await {
        if let Some(ResponseTypes::Flow(f)) = resp?.response_types {
            b.add(&f);
        }
    }
    Ok(b.into_graph())
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::graph_flows as fixtures;

    #[tokio::test]
    async fn collects_the_flows_of_a_stream() {
        let items = fixtures::flows().into_iter().map(|f| {
            Ok(GetFlowsResponse {
                response_types: Some(ResponseTypes::Flow(f)),
                ..Default::default()
            })
        });
        let g = collect(tokio_stream::iter(items)).await.unwrap();
        assert_eq!(g.edges().len(), 4);
        let failing = tokio_stream::iter(vec![Err(tonic::Status::unavailable("gone"))]);
        assert_eq!(
            collect(failing).await.unwrap_err().code(),
            tonic::Code::Unavailable
        );
    }
}
