//! What flow-probe does with the kernel's flow tables besides the events:
//! periodic reports of live flows ([`report`]), the garbage collection of
//! connection tracking ([`gc`]) and a last report of each connection it
//! deletes ([`Reporter::ended`]), or of each one left at a stop that takes
//! the tables away ([`last_words`]). The first two read the tables in batches through
//! [`crate::kernel::flow_tables`]; the pipeline runs [`report`] and
//! [`collect`] on their timers.

pub mod gc;
pub mod report;

pub use gc::Collector;
pub use report::{Reporter, report_event};

use std::collections::HashSet;

use crate::kernel::events::{FlowEvent, FlowStats};
use crate::kernel::flow_tables::{FlowTables, TableKey};
use crate::metrics::key::BuildKeyHasher;

/// Kernel time now: the clock of `bpf_ktime_get_ns()`.
pub fn ktime_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// The flow tables as read for a periodic report, and the kernel time then.
pub struct ReportRead {
    pub flows: Vec<(TableKey, FlowStats)>,
    pub ktime_ns: u64,
}

/// Reads the flow tables for a periodic report (a few ms with full tables:
/// the pipeline runs it on a blocking thread); `None` when the read failed,
/// which it logs.
pub fn read_for_report(tables: &FlowTables) -> Option<ReportRead> {
    match tables.flows() {
        Ok(flows) => Some(ReportRead {
            flows,
            ktime_ns: ktime_ns(),
        }),
        Err(e) => {
            log::warn!("periodic reports: reading the flow tables: {e}");
            None
        }
    }
}

/// A report event for every connection of `read` that moved (the probe
/// emits the TCP flags in `emitted`).
pub fn report(read: &ReportRead, reporter: &mut Reporter, emitted: u8) -> Vec<FlowEvent> {
    reporter.reports(&read.flows, emitted, read.ktime_ns)
}

/// Reads the flow tables at a stop that takes them away: the last report of
/// every connection in them, as if a collection had deleted them all.
pub fn last_words(tables: &FlowTables, reporter: &mut Reporter, emitted: u8) -> Vec<FlowEvent> {
    match tables.flows() {
        Ok(flows) => reporter.ended(&flows, emitted, ktime_ns()),
        Err(e) => {
            log::warn!("last reports at the stop: reading the flow tables: {e}");
            Vec::new()
        }
    }
}

/// What one collection did.
#[derive(Debug, Default)]
pub struct Collected {
    /// Connections forgotten in connection tracking.
    pub forgotten: usize,
    /// Counters deleted from the flow tables.
    pub deleted: usize,
    /// The deleted counters as last read: what [`Reporter::ended`] tells of
    /// the connections' ends.
    pub ended: Vec<(TableKey, FlowStats)>,
}

/// Reads the flow tables and connection tracking, and deletes what is closed
/// or idle.
pub fn collect(tables: &FlowTables, collector: &mut Collector) -> Collected {
    let read = tables.flows().and_then(|f| Ok((f, tables.tracked()?)));
    let (flows, tracked) = match read {
        Ok(r) => r,
        Err(e) => {
            log::warn!("connection tracking: reading the tables: {e}");
            return Collected::default();
        }
    };
    let sweep = collector.sweep(&flows, &tracked, std::time::Instant::now());
    // Counters first: they let packets pass on their own.
    let deleted = tables
        .delete_flows(&sweep.flows)
        .and_then(|f| Ok((tables.delete_tracked(&sweep.tracked)?, f)));
    match deleted {
        Ok((forgotten, deleted)) => {
            if (forgotten, deleted) != (0, 0) {
                log::debug!(
                    "connection tracking: forgot {forgotten} connections, {deleted} counters"
                );
            }
            let gone: HashSet<&TableKey, BuildKeyHasher> = sweep.flows.iter().collect();
            let ended = flows
                .into_iter()
                .filter(|(k, _)| gone.contains(k))
                .collect();
            Collected {
                forgotten,
                deleted,
                ended,
            }
        }
        Err(e) => {
            log::warn!("connection tracking: deleting: {e}");
            Collected::default()
        }
    }
}
