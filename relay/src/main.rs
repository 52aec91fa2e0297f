//! The relay binary: parses flags into a [`RelayConfig`], starts the fan-in and
//! serves `observer.Observer` until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use observer_runtime::tls::{ClientTls, ClientTlsFlags, ServerTls, TlsError};
use relay::config::DEFAULT_RING_CAPACITY;
use relay::config::{DEFAULT_BUFFER_CAPACITY, DEFAULT_LISTEN};
use relay::history::compact::CompactionConfig;
use relay::history::{HistoryConfig, units};
use relay::peer_tls::PEER_TLS_FLAGS;
use relay::sql::SqlLimits;
use relay::{PeerOptions, Relay, RelayConfig};

#[derive(Debug, Parser)]
#[command(
    name = "relay",
    version,
    about = "Fans in every node's flow-probe and serves observer.Observer for all of them"
)]
struct Args {
    /// A flow-probe to follow, HOST:PORT; repeat for every node.
    #[arg(long = "peer", required = true)]
    peers: Vec<String>,
    /// The cluster of the peers: nodes are named CLUSTER/NODE (GetNodes,
    /// flows, node status and peer.Peer), unless it is "default".
    #[arg(long, value_name = "NAME")]
    cluster_name: Option<String>,
    /// gRPC listen address.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// gRPC connections served at once; past it a new one is closed at once
    /// (the log says so).
    #[arg(long, default_value_t = observer_runtime::accept::DEFAULT_MAX_CONNECTIONS,
          value_parser = at_least_one)]
    max_connections: usize,
    /// Serve TLS with this certificate (PEM; with --tls-key-file).
    #[arg(long, value_name = "FILE", alias = "tls-relay-server-cert-file")]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file (PEM).
    #[arg(long, value_name = "FILE", alias = "tls-relay-server-key-file")]
    tls_key_file: Option<PathBuf>,
    /// Require a client certificate signed by one of these CAs (mTLS);
    /// comma-separated or repeated.
    #[arg(
        long,
        value_name = "FILES",
        value_delimiter = ',',
        alias = "tls-relay-client-ca-files"
    )]
    tls_client_ca_files: Vec<PathBuf>,
    /// Dial the peers with TLS, checking their certificates against these CAs;
    /// comma-separated or repeated.
    #[arg(long, value_name = "FILES", value_delimiter = ',')]
    tls_hubble_server_ca_files: Vec<PathBuf>,
    /// The client certificate presented to the peers (mTLS; with
    /// --tls-hubble-client-key-file).
    #[arg(long, value_name = "FILE")]
    tls_hubble_client_cert_file: Option<PathBuf>,
    /// The private key of --tls-hubble-client-cert-file.
    #[arg(long, value_name = "FILE")]
    tls_hubble_client_key_file: Option<PathBuf>,
    /// The name the peers' certificates must be valid for; by default the
    /// host of each --peer.
    #[arg(long, value_name = "NAME")]
    tls_hubble_server_name: Option<String>,
    /// The longest a flow is held to be put in time order with other
    /// nodes' (most go sooner: once every connected node has passed its time).
    #[arg(long, default_value_t = 500)]
    reorder_window_ms: u64,
    /// At most this many flows are held in the reorder window.
    #[arg(long, default_value_t = DEFAULT_BUFFER_CAPACITY, value_parser = at_least_one)]
    buffer_capacity: usize,
    /// Merged flows kept in memory for GetFlows.
    #[arg(long, default_value_t = DEFAULT_RING_CAPACITY, value_parser = at_least_one)]
    ring_capacity: usize,
    /// File to write the bound address to once serving.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Prometheus `/metrics` listen address, or "off".
    #[arg(long, default_value = relay::metrics::DEFAULT_METRICS_LISTEN)]
    metrics_listen: String,
    /// File to write the bound metrics address to once serving.
    #[arg(long)]
    metrics_ready_file: Option<PathBuf>,
    /// Flow history directory (Parquet, partitioned by hour), or "off".
    #[arg(long, default_value = relay::history::DEFAULT_DIR)]
    history_dir: String,
    /// History files older than this are deleted (ms, s, m, h, d, w; e.g. 24h or 1h30m).
    #[arg(long, default_value = "24h", value_parser = observer_proto::time::parse_duration)]
    retention_age: Duration,
    /// The oldest history files are deleted past this total (e.g. 1GiB).
    #[arg(long, default_value = "1GiB", value_parser = units::parse_bytes)]
    retention_bytes: u64,
    /// Flows in memory are written to history at least this often.
    #[arg(long, default_value = "5s", value_parser = longer_than_zero)]
    flush_interval: Duration,
    /// Flows per history batch (written at once when reached).
    #[arg(long, default_value_t = relay::history::DEFAULT_BATCH_ROWS, value_parser = at_least_one)]
    batch_rows: usize,
    /// Flows the queue from the merge to the history writer holds; when it
    /// is full, flows are dropped from history and counted.
    #[arg(long, default_value_t = relay::history::DEFAULT_QUEUE_FLOWS, value_parser = at_least_one)]
    history_queue_flows: usize,
    /// How often small history files are compacted (e.g. 60s); 0s: never.
    #[arg(long, default_value = "60s", value_parser = observer_proto::time::parse_duration)]
    compaction_interval: Duration,
    /// Stops compaction for good at this point, to test a crash there
    /// (written, renamed, removed-one).
    #[arg(long, hide = true)]
    history_pause_at: Option<relay::history::compact::PausePoint>,
    /// Time limit of one SQL query.
    #[arg(long, default_value = "30s", value_parser = sql_timeout)]
    sql_timeout: Duration,
    /// Memory limit of one SQL query (e.g. 512MiB).
    #[arg(long, default_value = "512MiB", value_parser = some_bytes)]
    sql_memory: u64,
    /// Memory limit of all running SQL queries together (e.g. 1GiB).
    #[arg(long, default_value = "1GiB", value_parser = some_bytes)]
    sql_memory_total: u64,
    /// SQL queries that run at once; more wait for --sql-queue-wait, then are refused.
    #[arg(long, default_value_t = relay::sql::DEFAULT_MAX_CONCURRENT as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    sql_max_concurrent: u64,
    /// How long a SQL query waits for a place before it is refused.
    #[arg(long, default_value = "2s", value_parser = observer_proto::time::parse_duration)]
    sql_queue_wait: Duration,
}

impl Args {
    fn peer_tls(&self) -> Result<Option<ClientTls>, TlsError> {
        ClientTlsFlags {
            enabled: !self.tls_hubble_server_ca_files.is_empty(),
            ca_files: self.tls_hubble_server_ca_files.clone(),
            cert_file: self.tls_hubble_client_cert_file.clone(),
            key_file: self.tls_hubble_client_key_file.clone(),
            server_name: self.tls_hubble_server_name.clone(),
            allow_insecure: false,
        }
        .resolve(&PEER_TLS_FLAGS)
    }

    fn server_tls(&self) -> Result<Option<ServerTls>, TlsError> {
        ServerTls::from_flags(
            self.tls_cert_file.clone(),
            self.tls_key_file.clone(),
            self.tls_client_ca_files.clone(),
        )
    }

    fn config(&self) -> Result<RelayConfig, TlsError> {
        Ok(RelayConfig {
            reorder_window: Duration::from_millis(self.reorder_window_ms),
            buffer_capacity: self.buffer_capacity,
            ring_capacity: self.ring_capacity,
            history: (self.history_dir != "off").then(|| HistoryConfig {
                batch_rows: self.batch_rows,
                flush_interval: self.flush_interval,
                retention_age: self.retention_age,
                retention_bytes: self.retention_bytes,
                queue_flows: self.history_queue_flows,
                compaction: (!self.compaction_interval.is_zero()).then(|| CompactionConfig {
                    interval: self.compaction_interval,
                    ..CompactionConfig::default()
                }),
                pause_at: self.history_pause_at,
                ..HistoryConfig::new(&self.history_dir)
            }),
            sql: SqlLimits {
                timeout: self.sql_timeout,
                memory_bytes: usize::try_from(self.sql_memory).unwrap_or(usize::MAX),
                memory_total_bytes: usize::try_from(self.sql_memory_total).unwrap_or(usize::MAX),
                max_concurrent: usize::try_from(self.sql_max_concurrent).unwrap_or(usize::MAX),
                queue_wait: self.sql_queue_wait,
            },
            peer: PeerOptions {
                tls: self.peer_tls()?,
                ..PeerOptions::default()
            },
            cluster_name: self.cluster_name.clone(),
            ..RelayConfig::new(self.peers.clone())
        })
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let server_tls = args.server_tls()?;
    // Checked before anything starts: a bad file is named at once.
    let grpc = observer_runtime::tls::server::builder(server_tls.as_ref())?;
    let cfg = args.config()?;
    let relay = Relay::start(&cfg)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let bound = listener.local_addr()?;
    if let Some(warning) =
        observer_runtime::tls::server::exposed_plaintext(bound, server_tls.is_some())
    {
        log::warn!("{warning}; here that reader also runs SQL over the history");
    }
    // Hubble's relay asks for --disable-client-tls; here plaintext is the
    // default without peer CA files: at least say so where it leaves the node.
    if cfg.peer.tls.is_none() {
        let remote: Vec<&String> = (args.peers.iter())
            .filter(|p| !peer_is_loopback(p))
            .collect();
        if !remote.is_empty() {
            log::warn!(
                "following {} peer(s) beyond this host over plaintext ({}): every flow crosses \
                 the network unencrypted; give --tls-hubble-server-ca-files for TLS",
                remote.len(),
                remote
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    log::info!(
        "serving observer.Observer on {bound} over {}; following {} peer(s) over {}",
        server_tls.as_ref().map_or("plaintext", ServerTls::describe),
        args.peers.len(),
        match &cfg.peer.tls {
            None => "plaintext",
            Some(t) if t.is_mutual() => "mTLS",
            Some(_) => "TLS",
        }
    );
    let metrics_listen =
        relay::metrics::parse_listen(&args.metrics_listen).map_err(anyhow::Error::msg)?;
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("serving metrics on {addr}"))?;
        let metrics_bound = l.local_addr()?;
        log::info!("serving Prometheus metrics on http://{metrics_bound}/metrics");
        if let Some(path) = &args.metrics_ready_file {
            observer_runtime::ready_file::write(path, metrics_bound)?;
        }
        let m = std::sync::Arc::new(relay::metrics::RelayMetrics::new(relay.state()));
        tokio::spawn(relay::metrics::serve(l, m, async {
            let _ = metrics_stopped.await;
        }));
    }
    // Last, once both servers listen: a metrics port that is taken stops the
    // relay before anyone takes it for ready.
    if let Some(path) = &args.ready_file {
        observer_runtime::ready_file::write(path, bound)?;
    }
    let served = relay::server::run(
        grpc,
        observer_runtime::accept::ServerListener {
            listener,
            max_connections: args.max_connections,
        },
        relay.state(),
        observer_runtime::shutdown::signal(),
    )
    .await;
    let _ = stop_metrics.send(());
    log::info!("shutting down");
    relay.shutdown().await;
    Ok(served?)
}

/// A count of at least one: 0 flows per batch or in a queue or ring would
/// write a file per flow, drop every flow, or keep none.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("0 is not in 1..".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A duration above zero: a limit of 0 fails every query, a flush interval
/// of 0 writes without pause.
fn longer_than_zero(s: &str) -> Result<Duration, String> {
    match observer_proto::time::parse_duration(s).map_err(|e| e.to_string())? {
        d if d.is_zero() => Err(format!("{s} is no time at all: give more than 0")),
        d => Ok(d),
    }
}

/// A query's time limit: above zero, and within what history keeps a
/// reader's files for (a longer query could lose a file under it).
fn sql_timeout(s: &str) -> Result<Duration, String> {
    let limit = relay::history::manifest::LEASE_LIMIT;
    match longer_than_zero(s)? {
        d if d > limit => Err(format!(
            "{s} is longer than history keeps a reader's files ({} min)",
            limit.as_secs() / 60
        )),
        d => Ok(d),
    }
}

/// A byte count above zero (a memory limit of 0 fails every query).
fn some_bytes(s: &str) -> Result<u64, String> {
    match units::parse_bytes(s)? {
        0 => Err(format!("{s} is no memory at all: give more than 0")),
        n => Ok(n),
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(run(args)));
    if let Err(e) = result {
        eprintln!("relay: {e:#}");
        std::process::exit(1);
    }
}

/// Whether a `--peer` address (`host:port`, `[v6]:port`, or a URL) names
/// this host's loopback.
fn peer_is_loopback(peer: &str) -> bool {
    let rest = peer.split_once("://").map_or(peer, |(_, r)| r);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => rest.rsplit_once(':').map_or(rest, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_peers_are_told_from_the_others() {
        for p in [
            "127.0.0.1:4244",
            "[::1]:4244",
            "localhost:4244",
            "http://127.0.0.2:1",
        ] {
            assert!(peer_is_loopback(p), "{p}");
        }
        for p in [
            "198.18.1.1:4244",
            "[fd42::1]:4244",
            "node2:4244",
            "https://10.0.0.5:4244",
        ] {
            assert!(!peer_is_loopback(p), "{p}");
        }
    }

    #[test]
    fn a_sql_timeout_past_the_history_lease_is_refused() {
        assert_eq!(sql_timeout("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(
            sql_timeout("16m"),
            Err("16m is longer than history keeps a reader's files (15 min)".to_string())
        );
        assert_eq!(
            sql_timeout("0s"),
            Err("0s is no time at all: give more than 0".to_string())
        );
    }
}
