//! The metrics against a real Prometheus (the Debian `prometheus` package): the
//! built-in lab with a flow-probe and a relay, Prometheus scraping both every
//! second; every query of every dashboard panel must return data, and the
//! counters must match the flows the probe returns.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::prometheus::{Guard, http_get, query, start_prometheus, static_targets, value};

use observe_lab::node_probes;
use observe_lab::{Scenario, run_traffic_once};
use std::collections::HashMap;

use observer_proto::flow::{DropReason, Endpoint, Flow, Verdict};
use serde_json::Value;

fn wait_file(path: &Path) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            return s.trim().parse().expect("address in the metrics ready file");
        }
        assert!(Instant::now() < deadline, "{} not written", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every `expr` of every dashboard panel, with Grafana's variables replaced:
/// intervals by 30s, dashboard variables by the match-all regex. A stat's
/// `or vector(0)` (zero rather than no data) is taken off: with it, a
/// selector that matches nothing (a misspelt label value) would still answer.
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut out = Vec::new();
    for name in ["overview.json", "workloads.json", "health.json"] {
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap();
                let mut e = expr
                    .strip_suffix(" or vector(0)")
                    .unwrap_or(expr)
                    .to_string();
                for i in ["$__rate_interval", "$__interval", "$__range"] {
                    e = e.replace(i, "30s");
                }
                for v in &vars {
                    e = e
                        .replace(&format!("${{{v}}}"), ".*")
                        .replace(&format!("${v}"), ".*");
                }
                out.push((format!("{name} / {}", p["title"].as_str().unwrap_or("")), e));
            }
        }
    }
    out
}

/// What `observe_flow_bytes_total{source_workload=src, destination_workload=dst}`
/// must add up to, from the flows: the metric adds what each event's volume
/// grew by, per direction of a connection, interface and observation point,
/// so it ends at the last cumulative count of each; IPv6 neighbour discovery
/// (the link's housekeeping) adds none. Also how many of those (connection
/// direction, interface, observation point) there are.
fn volume_bytes(flows: &[Flow], src: &str, dst: &str) -> (usize, u64) {
    let workload = |ep: Option<&Endpoint>| {
        ep.map(|e| {
            let name = e.workloads.first().map_or("", |w| w.name.as_str());
            format!("{}/{name}", e.namespace)
        })
    };
    let mut last = HashMap::new();
    for f in flows {
        let (Some(v), Some(ip)) = (&f.volume, &f.ip) else {
            continue;
        };
        if observer_proto::icmpv6::flow_is_link_housekeeping(f) {
            continue;
        }
        if workload(f.source.as_ref()).as_deref() != Some(src)
            || workload(f.destination.as_ref()).as_deref() != Some(dst)
        {
            continue;
        }
        let own = if f.is_reply == Some(true) {
            v.rev_bytes
        } else {
            v.fwd_bytes
        };
        let key = (
            ip.source.clone(),
            ip.destination.clone(),
            e2e::responses::ports(f),
            f.interface.as_ref().map(|i| i.index),
            f.trace_observation_point,
        );
        let bytes: &mut u64 = last.entry(key).or_default();
        *bytes = (*bytes).max(own);
    }
    (last.len(), last.values().sum())
}

/// The reason of a policy denial's Drop flow (its PolicyVerdict flow is
/// counted by [`denial_verdict`]).
fn policy_drop(f: &Flow) -> Option<DropReason> {
    (event_type(f) == 1).then(|| denied_reason(f)).flatten()
}

/// Whether `f` is the PolicyVerdict flow of a denial.
fn denial_verdict(f: &Flow) -> bool {
    event_type(f) == 5 && denied_reason(f).is_some()
}

fn event_type(f: &Flow) -> i32 {
    f.event_type.as_ref().map_or(0, |e| e.r#type)
}

fn denied_reason(f: &Flow) -> Option<DropReason> {
    (f.verdict == Verdict::Dropped as i32)
        .then(|| DropReason::try_from(f.drop_reason_desc).ok())
        .flatten()
        .filter(|r| matches!(r, DropReason::PolicyDenied | DropReason::PolicyDeny))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_queries_return_data_from_a_real_prometheus() {
    test_support::require_root("it builds a lab of namespaces and loads eBPF");
    let scenario = Scenario::builtin_default();
    let env = e2e::start(
        &scenario,
        &[
            // Hubble-style context labels on one metric; the others keep theirs.
            "--metric",
            "drop:sourceContext=namespace;destinationContext=namespace",
        ],
    );
    // node1's probe, which judges every policy of the scenario (its
    // endpoints receive what the policies select).
    let probe_metrics = env.metrics_addr();

    // The relay's history and address files live in the lab's folder, removed with it.
    let relay_ready = env.state_dir.join("relay.addr");
    let relay_metrics_ready = env.state_dir.join("relay.metrics");
    let relay = Command::new(observe_lab::binaries::binary("relay").expect("relay binary"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--peer",
            &env.probe.addr.to_string(),
        ])
        .args(["--metrics-listen", "127.0.0.1:0", "--metrics-ready-file"])
        .arg(&relay_metrics_ready)
        .arg("--history-dir")
        .arg(env.state_dir.join("history"))
        .arg("--ready-file")
        .arg(&relay_ready)
        // mTLS both ways with the lab's certificates, as the lab runs it.
        .args(node_probes::server_tls_args(&env.lab.certs()))
        .args(node_probes::relay_peer_tls_args(&env.lab.certs()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("relay starts");
    let _relay = Guard {
        child: Some(relay),
        dir: None,
    };
    let relay_addr = wait_file(&relay_ready);
    let relay_metrics = wait_file(&relay_metrics_ready);

    let report =
        tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    // The scenario has no flow to the world: one datagram from frontend to
    // an address of its own /24 that no endpoint has, for the flows-to-world
    // panel. A static neighbour entry gives it the node bridge's own MAC, so
    // it leaves frontend (no ARP answer would come) and ends at the bridge
    // (an unknown MAC would be flooded to every endpoint's veth, and judged
    // there); frontend's veth sees it leave.
    let frontend = env.lab.endpoint("frontend").unwrap().clone();
    let octets = frontend.ipv4.octets();
    let nobody = std::net::Ipv4Addr::new(octets[0], octets[1], octets[2], 250);
    let ip = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().expect("ip runs");
        assert!(out.status.success(), "ip {args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bridge = ip(&[
        "-n",
        &frontend.node_netns,
        "-j",
        "link",
        "show",
        "dev",
        observe_lab::topology::BRIDGE,
    ]);
    let bridge: Value = serde_json::from_str(&bridge).unwrap();
    let mac = bridge[0]["address"]
        .as_str()
        .expect("the bridge's MAC")
        .to_string();
    ip(&[
        "-n",
        &frontend.netns,
        "neigh",
        "replace",
        &nobody.to_string(),
    ]
    .into_iter()
    .chain(["lladdr", &mac, "dev", &frontend.interface])
    .collect::<Vec<_>>());
    std::thread::spawn(move || {
        flow_probe::kernel::sysfs::enter_netns(&frontend.netns).unwrap();
        let s = std::net::UdpSocket::bind((frontend.ipv4, 0)).unwrap();
        s.send_to(b"anyone?", (nobody, 9)).unwrap();
    })
    .join()
    .unwrap();
    // The scenario's two policy drops: client's one SYN to api (default deny)
    // and its datagram to db (explicit deny).
    let flows = env
        .wait_for("both policy drops", |f| {
            f.iter().filter(|f| policy_drop(f).is_some()).count() >= 2
        })
        .await;
    // Compared sorted, not in the order of the flows: in 1 run of 5 to 10 the
    // client's one SYN reaches node1 about 1 s late, after the client gave up
    // (500 ms) and after the next item's datagram, and is dropped then, once.
    // Most likely it waited in the client's ARP queue: its entry for api then
    // shows one probe more than the one for db, and 1 s is ARP's retry time.
    let mut drops: Vec<DropReason> = flows.iter().filter_map(policy_drop).collect();
    drops.sort_by_key(|r| *r as i32);
    assert_eq!(
        drops,
        [DropReason::PolicyDenied, DropReason::PolicyDeny],
        "policy drops {}",
        flows
            .iter()
            .filter(|f| policy_drop(f).is_some())
            .map(|f| format!("{} {:?}", observe_cli::flows::output::flow_line(f), f.time))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The probe's own /metrics has them, with the namespaces of the denied
    // client (other) and servers (default); a new labelled series shows 0 at
    // its first scrape (Prometheus' or this one) and counts from the next.
    let want = r#"hubble_drop_total{destination="default",protocol="TCP",reason="POLICY_DENIED",source="other"} 2"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = http_get(probe_metrics, "/metrics").expect("probe /metrics");
        if text.lines().any(|l| l == want) {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Policy verdicts are PolicyVerdict events only, labelled as Hubble does;
    // the lab's denials are each one of them.
    let verdict_labels: std::collections::BTreeSet<String> = flows
        .iter()
        .filter(|f| denial_verdict(f))
        .map(|f| {
            let direction = match f.traffic_direction {
                1 => "ingress",
                2 => "egress",
                _ => "traffic_direction_unknown",
            };
            let m = ["none", "l3-only", "l3-l4", "l4-only", "all"]
                .get(f.policy_match_type as usize)
                .copied()
                .unwrap_or("unknown");
            format!(
                r#"hubble_policy_verdicts_total{{action="dropped",direction="{direction}",match="{m}"}}"#
            )
        })
        .collect();
    assert_eq!(verdict_labels.len(), 2, "{verdict_labels:?}");
    for l in &verdict_labels {
        assert!(
            text.lines().any(|t| t.starts_with(l.as_str())),
            "{l}\n{text}"
        );
    }
    // ICMPv6 types (the kernel's own neighbour discovery and MLD) are named
    // as Hubble names them: each series' type is that of flows it counted.
    let later = env.all_flows().await;
    let icmp6_names: std::collections::BTreeSet<String> = later
        .iter()
        .filter_map(|f| match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
            Some(observer_proto::flow::layer4::Protocol::IcmPv6(i)) => Some(
                observer_proto::hubble_text::icmp6_type_code(i.r#type, i.code),
            ),
            _ => None,
        })
        .collect();
    let icmp6_series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(r#"hubble_icmp_total{family="IPv6""#))
        .collect();
    assert!(!icmp6_series.is_empty(), "{text}");
    for l in &icmp6_series {
        let ty = l
            .split(r#"type=""#)
            .nth(1)
            .and_then(|t| t.split('"').next())
            .unwrap();
        assert!(ty.parse::<u32>().is_err(), "a bare number: {l}");
        assert!(icmp6_names.contains(ty), "{l} not among {icmp6_names:?}");
    }

    let (_prom, prom) = start_prometheus(&static_targets(&[
        ("flow-probe", probe_metrics),
        ("relay", relay_metrics),
    ]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while value(prom, "sum(up)") != Some(2.0) {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped both targets"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Counters match the flows: every flow counted once, policy drops exactly,
    // frontend's bytes to api as the flows' volumes say.
    let bytes_query = r#"sum(observe_flow_bytes_total{source_workload="default/frontend",destination_workload="default/api"})"#;
    let mut last = String::new();
    let flows = loop {
        let flows = env.all_flows().await;
        // As Hubble, a denial counts as a drop twice: its Drop and its
        // PolicyVerdict flow are both DROPPED.
        let denied = flows
            .iter()
            .filter(|f| denied_reason(f) == Some(DropReason::PolicyDenied))
            .count();
        let policy = flows.iter().filter(|f| denial_verdict(f)).count();
        // TCP lifecycle reports are no flows to Hubble: not processed.
        let processed = flows.iter().filter(|f| f.tcp_lifecycle.is_none()).count();
        let got = (
            value(prom, "sum(hubble_flows_processed_total)"),
            value(prom, r#"sum(hubble_drop_total{reason="POLICY_DENIED"})"#),
            value(
                prom,
                r#"sum(hubble_policy_verdicts_total{action="dropped"})"#,
            ),
            value(prom, bytes_query),
        );
        let want = (
            Some(processed as f64),
            Some(denied as f64),
            Some(policy as f64),
            Some(volume_bytes(&flows, "default/frontend", "default/api").1 as f64),
        );
        if got == want && env.all_flows().await.len() == flows.len() {
            break Some(flows);
        }
        last = format!("Prometheus {got:?}, GetFlows {want:?}");
        if Instant::now() > deadline + Duration::from_secs(15) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let flows = flows.unwrap_or_else(|| panic!("counters never matched the flows: {last}"));
    assert_eq!(
        value(prom, r#"sum(hubble_drop_total{reason="POLICY_DENIED"})"#),
        Some(2.0)
    );
    // frontend → api: four connections (two direct, two through the service
    // VIP to api or api-2), each request direction seen at frontend's veth
    // and, when the server is api (node1; api-2 is on node2), at the server's.
    let to_api: std::collections::BTreeSet<_> = flows
        .iter()
        .filter(|f| f.interface.is_some() && f.is_reply == Some(false))
        .filter(|f| f.destination.as_ref().is_some_and(|d| d.pod_name == "api"))
        .filter(|f| f.source.as_ref().is_some_and(|s| s.pod_name == "frontend"))
        .filter_map(|f| e2e::ports(f).map(|(sport, _)| (sport, e2e::ips(f).1)))
        .collect();
    assert!((2..=4).contains(&to_api.len()), "{to_api:?}");
    // Their TCP directions (neighbour discovery between the two also counts
    // on the workload pair, from their link-local addresses).
    let tcp: Vec<Flow> = flows
        .iter()
        .filter(|f| e2e::ports(f).is_some())
        .cloned()
        .collect();
    let (directions, bytes) = volume_bytes(&tcp, "default/frontend", "default/api");
    assert_eq!(
        directions,
        4 + to_api.len(),
        "frontend → api: {bytes} bytes"
    );
    assert_eq!(
        value(prom, r#"observe_relay_peers{state="connected"}"#),
        Some(1.0)
    );

    // SQL over the relay's history, so its query metrics have samples: one
    // query that runs and one that is refused.
    let sql = |q: &str| {
        Command::new(e2e::observe_binary())
            .arg("query")
            .args(env.server_args(relay_addr))
            .arg(q)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run observe query")
            .success()
    };
    assert!(sql("SELECT count(*) FROM flows"));
    assert!(!sql("DROP TABLE flows"), "DROP is refused");
    let deadline = Instant::now() + Duration::from_secs(20);
    while value(prom, "sum(observe_relay_sql_queries_refused_total)") != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the refused query was never scraped"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // The history is written at least every 5 s (the relay's flush interval).
    while value(prom, "sum(observe_relay_history_files)").unwrap_or(0.0) < 1.0 {
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "no history file was written"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Every panel query returns data (rates need two scrapes: retry a while).
    // Every target of every panel, none missed by the walk above.
    let queries = dashboard_queries();
    let exprs: usize = ["overview.json", "workloads.json", "health.json"]
        .iter()
        .map(|name| {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../dashboards")
                .join(name);
            std::fs::read_to_string(path)
                .unwrap()
                .matches("\"expr\"")
                .count()
        })
        .sum();
    assert_eq!(
        queries.len(),
        exprs,
        "one query per \"expr\" of the dashboards"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut empty: Vec<&(String, String)> = queries.iter().collect();
    while !empty.is_empty() && Instant::now() < deadline {
        empty.retain(|(_, q)| query(prom, q).is_empty());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(empty.is_empty(), "panel queries without data: {empty:#?}");
}
