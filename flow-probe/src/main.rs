//! The flow-probe binary: parses flags into an [`AgentConfig`] and runs the agent
//! until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use flow_probe::agent::{self, AgentConfig};
use flow_probe::kernel::config::DEFAULT_REPORT_INTERVAL;
use flow_probe::kernel::loader::ProbeConfig;
use flow_probe::metrics::{self, MetricsConfig};
use flow_probe::server;
use observer_runtime::store::DEFAULT_CAPACITY;
use observer_runtime::tls::ServerTls;

/// Hubble's monitor aggregation levels that we implement.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Aggregation {
    /// An event for every packet (debugging; expensive).
    None,
    /// Events on a flow's first packet, on new TCP flags (SYN, FIN, RST) per
    /// direction and on every ICMP message other than echo.
    Medium,
}

#[derive(Debug, Parser)]
#[command(
    name = "flow-probe",
    version,
    about = "Per-node eBPF flow probe serving observer.Observer"
)]
struct Args {
    /// Interface to attach the tc probe to (ingress and egress); repeatable.
    #[arg(long = "interface", short = 'i')]
    interfaces: Vec<String>,
    /// Endpoints file (YAML) used to enrich flows.
    #[arg(long)]
    endpoints: Option<PathBuf>,
    /// Also attach to the host-side interface of every endpoint on this node.
    #[arg(long)]
    attach_endpoints: bool,
    /// Observe the containers of Docker or Podman through the Docker Engine
    /// API at this unix socket (default: the first of /run/docker.sock and
    /// /run/podman/podman.sock that answers): attach to each running
    /// container's veth, name flows after the containers, select them by
    /// label in policies and services.
    #[arg(long, value_name = "SOCKET", num_args = 0..=1, default_missing_value = "")]
    containers: Option<PathBuf>,
    /// With --containers: only the containers with this label (`key=value`,
    /// or `key` for any value); repeatable, all must match.
    #[arg(long, value_name = "LABEL")]
    container_label: Vec<String>,
    /// Directory of policy files (CiliumNetworkPolicy subset) to enforce; changes
    /// apply while running.
    #[arg(long)]
    policy_dir: Option<PathBuf>,
    /// Services file (YAML: VIPs, ports, selectors) for socket-level load
    /// balancing; changes to it and to the endpoints file apply while running.
    #[arg(long)]
    services: Option<PathBuf>,
    /// Cgroup (v2 folder) whose processes' sockets get service load balancing.
    #[arg(long)]
    lb_cgroup: Option<PathBuf>,
    /// Keep programs attached and policy enforced after exit (pins stay in
    /// /sys/fs/bpf/observe); the next start re-adopts them.
    #[arg(long)]
    persist: bool,
    /// File to write the bound gRPC address to once attached and serving.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Network namespace (`ip netns` name) that holds the interfaces.
    #[arg(long)]
    netns: Option<String>,
    /// Node name reported in flows; defaults to the host name.
    #[arg(long)]
    node_name: Option<String>,
    /// Cluster name in flows' endpoints (Cilium's `cluster_name`), which the
    /// `source_cluster_name` / `destination_cluster_name` filters match; as
    /// Cilium's, flows then name the node `CLUSTER/NODE` (not for `default`).
    #[arg(long, default_value = "")]
    cluster_name: String,
    /// A label of this node (`key=value`) reported in flows' `node_labels`
    /// and matched by the `node_labels` filter; repeat for more.
    #[arg(long = "node-label", value_name = "KEY=VALUE")]
    node_labels: Vec<String>,
    /// gRPC listen address.
    #[arg(long, default_value = server::DEFAULT_LISTEN)]
    listen: String,
    /// Serve TLS with this certificate (PEM; with --tls-key-file).
    #[arg(long, value_name = "FILE")]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key_file: Option<PathBuf>,
    /// Require a client certificate signed by one of these CAs (mTLS);
    /// comma-separated or repeated.
    #[arg(long, value_name = "FILES", value_delimiter = ',')]
    tls_client_ca_files: Vec<PathBuf>,
    /// Recent flows kept in memory.
    #[arg(long, default_value_t = DEFAULT_CAPACITY)]
    ring_capacity: usize,
    #[arg(long, value_enum, default_value_t = Aggregation::Medium)]
    monitor_aggregation: Aggregation,
    /// Seconds between periodic reports of a live flow's volume (at most
    /// 86400, a day); 0 turns them off.
    #[arg(long, default_value_t = DEFAULT_REPORT_INTERVAL.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    report_interval: u64,
    /// Kernel ring buffer size in bytes (a power of two, at least 4096).
    #[arg(long, default_value_t = 4 << 20)]
    ringbuf_size: u32,
    /// gRPC connections served at once; past it a new one is closed at once
    /// (the log says so).
    #[arg(long, default_value_t = observer_runtime::accept::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// Prometheus `/metrics` listen address, or "off".
    #[arg(long, default_value = metrics::DEFAULT_LISTEN)]
    metrics_listen: String,
    /// File to write the bound metrics address to once serving.
    #[arg(long)]
    metrics_ready_file: Option<PathBuf>,
    /// Distinct label sets each labelled metric keeps (at least 1); more go
    /// to "__overflow__".
    #[arg(long, default_value_t = metrics::DEFAULT_MAX_LABEL_SETS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    metrics_max_label_sets: usize,
    /// Series of ports, workload volume and context labels not updated for
    /// this long are removed, once a scrape has shown their count (a duration
    /// like 10m or 1h30m, or seconds; 0 or off: never).
    #[arg(long, default_value = "10m")]
    metrics_grace: String,
    /// How the volume metrics name source and destination workloads: one of
    /// namespace, workload, workload-name, pod, pod-short, pod-name, app,
    /// identity, reserved-identity, ip, dns; `a|b` falls back to b when a is
    /// empty.
    #[arg(long, default_value = metrics::context::DEFAULT_CONTEXT)]
    metrics_context: String,
    /// Adds `source` / `destination` labels to one of Hubble's flow metrics,
    /// as Hubble's `--hubble-metrics` entries do:
    /// NAME:sourceContext=CONTEXT;destinationContext=CONTEXT, e.g.
    /// `drop:sourceContext=pod;destinationContext=namespace|ip`. NAME: flow,
    /// drop, tcp, port-distribution, icmp, policy, flows-to-world (dns, http,
    /// httpV2 and kafka are taken with a warning: no L7 is captured); CONTEXT
    /// as for --metrics-context. Also Hubble's source/destination
    /// Egress/IngressContext, labelsContext=source_pod,destination_namespace,...
    /// and flows-to-world's any-drop, port, syn-only. Repeatable; one value may
    /// hold several entries separated by spaces. Metrics not named keep their
    /// usual labels.
    #[arg(long = "metric", value_name = "NAME:OPTIONS")]
    metric: Vec<String>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "node".into())
}

fn config(args: Args) -> anyhow::Result<AgentConfig> {
    let size = args.ringbuf_size;
    if size < 4096 || !size.is_power_of_two() {
        anyhow::bail!("--ringbuf-size {size}: must be a power of two of at least 4096");
    }
    for l in &args.node_labels {
        if !l.contains('=') || l.starts_with('=') {
            anyhow::bail!("--node-label {l:?}: expected KEY=VALUE");
        }
        // As in Kubernetes; history joins a node's labels with commas.
        if l.contains(',') {
            anyhow::bail!("--node-label {l:?}: a label holds no comma; give one flag a label");
        }
    }
    Ok(AgentConfig {
        node_name: args.node_name.unwrap_or_else(hostname),
        cluster_name: args.cluster_name,
        node_labels: args.node_labels,
        listen: server::parse_listen(&args.listen)?,
        tls: ServerTls::from_flags(
            args.tls_cert_file,
            args.tls_key_file,
            args.tls_client_ca_files,
        )?,
        max_connections: args.max_connections,
        interfaces: args.interfaces,
        endpoints: args.endpoints,
        attach_endpoints: args.attach_endpoints,
        containers: args
            .containers
            .map(|s| Some(s).filter(|s| !s.as_os_str().is_empty())),
        container_labels: args.container_label,
        ready_file: args.ready_file,
        policy_dir: args.policy_dir,
        services: args.services,
        ring_capacity: args.ring_capacity,
        metrics_listen: observer_runtime::metrics_http::parse_listen(&args.metrics_listen)
            .map_err(anyhow::Error::msg)?,
        metrics_ready_file: args.metrics_ready_file,
        metrics: MetricsConfig {
            max_label_sets: args.metrics_max_label_sets,
            context: metrics::Context::parse(&args.metrics_context).map_err(anyhow::Error::msg)?,
            options: metrics::MetricOptions::parse(&args.metric).map_err(anyhow::Error::msg)?,
            grace: metrics::parse_grace(&args.metrics_grace).map_err(anyhow::Error::msg)?,
            ..MetricsConfig::default()
        },
        probe: ProbeConfig {
            aggregate: matches!(args.monitor_aggregation, Aggregation::Medium),
            report_interval: Duration::from_secs(args.report_interval),
            ringbuf_bytes: size,
            netns: args.netns,
            persist: args.persist,
            lb_cgroup: args.lb_cgroup,
            ..ProbeConfig::default()
        },
    })
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = config(Args::parse()).and_then(|cfg| {
        for name in &cfg.metrics.options.not_captured {
            log::warn!(
                "--metric {name}: taken, and never exported: this probe captures no DNS or L7 \
                 records and no SCTP chunks"
            );
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(agent::run(cfg, observer_runtime::shutdown::signal()))
    });
    if let Err(e) = result {
        eprintln!("flow-probe: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A period past what the timer can add to now panicked at the first
    /// tick, after the probes were attached.
    #[test]
    fn a_report_interval_past_a_day_is_refused() {
        let parsed = |v: &str| Args::try_parse_from(["flow-probe", "--report-interval", v]);
        assert_eq!(parsed("86400").unwrap().report_interval, 86_400);
        assert_eq!(parsed("0").unwrap().report_interval, 0);
        let err = parsed("18446744073709551615").unwrap_err().to_string();
        assert!(
            err.starts_with("error: invalid value '18446744073709551615' for '--report-interval <REPORT_INTERVAL>': 18446744073709551615 is not in 0..=86400"),
            "{err}"
        );
    }

    /// 0 was taken, and every series of every labelled metric went to
    /// "__overflow__": the metrics told nothing, and nothing said why.
    #[test]
    fn no_label_set_kept_is_refused() {
        let parsed = |v: &str| Args::try_parse_from(["flow-probe", "--metrics-max-label-sets", v]);
        assert_eq!(parsed("1").unwrap().metrics_max_label_sets, 1);
        let err = parsed("0").unwrap_err().to_string();
        assert!(
            err.starts_with("error: invalid value '0' for '--metrics-max-label-sets <METRICS_MAX_LABEL_SETS>': 0 is not in 1.."),
            "{err}"
        );
    }

    /// History joins a node's labels with commas: one holding a comma
    /// would come back as two.
    #[test]
    fn a_node_label_is_key_equals_value_without_a_comma() {
        let refused = |label: &str| {
            let args = Args::try_parse_from(["flow-probe", "--node-label", label]).unwrap();
            config(args).err().map(|e| e.to_string())
        };
        assert_eq!(refused("zone=a"), None);
        assert_eq!(
            refused("zone=a,b").as_deref(),
            Some("--node-label \"zone=a,b\": a label holds no comma; give one flag a label")
        );
        assert_eq!(
            refused("zone").as_deref(),
            Some("--node-label \"zone\": expected KEY=VALUE")
        );
    }
}
