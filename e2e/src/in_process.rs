//! For tests that load the probe in-process (no flow-probe binary): an
//! enricher that knows the probe's interfaces, as the agent's does, and the
//! namespaces whose drops it reports.

use flow_probe::enrich::Enricher;
use flow_probe::kernel::loader::LoadedProbe;
use observe_lab::Lab;

/// An enricher that knows the probe's interfaces and the endpoints behind them.
pub fn enricher_for(probe: &LoadedProbe, lab: &Lab) -> Enricher {
    let file = lab.endpoints_file();
    let mut enricher = Enricher::new("node1", &file);
    for a in &probe.attached {
        let ep = file
            .endpoints
            .iter()
            .find(|e| e.interface.as_deref() == Some(a.ifname.as_str()));
        enricher.add_interface(
            a.ifindex,
            &a.ifname,
            ep.and_then(|e| e.ipv4).map(std::net::IpAddr::V4),
        );
    }
    enricher
}

/// The namespaces of `lab`'s endpoints and of node1, for `ProbeConfig::drop_netns`:
/// left empty, the drop and TCP tracepoints report every namespace, parallel
/// tests' labs (with the same addresses) included.
pub fn watched_netns(lab: &Lab) -> Vec<String> {
    let endpoints = lab
        .endpoints_file()
        .endpoints
        .into_iter()
        .filter_map(|e| e.netns);
    endpoints
        .chain(lab.node_netns("node1").map(str::to_string))
        .collect()
}
