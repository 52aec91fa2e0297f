//! `observe status` and `observe nodes`, in the manner of `hubble status` and
//! `hubble list nodes`.

use observer_proto::observer::{GetNodesRequest, ServerStatusRequest, ServerStatusResponse};
use observer_proto::relay::NodeState;

use crate::connect::Target;

pub async fn status(target: &Target) -> anyhow::Result<()> {
    let (mut client, address) = target.observer().await?;
    let s = client
        .server_status(ServerStatusRequest {})
        .await
        .map_err(|s| target.status_error(s))?
        .into_inner();
    crate::pipe::print(&render_status(address, &s))?;
    Ok(())
}

pub fn render_status(server: &str, s: &ServerStatusResponse) -> String {
    let pct = if s.max_flows == 0 {
        0.0
    } else {
        100.0 * s.num_flows as f64 / s.max_flows as f64
    };
    let connected = s.num_connected_nodes.unwrap_or(0);
    let total = connected + s.num_unavailable_nodes.unwrap_or(0);
    let mut out = format!(
        "Healthcheck (via {server}): Ok\nCurrent/Max Flows: {}/{} ({pct:.2}%)\nFlows/s: {:.2}\nConnected Nodes: {connected}/{total}\n",
        s.num_flows, s.max_flows, s.flows_rate
    );
    if !s.unavailable_nodes.is_empty() {
        out += &format!("Unavailable Nodes: {}\n", s.unavailable_nodes.join(", "));
    }
    if !s.kernel_features.is_empty() {
        out += "Kernel features:\n";
        for k in &s.kernel_features {
            let detail = if k.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", k.detail)
            };
            out += &format!(
                "  {:<28} {}{detail}\n",
                k.name,
                if k.available { "yes" } else { "NO" }
            );
        }
    }
    out
}

pub async fn nodes(target: &Target) -> anyhow::Result<()> {
    let (mut client, _) = target.observer().await?;
    let resp = client
        .get_nodes(GetNodesRequest {})
        .await
        .map_err(|s| target.status_error(s))?
        .into_inner();
    crate::outln!(
        "{:<20} {:<12} {:<10} {:>12} {:<22}",
        "NAME",
        "STATUS",
        "AGE",
        "FLOWS/S",
        "ADDRESS"
    )?;
    for n in resp.nodes {
        let state = NodeState::try_from(n.state).map(|s| match s {
            NodeState::NodeConnected => "Connected",
            NodeState::NodeUnavailable => "Unavailable",
            NodeState::NodeGone => "Gone",
            NodeState::NodeError => "Error",
            NodeState::UnknownNodeState => "Unknown",
        });
        let age = n.uptime_ns / 1_000_000_000;
        let rate = if age == 0 {
            0.0
        } else {
            n.seen_flows as f64 / age as f64
        };
        crate::outln!(
            "{:<20} {:<12} {:<10} {:>12.2} {:<22}",
            n.name,
            state.unwrap_or("Unknown"),
            format!("{age}s"),
            rate,
            n.address
        )?;
    }
    Ok(())
}
