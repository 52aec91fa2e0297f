//! Policy what-if over the flow history: the relay's `policy_whatif` over
//! `WHATIF_BENCH_FLOWS` stored flows (default 10,000,000), against a plain
//! `SELECT count(*) FROM flows` over the same files (and a count of the
//! first packets the replay reads), in the same run; time
//! (best and median of `WHATIF_BENCH_ROUNDS`, default 3) and peak memory of
//! each (the process's resident high-water mark, reset before each query
//! through `/proc/self/clear_refs`, and the query pool's own high-water
//! mark).
//!
//! The flows are the lab-like flows of the other history benchmarks
//! (`common/lab_flows.rs`: 300 pods, 30 apps in 6 namespaces, 3 nodes),
//! stamped as flow-probe stamps them: a connection's first packet (a TCP SYN,
//! a UDP or ICMP request) is `NEW`, and every flow names the policy in force,
//! one state recorded in history: a policy per app admitting its own
//! namespace. The draft denies one app's ingress from another namespace's
//! app and admits a third app from everywhere, so the replay judges every
//! first packet against both and keeps a few thousand flips.
//!
//! `WHATIF_BENCH_DIR` keeps the history between runs (default: a temporary
//! folder, removed at the end).
//!
//! `cargo bench -p benches --bench policy_whatif`

#[path = "common/lab_flows.rs"]
mod lab_flows;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use benches::history::{bench_dir, env_number, open_history, print_files};
use cluster_spec::endpoints::{Endpoint, EndpointsFile, Workload};
use cluster_spec::policy::{PolicyFile, PolicyState};
use lab_flows::LabFlows;
use observer_proto::flow::layer4::Protocol;
use observer_proto::flow::{CiliumEventType, Flow, TraceObservationPoint, TraceReason, Verdict};
use observer_proto::observe::v1::PolicyStamp;
use observer_proto::observer::get_flows_response::ResponseTypes;
use relay::history::History;
use relay::history::policies::InForce;
use relay::sql::{SqlEngine, SqlLimits};

const COUNT: &str = "SELECT count(*) FROM flows";
/// The rows a replay reads (connections' first packets: policy verdicts and
/// unjudged NEW traces at endpoints), only counted.
const FIRSTS: &str = "SELECT count(*) FROM flows WHERE event_type = 5 OR (event_type = 4 \
                      AND trace_reason = 'NEW' AND is_reply = false \
                      AND observation_point IN ('FROM_ENDPOINT', 'TO_ENDPOINT'))";

/// The draft: app-0 refuses app-1 (another namespace), app-2 admits all.
const DRAFT: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: app-0-deny-app-1, namespace: lab-ns-0}
spec:
  endpointSelector: {matchLabels: {app: app-0}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: app-1, io.kubernetes.pod.namespace: lab-ns-1}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: allow-app-2, namespace: lab-ns-2}
spec:
  endpointSelector: {matchLabels: {app: app-2}}
  ingress:
  - toPorts: [{ports: [{port: '80'}, {port: '443'}, {port: '8080'}, {port: '5432'}, {port: '6379'}, {port: '9090'}, {port: '53'}]}]
";

/// A connection's first packet, as flow-probe marks it.
fn first(f: &Flow) -> bool {
    f.is_reply == Some(false)
        && match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
            Some(Protocol::Tcp(t)) => t.flags.as_ref().is_some_and(|x| x.syn && !x.ack),
            Some(_) => true,
            None => false,
        }
}

/// A generated drop as the PolicyVerdict flow of its denial, the one a
/// replay reads: no observation point or reply bit, as Hubble's.
fn denial_verdict(f: &mut Flow) {
    f.event_type = Some(CiliumEventType {
        r#type: 5,
        sub_type: 0,
    });
    f.trace_observation_point = TraceObservationPoint::UnknownPoint as i32;
    f.is_reply = None;
}

/// The policy in force: per app, its own namespace admitted.
fn policies(apps: &BTreeMap<String, String>) -> String {
    apps.iter()
        .map(|(app, ns)| {
            format!(
                "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n\
                 metadata: {{name: allow-{app}, namespace: {ns}}}\n\
                 spec:\n  endpointSelector: {{matchLabels: {{app: {app}}}}}\n  \
                 ingress:\n  - fromEndpoints: [{{}}]\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The endpoints the flows name, as an endpoints file.
fn endpoint_of(f: &Flow, source: bool, node: &str) -> Option<Endpoint> {
    let (e, ip) = if source {
        (f.source.as_ref()?, &f.ip.as_ref()?.source)
    } else {
        (f.destination.as_ref()?, &f.ip.as_ref()?.destination)
    };
    let labels = e
        .labels
        .iter()
        .filter_map(|l| l.strip_prefix("k8s:")?.split_once('='))
        .filter(|(k, _)| *k != "io.kubernetes.pod.namespace")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(Endpoint {
        id: e.id,
        name: e.pod_name.clone(),
        namespace: e.namespace.clone(),
        labels,
        workload: e.workloads.first().map(|w| Workload {
            name: w.name.clone(),
            kind: w.kind.clone(),
        }),
        ipv4: ip.parse().ok(),
        ipv6: None,
        node: node.to_string(),
        interface: None,
        netns: None,
    })
}

/// The recorded state: every endpoint of the lab (from a sample of its
/// flows) and a policy per app.
fn state() -> PolicyState {
    let mut gen_ = LabFlows::new(3);
    let mut eps: BTreeMap<u32, Endpoint> = BTreeMap::new();
    for _ in 0..200_000 {
        let (node, f) = gen_.next_flow();
        for source in [true, false] {
            if let Some(e) = endpoint_of(&f, source, &node) {
                eps.entry(e.id).or_insert(e);
            }
        }
    }
    let apps: BTreeMap<String, String> = eps
        .values()
        .map(|e| (e.labels["app"].clone(), e.namespace.clone()))
        .collect();
    PolicyState {
        files: vec![PolicyFile {
            name: "apps.yaml".into(),
            text: policies(&apps),
        }],
        endpoints: EndpointsFile {
            endpoints: eps.into_values().collect(),
        },
    }
}

/// Writes `n` stamped flows, and the state they name, unless `dir` already
/// holds them from an earlier run.
fn generate(dir: &Path, n: u64) -> Arc<History> {
    let state = state();
    let version = state.version().expect("version");
    let marker = dir.join(".flows");
    // "denials as verdicts": data of before then is made again.
    let done = format!("{n} {version} denials as verdicts");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(&done) {
        println!("reusing the {n} flows already in {}", dir.display());
        return open_history(dir);
    }
    let _ = std::fs::remove_dir_all(dir);
    let history = open_history(dir);
    for node in 0..3 {
        let at = InForce {
            node: format!("lab-node-{node}"),
            run: 1,
            generation: 1,
            version: version.clone(),
            applied_ns: lab_flows::START_NS - 1,
        };
        history
            .policies()
            .record(at, state.clone())
            .expect("record the policy state");
    }
    let stamp = PolicyStamp {
        generation: 1,
        version,
    };
    let mut gen_ = LabFlows::new(3);
    let start = Instant::now();
    for i in 0..n {
        let mut response = gen_.next_response();
        if let Some(ResponseTypes::Flow(f)) = &mut Arc::make_mut(&mut response).response_types {
            // A first packet dropped is a denial's verdict; other drops stay
            // Drops, which no replay reads.
            if f.verdict == Verdict::Dropped as i32 {
                if first(f) {
                    denial_verdict(f);
                }
            } else {
                f.trace_reason = match (f.is_reply, first(f)) {
                    (Some(true), _) => TraceReason::Reply,
                    (_, true) => TraceReason::New,
                    _ => TraceReason::Established,
                } as i32;
            }
            f.policy_in_force = Some(stamp.clone());
        }
        if history.ingest(response) {
            history.flush().expect("flush history");
        }
        if (i + 1) % 1_000_000 == 0 {
            eprintln!("  {} flows written, {:.0?}", i + 1, start.elapsed());
        }
    }
    history.flush().expect("flush history");
    std::fs::write(&marker, done).expect("write marker");
    println!("wrote {n} flows in {:.1?}", start.elapsed());
    history
}

/// Resets the process's resident high-water mark (Linux: `5` to clear_refs).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs `sql` `rounds` times: times, the peak RSS over them (MB), the
/// query pool's peak (MB, sampled every millisecond), and the answer.
fn measure(
    rt: &tokio::runtime::Runtime,
    engine: &SqlEngine,
    sql: &str,
    rounds: usize,
) -> (Vec<Duration>, f64, f64, String) {
    let mut times = Vec::new();
    let mut answer = String::new();
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (running, engine) = (running.clone(), engine.clone());
        std::thread::spawn(move || {
            let mut peak = 0;
            while running.load(Ordering::Relaxed) {
                peak = peak.max(engine.memory_reserved());
                std::thread::sleep(Duration::from_millis(1));
            }
            peak
        })
    };
    reset_peak();
    for _ in 0..rounds {
        let start = Instant::now();
        let result = rt.block_on(engine.query(sql));
        times.push(start.elapsed());
        answer = rows(&result.unwrap_or_else(|e| panic!("{sql}: {e}")).batches);
    }
    running.store(false, Ordering::Relaxed);
    let pool_peak = sampler.join().unwrap_or(0);
    (
        times,
        benches::memory_mb("VmHWM:"),
        pool_peak as f64 / 1e6,
        answer,
    )
}

/// Every row, `a b c; d e f`.
fn rows(batches: &[arrow::array::RecordBatch]) -> String {
    use arrow::util::display::array_value_to_string;
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                (0..b.num_columns())
                    .map(|c| array_value_to_string(b.column(c), r).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    out.sort();
    out.join("; ")
}

fn stats(mut t: Vec<Duration>) -> (Duration, Duration) {
    t.sort();
    (t[0], t[t.len() / 2])
}

fn main() {
    let n: u64 = env_number("WHATIF_BENCH_FLOWS", 10_000_000);
    let rounds: usize = env_number("WHATIF_BENCH_ROUNDS", 3).max(1);
    let (dir, temporary) = bench_dir("WHATIF_BENCH_DIR", "whatif-bench");
    let history = generate(&dir, n);
    print_files(&dir, n);
    let engine = SqlEngine::new(
        Some(history),
        SqlLimits {
            timeout: Duration::from_secs(1800),
            memory_bytes: 4 << 30,
            memory_total_bytes: 4 << 30,
            ..SqlLimits::default()
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let whatif = format!(
        "SELECT change, count(*) FROM policy_whatif('{}') GROUP BY change",
        DRAFT.replace('\'', "''")
    );
    let replayed = "SELECT count(*) FROM policy_replay('')";
    let rss0 = benches::memory_mb("VmRSS:");
    println!("RSS before the queries: {rss0:.1} MB; {rounds} rounds each");
    println!(
        "{:<34} {:>10} {:>10} {:>14} {:>14}   answer",
        "", "best", "median", "peak RSS MB", "pool peak MB"
    );
    let mut best = Vec::new();
    for (name, sql) in [
        ("count(*) over flows (baseline)", COUNT),
        ("count(*) of the first packets", FIRSTS),
        ("policy_whatif (the draft)", whatif.as_str()),
        ("policy_replay('') (all replayed)", replayed),
    ] {
        let (times, peak, pool, answer) = measure(&rt, &engine, sql, rounds);
        let (b, m) = stats(times);
        println!("{name:<34} {b:>10.2?} {m:>10.2?} {peak:>14.1} {pool:>14.1}   {answer}");
        best.push(b);
    }
    println!(
        "what-if / count(*): {:.1}x; what-if / count of the first packets: {:.1}x (best times)",
        best[2].as_secs_f64() / best[0].as_secs_f64(),
        best[2].as_secs_f64() / best[1].as_secs_f64()
    );
    if temporary && let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("removing {}: {e}", dir.display());
    }
}
