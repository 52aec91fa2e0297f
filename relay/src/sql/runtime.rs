//! The SQL runtime: the tokio runtime every query is parsed, planned and run
//! on, apart from the one that serves gRPC.
//!
//! - Its threads have [`STACK_BYTES`] of stack: parsing, planning, optimising
//!   and evaluating expressions recurse once per nesting level, and the
//!   [`super::shape`] limits were measured to fit in it.
//! - A query that keeps both of its threads busy leaves the gRPC runtime's
//!   threads free: `ServerStatus` and `GetFlows` are still answered.
//! - DataFusion spawns its own tasks (repartitioning, file reads) on the
//!   runtime it runs on: this one.
//!
//! One runtime serves every engine of the process; it lives as long as the
//! process (a runtime cannot be dropped from inside another one).

use std::sync::LazyLock;

use super::SqlError;

/// Stack of each SQL thread (reserved, not touched, until a query needs it).
pub const STACK_BYTES: usize = 64 << 20;

/// Worker threads: as many as DataFusion's partitions of a query.
pub const THREADS: usize = 2;

static RUNTIME: LazyLock<Result<tokio::runtime::Runtime, String>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(THREADS)
        .max_blocking_threads(THREADS * 2)
        .thread_stack_size(STACK_BYTES)
        .thread_name("sql")
        .enable_time()
        .build()
        .map_err(|e| format!("starting the SQL runtime: {e}"))
});

/// Where queries are spawned.
pub fn handle() -> Result<&'static tokio::runtime::Handle, SqlError> {
    match &*RUNTIME {
        Ok(rt) => Ok(rt.handle()),
        Err(e) => Err(SqlError::Fault(e.clone())),
    }
}
