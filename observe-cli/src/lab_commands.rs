//! `observe lab up|traffic|restart|down` and `observe demo`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::connect::ConnectArgs;
use crate::flows::output::{ColorChoice, Format};
use crate::flows::{self, request::QueryArgs};
use observe_lab::node_probes::{self, ProbeOptions};
use observe_lab::{self as lab, Lab, LabOptions, Scenario};

fn load_scenario(path: Option<&Path>) -> anyhow::Result<Scenario> {
    Ok(match path {
        Some(p) => Scenario::load(p)?,
        None => Scenario::builtin_default(),
    })
}

/// The lab's options: `state_dir`, and containers or namespaces.
fn options(state_dir: &Path, containers: bool) -> LabOptions {
    LabOptions {
        containers,
        ..LabOptions::with_state_dir(state_dir)
    }
}

/// Refuses before anything is built when a port `lab up` serves on is taken,
/// most often by a lab already up: otherwise the namespaces and probes are
/// made, then taken down again once the last bind fails.
fn ports_free() -> anyhow::Result<()> {
    for port in node_probes::HUBBLE_PORTS {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            anyhow::bail!(
                "127.0.0.1:{port}, where a lab serves, is taken ({e}): is a lab up already? \
                 `observe lab down --state-dir DIR` takes it down; `observe demo` serves on \
                 free ports"
            );
        }
    }
    Ok(())
}

/// What `lab up` is doing, on stderr: a lab takes seconds to build.
fn progress(step: &str) {
    crate::pipe::eprint(&format!("lab up: {step}\n"));
}

/// `lab up`'s error once SIGINT or SIGTERM set `stop`: what it built is
/// taken down as the lab is dropped (exit status 130).
fn interrupted(stop: &AtomicBool, lab: &Lab) -> anyhow::Result<()> {
    if !stop.load(Ordering::Relaxed) {
        return Ok(());
    }
    progress(&format!("interrupted: taking lab {} down", lab.prefix()));
    Err(anyhow::Error::from(crate::tui::signals::Stopped(
        crate::tui::signals::Signal::Int,
    ))
    .context(format!(
        "lab up interrupted: lab {} taken down",
        lab.prefix()
    )))
}

/// Builds the lab (its endpoints Podman containers with `containers`),
/// starts its probes, and leaves both running. Once `stop` is set (SIGINT,
/// SIGTERM) it takes down what it built, at the end of the step running.
pub fn up(
    scenario: Option<&Path>,
    state_dir: &Path,
    containers: bool,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let scenario = load_scenario(scenario)?;
    ports_free()?;
    progress(&format!(
        "building {} endpoints on {} node(s){}",
        scenario.endpoints.len(),
        scenario.nodes().len(),
        if containers { " as containers" } else { "" }
    ));
    // A Ctrl-C reaches the commands a step runs too, which then fail.
    let step_failed = |e: anyhow::Error| match stop.load(Ordering::Relaxed) {
        true => e.context("lab up interrupted: what it built is taken down"),
        false => e,
    };
    let mut lab = Lab::up(&scenario, &options(state_dir, containers)).map_err(step_failed)?;
    interrupted(stop, &lab)?;
    let names: Vec<&str> = lab.nodes().iter().map(|n| n.name.as_str()).collect();
    progress(&format!("starting flow-probe on {}", names.join(", ")));
    let options = ProbeOptions::new(Some(node_probes::PROBE_PORT))?;
    let probes = node_probes::start(&mut lab, &options).map_err(step_failed)?;
    interrupted(stop, &lab)?;
    progress("starting the relay");
    let relay = node_probes::start_relay(&mut lab, &probes, node_probes::RELAY_PORT)
        .map_err(step_failed)?;
    interrupted(stop, &lab)?;
    progress("waiting for the relay to follow every node");
    let unreached = block_on(async {
        tokio::select! {
            unreached = relay_unreached(state_dir, probes.len(), None) => unreached,
            () = stopped(stop) => Vec::new(),
        }
    });
    interrupted(stop, &lab)?;
    let endpoints = lab.endpoints_file().endpoints.len();
    let mut text = format!(
        "lab {} is up ({endpoints} endpoints, state in {})\n",
        lab.prefix(),
        state_dir.display()
    );
    for p in probes.iter().chain([&relay]) {
        text += &format!(
            "  {} on {} (pid {}, log {})\n",
            p.node,
            p.addr,
            p.pid,
            p.log.display()
        );
    }
    let certs = lab.certs();
    text += &format!(
        "  mTLS everywhere: CA, server and client certificates in {}\n",
        certs.dir.display()
    );
    text += &unreached_note(&unreached);
    if state_dir == Path::new(lab::DEFAULT_STATE_DIR) {
        // observe finds a lab up in the default state directory by itself.
        text += "next: observe lab traffic; observe flows; observe status; observe lab down\n";
    } else {
        let d = state_dir.display();
        text += &format!(
            "next: observe lab traffic --state-dir {d}; observe flows --lab {d}; \
             observe status --lab {d}; observe lab down --state-dir {d}\n"
        );
    }
    // Detached first: a reader that goes away must not take the lab down.
    lab.detach()?;
    crate::pipe::print(&text)?;
    Ok(())
}

/// How long `lab up` waits for the relay to follow every node.
const NODES_WAIT: Duration = Duration::from_secs(10);

/// Waits, up to [`NODES_WAIT`], until the relay of the lab in `state_dir`
/// lists `nodes` nodes as connected: a command run right after `lab up`
/// then reaches every node through it, and `observe nodes` lists them
/// Connected under their names (not Unavailable by their addresses, as in
/// the relay's first second). Returns the nodes it does not list as
/// connected then, as GetNodes names them, or the error that stopped the
/// asking. Never fails: the lab is up either way. `restarted`: a node
/// whose probe was started again at that instant; only a session with the
/// new probe counts (its uptime says so), not the old one the relay may
/// not have seen end yet.
async fn relay_unreached(
    state_dir: &Path,
    nodes: usize,
    restarted: Option<(&str, std::time::Instant)>,
) -> Vec<String> {
    let target = ConnectArgs {
        lab: Some(state_dir.to_path_buf()),
        ..ConnectArgs::default()
    }
    .target(&[]);
    let deadline = tokio::time::Instant::now() + NODES_WAIT;
    // What the relay last answered: an ask cut by the deadline says less
    // (lab QA: with a node down, the note read "no answer in 10 s" while the
    // relay answered every second, instead of naming that node).
    let mut answered: Option<Vec<String>> = None;
    loop {
        let answer = tokio::time::timeout_at(deadline, async {
            let (mut client, _) = target
                .as_ref()
                .map_err(|e| e.to_string())?
                .observer()
                .await
                .map_err(|e| e.to_string())?;
            client
                .get_nodes(observer_proto::observer::GetNodesRequest {})
                .await
                .map(|r| r.into_inner().nodes)
                .map_err(|s| s.message().to_string())
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {} s", NODES_WAIT.as_secs())));
        let unreached: Vec<String> = match &answer {
            Ok(listed) => {
                let follows = |n: &observer_proto::observer::Node| {
                    n.state == observer_proto::relay::NodeState::NodeConnected as i32
                        && restarted.is_none_or(|(name, at)| {
                            n.name != name || u128::from(n.uptime_ns) <= at.elapsed().as_nanos()
                        })
                };
                if listed.iter().filter(|n| follows(n)).count() >= nodes {
                    return Vec::new();
                }
                let mut unreached: Vec<String> = (listed.iter())
                    .filter(|n| !follows(n))
                    .map(|n| n.name.clone())
                    .collect();
                if listed.len() < nodes {
                    unreached.push(format!("({} of {nodes} nodes listed)", listed.len()));
                }
                unreached
            }
            Err(e) => vec![format!("(asking the relay: {e})")],
        };
        if answer.is_ok() {
            answered = Some(unreached.clone());
        }
        if tokio::time::Instant::now() >= deadline {
            return answered.unwrap_or(unreached);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Returns once `stop` is set.
async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The line `lab up` adds when the relay does not follow every node yet.
fn unreached_note(unreached: &[String]) -> String {
    if unreached.is_empty() {
        return String::new();
    }
    format!(
        "  note: after {} s the relay does not follow {} yet (see its log)\n",
        NODES_WAIT.as_secs(),
        unreached.join(", ")
    )
}

/// Runs `f` to its end from blocking code (the lab commands run on
/// tokio's blocking pool).
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(f),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(f),
    }
}

/// How often rounds for a `--duration` say how they are going.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Generates the scenario's traffic: one round, or rounds for `duration`
/// (or until `stop`, which SIGINT and SIGTERM set: the round running ends,
/// then the summary is printed). Fails (after printing what happened) when
/// an item did not end as the scenario expects, so a script sees it.
pub fn traffic(
    state_dir: &Path,
    duration: Option<Duration>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let lab = Lab::attach(state_dir)?;
    let _sending = lab::TrafficLock::take(state_dir)?;
    let scenario = lab.scenario().clone();
    let summary = match duration {
        None => {
            let report = lab::run_traffic_once(&lab, &scenario)?;
            crate::outln!("{report}")?;
            let mut summary = lab::TrafficSummary::default();
            summary.add(&report);
            summary
        }
        Some(d) => {
            crate::outln!(
                "traffic for {} s, rounds {} s apart; how it goes every {} s, a round not as \
                 expected when it ends; Ctrl-C ends it after the round",
                d.as_secs(),
                lab::ROUND_PAUSE.as_secs(),
                PROGRESS_EVERY.as_secs()
            )?;
            let started = std::time::Instant::now();
            let mut told = started;
            let mut so_far = lab::TrafficSummary::default();
            let on_round = |round: u64, report: &lab::TrafficReport| {
                so_far.add(report);
                // A reader that went away is told at the summary.
                if !report.all_as_expected() {
                    let _ = crate::outln!("round {round}: {report}");
                }
                if told.elapsed() >= PROGRESS_EVERY {
                    told = std::time::Instant::now();
                    let _ = crate::outln!("after {} s: {so_far}", started.elapsed().as_secs());
                }
            };
            let summary =
                lab::run_traffic_with(&lab, &scenario, d, lab::ROUND_PAUSE, stop, on_round)?;
            if let Some(last) = &summary.last_unexpected {
                crate::outln!("last unexpected: {last}")?;
            }
            summary
        }
    };
    crate::outln!("{summary}")?;
    if summary.unexpected > 0 {
        let shown = if duration.is_some() {
            "the last one is shown above"
        } else {
            "see the lines marked UNEXPECTED"
        };
        anyhow::bail!(
            "{} of {} items did not end as the scenario expects: {shown}",
            summary.unexpected,
            summary.items
        );
    }
    Ok(())
}

/// Restarts a node's probe or the relay of the lab in `state_dir`.
pub fn restart(state_dir: &Path, name: &str) -> anyhow::Result<()> {
    let mut lab = Lab::attach(state_dir)?;
    let stopping = std::time::Instant::now();
    let started = node_probes::restart(&mut lab, name)?;
    // The relay follows the restarted probe (or, restarted, every probe).
    let node = (name != "relay").then_some((name, stopping));
    let unreached = block_on(relay_unreached(state_dir, lab.nodes().len(), node));
    crate::outln!(
        "restarted {} on {} (pid {}, log {})",
        if name == "relay" {
            "the relay".to_string()
        } else {
            format!("{name}'s flow-probe")
        },
        started.addr,
        started.pid,
        started.log.display()
    )?;
    crate::pipe::print(&unreached_note(&unreached))?;
    // Detached: the new process outlives this command, as `lab up`'s do.
    lab.detach()?;
    Ok(())
}

pub fn down(state_dir: &Path) -> anyhow::Result<()> {
    // Nothing to remove is no failure: `trap 'observe lab down' EXIT`
    // after a down of its own, or a second down, must not fail a script.
    if !state_dir.join(lab::STATE_FILE).exists() {
        crate::outln!("no lab at {}: nothing to remove", state_dir.display())?;
        return Ok(());
    }
    let report = lab::down(state_dir)?;
    crate::outln!(
        "lab {} removed: {} network namespaces deleted, {} processes stopped",
        report.prefix,
        report.deleted_netns.len(),
        report.stopped_processes.len()
    )?;
    for problem in &report.errors {
        crate::outln!("  warning: {problem}")?;
    }
    Ok(())
}

/// Lab up + continuous traffic + `flows --follow`; Ctrl-C tears it all down.
/// `format` is `-o`: without one, the TUI opens on a terminal, as for
/// `observe flows`.
pub async fn demo(
    scenario: Option<PathBuf>,
    state_dir: PathBuf,
    containers: bool,
    format: Option<Format>,
) -> anyhow::Result<()> {
    let scenario = load_scenario(scenario.as_deref())?;
    let (lab, server, _sending) = tokio::task::spawn_blocking({
        let scenario = scenario.clone();
        let state_dir = state_dir.clone();
        move || -> anyhow::Result<(Lab, String, lab::TrafficLock)> {
            let mut lab = Lab::up(&scenario, &options(&state_dir, containers))?;
            let sending = lab::TrafficLock::take(&state_dir)?;
            let probes = node_probes::start(&mut lab, &ProbeOptions::new(None)?)?;
            let relay = node_probes::start_relay(&mut lab, &probes, 0)?;
            Ok((lab, relay.addr.to_string(), sending))
        }
    })
    .await??;
    // The first flows shown come from every node.
    let unreached = relay_unreached(&state_dir, lab.nodes().len(), None).await;
    crate::pipe::eprint(&unreached_note(&unreached));
    crate::pipe::eprint(&format!(
        "demo: lab {} is up, following flows from {server}; Ctrl-C ends the demo\n",
        lab.prefix()
    ));
    let lab = Arc::new(lab);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::task::spawn_blocking({
        let (lab, stop, scenario) = (lab.clone(), stop.clone(), scenario.clone());
        move || lab::run_traffic(&lab, &scenario, Duration::from_secs(24 * 3600), &stop)
    });
    let query = QueryArgs {
        follow: true,
        ..Default::default()
    };
    // The lab's relay, over mTLS with the lab's client certificate.
    let target = ConnectArgs {
        server: Some(server),
        lab: Some(state_dir),
        ..ConnectArgs::default()
    }
    .target(&[])?;
    let display = flows::Display {
        format,
        print_node: false,
        print_policies: false,
        color: ColorChoice::Auto,
        debug: false,
        time: Default::default(),
        ip_translation: true,
        silent: false,
    };
    let result = tokio::select! {
        r = flows::run_with(&target, &query, display) => r,
        _ = observer_runtime::shutdown::signal() => Ok(()),
    };
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.await;
    match Arc::try_unwrap(lab) {
        Ok(lab) => {
            let _ = tokio::task::spawn_blocking(move || lab.down()).await?;
        }
        Err(_) => {
            crate::pipe::eprint("demo: lab still in use; it is removed when the process exits\n")
        }
    }
    crate::pipe::eprint("demo: lab removed\n");
    result
}
