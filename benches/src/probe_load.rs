//! One measured round of the tc probe under lab traffic: load a fresh probe,
//! let `setup` program it, drain its ring on a thread while the scenario's
//! traffic runs, then read the kernel's counters and BPF run-time statistics
//! (counted while the caller holds a `BPF_ENABLE_STATS` fd).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    let interfaces: Vec<String> = lab
        .endpoints_file()
        .endpoints
        .into_iter()
        .filter_map(|e| e.interface)
        .collect();
    let mut probe = LoadedProbe::start(&cfg, &interfaces, &KernelFeatures::probe())?;
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
        let traffic = run_traffic_with(lab, scenario, secs, Duration::ZERO, &never, |_, _| {});
        stop.store(true, Ordering::Relaxed);
        (traffic, drain.join().expect("drain thread panicked"))
    });
    let traffic = traffic?;
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
