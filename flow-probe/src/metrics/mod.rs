//! Prometheus metrics of the probe: Hubble's flow metrics under Hubble's names
//! and labels, per-workload volume, and the probe's own health.
//!
//! - [`labels`]: label values as Hubble names them.
//! - [`capped`]: counter families with a cap on distinct label sets.
//! - [`context`]: the source / destination context of the volume metrics.
//! - [`volume`]: cumulative connection volume turned into increases.
//! - [`http`]: the `/metrics` endpoint (Prometheus text format).
//!
//! Every flow the pipeline builds goes through [`Metrics::flow`] once.

pub mod capped;
pub mod context;
pub mod http;
pub mod labels;
pub mod volume;

#[cfg(test)]
mod tests;

use std::sync::Mutex;
use std::time::Duration;

use observer_proto::flow::{DropReason, Flow, IpVersion, LostEventSource, layer4::Protocol};
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use capped::{CappedCounter, Expiry};
pub use capped::{Clock, DEFAULT_GRACE, DEFAULT_MAX_LABEL_SETS, OVERFLOW, system_clock};
pub use context::Context;
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
    /// Connections remembered for the volume increases.
    pub volume_capacity: usize,
    /// Label sets of the churning families (ports, TCP flags, per-workload
    /// volume) not updated for this long are removed at the next scrape;
    /// `None`: kept forever.
    pub grace: Option<Duration>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_label_sets: DEFAULT_MAX_LABEL_SETS,
            context: Context::default(),
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

/// Every metric of the probe, in its own registry.
pub struct Metrics {
    registry: Registry,
    names: Vec<&'static str>,
    context: Context,
    grace: Option<Duration>,
    flows_processed: CappedCounter,
    drops: CappedCounter,
    tcp_flags: CappedCounter,
    ports: CappedCounter,
    icmp: CappedCounter,
    policy_verdicts: CappedCounter,
    to_world: CappedCounter,
    lost_events: CappedCounter,
    bytes: CappedCounter,
    packets: CappedCounter,
    ringbuf_events: IntCounter,
    probe_lost: IntCounterVec,
    decode_errors: IntCounter,
    attached: IntGauge,
    volume: Mutex<VolumeTracker>,
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
        let cap = cfg.max_label_sets;
        let mut capped = |name, help, labels: &[&str], expiry| {
            CappedCounter::register(
                &registry,
                &mut names,
                name,
                help,
                labels,
                cap,
                &overflow,
                expiry,
                clock.clone(),
            )
        };
        let flows_processed = capped(
            "hubble_flows_processed_total",
            "Total number of flows processed",
            &["type", "subtype", "verdict", "protocol"],
            Expiry::Never,
        )?;
        let drops = capped(
            "hubble_drop_total",
            "Number of drops",
            &["reason", "protocol"],
            Expiry::Never,
        )?;
        let tcp_flags = capped(
            "hubble_tcp_flags_total",
            "TCP flag occurrences",
            &["flag", "family"],
            Expiry::AfterGrace,
        )?;
        let ports = capped(
            "hubble_port_distribution_total",
            "Numbers of packets distributed by destination port",
            &["protocol", "port"],
            Expiry::AfterGrace,
        )?;
        let icmp = capped(
            "hubble_icmp_total",
            "Number of ICMP messages",
            &["family", "type"],
            Expiry::Never,
        )?;
        let policy_verdicts = capped(
            "hubble_policy_verdicts_total",
            "Number of policy verdict events",
            &["direction", "match", "action"],
            Expiry::Never,
        )?;
        let to_world = capped(
            "hubble_flows_to_world_total",
            "Total number of flows to reserved:world",
            &["protocol", "verdict"],
            Expiry::Never,
        )?;
        let lost_events = capped(
            "hubble_lost_events_total",
            "Number of lost events",
            &["source"],
            Expiry::Never,
        )?;
        let volume_labels = ["source_workload", "destination_workload", "direction"];
        let bytes = capped(
            "observe_flow_bytes_total",
            "Bytes of flows, from the kernel's per-connection counts",
            &volume_labels,
            Expiry::AfterGrace,
        )?;
        let packets = capped(
            "observe_flow_packets_total",
            "Packets of flows, from the kernel's per-connection counts",
            &volume_labels,
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
        ] {
            registry.register(c)?;
            names.push(name);
        }
        // Series a dashboard needs even before anything happened.
        for s in [stage::KERNEL_RING, stage::AGENT_QUEUE] {
            probe_lost.with_label_values(&[s]).inc_by(0);
        }
        lost_events.touch(&[&labels::lost_source(LostEventSource::PerfEventRingBuffer)]);
        Ok(Metrics {
            registry,
            names,
            context: cfg.context.clone(),
            grace: cfg.grace,
            flows_processed,
            drops,
            tcp_flags,
            ports,
            icmp,
            policy_verdicts,
            to_world,
            lost_events,
            bytes,
            packets,
            ringbuf_events,
            probe_lost,
            decode_errors,
            attached,
            volume: Mutex::new(VolumeTracker::new(cfg.volume_capacity)),
        })
    }

    /// Names of every metric family this exporter registers.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Removes the label sets of the churning families that were not updated
    /// for the grace period, freeing their room under the cap; returns how many.
    pub fn sweep(&self) -> usize {
        let Some(grace) = self.grace else {
            return 0;
        };
        [&self.tcp_flags, &self.ports, &self.bytes, &self.packets]
            .iter()
            .map(|c| c.sweep(grace))
            .sum()
    }

    /// The Prometheus text exposition of every metric, after a [`Self::sweep`].
    pub fn render(&self) -> String {
        self.sweep();
        self.encode()
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

    /// A ring-buffer record that became `flow`: counts it in every metric.
    pub fn flow(&self, flow: &Flow) {
        self.ringbuf_events.inc();
        let protocol = labels::protocol(flow);
        let verdict = labels::verdict(flow);
        let (ty, subtype) = labels::event_type(flow);
        self.flows_processed.inc(&[ty, &subtype, verdict, protocol]);
        let forwarded = verdict == "FORWARDED";
        let dropped = verdict == "DROPPED";
        let reason = DropReason::try_from(flow.drop_reason_desc).unwrap_or(DropReason::Unknown);
        if dropped {
            self.drops.inc(&[reason.as_str_name(), protocol]);
        }
        let family = match flow.ip.as_ref().map(|ip| ip.ip_version()) {
            Some(IpVersion::IPv6) => "IPv6",
            Some(IpVersion::IPv4) => "IPv4",
            _ => "IP_NOT_USED",
        };
        let l4 = flow.l4.as_ref().and_then(|l| l.protocol.as_ref());
        let is_reply = flow.is_reply == Some(true);
        match l4 {
            Some(Protocol::Tcp(t)) if forwarded => {
                if let Some(f) = &t.flags {
                    let syn = if f.ack { "SYN-ACK" } else { "SYN" };
                    for (on, name) in [(f.fin, "FIN"), (f.syn, syn), (f.rst, "RST")] {
                        if on {
                            self.tcp_flags.inc(&[name, family]);
                        }
                    }
                }
            }
            Some(Protocol::IcmPv4(i)) => self.icmp.inc(&["IPv4", &labels::icmp4_type(i.r#type)]),
            Some(Protocol::IcmPv6(i)) => self.icmp.inc(&["IPv6", &labels::icmp6_type(i.r#type)]),
            _ => {}
        }
        // Destination ports of requests that passed (not of replies: ephemeral).
        if (forwarded || verdict == "REDIRECTED") && flow.is_reply == Some(false) {
            let port = match l4 {
                Some(Protocol::Tcp(t)) => Some(t.destination_port.to_string()),
                Some(Protocol::Udp(u)) => Some(u.destination_port.to_string()),
                Some(Protocol::IcmPv4(_) | Protocol::IcmPv6(_)) => Some("0".to_string()),
                _ => None,
            };
            if let Some(port) = port {
                self.ports.inc(&[protocol, &port]);
            }
        }
        // Our datapath reports a policy denial as one Drop event carrying the
        // decision, where Cilium sends a PolicyVerdict and a Drop: count both kinds.
        let policy_drop = matches!(reason, DropReason::PolicyDenied | DropReason::PolicyDeny);
        let event = flow.event_type.as_ref().map_or(0, |e| e.r#type);
        if event == labels::message::POLICY_VERDICT || (dropped && policy_drop) {
            let direction = flow.traffic_direction().as_str_name().to_ascii_lowercase();
            self.policy_verdicts.inc(&[
                &direction,
                labels::match_type(flow.policy_match_type),
                &verdict.to_ascii_lowercase(),
            ]);
        }
        let to_world = flow
            .destination
            .as_ref()
            .is_some_and(|d| d.labels.iter().any(|l| l == "reserved:world"));
        if to_world && l4.is_some() && (if dropped { policy_drop } else { !is_reply }) {
            self.to_world.inc(&[protocol, verdict]);
        }
        self.count_volume(flow);
    }

    fn count_volume(&self, flow: &Flow) {
        let delta = self
            .volume
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .delta(flow);
        let Some((bytes, packets)) = delta else {
            return;
        };
        let src = self.context.value(flow, true);
        let dst = self.context.value(flow, false);
        let direction = flow.traffic_direction().as_str_name().to_ascii_lowercase();
        let values = [src.as_str(), dst.as_str(), direction.as_str()];
        self.bytes.inc_by(&values, bytes);
        self.packets.inc_by(&values, packets);
    }

    /// A ring-buffer record that could not be decoded.
    pub fn decode_error(&self) {
        self.ringbuf_events.inc();
        self.decode_errors.inc();
    }

    /// `n` events lost at `source` (Hubble's metric) in `stage` (ours).
    pub fn lost(&self, source: LostEventSource, stage: &str, n: u64) {
        self.lost_events.inc_by(&[&labels::lost_source(source)], n);
        self.probe_lost.with_label_values(&[stage]).inc_by(n);
    }

    pub fn set_attached_programs(&self, n: usize) {
        self.attached.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// Names of every metric the probe exports (for checking dashboards).
pub fn metric_names() -> Vec<&'static str> {
    Metrics::new(&MetricsConfig::default()).names().to_vec()
}

/// Parses a `--metrics-grace` value: seconds, or a number with `s`, `m` or
/// `h`; `0` or `off` keeps series forever.
pub fn parse_grace(s: &str) -> Result<Option<Duration>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => 0,
    };
    match num.parse::<u64>() {
        Ok(n) if mult > 0 => Ok((n > 0).then(|| Duration::from_secs(n.saturating_mul(mult)))),
        _ => Err(format!(
            "--metrics-grace {s:?}: expected seconds or a number with s, m or h (like 10m), or off"
        )),
    }
}
