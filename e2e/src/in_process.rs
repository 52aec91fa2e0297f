//! For tests that load the probe in-process (no flow-probe binary): an
//! enricher that knows the probe's interfaces, as the agent's does.

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
