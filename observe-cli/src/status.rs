//! `observe status` and `observe nodes`, in the manner of `hubble status` and
//! `hubble list nodes`.

use observer_proto::health::HealthCheckRequest;
use observer_proto::health::health_check_response::ServingStatus;
use observer_proto::health::health_client::HealthClient;
use observer_proto::observe::v1::endpoint_status::State;
use observer_proto::observer::{
    GetNamespacesRequest, GetNodesRequest, Namespace, Node, ServerStatusRequest,
    ServerStatusResponse,
};
use observer_proto::relay::NodeState;

use crate::connect::Target;
// Counts grouped by three digits (`8,190`), as hubble prints them.
use crate::query_command::grouped;

/// How `observe status` prints, as `hubble status -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    /// Lines for people (hubble's `compact`).
    #[value(alias = "compact")]
    Text,
    /// The counters as `KEY: value` lines, as `hubble status -o dict`.
    Dict,
    /// The counters as a header and one row, as `hubble status -o table`.
    #[value(alias = "tab")]
    Table,
    /// The ServerStatus answer as one JSON object (protojson, proto field
    /// names), for scripts.
    #[value(alias = "jsonpb")]
    Json,
}

/// The service `hubble status` asks the health of.
const OBSERVER_SERVICE: &str = "observer.Observer";

pub async fn status(target: &Target, format: StatusFormat) -> anyhow::Result<()> {
    let (channel, address) = target.call_channel().await?;
    // As hubble status: the standard health check first, then the status.
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: OBSERVER_SERVICE.into(),
        })
        .await
        .map_err(|s| target.status_error(s))?
        .into_inner()
        .status();
    // Hubble names the server without its scheme.
    let address = address.strip_prefix("tls://").unwrap_or(address);
    if health != ServingStatus::Serving {
        if format == StatusFormat::Text {
            crate::outln!(
                "Healthcheck (via {address}): Unavailable: {}",
                health.as_str_name()
            )?;
        }
        anyhow::bail!("not healthy");
    }
    let mut client = crate::connect::observer_client(channel);
    let s = client
        .server_status(ServerStatusRequest {})
        .await
        .map_err(|s| target.status_error(s))?
        .into_inner();
    let text = match format {
        StatusFormat::Text => render_status(address, &s),
        StatusFormat::Dict => render_counters(&s, false),
        StatusFormat::Table => render_counters(&s, true),
        StatusFormat::Json => {
            let json = observer_proto::json::to_json("observer.ServerStatusResponse", &s)?;
            return Ok(crate::pipe::print(&(json + "\n"))?);
        }
    };
    // Node names and messages are the servers' words: shown, never obeyed.
    crate::pipe::print(&crate::flows::output::escape_controls(&text))?;
    Ok(())
}

pub fn render_status(server: &str, s: &ServerStatusResponse) -> String {
    // As hubble status: no share of nothing, node counts only from a
    // server that keeps them, one line per unavailable node.
    let share = if s.max_flows == 0 {
        String::new()
    } else {
        format!(" ({:.2}%)", 100.0 * s.num_flows as f64 / s.max_flows as f64)
    };
    let mut out = format!(
        "Healthcheck (via {server}): Ok\nCurrent/Max Flows: {}/{}{share}\nFlows/s: {}\n",
        grouped(s.num_flows),
        grouped(s.max_flows),
        flows_per_second(s, true)
    );
    if let Some(connected) = s.num_connected_nodes {
        let total = s
            .num_unavailable_nodes
            .map_or(String::new(), |u| format!("/{}", connected + u));
        out += &format!("Connected Nodes: {connected}{total}\n");
    }
    // A relay names at most ten of them and counts them all; the names
    // sorted, as hubble shows them.
    if let Some(unavailable) = s.num_unavailable_nodes.filter(|n| *n > 0) {
        out += &format!("Unavailable Nodes: {unavailable}\n");
        let mut named: Vec<&String> = s.unavailable_nodes.iter().collect();
        named.sort();
        for n in &named {
            out += &format!("  - {n}\n");
        }
        let more = unavailable.saturating_sub(named.len() as u32);
        if !named.is_empty() && more > 0 {
            out += &format!("  - and {more} more...\n");
        }
    }
    if !s.kernel_features.is_empty() {
        out += "Kernel features:\n";
        for k in &s.kernel_features {
            let detail = if k.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", k.detail)
            };
            let width = s.kernel_features.iter().map(|k| k.name.len()).max();
            let available = if k.available { "yes" } else { "NO" };
            out += &format!(
                "  {:<width$} {available}{detail}\n",
                k.name,
                width = width.unwrap_or(0),
            );
        }
    }
    out += &render_config_files(s);
    out += &render_endpoints(s);
    out
}

/// The counters of a status as `hubble status -o dict` (or `-o table`)
/// prints them.
fn render_counters(s: &ServerStatusResponse, table: bool) -> String {
    // As hubble: a server that keeps no node counts (a probe) has N/A.
    let or_na = |n: Option<u32>| n.map_or_else(|| "N/A".to_string(), |n| n.to_string());
    let fields = [
        ("NUM FLOWS", grouped(s.num_flows)),
        ("MAX FLOWS", grouped(s.max_flows)),
        ("SEEN FLOWS", grouped(s.seen_flows)),
        ("FLOWS PER SECOND", flows_per_second(s, false)),
        ("UPTIME", go_duration(s.uptime_ns)),
        ("NUM CONNECTED NODES", or_na(s.num_connected_nodes)),
        ("NUM UNAVAIL. NODES", or_na(s.num_unavailable_nodes)),
        ("VERSION", s.version.clone()),
    ];
    if table {
        // Hubble's table spells the unavailable nodes' header out.
        let header = |k: &str| k.replace("UNAVAIL.", "UNAVAILABLE");
        return aligned(&[
            fields.iter().map(|(k, _)| header(k)).collect(),
            fields.iter().map(|(_, v)| v.clone()).collect(),
        ]);
    }
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    fields
        .iter()
        .map(|(k, v)| format!("{k:>width$}: {v}\n"))
        .collect()
}

/// The server's flow rate; `N/A` without one. `or_seen`: else the flows seen
/// over the uptime (as hubble's compact status reckons it).
fn flows_per_second(s: &ServerStatusResponse, or_seen: bool) -> String {
    if s.flows_rate > 0.0 {
        format!("{:.2}", s.flows_rate)
    } else if or_seen && s.uptime_ns > 0 {
        format!("{:.2}", s.seen_flows as f64 / (s.uptime_ns as f64 / 1e9))
    } else {
        "N/A".to_string()
    }
}

/// A duration as Go prints one (`1h2m3.5s`, `1m40s`, `250ms`, `0s`), as
/// hubble shows an uptime.
fn go_duration(ns: u64) -> String {
    /// `value / unit` with its fraction, trailing zeros dropped.
    fn decimal(value: u64, unit: u64) -> String {
        let (whole, frac) = (value / unit, value % unit);
        if frac == 0 {
            return whole.to_string();
        }
        let places = unit.ilog10() as usize;
        let frac = format!("{frac:0places$}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
    const SECOND: u64 = 1_000_000_000;
    match ns {
        0 => "0s".to_string(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", decimal(n, 1_000)),
        n if n < SECOND => format!("{}ms", decimal(n, 1_000_000)),
        n => {
            let (h, m) = (n / (3600 * SECOND), n / (60 * SECOND) % 60);
            let s = decimal(n % (60 * SECOND), SECOND);
            match (h, m) {
                (0, 0) => format!("{s}s"),
                (0, m) => format!("{m}m{s}s"),
                (h, m) => format!("{h}h{m}m{s}s"),
            }
        }
    }
}

/// The policy directory and the services file: in force, or refused and
/// why (a flow-probe's answer; a relay sends none).
fn render_config_files(s: &ServerStatusResponse) -> String {
    let mut out = String::new();
    if !s.config_files.is_empty() {
        out += "Configuration:\n";
        for f in &s.config_files {
            let state = if f.in_force { "in force" } else { "REFUSED" };
            out += &format!("  {:<8} {:<12} {}  {}\n", f.name, state, f.path, f.detail);
        }
    }
    out
}

/// The endpoint sources and this node's endpoints (a flow-probe's answer;
/// a relay sends none).
fn render_endpoints(s: &ServerStatusResponse) -> String {
    let mut out = String::new();
    if !s.endpoint_sources.is_empty() {
        out += "Endpoint sources:\n";
        for src in &s.endpoint_sources {
            // A file is read, not reached: when it fails, it was refused.
            let state = match (src.connected, src.name.as_str()) {
                (true, _) => "ok",
                (false, "file") => "REFUSED",
                (false, _) => "UNREACHABLE",
            };
            out += &format!(
                "  {:<8} {:<12} {} endpoints  {}  {}\n",
                src.name, state, src.endpoints, src.address, src.detail
            );
        }
    }
    if !s.endpoints.is_empty() {
        out += "Endpoints:\n";
        for e in &s.endpoints {
            let state = State::try_from(e.state).unwrap_or(State::Unknown);
            let state = match state {
                State::Ready => "ready",
                State::Attaching => "attaching",
                State::NotAttached => "NOT ATTACHED",
                State::Unknown => "unknown",
            };
            let detail = if e.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", e.detail)
            };
            out += &format!(
                "  {:<5} {:<32} {:<7} {:<14} {:<24} identity {} {}{detail}\n",
                e.id,
                format!("{}/{}", e.namespace, e.name),
                e.source,
                e.interface,
                e.ips.join(","),
                e.identity,
                state
            );
        }
    }
    out
}

/// How `observe nodes` prints, as `hubble list nodes -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NodesFormat {
    Table,
    /// The table with each node's version and address.
    Wide,
    /// A JSON array of the nodes (protojson, proto field names).
    Json,
}

pub async fn nodes(target: &Target, format: NodesFormat) -> anyhow::Result<()> {
    let (mut client, _) = target.observer().await?;
    let nodes = client
        .get_nodes(GetNodesRequest {})
        .await
        .map_err(|s| target.status_error(s))?
        .into_inner()
        .nodes;
    crate::outln!("{}", nodes_text(&nodes, format)?.trim_end_matches('\n'))?;
    Ok(())
}

/// `values` as `hubble list` prints JSON: an array, indented by two
/// spaces (`null` for none, as Go marshals an empty list); each object's
/// keys in name order.
fn json_list<T: prost::Message>(message: &str, values: &[T]) -> anyhow::Result<String> {
    if values.is_empty() {
        return Ok("null\n".into());
    }
    let objects = values
        .iter()
        .map(|v| {
            let json = observer_proto::json::to_json(message, v)?;
            Ok(serde_json::from_str::<serde_json::Value>(&json)?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(serde_json::to_string_pretty(&objects)? + "\n")
}

/// What `observe nodes` prints for `nodes` in `format`, by name as hubble
/// lists them.
fn nodes_text(nodes: &[Node], format: NodesFormat) -> anyhow::Result<String> {
    let mut nodes = nodes.to_vec();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    if format == NodesFormat::Json {
        return json_list("observer.Node", &nodes);
    }
    let wide = format == NodesFormat::Wide;
    let mut header = vec!["NAME", "STATUS", "AGE", "FLOWS/S", "CURRENT/MAX-FLOWS"];
    if wide {
        header.extend(["VERSION", "ADDRESS", "TLS"]);
    }
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect()];
    rows.extend(nodes.iter().map(|n| {
        let mut row = node_row(n);
        if wide {
            // As hubble: how the relay reaches the node; N/A from a server
            // that does not say.
            let tls = match &n.tls {
                None => "N/A",
                Some(t) if t.enabled => "Enabled",
                Some(_) => "Disabled",
            };
            let version = match n.version.as_str() {
                "" => "N/A",
                v => v,
            };
            row.extend([version.into(), n.address.clone(), tls.to_string()]);
        }
        row
    }));
    Ok(aligned(&rows))
}

/// A node's cells as `hubble list nodes` fills them: no age or rate
/// without an uptime (a node not connected), no flows held without a
/// capacity (`N/A`); the uptime rounded to the second, the counts not
/// grouped.
fn node_row(n: &Node) -> Vec<String> {
    let state = NodeState::try_from(n.state).map_or("Unknown", |s| match s {
        NodeState::NodeConnected => "Connected",
        NodeState::NodeUnavailable => "Unavailable",
        NodeState::NodeGone => "Gone",
        NodeState::NodeError => "Error",
        NodeState::UnknownNodeState => "Unknown",
    });
    let mut row = vec![n.name.clone(), state.to_string()];
    const SECOND: u64 = 1_000_000_000;
    // Go's Duration.Round: halves away from zero.
    let uptime = (n.uptime_ns.saturating_add(SECOND / 2)) / SECOND * SECOND;
    if uptime > 0 {
        let rate = n.seen_flows as f64 / (uptime / SECOND) as f64;
        row.extend([go_duration(uptime), format!("{rate:.2}")]);
    } else {
        row.extend(["N/A", "N/A"].map(String::from));
    }
    row.push(if n.max_flows > 0 {
        let share = 100.0 * n.num_flows as f64 / n.max_flows as f64;
        format!("{}/{} ({share:6.2}%)", n.num_flows, n.max_flows)
    } else {
        "N/A".into()
    });
    row
}

/// How `observe list namespaces` prints, as `hubble list namespaces -o`.
pub type NamespacesFormat = NodesFormat;

/// `observe list namespaces`: the namespaces of recent flows, as `hubble
/// list namespaces` lists them.
pub async fn namespaces(target: &Target, format: NamespacesFormat) -> anyhow::Result<()> {
    let (mut client, _) = target.observer().await?;
    let namespaces = client
        .get_namespaces(GetNamespacesRequest {})
        .await
        .map_err(|s| target.status_error(s))?
        .into_inner()
        .namespaces;
    let text = namespaces_text(&namespaces, format)?;
    crate::pipe::print(&crate::flows::output::escape_controls(&text))?;
    Ok(())
}

/// What `observe list namespaces` prints: a NAMESPACE column (and CLUSTER,
/// wide, where a namespace has one), or the JSON list.
fn namespaces_text(namespaces: &[Namespace], format: NamespacesFormat) -> anyhow::Result<String> {
    if format == NodesFormat::Json {
        return json_list("observer.Namespace", namespaces);
    }
    let wide = format == NodesFormat::Wide;
    let mut rows = vec![if wide {
        vec!["NAMESPACE".to_string(), "CLUSTER".to_string()]
    } else {
        vec!["NAMESPACE".to_string()]
    }];
    rows.extend(namespaces.iter().map(|n| {
        let mut row = vec![n.namespace.clone()];
        if wide && !n.cluster.is_empty() {
            row.push(n.cluster.clone());
        }
        row
    }));
    Ok(aligned(&rows))
}

/// Rows in columns as Go's tabwriter lays out hubble's tables: each column
/// as wide as its widest cell and three spaces, the last one unpadded.
fn aligned(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::observe::v1::{ConfigFileStatus, EndpointSourceStatus, EndpointStatus};

    #[test]
    fn nodes_print_as_hubble_list_nodes_a_wide_table_or_json() {
        let n = Node {
            name: "node1".into(),
            version: "flow-probe 0.1.0".into(),
            state: NodeState::NodeConnected as i32,
            uptime_ns: 1_000_700_000_000,
            num_flows: 500,
            max_flows: 1000,
            seen_flows: 2_001,
            address: "127.0.0.1:4244".into(),
            tls: Some(observer_proto::observer::Tls {
                enabled: true,
                server_name: "127.0.0.1".into(),
            }),
        };
        // As the relay lists a node it does not reach: no uptime, no
        // counts, no version.
        let gone = Node {
            name: "node2".into(),
            state: NodeState::NodeUnavailable as i32,
            uptime_ns: 0,
            num_flows: 0,
            max_flows: 0,
            seen_flows: 0,
            version: String::new(),
            address: "127.0.0.1:4246".into(),
            tls: Some(Default::default()),
        };
        let full = Node {
            name: "node3".into(),
            uptime_ns: 11_100_000_000_000,
            num_flows: 16_383,
            max_flows: 16_383,
            ..n.clone()
        };
        // Listed by name; the uptime rounded (1000.7 s), counts not grouped.
        let nodes = [full, gone, n.clone()];
        assert_eq!(
            nodes_text(&nodes, NodesFormat::Table).unwrap(),
            "NAME    STATUS        AGE      FLOWS/S   CURRENT/MAX-FLOWS\n\
             node1   Connected     16m41s   2.00      500/1000 ( 50.00%)\n\
             node2   Unavailable   N/A      N/A       N/A\n\
             node3   Connected     3h5m0s   0.18      16383/16383 (100.00%)\n"
        );
        // Up less than half a second: no age or rate yet, as in hubble.
        let young = Node {
            uptime_ns: 400_000_000,
            ..n.clone()
        };
        assert_eq!(
            nodes_text(&[young], NodesFormat::Table).unwrap(),
            "NAME    STATUS      AGE   FLOWS/S   CURRENT/MAX-FLOWS\n\
             node1   Connected   N/A   N/A       500/1000 ( 50.00%)\n"
        );
        let probe = Node {
            name: "node4".into(),
            tls: None,
            ..n.clone()
        };
        assert_eq!(
            nodes_text(&[n.clone(), nodes[1].clone(), probe], NodesFormat::Wide).unwrap(),
            "NAME    STATUS        AGE      FLOWS/S   CURRENT/MAX-FLOWS    VERSION            ADDRESS          TLS\n\
             node1   Connected     16m41s   2.00      500/1000 ( 50.00%)   flow-probe 0.1.0   127.0.0.1:4244   Enabled\n\
             node2   Unavailable   N/A      N/A       N/A                  N/A                127.0.0.1:4246   Disabled\n\
             node4   Connected     16m41s   2.00      500/1000 ( 50.00%)   flow-probe 0.1.0   127.0.0.1:4244   N/A\n"
        );
        assert_eq!(nodes_text(&[], NodesFormat::Json).unwrap(), "null\n");
        let json = nodes_text(&[n], NodesFormat::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v[0]["name"], "node1");
        assert_eq!(v[0]["state"], "NODE_CONNECTED");
        assert_eq!(v[0]["uptime_ns"], "1000700000000");
        assert_eq!(v[0]["max_flows"], "1000");
        assert_eq!(v[0]["tls"]["enabled"], true);
        assert_eq!(v[0]["tls"]["server_name"], "127.0.0.1");
        assert_eq!(v.as_array().unwrap().len(), 1);
    }

    #[test]
    fn namespaces_print_as_hubble_list_namespaces() {
        let namespaces = [
            Namespace {
                namespace: "default".into(),
                cluster: String::new(),
            },
            Namespace {
                namespace: "shop".into(),
                cluster: "c1".into(),
            },
        ];
        assert_eq!(
            namespaces_text(&namespaces, NodesFormat::Table).unwrap(),
            "NAMESPACE\ndefault\nshop\n"
        );
        assert_eq!(
            namespaces_text(&namespaces, NodesFormat::Wide).unwrap(),
            "NAMESPACE   CLUSTER\ndefault\nshop        c1\n"
        );
        assert_eq!(
            namespaces_text(&namespaces[1..], NodesFormat::Json).unwrap(),
            "[\n  {\n    \"cluster\": \"c1\",\n    \"namespace\": \"shop\"\n  }\n]\n"
        );
        assert_eq!(namespaces_text(&[], NodesFormat::Json).unwrap(), "null\n");
    }

    #[test]
    fn status_reads_as_hubble_status() {
        let relay = ServerStatusResponse {
            num_flows: 100,
            max_flows: 8190,
            flows_rate: 2.5,
            num_connected_nodes: Some(1),
            num_unavailable_nodes: Some(1),
            unavailable_nodes: vec!["node2".into()],
            ..Default::default()
        };
        assert_eq!(
            render_status("127.0.0.1:4245", &relay),
            "Healthcheck (via 127.0.0.1:4245): Ok\n\
             Current/Max Flows: 100/8,190 (1.22%)\n\
             Flows/s: 2.50\n\
             Connected Nodes: 1/2\n\
             Unavailable Nodes: 1\n  \
             - node2\n"
        );
        // Ten named of fourteen, listed sorted.
        let named: Vec<String> = (0..10).map(|i| format!("node{i}")).collect();
        let many = ServerStatusResponse {
            num_connected_nodes: Some(6),
            num_unavailable_nodes: Some(14),
            unavailable_nodes: named.iter().rev().cloned().collect(),
            ..relay.clone()
        };
        let list: String = named.iter().map(|n| format!("  - {n}\n")).collect();
        assert_eq!(
            render_status("127.0.0.1:4245", &many),
            format!(
                "Healthcheck (via 127.0.0.1:4245): Ok\n\
                 Current/Max Flows: 100/8,190 (1.22%)\n\
                 Flows/s: 2.50\n\
                 Connected Nodes: 6/20\n\
                 Unavailable Nodes: 14\n{list}  - and 4 more...\n"
            )
        );
        // A count without names, and a connected count without the other.
        let unnamed = ServerStatusResponse {
            num_connected_nodes: Some(1),
            num_unavailable_nodes: Some(3),
            unavailable_nodes: Vec::new(),
            ..relay.clone()
        };
        assert!(
            render_status("127.0.0.1:4245", &unnamed)
                .ends_with("Connected Nodes: 1/4\nUnavailable Nodes: 3\n")
        );
        let uncounted = ServerStatusResponse {
            num_connected_nodes: Some(3),
            num_unavailable_nodes: None,
            unavailable_nodes: Vec::new(),
            ..relay.clone()
        };
        assert!(render_status("127.0.0.1:4245", &uncounted).ends_with("Connected Nodes: 3\n"));
        let empty = ServerStatusResponse::default();
        assert_eq!(
            render_status("127.0.0.1:4244", &empty),
            "Healthcheck (via 127.0.0.1:4244): Ok\nCurrent/Max Flows: 0/0\nFlows/s: N/A\n"
        );
        // Counts grouped by thousands; without a rate, the flows seen over
        // the uptime.
        let busy = ServerStatusResponse {
            num_flows: 16_380,
            max_flows: 1_234_567,
            seen_flows: 300,
            uptime_ns: 120_000_000_000,
            ..Default::default()
        };
        assert_eq!(
            render_status("127.0.0.1:4245", &busy),
            "Healthcheck (via 127.0.0.1:4245): Ok\n\
             Current/Max Flows: 16,380/1,234,567 (1.33%)\n\
             Flows/s: 2.50\n"
        );
    }

    #[test]
    fn counters_print_as_hubble_status_dict_and_table() {
        let s = ServerStatusResponse {
            num_flows: 4095,
            max_flows: 4095,
            seen_flows: 1_234_567,
            flows_rate: 12.345,
            uptime_ns: 3_723_500_000_000,
            num_connected_nodes: Some(2),
            num_unavailable_nodes: Some(0),
            version: "observe 0.1.0".into(),
            ..Default::default()
        };
        assert_eq!(
            render_counters(&s, false),
            "          NUM FLOWS: 4,095\n\
             \x20         MAX FLOWS: 4,095\n\
             \x20        SEEN FLOWS: 1,234,567\n\
             \x20  FLOWS PER SECOND: 12.35\n\
             \x20            UPTIME: 1h2m3.5s\n\
             NUM CONNECTED NODES: 2\n\
             \x20NUM UNAVAIL. NODES: 0\n\
             \x20           VERSION: observe 0.1.0\n"
        );
        assert_eq!(
            render_counters(&ServerStatusResponse::default(), true),
            "NUM FLOWS   MAX FLOWS   SEEN FLOWS   FLOWS PER SECOND   UPTIME   \
             NUM CONNECTED NODES   NUM UNAVAILABLE NODES   VERSION\n\
             0           0           0            N/A                0s       N/A                   N/A\n"
        );
        for (ns, text) in [
            (999, "999ns"),
            (1_500, "1.5µs"),
            (250_000_000, "250ms"),
            (100_000_000_000, "1m40s"),
            (3_600_000_000_000, "1h0m0s"),
        ] {
            assert_eq!(go_duration(ns), text);
        }
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
    }

    #[test]
    fn a_refused_file_says_why_and_one_in_force_what() {
        let s = ServerStatusResponse {
            config_files: vec![
                ConfigFileStatus {
                    name: "policy".into(),
                    path: "/run/observe-lab/policies".into(),
                    in_force: false,
                    detail: "policy /run/observe-lab/policies/70-bad.yaml: unknown field \
                             `ingressDenny`; the previous policy stays in force"
                        .into(),
                },
                ConfigFileStatus {
                    name: "services".into(),
                    path: "/run/observe-lab/services.yaml".into(),
                    in_force: true,
                    detail: "1 frontends, 2 backends in force; generation 3".into(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            render_config_files(&s),
            "Configuration:\n  \
             policy   REFUSED      /run/observe-lab/policies  policy /run/observe-lab/policies/70-bad.yaml: \
             unknown field `ingressDenny`; the previous policy stays in force\n  \
             services in force     /run/observe-lab/services.yaml  1 frontends, 2 backends in force; generation 3\n"
        );
        assert_eq!(render_config_files(&ServerStatusResponse::default()), "");
    }

    #[test]
    fn status_as_json_has_the_proto_names_and_our_extensions() {
        let s = ServerStatusResponse {
            num_flows: 2,
            max_flows: 4095,
            config_files: vec![ConfigFileStatus {
                name: "policy".into(),
                path: "/p".into(),
                in_force: true,
                detail: "1 policies, 2 rules in force; generation 1".into(),
            }],
            ..Default::default()
        };
        let json = observer_proto::json::to_json("observer.ServerStatusResponse", &s).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["num_flows"], "2");
        assert_eq!(v["max_flows"], "4095");
        assert_eq!(v["config_files"][0]["in_force"], true);
        assert_eq!(v["config_files"][0]["path"], "/p");
    }

    #[test]
    fn a_refused_endpoints_file_is_refused_not_unreachable() {
        let s = ServerStatusResponse {
            endpoint_sources: vec![EndpointSourceStatus {
                name: "file".into(),
                address: "/run/observe-lab/endpoints.yaml".into(),
                connected: false,
                detail: "endpoints[1].ipv4: bad address; the 2 endpoints read before stay".into(),
                endpoints: 2,
            }],
            ..Default::default()
        };
        assert_eq!(
            render_endpoints(&s),
            "Endpoint sources:\n  \
             file     REFUSED      2 endpoints  /run/observe-lab/endpoints.yaml  \
             endpoints[1].ipv4: bad address; the 2 endpoints read before stay\n"
        );
    }

    #[test]
    fn sources_and_endpoints_show_their_state_and_why_one_is_not_attached() {
        let s = ServerStatusResponse {
            endpoint_sources: vec![EndpointSourceStatus {
                name: "docker".into(),
                address: "/run/podman/podman.sock".into(),
                connected: false,
                detail: "connection refused".into(),
                endpoints: 2,
            }],
            endpoints: vec![
                EndpointStatus {
                    source: "docker".into(),
                    id: 1,
                    namespace: "shop".into(),
                    name: "web-1".into(),
                    identity: 4242,
                    ips: vec!["198.18.7.10".into(), "fd42:0:0:7::10".into()],
                    interface: "veth3".into(),
                    ifindex: 12,
                    state: State::Ready as i32,
                    ..Default::default()
                },
                EndpointStatus {
                    source: "docker".into(),
                    id: 2,
                    namespace: "default".into(),
                    name: "tool".into(),
                    state: State::NotAttached as i32,
                    detail: "uses the host's network: it has no veth of its own".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            render_endpoints(&s),
            "Endpoint sources:\n  \
             docker   UNREACHABLE  2 endpoints  /run/podman/podman.sock  connection refused\n\
             Endpoints:\n  \
             1     shop/web-1                       docker  veth3          198.18.7.10,fd42:0:0:7::10 identity 4242 ready\n  \
             2     default/tool                     docker                                          identity 0 NOT ATTACHED: uses the host's network: it has no veth of its own\n"
        );
    }
}
