//! User-space pipeline: ring-buffer record → decoded, enriched flow in the ring,
//! on one core. Baseline in the same run: decoding alone; for reference, also
//! the path before flows were written into the store's evicted entries (a new
//! flow built and pushed per record). Goal: ≥ 3,000,000/s.
//!
//! `cargo bench -p benches --bench pipeline`

use std::collections::BTreeMap;
use std::sync::Arc;

use benches::{rate, report};
use cluster_spec::endpoints::{Endpoint, EndpointsFile};
use flow_probe::enrich::Enricher;
use flow_probe::kernel::events::{
    self, EVENT_FLOW, EVENT_VERSION, EventHeader, FlowEvent, FlowKey, hook, reason,
};
use flow_probe::pipeline::Pipeline;
use observer_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use observer_runtime::store::{DEFAULT_CAPACITY, FlowStore};

const EVENTS: u64 = 1_000_000;
const DISTINCT: usize = 4096;

fn endpoints() -> EndpointsFile {
    let endpoints = (0..200u32)
        .map(|i| Endpoint {
            id: i + 1,
            name: format!("pod-{i}"),
            namespace: format!("ns-{}", i % 5),
            labels: BTreeMap::from([("app".to_string(), format!("app-{}", i % 20))]),
            workload: None,
            ipv4: Some(std::net::Ipv4Addr::new(
                198,
                18,
                (i / 250) as u8,
                (i % 250) as u8 + 2,
            )),
            ipv6: None,
            node: "node1".into(),
            interface: Some(format!("lxc{i}")),
            netns: None,
        })
        .collect();
    EndpointsFile { endpoints }
}

fn records() -> Vec<Vec<u8>> {
    (0..DISTINCT)
        .map(|i| {
            let mut key = FlowKey {
                sport: 30000 + i as u16,
                dport: 8080,
                proto: 6,
                family: 4,
                hook: hook::TC_INGRESS,
                ifindex: 10 + (i % 200) as u32,
                ..Default::default()
            };
            key.saddr[..4].copy_from_slice(&[198, 18, 0, (i % 200) as u8 + 2]);
            key.daddr[..4].copy_from_slice(&[198, 18, 0, ((i + 7) % 200) as u8 + 2]);
            events::encode_flow(&FlowEvent {
                hdr: EventHeader {
                    r#type: EVENT_FLOW,
                    version: EVENT_VERSION,
                    len: size_of::<FlowEvent>() as u16,
                    _pad0: 0,
                },
                ktime_ns: 1_000_000 + i as u64,
                key,
                packets: 1,
                bytes: 74,
                tcp_flags: 0x02,
                reason: reason::NEW_FLOW,
                ..Default::default()
            })
        })
        .collect()
}

fn main() {
    let records = records();
    let file = endpoints();

    let mut decoded = 0u64;
    let (decode_rate, _) = rate(EVENTS, |i| {
        decoded += u64::from(std::hint::black_box(
            events::decode(&records[i as usize % DISTINCT]).is_ok(),
        ));
    });
    assert_eq!(decoded, EVENTS, "every record must decode");

    let enricher = || {
        let mut enricher = Enricher::new("node1", &file);
        for i in 0..200u32 {
            let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, (i % 250) as u8 + 2));
            enricher.add_interface(10 + i, &format!("lxc{i}"), Some(ip));
        }
        enricher
    };

    // The path before: a new flow per record, pushed as a new entry.
    let store = FlowStore::new(DEFAULT_CAPACITY);
    let mut e = enricher();
    let (new_rate, _) = rate(EVENTS, |i| {
        if let Ok(flow_probe::kernel::events::Event::Flow(ev)) =
            events::decode(&records[i as usize % DISTINCT])
        {
            let flow = e.flow(&ev, 0);
            store.push(GetFlowsResponse {
                node_name: flow.node_name.clone(),
                time: flow.time,
                response_types: Some(ResponseTypes::Flow(flow)),
            });
        }
    });
    assert_eq!(store.seen(), EVENTS, "every record must reach the ring");

    let store = Arc::new(FlowStore::new(DEFAULT_CAPACITY));
    let mut pipeline = Pipeline::new(enricher(), store.clone());
    let (full_rate, took) = rate(EVENTS, |i| pipeline.ingest(&records[i as usize % DISTINCT]));
    assert_eq!(store.seen(), EVENTS, "every record must reach the ring");

    println!("user-space pipeline, one core, {EVENTS} records ({took:.2?} for the full path)");
    report("baseline: decode only", decode_rate, decode_rate);
    report(
        "before: a new flow per record, pushed",
        new_rate,
        decode_rate,
    );
    report(
        "decode + enrich + ring (goal >= 3,000,000/s)",
        full_rate,
        decode_rate,
    );
    println!(
        "{:.0} ns a record ({:.0} before); goal {}",
        1e9 / full_rate,
        1e9 / new_rate,
        if full_rate >= 3_000_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
