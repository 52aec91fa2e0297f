//! What flow-probe does with the kernel's flow tables besides the events:
//! periodic reports of live flows ([`report`]) and the garbage collection of
//! connection tracking ([`gc`]). Both read the tables in batches through
//! [`crate::kernel::flow_tables`]; the pipeline runs [`report`] and
//! [`collect`] on their timers.

pub mod gc;
pub mod report;

pub use gc::Collector;
pub use report::Reporter;

use crate::kernel::events::FlowEvent;
use crate::kernel::flow_tables::FlowTables;

/// Kernel time now: the clock of `bpf_ktime_get_ns()`.
fn ktime_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Reads the flow tables; a report event for every connection that moved.
pub fn report(tables: &FlowTables, reporter: &mut Reporter) -> Vec<FlowEvent> {
    match tables.flows() {
        Ok(flows) => reporter.reports(&flows, ktime_ns()),
        Err(e) => {
            log::warn!("periodic reports: reading the flow tables: {e}");
            Vec::new()
        }
    }
}

/// Reads the flow tables and connection tracking, and deletes what is closed
/// or idle; returns (connections forgotten, counters deleted).
pub fn collect(tables: &FlowTables, collector: &mut Collector) -> (usize, usize) {
    let read = tables.flows().and_then(|f| Ok((f, tables.tracked()?)));
    let (flows, tracked) = match read {
        Ok(r) => r,
        Err(e) => {
            log::warn!("connection tracking: reading the tables: {e}");
            return (0, 0);
        }
    };
    let sweep = collector.sweep(&flows, &tracked, std::time::Instant::now());
    // Counters first: they let packets pass on their own.
    let deleted = tables
        .delete_flows(&sweep.flows)
        .and_then(|f| Ok((tables.delete_tracked(&sweep.tracked)?, f)));
    match deleted {
        Ok(done) => {
            if done != (0, 0) {
                log::debug!(
                    "connection tracking: forgot {} connections, {} counters",
                    done.0,
                    done.1
                );
            }
            done
        }
        Err(e) => {
            log::warn!("connection tracking: deleting: {e}");
            (0, 0)
        }
    }
}
