//! Prometheus metrics of the probe: Hubble's flow metrics under Hubble's names
//! and labels, per-workload volume, and the probe's own health.
//!
//! - [`labels`]: label values as Hubble names them.
//! - [`key`]: label sets as byte keys, built without allocating.
//! - [`capped`]: counter families with a cap on distinct label sets.
//! - [`context`]: how a source / destination label names an endpoint.
//! - [`options`]: per-metric `sourceContext` / `destinationContext` (`--metric`).
//! - [`volume`]: cumulative connection volume turned into increases.
//!
//! Every flow the pipeline builds goes through [`Metrics::flow`] once: it
//! takes one lock, writes each metric's label set into a reused key buffer
//! and adds to the counter handle kept for that set.

pub mod capped;
pub mod context;
pub mod key;
pub mod labels;
pub mod options;
pub mod volume;

#[cfg(test)]
mod tests;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use observer_proto::flow::{DropReason, Flow, IpVersion, LostEventSource, layer4::Protocol};
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use capped::{CappedFamily, Expiry, Now, Registrar};
pub use capped::{Clock, DEFAULT_GRACE, DEFAULT_MAX_LABEL_SETS, OVERFLOW, system_clock};
pub use context::Context;
use key::KeyBuf;
pub use options::{ContextOptions, FlowMetric, MetricOptions};
use volume::VolumeTracker;

/// Default `/metrics` listen address (Hubble's metrics port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9965";

/// Settings of the metrics.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Distinct label sets each labelled metric accepts.
    pub max_label_sets: usize,
    /// How the volume metrics name source and destination.
    pub context: Context,
    /// Source / destination labels of Hubble's flow metrics (none by default).
    pub options: MetricOptions,
    /// Connections remembered for the volume increases.
    pub volume_capacity: usize,
    /// Label sets of the churning families (ports, per-workload volume, and
    /// every metric given source / destination labels) not
    /// updated for this long are removed at the next scrape; `None`: kept forever.
    pub grace: Option<Duration>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_label_sets: DEFAULT_MAX_LABEL_SETS,
            context: Context::default(),
            options: MetricOptions::default(),
            volume_capacity: volume::DEFAULT_CAPACITY,
            grace: Some(DEFAULT_GRACE),
        }
    }
}

/// Lost-event stages of `observe_probe_lost_events_total`.
pub mod stage {
    /// The kernel's ring buffer was full (the probe's STATS counter).
    pub const KERNEL_RING: &str = "kernel_ring";
    /// A user-space queue overflowed (the pipeline drains the ring straight
    /// into the store, so this stays 0 until such a queue exists).
    pub const AGENT_QUEUE: &str = "agent_queue";
}

/// The capped families, all under [`Metrics`]' one lock.
struct Families {
    flows_processed: CappedFamily,
    drops: CappedFamily,
    tcp_flags: CappedFamily,
    ports: CappedFamily,
    icmp: CappedFamily,
    policy_verdicts: CappedFamily,
    to_world: CappedFamily,
    lost_events: CappedFamily,
    /// `observe_flow_bytes_total` and `observe_flow_packets_total`.
    volume: CappedFamily,
}

impl Families {
    fn all_mut(&mut self) -> [&mut CappedFamily; 9] {
        [
            &mut self.flows_processed,
            &mut self.drops,
            &mut self.tcp_flags,
            &mut self.ports,
            &mut self.icmp,
            &mut self.policy_verdicts,
            &mut self.to_world,
            &mut self.lost_events,
            &mut self.volume,
        ]
    }
}

struct State {
    families: Families,
    volume: VolumeTracker,
    key: KeyBuf,
}

/// Every metric of the probe, in its own registry.
pub struct Metrics {
    registry: Registry,
    names: Vec<&'static str>,
    context: Context,
    options: MetricOptions,
    grace: Option<Duration>,
    clock: Clock,
    ringbuf_events: IntCounter,
    probe_lost: IntCounterVec,
    decode_errors: IntCounter,
    attached: IntGauge,
    policy_generation: IntGauge,
    services_generation: IntGauge,
    state: Mutex<State>,
}

impl Metrics {
    pub fn new(cfg: &MetricsConfig) -> Self {
        Self::with_clock(cfg, system_clock())
    }

    /// Metrics whose expiry reads time from `clock`.
    pub fn with_clock(cfg: &MetricsConfig, clock: Clock) -> Self {
        Self::build(cfg, clock).expect("metric names and labels are valid and unique")
    }

    fn build(cfg: &MetricsConfig, clock: Clock) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let mut names = Vec::new();
        let overflow = IntCounterVec::new(
            Opts::new(
                "observe_metrics_overflow_total",
                "Observations whose label set did not fit under the cap and went to __overflow__",
            ),
            &["metric"],
        )?;
        registry.register(Box::new(overflow.clone()))?;
        names.push("observe_metrics_overflow_total");
        let mut r = Registrar {
            registry: &registry,
            names: &mut names,
            overflow: &overflow,
            cap: cfg.max_label_sets,
        };
        // A Hubble flow metric: its own labels, then `source` / `destination`
        // if configured; those churn with endpoints, so they expire.
        let mut hubble = |m: FlowMetric, help: &str, own: &[&str], expiry: Expiry| {
            let ctx = cfg.options.get(m);
            let mut labels = own.to_vec();
            let port = m == FlowMetric::FlowsToWorld && cfg.options.to_world.port;
            if port {
                labels.push("port");
            }
            labels.extend(ctx.label_names());
            // Context labels and flows-to-world's ports churn.
            let expiry = if port || !ctx.is_empty() {
                Expiry::AfterGrace
            } else {
                expiry
            };
            CappedFamily::register(&mut r, &[(m.family(), help)], &labels, expiry)
        };
        let flows_processed = hubble(
            FlowMetric::Flow,
            "Total number of flows processed",
            &["type", "subtype", "verdict", "protocol"],
            Expiry::Never,
        )?;
        let drops = hubble(
            FlowMetric::Drop,
            "Number of drops",
            &["reason", "protocol"],
            Expiry::Never,
        )?;
        // Flags and families are a small fixed set: kept (with a context
        // label they churn, and expire as every context-labelled metric).
        let tcp_flags = hubble(
            FlowMetric::Tcp,
            "TCP flag occurrences",
            &["flag", "family"],
            Expiry::Never,
        )?;
        let ports = hubble(
            FlowMetric::PortDistribution,
            "Numbers of packets distributed by destination port",
            &["protocol", "port"],
            Expiry::AfterGrace,
        )?;
        let icmp = hubble(
            FlowMetric::Icmp,
            "Number of ICMP messages",
            &["family", "type"],
            Expiry::Never,
        )?;
        let policy_verdicts = hubble(
            FlowMetric::Policy,
            "Number of policy verdict events",
            &["direction", "match", "action"],
            Expiry::Never,
        )?;
        let to_world = hubble(
            FlowMetric::FlowsToWorld,
            "Total number of flows to reserved:world",
            &["protocol", "verdict"],
            Expiry::Never,
        )?;
        let lost_events = CappedFamily::register(
            &mut r,
            &[("hubble_lost_events_total", "Number of lost events")],
            &["source"],
            Expiry::Never,
        )?;
        let volume = CappedFamily::register(
            &mut r,
            &[
                (
                    "observe_flow_bytes_total",
                    "Bytes of flows, from the kernel's per-connection counts",
                ),
                (
                    "observe_flow_packets_total",
                    "Packets of flows, from the kernel's per-connection counts",
                ),
            ],
            &[
                "source_workload",
                "destination_workload",
                "direction",
                "observed_at",
            ],
            Expiry::AfterGrace,
        )?;
        let ringbuf_events = IntCounter::new(
            "observe_probe_ringbuf_events_total",
            "Records read from the kernel ring buffer",
        )?;
        let probe_lost = IntCounterVec::new(
            Opts::new(
                "observe_probe_lost_events_total",
                "Events lost before the flow store, by stage",
            ),
            &["stage"],
        )?;
        let decode_errors = IntCounter::new(
            "observe_probe_decode_errors_total",
            "Ring-buffer records that could not be decoded",
        )?;
        let attached = IntGauge::new(
            "observe_probe_attached_programs",
            "tc programs attached (two per interface: ingress and egress)",
        )?;
        let policy_generation = IntGauge::new(
            "observe_probe_policy_generation",
            "Distinct policy sets put in force since start (advances once a change is enforced)",
        )?;
        let services_generation = IntGauge::new(
            "observe_probe_services_generation",
            "Distinct service sets put in force since start (advances once a change is balanced)",
        )?;
        for (name, c) in [
            (
                "observe_probe_ringbuf_events_total",
                Box::new(ringbuf_events.clone()) as Box<dyn prometheus::core::Collector>,
            ),
            (
                "observe_probe_lost_events_total",
                Box::new(probe_lost.clone()),
            ),
            (
                "observe_probe_decode_errors_total",
                Box::new(decode_errors.clone()),
            ),
            (
                "observe_probe_attached_programs",
                Box::new(attached.clone()),
            ),
            (
                "observe_probe_policy_generation",
                Box::new(policy_generation.clone()),
            ),
            (
                "observe_probe_services_generation",
                Box::new(services_generation.clone()),
            ),
        ] {
            registry.register(c)?;
            names.push(name);
        }
        // Series a dashboard needs even before anything happened.
        for s in [stage::KERNEL_RING, stage::AGENT_QUEUE] {
            probe_lost.with_label_values(&[s]).inc_by(0);
        }
        let mut state = State {
            families: Families {
                flows_processed,
                drops,
                tcp_flags,
                ports,
                icmp,
                policy_verdicts,
                to_world,
                lost_events,
                volume,
            },
            volume: VolumeTracker::new(cfg.volume_capacity),
            key: KeyBuf::default(),
        };
        // The sources a probe counts, at 0 from the start, as Hubble's.
        for source in [
            LostEventSource::PerfEventRingBuffer,
            LostEventSource::ObserverEventsQueue,
        ] {
            let State { families, key, .. } = &mut state;
            key.clear().push(&labels::lost_source(source));
            families
                .lost_events
                .add(key.bytes(), &[0], &mut Now::new(&clock));
        }
        Ok(Metrics {
            registry,
            names,
            context: cfg.context.clone(),
            options: cfg.options.clone(),
            grace: cfg.grace,
            clock,
            ringbuf_events,
            probe_lost,
            decode_errors,
            attached,
            policy_generation,
            services_generation,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Names of every metric family this exporter registers.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Distinct label sets the metric `name` holds (its overflow set not
    /// included); `None` for a metric without a cap.
    pub fn label_sets(&self, name: &str) -> Option<usize> {
        let mut state = self.lock();
        let f = state.families.all_mut().into_iter().find(|f| f.has(name))?;
        Some(f.label_sets())
    }

    /// Removes the series of the expiring families that were not updated for
    /// the grace period, freeing their room under the cap; returns how many.
    pub fn sweep(&self) -> usize {
        let Some(grace) = self.grace else {
            return 0;
        };
        let now = (self.clock)();
        let mut state = self.lock();
        state
            .families
            .all_mut()
            .into_iter()
            .map(|f| f.sweep(now, grace))
            .sum()
    }

    /// The Prometheus text exposition of every metric, after a [`Self::sweep`]:
    /// a scrape. New series of the expiring families show 0, and count what
    /// waited from the next scrape on (see [`capped`]).
    pub fn render(&self) -> String {
        self.sweep();
        self.lock()
            .families
            .all_mut()
            .into_iter()
            .for_each(CappedFamily::begin_scrape);
        let text = self.encode();
        self.lock()
            .families
            .all_mut()
            .into_iter()
            .for_each(CappedFamily::settle);
        text
    }

    /// The text exposition of every metric as it stands (no sweep).
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Writing to a Vec does not fail; a bad metric would be a bug here.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::warn!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// One record read from the kernel's ring buffer (decodable or not).
    pub fn ring_record(&self) {
        self.ringbuf_events.inc();
    }

    /// The flows of one ring-buffer record or report: each in every metric.
    pub fn flows(&self, flows: &[Flow]) {
        for f in flows {
            self.flow(f);
        }
    }

    /// Takes a report of counters a previous probe left as the volume
    /// already counted: later reports of the connection count its growth.
    pub fn remember_volume(&self, report: &Flow) {
        let _ = self.lock().volume.deltas(report);
    }

    /// Counts one flow in every metric (the record it came from is counted
    /// by [`Self::flows`]); a report of a connection's counters, in the
    /// volume metrics only.
    pub fn flow(&self, flow: &Flow) {
        if flow.tcp_lifecycle.is_some() {
            // A socket's lifecycle is not a flow Hubble would process.
            return;
        }
        let mut guard = self.lock();
        let State {
            families: f,
            volume,
            key,
        } = &mut *guard;
        let mut now = Now::new(&self.clock);
        // The link's housekeeping (IPv6 neighbour discovery, multicast
        // listener reports) is no workload's traffic: one multicast
        // solicitation arrives at every endpoint of the link, each counting
        // it as bytes to world.
        let housekeeping = observer_proto::icmpv6::flow_is_link_housekeeping(flow);
        if !housekeeping && let Some(d) = volume.deltas(flow) {
            key.clear()
                .push_with(|b| self.context.write(flow, true, b))
                .push_with(|b| self.context.write(flow, false, b))
                .push(labels::direction(flow))
                .push(labels::observed_at(flow, false));
            f.volume.add(key.bytes(), &[d.own.0, d.own.1], &mut now);
            // The other direction, named the other way round; only when it
            // grew, so one-way traffic has no empty reverse series.
            if d.other != (0, 0) {
                key.clear()
                    .push_with(|b| self.context.write(flow, false, b))
                    .push_with(|b| self.context.write(flow, true, b))
                    .push(labels::direction(flow))
                    .push(labels::observed_at(flow, true));
                f.volume.add(key.bytes(), &[d.other.0, d.other.1], &mut now);
            }
        }
        // A report of a connection's counters is no packet: volume only, in
        // none of Hubble's flow metrics.
        if flow.volume.as_ref().is_some_and(|v| v.report) {
            return;
        }
        let opts = &self.options;
        // The key of metric `m`: its own values, then its context values
        // (`labelsContext`'s, then source and destination).
        let ctx = |key: &mut KeyBuf, m: FlowMetric| {
            let o = opts.get(m);
            for l in &o.labels {
                key.push_with(|b| l.write(flow, b));
            }
            for (end, source) in [(&o.source, true), (&o.destination, false)] {
                if end.is_set() {
                    key.push_with(|b| {
                        if let Some(c) = end.for_flow(flow) {
                            c.write(flow, source, b);
                        }
                    });
                }
            }
        };

        let protocol = labels::protocol(flow);
        let verdict = labels::verdict(flow);
        let processed = |key: &mut KeyBuf| {
            let (ty, subtype) = labels::event_type(flow);
            key.push(ty).push(&subtype).push(verdict).push(protocol);
            ctx(key, FlowMetric::Flow);
        };
        if opts.get(FlowMetric::Flow).is_empty() {
            // Every flow lands here: its labels follow from four small numbers.
            let id = labels::flows_processed_id(flow);
            f.flows_processed.inc_memo(id, key, processed, &mut now);
        } else {
            processed(key.clear());
            f.flows_processed.inc(key.bytes(), &mut now);
        }
        let forwarded = verdict == "FORWARDED";
        let dropped = verdict == "DROPPED";
        let reason = DropReason::try_from(flow.drop_reason_desc).unwrap_or(DropReason::Unknown);
        let event = flow.event_type.as_ref().map_or(0, |e| e.r#type);
        // Every DROPPED flow, as Hubble's drop handler counts: a denial's
        // PolicyVerdict flow and its Drop flow both.
        if dropped {
            key.clear().push(labels::drop_reason(flow)).push(protocol);
            ctx(key, FlowMetric::Drop);
            f.drops.inc(key.bytes(), &mut now);
        }
        // The IP record's version name, as Hubble's handler: none without one.
        let family = flow.ip.as_ref().map(|ip| match ip.ip_version() {
            IpVersion::IPv6 => "IPv6",
            IpVersion::IPv4 => "IPv4",
            IpVersion::IpNotUsed => "IP_NOT_USED",
        });
        let l4 = flow.l4.as_ref().and_then(|l| l.protocol.as_ref());
        let is_reply = flow.is_reply == Some(true);
        let passed = forwarded || verdict == "REDIRECTED";
        match l4 {
            // As Hubble's handler: flags of flows that passed, with an IP
            // record.
            Some(Protocol::Tcp(t)) if passed => {
                if let (Some(fl), Some(family)) = (&t.flags, family) {
                    let syn = if fl.ack { "SYN-ACK" } else { "SYN" };
                    for (on, name) in [(fl.fin, "FIN"), (fl.syn, syn), (fl.rst, "RST")] {
                        if on {
                            key.clear().push(name).push(family);
                            ctx(key, FlowMetric::Tcp);
                            f.tcp_flags.inc(key.bytes(), &mut now);
                        }
                    }
                }
            }
            Some(Protocol::IcmPv4(i)) => {
                key.clear()
                    .push("IPv4")
                    .push(&labels::icmp4_type(i.r#type, i.code));
                ctx(key, FlowMetric::Icmp);
                f.icmp.inc(key.bytes(), &mut now);
            }
            Some(Protocol::IcmPv6(i)) => {
                key.clear()
                    .push("IPv6")
                    .push(&labels::icmp6_type(i.r#type, i.code));
                ctx(key, FlowMetric::Icmp);
                f.icmp.inc(key.bytes(), &mut now);
            }
            _ => {}
        }
        // Destination ports of requests that passed (not of replies:
        // ephemeral), the protocol named by L4 alone, as Hubble's handler.
        if passed && flow.is_reply == Some(false) {
            let port = match l4 {
                Some(Protocol::Tcp(t)) => Some(t.destination_port),
                Some(Protocol::Udp(u)) => Some(u.destination_port),
                Some(Protocol::Sctp(s)) => Some(s.destination_port),
                Some(Protocol::IcmPv4(_) | Protocol::IcmPv6(_)) => Some(0),
                None => None,
            };
            if let (Some(port), Some(name)) = (port, labels::l4_name(flow)) {
                key.clear().push(name).push_u32(port);
                ctx(key, FlowMetric::PortDistribution);
                f.ports.inc(key.bytes(), &mut now);
            }
        }
        // Policy verdict events only, as Hubble counts them (a denial is a
        // PolicyVerdict flow and a Drop flow; the Drop is not a verdict).
        // Not the host's (identity 1): it may reach any local endpoint.
        if event == labels::message::POLICY_VERDICT
            && flow.source.as_ref().is_none_or(|s| s.identity != 1)
        {
            key.clear()
                .push(labels::direction(flow))
                .push(labels::match_type(flow.policy_match_type))
                .push(labels::verdict_lower(flow));
            ctx(key, FlowMetric::Policy);
            f.policy_verdicts.inc(key.bytes(), &mut now);
        }
        // IPv6 neighbour discovery and multicast listener reports go to
        // link-local and multicast addresses no endpoint has: the link's
        // housekeeping, nothing leaving the cluster.
        let to_world = !observer_proto::icmpv6::flow_is_link_housekeeping(flow)
            && flow
                .destination
                .as_ref()
                .is_some_and(|d| d.labels.iter().any(|l| l == "reserved:world"));
        // As Hubble's handler: of drops only POLICY_DENIED ones (a denial's
        // PolicyVerdict and Drop flows both; with `any-drop`, all), of the
        // rest no replies; with `syn-only`, TCP SYNs that are no reply.
        let world = &opts.to_world;
        let syn =
            || matches!(l4, Some(Protocol::Tcp(t)) if t.flags.as_ref().is_some_and(|f| f.syn));
        if to_world
            && l4.is_some()
            && (if dropped {
                world.any_drop || reason == DropReason::PolicyDenied
            } else {
                !is_reply
            })
            && (!world.syn_only || (!is_reply && syn()))
        {
            key.clear().push(protocol).push(verdict);
            if world.port {
                match l4 {
                    Some(Protocol::Tcp(t)) => key.push_u32(t.destination_port),
                    Some(Protocol::Udp(u)) => key.push_u32(u.destination_port),
                    Some(Protocol::Sctp(s)) => key.push_u32(s.destination_port),
                    _ => key.push(""),
                };
            }
            ctx(key, FlowMetric::FlowsToWorld);
            f.to_world.inc(key.bytes(), &mut now);
        }
    }

    /// A ring-buffer record that could not be decoded (counted as read by
    /// [`Self::ring_record`]).
    pub fn decode_error(&self) {
        self.decode_errors.inc();
    }

    /// `n` events lost at `source` (Hubble's metric) in `stage` (ours).
    pub fn lost(&self, source: LostEventSource, stage: &str, n: u64) {
        self.hubble_lost(source, n);
        self.probe_lost.with_label_values(&[stage]).inc_by(n);
    }

    /// Adds `n` to `hubble_lost_events_total` of `source`.
    fn hubble_lost(&self, source: LostEventSource, n: u64) {
        let mut guard = self.lock();
        let State { families, key, .. } = &mut *guard;
        key.clear().push(&labels::lost_source(source));
        families
            .lost_events
            .add(key.bytes(), &[n], &mut Now::new(&self.clock));
    }

    /// `n` flows a follower of the store missed, having fallen behind: each
    /// client's own loss, so in Hubble's metric only (the store holds
    /// them), under the source Hubble counts a reader its ring left behind
    /// (`hubble_ring_buffer`; the client's record says
    /// `OBSERVER_EVENTS_QUEUE`, a parity decision of the stream).
    pub fn follower_lagged(&self, n: u64) {
        self.hubble_lost(LostEventSource::HubbleRingBuffer, n);
    }

    pub fn set_attached_programs(&self, n: usize) {
        self.attached.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The gauge of the policy watcher's [`crate::generation::Generation`].
    pub fn policy_generation(&self) -> IntGauge {
        self.policy_generation.clone()
    }

    /// The gauge of the services watcher's [`crate::generation::Generation`].
    pub fn services_generation(&self) -> IntGauge {
        self.services_generation.clone()
    }
}

/// Names of every metric the probe exports (for checking dashboards).
pub fn metric_names() -> Vec<&'static str> {
    Metrics::new(&MetricsConfig::default()).names().to_vec()
}

/// Parses a `--metrics-grace` value: a duration (`10m`, `1h30m`, `90s`), a
/// bare number of seconds, or `off` (as does 0): never expire.
pub fn parse_grace(s: &str) -> Result<Option<Duration>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let grace = match t.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => observer_proto::time::parse_duration(t)
            .map_err(|e| format!("--metrics-grace {s:?}: {e} (or a number of seconds, or off)"))?,
    };
    Ok((!grace.is_zero()).then_some(grace))
}
