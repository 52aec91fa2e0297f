//! The latency benchmark's one binary (see `benches::loadgen`):
//!
//! - `loadgen run [--qps Q] [--connections N] [--secs S] [--warmup S] [--rounds R]
//!   [--body B] [--mode short|long] [--note TEXT] --out RESULTS.md --flow-probe BIN
//!   [--state-dir DIR]`: the whole benchmark, as root.
//! - `loadgen server --listen ADDR`: the echo server.
//! - `loadgen client --target ADDR [--cgroup DIR] [--qps ..] [--connections ..]
//!   [--secs ..] [--warmup ..] [--body ..] [--netns NAME]`: the load; prints `result ...`, an
//!   optional `error ...` and `hist <µs> <count>` lines.
//! - `loadgen proxy --outbound PORT --inbound PORT --mark MARK`: the sidecar.
//! - `loadgen cleanup --state-dir DIR`: takes down a lab a killed run left.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use benches::loadgen::{client, hist, proxy, run, server, sys};

/// `--key value` pairs after the subcommand.
fn flags(args: &[String]) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let Some(key) = k.strip_prefix("--") else {
            bail!("unexpected argument {k:?}");
        };
        let v = it
            .next()
            .with_context(|| format!("--{key} needs a value"))?;
        out.insert(key.to_string(), v.clone());
    }
    Ok(out)
}

fn get<T: std::str::FromStr>(f: &HashMap<String, String>, key: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match f.get(key) {
        Some(v) => v.parse().map_err(|e| anyhow::anyhow!("--{key} {v:?}: {e}")),
        None => Ok(default),
    }
}

fn client_cmd(f: &HashMap<String, String>) -> Result<()> {
    if let Some(cg) = f.get("cgroup") {
        sys::join_cgroup(std::path::Path::new(cg))?;
    }
    // After the cgroup: `ip netns exec` would hide the cgroup mount, so the
    // client enters its namespace itself (before any thread starts).
    if let Some(ns) = f.get("netns") {
        sys::enter_netns(ns)?;
    }
    let cfg = client::ClientConfig {
        target: f.get("target").context("--target")?.parse()?,
        qps: get(f, "qps", 1000.0)?,
        connections: get(f, "connections", 64)?,
        duration: Duration::from_secs_f64(get(f, "secs", 5.0)?),
        warmup: Duration::from_secs_f64(get(f, "warmup", 0.5)?),
        body: get(f, "body", 64)?,
    };
    let cpu0 = sys::self_cpu();
    let r = client::run(&cfg)?;
    let cpu = sys::self_cpu() - cpu0;
    let mut out = format!(
        "result count={} errors={} span_us={} cpu_us={}\n",
        r.hist.len(),
        r.errors,
        r.span.as_micros(),
        cpu.as_micros()
    );
    if let Some(e) = &r.first_error {
        out.push_str(&format!("error {}\n", e.replace('\n', " ")));
    }
    out.push_str(&hist::encode(&r.hist));
    print!("{out}");
    Ok(())
}

const USAGE: &str = "usage: loadgen run|server|client|proxy|cleanup [--flag value ...]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        bail!(USAGE);
    };
    if matches!(cmd.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}\n(benches/run-latency.sh runs it; see benches/README.md)");
        return Ok(());
    }
    let f = flags(&args[1..])?;
    match cmd.as_str() {
        "server" => server::serve(f.get("listen").context("--listen")?.parse()?),
        "client" => client_cmd(&f),
        "proxy" => proxy::run(
            get(&f, "outbound", 15001)?,
            get(&f, "inbound", 15006)?,
            get(&f, "mark", 1337)?,
        ),
        "cleanup" => {
            let dir = PathBuf::from(f.get("state-dir").context("--state-dir")?);
            if dir.join(observe_lab::STATE_FILE).exists() {
                let report = observe_lab::down(&dir)?;
                println!("took down lab {}", report.prefix);
            }
            Ok(())
        }
        "run" => {
            let opts = run::Options {
                qps: get(&f, "qps", 1000.0)?,
                connections: get(&f, "connections", 64)?,
                secs: get(&f, "secs", 5.0)?,
                warmup: get(&f, "warmup", 0.5)?,
                rounds: get(&f, "rounds", 2)?,
                body: get(&f, "body", 64)?,
                mode: get(&f, "mode", "short".to_string())?,
                note: get(&f, "note", String::new())?,
                out: PathBuf::from(f.get("out").context("--out")?),
                flow_probe: PathBuf::from(f.get("flow-probe").context("--flow-probe")?),
                state_dir: f.get("state-dir").map_or_else(
                    || std::env::temp_dir().join(format!("latency-{}", std::process::id())),
                    PathBuf::from,
                ),
            };
            run::run(&opts)
        }
        other => bail!("unknown command {other:?}"),
    }
}
