//! The service graph the built-in scenario's traffic draws: its edges, and
//! whether all of its flows are on a graph yet.

use service_graph::ServiceGraph;

/// The scenario's edges, by `source->target` id.
pub const SCENARIO_EDGES: [&str; 5] = [
    "default/api->default/db",
    "default/frontend->default/api",
    "other/client->default/api",
    "other/client->default/db",
    "other/client->default/frontend",
];

/// Every scenario edge is on `g`, with the four frontend -> api connections
/// (18 flows: each SYN and FIN seen leaving and entering, and two socket
/// translations) and the last item's flows (client -> frontend:9999, the
/// third audited one).
pub fn scenario_done(g: &ServiceGraph) -> bool {
    let fa = g.find("default/frontend", "default/api");
    let cf = g.find("other/client", "default/frontend");
    SCENARIO_EDGES.iter().all(|id| {
        let (a, b) = id.split_once("->").unwrap_or((id, ""));
        g.find(a, b).is_some()
    }) && fa.is_some_and(|e| e.connections == 4 && e.flows == 18)
        && cf.is_some_and(|e| e.verdicts.audit == 3)
}
