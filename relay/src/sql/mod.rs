//! Read-only SQL over the flow history with DataFusion.
//!
//! The table `flows` (schema: [`crate::history`]) is the union of the rows
//! still in memory (a `MemTable`) and the finished Parquet files (a
//! `ListingTable` over exactly the files of the history's snapshot), so a
//! query sees every ingested flow once. Over it, [`graph`] serves the service
//! graph as the tables `graph_nodes` and `graph_edges`, built by
//! `service_graph::GraphBuilder` from the flows of the query's time window:
//! the one builder `observe graph` and the TUI fold their GetFlows stream
//! with, so Grafana's node graph, the CLI and the TUI show the same edges.
//!
//! # A query's way, and what keeps it from hurting the relay
//! - [`admission`]: at most [`SqlLimits::max_concurrent`] queries run at
//!   once; another waits up to [`SqlLimits::queue_wait`], then is refused
//!   ([`SqlError::Busy`]). Shutdown cancels every running query.
//! - [`engine`]: the [`SqlEngine`] runs each admitted query as one task on
//!   the SQL [`runtime`] (threads with large stacks, apart from gRPC's),
//!   with a [`session`] of its own:
//!   - the [`guard`] parses it within the [`shape`] limits (statement size,
//!     tokens, nesting, subqueries) and lets through one `SELECT` / `WITH` /
//!     `EXPLAIN` of those tables only, or what lists them (`SHOW TABLES`,
//!     `DESCRIBE`); [`params`] numbers `?` and binds
//!     values to `$1`, `$2`, ...;
//!   - memory comes from a [`pool`] per query ([`SqlLimits::memory_bytes`])
//!     within one pool for all ([`SqlLimits::memory_total_bytes`]), with no
//!     spilling to disk; over either the query fails ([`SqlError::Memory`],
//!     [`SqlError::MemoryTotal`]), the relay goes on; [`functions`] bounds
//!     the values that no pool counts (`repeat`, `concat`, `||`, large
//!     constants, `arrow_cast` to `Large`), and [`join_rows`] the rows a
//!     join repeats;
//!   - the time limit ([`SqlLimits::timeout`]) ends the task:
//!     [`SqlError::Timeout`].
//! - [`stream`]: results flow to the caller through a short channel, each
//!   batch counted in the query's pool until it is sent on; dropping the
//!   stream (a client gone) aborts the task, and with it DataFusion's work.
//! - [`stats`]: queries run, refused, busy, running, their durations.
//!
//! [`whatif`] adds the policy what-if as the table functions
//! `policy_whatif(draft)` and `policy_replay(draft)`: history's first
//! packets replayed against the policy in force when they passed and
//! against it with a draft applied; [`policy_states`] is the table of the
//! policies the nodes put in force.
//!
//! [`flight`] serves it all as Arrow Flight SQL on the relay's gRPC port;
//! [`missing`] tells how many flows of a query's time range history lacks.

pub mod admission;
pub mod engine;
pub mod flight;
pub mod functions;
pub mod graph;
pub mod guard;
pub mod join_rows;
pub mod missing;
pub mod params;
pub mod policy_states;
pub mod pool;
pub mod runtime;
pub mod session;
pub mod shape;
pub mod stats;
pub mod stream;
pub mod whatif;
pub mod yielding;

use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

pub use engine::SqlEngine;
pub use stats::{QUERY_SECONDS_BUCKETS, SqlStats};

/// Default time limit of one query.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default memory limit of one query (512 MiB).
pub const DEFAULT_MEMORY_BYTES: usize = 512 << 20;
/// Default memory limit of all queries together (1 GiB).
pub const DEFAULT_MEMORY_TOTAL_BYTES: usize = 1 << 30;
/// Default number of queries that run at once.
pub const DEFAULT_MAX_CONCURRENT: usize = 4;
/// Default wait of a query for one of those places.
pub const DEFAULT_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Limits of each query, and of all of them together.
#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    /// Time limit of one query (`--sql-timeout`).
    pub timeout: Duration,
    /// Memory limit of one query (`--sql-memory`).
    pub memory_bytes: usize,
    /// Memory limit of all running queries together (`--sql-memory-total`).
    pub memory_total_bytes: usize,
    /// Queries that run at once (`--sql-max-concurrent`).
    pub max_concurrent: usize,
    /// How long a query waits for a place before it is refused
    /// (`--sql-queue-wait`).
    pub queue_wait: Duration,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            memory_total_bytes: DEFAULT_MEMORY_TOTAL_BYTES,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            queue_wait: DEFAULT_QUEUE_WAIT,
        }
    }
}

/// Why a query did not run.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// The text is not SQL.
    #[error("SQL syntax error: {0}")]
    Parse(String),
    /// Not a read-only query of the relay's tables, or over a [`shape`] limit.
    #[error("refused: {0}")]
    Refused(String),
    /// A column that is not in the table.
    #[error("unknown column `{column}`; the columns of `{table}` are: {columns}")]
    UnknownColumn {
        column: String,
        table: String,
        columns: String,
    },
    /// Values bound to the statement's parameters do not fit it.
    #[error("parameters: {0}")]
    Parameters(String),
    /// Over the query's own memory limit.
    #[error("the query ran out of its memory limit of {limit} bytes (--sql-memory): {detail}")]
    Memory { limit: usize, detail: String },
    /// Over the memory limit of all queries together.
    #[error(
        "the running SQL queries together reached the relay's limit of {limit} bytes \
         (--sql-memory-total), and this one was stopped: {detail}"
    )]
    MemoryTotal { limit: usize, detail: String },
    /// Over the time limit.
    #[error(
        "the query took longer than its time limit of {0:?} (--sql-timeout): narrow its \
         time range (WHERE time > now() - INTERVAL '1 hour'), or read the history's Parquet \
         files directly for a whole export"
    )]
    Timeout(Duration),
    /// All places taken for longer than the queue wait.
    #[error(
        "the relay is already running {limit} SQL queries, its limit (--sql-max-concurrent); \
         this one waited {waited:?} for a place and was refused: try again later"
    )]
    Busy { limit: usize, waited: Duration },
    /// The relay is stopping.
    #[error("the relay is shutting down: the query was cancelled")]
    ShuttingDown,
    #[error("history is off on this relay (start it with --history-dir)")]
    NoHistory,
    #[error("reading history: {0}")]
    Io(String),
    /// The query cannot run as written (a type that does not fit, a value
    /// out of range, a function's refusal).
    #[error("{0}")]
    Query(String),
    /// Not the query's fault: the relay failed running it (a panic inside
    /// DataFusion or arrow, a bug DataFusion reports as internal).
    #[error("{0}")]
    Fault(String),
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}
