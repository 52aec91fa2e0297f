//! Socket-level service load balancing, as Cilium's socket LB does it: a
//! services file ([`file`](mod@file)) names VIPs, ports and label selectors; [`compile`](mod@compile)
//! turns it and the endpoints file into frontends with backends; [`sync`] writes
//! them into the `SERVICES` and `BACKENDS` maps of `sock_lb.bpf.c` (loaded by
//! [`crate::kernel::sock_lb`]) without a window; [`watch`] re-applies on every
//! change of either file. [`table`] is the same state for enrichment, and
//! [`flows`] turns the kernel's translation events into SOCK flows and names the
//! services of tc flows to and from backends.

pub mod compile;
pub mod file;
pub mod flows;
pub mod sync;
pub mod table;
pub mod watch;

pub use compile::{Backend, CompiledServices, Frontend, ServiceRef, compile};
pub use file::{ServicesError, ServicesFile};
pub use sync::{ServiceMaps, SyncReport};
pub use table::ServiceTable;
