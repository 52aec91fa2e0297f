//! One measured round of the tc probe under lab traffic: load a fresh probe,
//! let `setup` program it, drain its ring on a thread while the scenario's
//! traffic runs, then read the kernel's counters and BPF run-time statistics
//! (counted while the caller holds a `BPF_ENABLE_STATS` fd), with how busy the
//! machine was meanwhile: a per-packet cost means little without the load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use flow_probe::kernel::events::PathTime;
use flow_probe::kernel::features::KernelFeatures;
use flow_probe::kernel::loader::{LoadedProbe, ProbeConfig};
use observe_lab::{Lab, Scenario, run_traffic_with};

/// What one round measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub packets: u64,
    pub events: u64,
    pub lost: u64,
    pub read: u64,
    /// (run time in ns, run count) of tc_ingress and tc_egress.
    pub ingress: (u128, u64),
    pub egress: (u128, u64),
    /// Runs and time by `tc_path` (only with `ProbeConfig::time_paths`).
    pub paths: [PathTime; 4],
    /// How long the traffic ran.
    pub wall: Duration,
    /// Every CPU's idle and total time meanwhile, in `/proc/stat` ticks.
    pub cpu_idle_ticks: u64,
    pub cpu_ticks: u64,
}

impl Sample {
    pub fn add(&mut self, o: &Sample) {
        self.packets += o.packets;
        self.events += o.events;
        self.lost += o.lost;
        self.read += o.read;
        self.ingress = (self.ingress.0 + o.ingress.0, self.ingress.1 + o.ingress.1);
        self.egress = (self.egress.0 + o.egress.0, self.egress.1 + o.egress.1);
        for (mine, theirs) in self.paths.iter_mut().zip(o.paths) {
            *mine += theirs;
        }
        self.wall += o.wall;
        self.cpu_idle_ticks += o.cpu_idle_ticks;
        self.cpu_ticks += o.cpu_ticks;
    }

    /// Program runs per second of traffic.
    pub fn runs_per_sec(&self) -> f64 {
        self.packets as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The share of all CPUs' time the tc programs ran.
    pub fn program_share(&self) -> f64 {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ran = (self.ingress.0 + self.egress.0) as f64 / 1e9;
        ran / (self.wall.as_secs_f64() * cpus as f64).max(1e-9)
    }

    /// The share of all CPUs' time spent idle.
    pub fn idle_share(&self) -> f64 {
        self.cpu_idle_ticks as f64 / self.cpu_ticks.max(1) as f64
    }

    pub fn ns(run: (u128, u64)) -> f64 {
        if run.1 == 0 {
            0.0
        } else {
            run.0 as f64 / run.1 as f64
        }
    }

    /// Average over both programs.
    pub fn ns_all(&self) -> f64 {
        Self::ns((
            self.ingress.0 + self.egress.0,
            self.ingress.1 + self.egress.1,
        ))
    }
}

/// The host-side interfaces of the lab's endpoints, where the probe attaches.
pub fn interfaces(lab: &Lab) -> Vec<String> {
    lab.endpoints_file()
        .endpoints
        .into_iter()
        .filter_map(|e| e.interface)
        .collect()
}

/// Runs one round; `cfg.netns` is set to node1's namespace.
pub fn round(
    lab: &Lab,
    scenario: &Scenario,
    mut cfg: ProbeConfig,
    secs: Duration,
    drain_pause: Duration,
    setup: impl FnOnce(&mut LoadedProbe) -> anyhow::Result<()>,
) -> anyhow::Result<Sample> {
    cfg.netns = Some(
        lab.node_netns("node1")
            .context("no node1 in the lab")?
            .to_string(),
    );
    let mut probe = LoadedProbe::start(&cfg, &interfaces(lab), &KernelFeatures::probe())?;
    setup(&mut probe)?;
    let mut ring = probe.take_ring().context("ring buffer already taken")?;
    let stop = AtomicBool::new(false);
    let never = AtomicBool::new(false);
    let (traffic, read) = std::thread::scope(|s| {
        let drain = s.spawn(|| {
            let mut read = 0u64;
            loop {
                let last = stop.load(Ordering::Relaxed);
                let before = read;
                while ring.next().is_some() {
                    read += 1;
                }
                if last {
                    return read;
                }
                if read == before {
                    std::thread::sleep(drain_pause);
                }
            }
        });
        let (cpu_before, started) = (cpu_ticks(), Instant::now());
        let traffic = run_traffic_with(lab, scenario, secs, Duration::ZERO, &never, |_, _| {});
        let (wall, cpu_after) = (started.elapsed(), cpu_ticks());
        stop.store(true, Ordering::Relaxed);
        let cpu = cpu_before
            .zip(cpu_after)
            .map(|((i0, t0), (i1, t1))| (i1 - i0, t1 - t0));
        (
            traffic.map(|t| (t, wall, cpu)),
            drain.join().expect("drain thread panicked"),
        )
    });
    let (traffic, wall, cpu) = traffic?;
    if traffic.unexpected > 0 {
        eprintln!(
            "warning: {} of {} traffic items did not go as expected",
            traffic.unexpected, traffic.items
        );
    }
    let counters = probe.counters()?;
    let mut sample = Sample {
        events: counters.events_tried,
        lost: counters.events_lost,
        read,
        wall,
        cpu_idle_ticks: cpu.map_or(0, |c| c.0),
        cpu_ticks: cpu.map_or(0, |c| c.1),
        ..Sample::default()
    };
    for p in probe.run_stats()? {
        let slot = match p.name {
            "tc_ingress" => &mut sample.ingress,
            _ => &mut sample.egress,
        };
        *slot = (p.run_time.as_nanos(), p.run_count);
    }
    // Each run of a tc program is one packet at one hook.
    sample.packets = sample.ingress.1 + sample.egress.1;
    sample.paths = probe.path_times()?;
    drop(probe); // detaches before the next round loads its own
    Ok(sample)
}

/// (idle + iowait, total) ticks of all CPUs from `/proc/stat`'s `cpu` line;
/// None when it cannot be read.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let ticks: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((idle, ticks.iter().sum()))
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_line;

    #[test]
    fn the_cpu_line_gives_idle_with_iowait_and_the_sum_of_eight_fields() {
        let line = "cpu  100 2 30 800 5 1 7 3 9 0";
        assert_eq!(parse_cpu_line(line), Some((805, 948)));
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(parse_cpu_line("cpu 1 2 x 4 5 6 7 8"), None);
        assert_eq!(parse_cpu_line("cpu 1 2 3"), None);
    }
}
