//! What flow-probe does with the kernel's flow tables besides the events:
//! periodic reports of live flows ([`report`]) and the garbage collection of
//! connection tracking ([`gc`]). Both read the tables in batches through
//! [`crate::kernel::flow_tables`]; the pipeline runs them on their timers.

pub mod gc;
pub mod report;

pub use gc::Collector;
pub use report::Reporter;
