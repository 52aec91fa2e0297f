//! Socket-level service load balancing, as Cilium's socket LB does it. The
//! services file and its compilation to frontends and backends are
//! [`cluster_spec::services`]; here [`entries`] turns them into the kernel's
//! map entries, [`sync`] writes them into the `SERVICES` and `BACKENDS` maps of
//! `sock_lb.bpf.c` (loaded by [`crate::kernel::sock_lb`]) without a window, and
//! [`watch`] re-applies on every change of either file. [`table`] is the same
//! state for enrichment, and [`flows`] turns the kernel's translation events
//! into SOCK flows and names the services of tc flows to and from backends.

pub mod entries;
pub mod flows;
pub mod sync;
pub mod table;
pub mod watch;

pub use sync::{ServiceMaps, SyncReport};
pub use table::ServiceTable;
