//! Kernel → store: drains the ring buffer, decodes, enriches and keeps flows, and
//! turns the kernel's lost-event counter into lost-event records in the stream.
//! On their own timers it reads the flow tables for periodic reports and the
//! garbage collection of connection tracking (`crate::tables`); a collection
//! runs on a blocking thread, so the ring keeps draining while it sweeps
//! full tables.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use aya::maps::{MapData, RingBuf};
use observer_proto::flow::{Flow, LostEvent, LostEventSource};
use observer_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use tokio::io::unix::AsyncFd;

use crate::enrich::Enricher;
use crate::flow_builder::reuse::set_str;
use crate::kernel::events::{self, Event, FlowEvent};
use crate::kernel::flow_tables::FlowTables;
use crate::kernel::loader::{LoadedProbe, read_counters};
use crate::kernel::sysfs;
use crate::tables::{self, Collector, Reporter};
use observer_runtime::store::FlowStore;

/// How often the reader drains the ring buffer without a wake-up from the kernel,
/// which only wakes it when `ProbeConfig::wakeup_bytes` are pending.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

/// Decoded-and-enriched path for one record; also what the benchmark measures.
pub struct Pipeline {
    pub enricher: Enricher,
    pub store: Arc<FlowStore>,
    unix_offset_ns: i128,
    pub decode_errors: u64,
    /// Prometheus metrics, counted per flow when set.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Pipeline {
    pub fn new(enricher: Enricher, store: Arc<FlowStore>) -> Self {
        Pipeline {
            enricher,
            store,
            unix_offset_ns: sysfs::monotonic_to_unix_offset_ns(),
            decode_errors: 0,
            metrics: None,
        }
    }

    /// Re-reads the clock offset, so a wall-clock step shows up in flow times.
    pub fn refresh_clock(&mut self) {
        self.unix_offset_ns = sysfs::monotonic_to_unix_offset_ns();
    }

    /// Decodes one ring-buffer record and keeps its flow.
    pub fn ingest(&mut self, record: &[u8]) {
        // Reports, made here from the flow tables, come in through
        // ingest_event: not read from the ring.
        if let Some(m) = &self.metrics {
            m.ring_record();
        }
        match events::decode(record) {
            Ok(event) => self.ingest_event(&event),
            Err(e) => {
                self.decode_errors += 1;
                if let Some(m) = &self.metrics {
                    m.decode_error();
                }
                if self.decode_errors.is_power_of_two() {
                    log::warn!(
                        "undecodable ring-buffer record ({} so far): {e}",
                        self.decode_errors
                    );
                }
            }
        }
    }

    /// Enriches and keeps one event (from the ring, or a report): its flows
    /// (two for a policy denial or a socket translation, as Cilium reports them).
    pub fn ingest_event(&mut self, event: &Event) {
        let flows = match event {
            Event::Flow(ev) if !Enricher::is_pair(ev) => return self.ingest_tc_flow(ev),
            Event::Flow(ev) => self.enricher.flows(ev, self.unix_offset_ns),
            Event::SockXlate(ev) => self.enricher.sock_flows(ev, self.unix_offset_ns),
            Event::TcpLifecycle(ev) => {
                vec![self.enricher.tcp_lifecycle_flow(ev, self.unix_offset_ns)]
            }
        };
        if let Some(m) = &self.metrics {
            m.flows(&flows);
        }
        for flow in flows {
            let response = GetFlowsResponse {
                node_name: flow.node_name.clone(),
                time: flow.time,
                response_types: Some(ResponseTypes::Flow(flow)),
            };
            self.store.push(response);
        }
    }

    /// Keeps the one flow of a tc event (the common record), written into
    /// the memory of an entry the store let go of when one is free, so a full
    /// store turns over without allocating.
    fn ingest_tc_flow(&mut self, ev: &FlowEvent) {
        let Pipeline {
            enricher,
            store,
            unix_offset_ns,
            metrics,
            ..
        } = self;
        store.push_with(|r| {
            if !matches!(r.response_types, Some(ResponseTypes::Flow(_))) {
                r.response_types = Some(ResponseTypes::Flow(Flow::default()));
            }
            let Some(ResponseTypes::Flow(flow)) = &mut r.response_types else {
                return; // just made one
            };
            enricher.fill_flow(flow, ev, *unix_offset_ns);
            if let Some(m) = metrics {
                m.flows(std::slice::from_ref(flow));
            }
            set_str(&mut r.node_name, &flow.node_name);
            r.time = flow.time;
        });
    }

    /// Takes the counts of a connection a previous probe left in the
    /// tables (`report`, a report of them) as counted in the volume metrics.
    pub fn remember_volume(&mut self, report: &FlowEvent) {
        if let Some(m) = &self.metrics {
            m.remember_volume(&self.enricher.unkept_flow(report, self.unix_offset_ns));
        }
    }

    /// Records that `n` events were lost at `source`.
    pub fn push_lost(&self, source: LostEventSource, n: u64) {
        if let Some(m) = &self.metrics {
            m.lost(source, crate::metrics::stage::KERNEL_RING, n);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.store.push(GetFlowsResponse {
            node_name: self.enricher.node_name().to_string(),
            time: Some(prost_types::Timestamp {
                seconds: now.as_secs() as i64,
                nanos: now.subsec_nanos() as i32,
            }),
            response_types: Some(ResponseTypes::LostEvents(LostEvent {
                source: source as i32,
                num_events_lost: n,
                ..Default::default()
            })),
        });
    }
}

/// Reads the ring buffer until `shutdown` resolves; every `lost_check` it reads the
/// kernel's lost counter and puts what is new into the stream. Before it returns
/// it reads the ring to the end and the lost counter once more, so everything
/// the kernel wrote before the stop is in the store; unless the probe persists,
/// its tables go with it, so it also tells the last report of every connection
/// they hold whose volume no event told.
pub async fn run(
    probe: &mut LoadedProbe,
    mut pipeline: Pipeline,
    lost_check: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Pipeline> {
    let mut ring: RingBuf<MapData> = probe
        .take_ring()
        .context("the ring buffer is already being read")?;
    let tables = probe.take_flow_tables().map(Arc::new);
    let stats = &probe.stats;
    let report_every = probe.config.report_interval;
    let mut reporter = Reporter::new();
    let adopted = probe.adopted_maps.iter().any(|m| m.starts_with("FLOW"));
    if let (Some(t), true) = (&tables, adopted) {
        take_adopted_as_told(t, &mut ring, &mut reporter, &mut pipeline).await;
    }
    let collector = Arc::new(std::sync::Mutex::new(Collector::new(probe.config.gc)));
    let emitted = probe.config.emit_tcp_flags;
    // One read of the tables at a time (a report's or a collection's): a
    // report read before a collection but told after it would tell the
    // connections it deleted once more.
    let mut table_job: Option<tokio::task::JoinHandle<TableJob>> = None;
    let (mut report_due, mut collect_due, mut last_was_collection) = (false, false, false);
    // A timer that never fires stands in for reports that are off.
    let mut report_timer = tokio::time::interval(if report_every.is_zero() {
        Duration::from_secs(86_400)
    } else {
        report_every
    });
    report_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reporting = !report_every.is_zero() && tables.is_some();
    let mut gc_timer = tokio::time::interval(probe.config.gc.interval);
    gc_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The AsyncFd owns the ring, so the fd outlives its registration.
    #[expect(deprecated, reason = "the owned fd makes the I/O-safety concern moot")]
    let mut ring = AsyncFd::new(ring)?;
    let mut ticker = tokio::time::interval(lost_check);
    let mut drain_timer = tokio::time::interval(DRAIN_INTERVAL);
    drain_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lost_seen = 0u64;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &mut pipeline);
                guard.clear_ready();
            }
            _ = drain_timer.tick() => drain(ring.get_mut(), &mut pipeline),
            _ = ticker.tick() => {
                pipeline.refresh_clock();
                lost_seen = report_lost(stats, &pipeline, lost_seen)?;
            }
            _ = report_timer.tick(), if reporting => report_due = true,
            _ = gc_timer.tick(), if tables.is_some() => collect_due = true,
            done = async { table_job.as_mut().expect("guarded").await }, if table_job.is_some() => {
                table_job = None;
                // Events first: a report or a connection's end follows what
                // the kernel already said.
                drain(ring.get_mut(), &mut pipeline);
                tell(done, &mut reporter, emitted, &mut pipeline);
            }
            () = &mut shutdown => break,
        }
        // A tick during a job waits for its end; a second one is not kept.
        // When both are due they take turns: a collection slower than its
        // interval would otherwise hold reports off for good.
        if let (Some(t), None) = (&tables, &table_job) {
            let collect = collect_due && !(report_due && last_was_collection);
            if collect {
                collect_due = false;
                last_was_collection = true;
                let (t, c) = (t.clone(), collector.clone());
                table_job = Some(tokio::task::spawn_blocking(move || {
                    let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                    TableJob::Collected(tables::collect(&t, &mut c))
                }));
            } else if std::mem::take(&mut report_due) {
                last_was_collection = false;
                let t = t.clone();
                table_job = Some(tokio::task::spawn_blocking(move || {
                    TableJob::Report(tables::read_for_report(&t))
                }));
            }
        }
    }
    // A collection's deletes finish before the probe goes, and are told (a
    // report too: the last words below tell only what it did not); events
    // first, as in the loop.
    let job = match table_job {
        Some(job) => Some(job.await),
        None => None,
    };
    drain(ring.get_mut(), &mut pipeline);
    let lost = report_lost(stats, &pipeline, lost_seen);
    if let Some(done) = job {
        tell(done, &mut reporter, emitted, &mut pipeline);
    }
    if let (Some(t), false, true) = (&tables, probe.config.persist, probe.config.aggregate) {
        // The tables go with the probe: every connection ends here, and
        // what no event told of it would be lost (with an event per packet,
        // they told everything). The programs still run: a first packet's
        // event written meanwhile is read before the tables (which count
        // it as told), and once more after them.
        drain(ring.get_mut(), &mut pipeline);
        for ev in tables::last_words(t, &mut reporter, emitted) {
            pipeline.ingest_event(&Event::Flow(ev));
        }
        drain(ring.get_mut(), &mut pipeline);
    }
    lost?;
    Ok(pipeline)
}

/// A previous probe's tables: what it reported and counted of them went
/// with it. Their counts are taken as told, so that a connection is reported
/// and counted from its growth on, not once more from its start; after the
/// events it left unread, whose smaller counts would otherwise read as new
/// connections.
async fn take_adopted_as_told(
    adopted: &Arc<FlowTables>,
    ring: &mut RingBuf<MapData>,
    reporter: &mut Reporter,
    pipeline: &mut Pipeline,
) {
    drain(ring, pipeline);
    let t = adopted.clone();
    if let Ok(Some(read)) = tokio::task::spawn_blocking(move || tables::read_for_report(&t)).await {
        reporter.baseline(&read.flows);
        for (key, st) in &read.flows {
            pipeline.remember_volume(&tables::report_event(key, st, read.ktime_ns));
        }
    }
}

/// What a blocking thread did with the flow tables.
enum TableJob {
    /// Read them for a periodic report (`None`: the read failed).
    Report(Option<tables::ReportRead>),
    /// Collected connection tracking's garbage.
    Collected(tables::Collected),
}

/// Puts what a job found into the stream: the reports of the connections
/// that moved, or the last reports of the connections a collection deleted.
fn tell(
    done: Result<TableJob, tokio::task::JoinError>,
    reporter: &mut Reporter,
    emitted: u8,
    pipeline: &mut Pipeline,
) {
    let events = match done {
        Ok(TableJob::Report(Some(read))) => tables::report(&read, reporter, emitted),
        Ok(TableJob::Report(None)) => Vec::new(),
        Ok(TableJob::Collected(c)) => reporter.ended(&c.ended, emitted, tables::ktime_ns()),
        Err(e) => {
            log::warn!("flow tables: the report or collection failed: {e}");
            Vec::new()
        }
    };
    for ev in events {
        pipeline.ingest_event(&Event::Flow(ev));
    }
}

/// Ingests every record in the ring.
fn drain(ring: &mut RingBuf<MapData>, pipeline: &mut Pipeline) {
    while let Some(item) = ring.next() {
        pipeline.ingest(&item[..]);
    }
}

/// Puts the losses counted since `seen` into the stream; returns the new total.
fn report_lost(
    stats: &aya::maps::PerCpuArray<MapData, u64>,
    pipeline: &Pipeline,
    seen: u64,
) -> anyhow::Result<u64> {
    let lost = read_counters(stats)?.events_lost;
    if lost > seen {
        pipeline.push_lost(LostEventSource::PerfEventRingBuffer, lost - seen);
    }
    Ok(lost.max(seen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::FlowIds;
    use crate::kernel::events::{FlowEvent, FlowKey, hook};
    use cluster_spec::endpoints::EndpointsFile;

    const ENDPOINTS: &str = "endpoints:\n\
        - {id: 1, name: client, namespace: default, labels: {app: client}, ipv4: 198.18.1.10, node: node1, interface: lxc-client}\n";

    /// Flow `i`: TCP or UDP from the client or from the world, at one of two interfaces.
    fn event(i: u8) -> FlowEvent {
        let mut key = FlowKey {
            sport: 40_000 + u16::from(i),
            dport: 80,
            proto: if i.is_multiple_of(2) { 6 } else { 17 },
            family: 4,
            hook: hook::TC_INGRESS,
            ifindex: 10 + u32::from(i % 2),
            ..Default::default()
        };
        key.saddr[..4].copy_from_slice(&[198, 18, 1, 10 + i % 3]);
        key.daddr[..4].copy_from_slice(&[198, 19, 0, i]);
        FlowEvent {
            ktime_ns: 1_000 + u64::from(i),
            key,
            packets: 1,
            bytes: 60 + u64::from(i),
            tcp_flags: 0x02,
            ..Default::default()
        }
    }

    fn enricher(file: &EndpointsFile) -> Enricher {
        let mut e = Enricher::new("node1", file).with_flow_ids(FlowIds::with_prefix(0));
        e.add_interface(10, "lxc-client", Some([198, 18, 1, 10].into()));
        e.add_interface(11, "a-longer-interface-name", None);
        e
    }

    #[test]
    fn flows_written_into_evicted_entries_equal_flows_built_new() {
        let file = EndpointsFile::parse(ENDPOINTS, "endpoints.yaml").unwrap();
        let store = Arc::new(FlowStore::new(3));
        let mut pipeline = Pipeline::new(enricher(&file), store.clone());
        let mut fresh = enricher(&file);
        let mut want = Vec::new();
        for i in 0..10 {
            if i == 4 {
                // A lost-events record takes a slot the next flow reuses.
                pipeline.push_lost(LostEventSource::PerfEventRingBuffer, 7);
            }
            let ev = event(i);
            pipeline.ingest_event(&Event::Flow(ev));
            want.push(fresh.flow(&ev, pipeline.unix_offset_ns));
        }
        let got: Vec<Flow> = store
            .snapshot()
            .iter()
            .map(|e| match &e.response.response_types {
                Some(ResponseTypes::Flow(f)) => {
                    assert_eq!(
                        (e.response.node_name.as_str(), e.response.time),
                        ("node1", f.time)
                    );
                    f.clone()
                }
                other => panic!("not a flow: {other:?}"),
            })
            .collect();
        assert_eq!(got, want[7..]);
        assert_eq!(store.seen(), 11);
    }

    /// From the metrics review: reports (made from the flow tables) counted
    /// as records read from the ring buffer; a record that does not decode
    /// is one read all the same.
    #[test]
    fn only_records_read_from_the_ring_count_as_ring_records() {
        let file = EndpointsFile::parse(ENDPOINTS, "endpoints.yaml").unwrap();
        let mut pipeline = Pipeline::new(enricher(&file), Arc::new(FlowStore::new(8)));
        let metrics = Arc::new(crate::metrics::Metrics::new(
            &crate::metrics::MetricsConfig::default(),
        ));
        pipeline.metrics = Some(metrics.clone());
        let mut record = event(0);
        record.hdr = crate::kernel::events::EventHeader {
            r#type: crate::kernel::events::EVENT_FLOW,
            version: crate::kernel::events::EVENT_VERSION,
            len: std::mem::size_of::<FlowEvent>() as u16,
            _pad0: 0,
        };
        pipeline.ingest(&crate::kernel::events::encode_flow(&record));
        pipeline.ingest(&[1, 2, 3]);
        // A report of the tables.
        pipeline.ingest_event(&Event::Flow(event(1)));
        let text = metrics.render();
        assert!(
            text.lines()
                .any(|l| l == "observe_probe_ringbuf_events_total 2"),
            "{text}"
        );
        assert_eq!(pipeline.store.seen(), 2, "both flows kept");
    }

    /// The relay counts a gap in a probe's flow numbers as flows lost on
    /// their way, so a flow made only for the metrics takes no number.
    #[test]
    fn a_restarts_baseline_leaves_no_gap_in_the_flow_numbers() {
        let file = EndpointsFile::parse(ENDPOINTS, "endpoints.yaml").unwrap();
        let store = Arc::new(FlowStore::new(8));
        let mut pipeline = Pipeline::new(enricher(&file), store.clone());
        pipeline.metrics = Some(Arc::new(crate::metrics::Metrics::new(
            &crate::metrics::MetricsConfig::default(),
        )));
        pipeline.ingest_event(&Event::Flow(event(0)));
        pipeline.remember_volume(&event(1));
        pipeline.remember_volume(&event(2));
        pipeline.ingest_event(&Event::Flow(event(3)));
        let uuids: Vec<String> = store
            .snapshot()
            .iter()
            .map(|e| match &e.response.response_types {
                Some(ResponseTypes::Flow(f)) => f.uuid.clone(),
                other => panic!("not a flow: {other:?}"),
            })
            .collect();
        assert_eq!(
            uuids,
            [
                "00000000-0000-8000-8000-000000000001",
                "00000000-0000-8000-8000-000000000002"
            ]
        );
    }
}
