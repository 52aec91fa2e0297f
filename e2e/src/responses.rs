//! Reading relayed responses: flows, node-status events, ports, times.

use observer_proto::flow::Flow;
use observer_proto::observer::GetFlowsResponse;
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::relay::{NodeState, NodeStatusEvent};

pub fn flow(r: &GetFlowsResponse) -> Option<&Flow> {
    match &r.response_types {
        Some(ResponseTypes::Flow(f)) => Some(f),
        _ => None,
    }
}

pub fn node_status(r: &GetFlowsResponse) -> Option<&NodeStatusEvent> {
    match &r.response_types {
        Some(ResponseTypes::NodeStatus(e)) => Some(e),
        _ => None,
    }
}

pub use test_support::flows::ports;

pub fn is_flow_on(r: &GetFlowsResponse, node: &str, port: u32) -> bool {
    flow(r).is_some_and(|f| {
        r.node_name == node && ports(f).is_some_and(|(s, d)| s == port || d == port)
    })
}

pub fn flow_time(r: &GetFlowsResponse) -> i128 {
    let t = r.time.as_ref().expect("relayed flows carry their time");
    i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
}

pub fn describe(log: &[GetFlowsResponse]) -> String {
    log.iter()
        .map(|r| match &r.response_types {
            Some(ResponseTypes::Flow(f)) => format!(
                "{} {} flow {:?} {}",
                flow_time(r),
                r.node_name,
                ports(f),
                f.ip.as_ref().map_or(String::new(), |ip| format!(
                    "{} -> {}",
                    ip.source, ip.destination
                ))
            ),
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn event(state: NodeState, names: &[&str]) -> (i32, Vec<String>) {
    (state as i32, names.iter().map(|s| s.to_string()).collect())
}

pub fn shape(e: &NodeStatusEvent) -> (i32, Vec<String>) {
    (e.state_change, e.node_names.clone())
}

/// Flow times never go backwards.
pub fn assert_time_order(responses: &[GetFlowsResponse]) {
    let flows: Vec<&GetFlowsResponse> = responses.iter().filter(|r| flow(r).is_some()).collect();
    for pair in flows.windows(2) {
        assert!(
            flow_time(pair[0]) <= flow_time(pair[1]),
            "out of time order:\n{}",
            describe(&flows.iter().map(|r| (*r).clone()).collect::<Vec<_>>())
        );
    }
}
