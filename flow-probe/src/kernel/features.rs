//! What the running kernel offers, probed once at start.
//!
//! Each capability of flow-probe names the features it needs; a missing feature
//! disables that capability with a message naming the feature, not the whole probe.

use std::path::Path;

use aya::maps::MapType;
use aya::programs::ProgramType;
use aya::sys::{is_map_supported, is_program_supported};
use aya::util::KernelVersion;

use super::tracefs;

/// One probed feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone, Default)]
pub struct KernelFeatures {
    pub features: Vec<Feature>,
}

impl KernelFeatures {
    /// Probes the running kernel. Never fails: an error probing is "unavailable".
    pub fn probe() -> Self {
        let mut features = Vec::new();
        let mut add = |name, result: Result<bool, String>| {
            let (available, detail) = match result {
                Ok(true) => (true, String::new()),
                Ok(false) => (false, "not supported by this kernel".to_string()),
                Err(e) => (false, e),
            };
            features.push(Feature {
                name,
                available,
                detail,
            });
        };
        let prog = |t| is_program_supported(t).map_err(|e| e.to_string());
        let map = |t| is_map_supported(t).map_err(|e| e.to_string());
        add("prog:sched_cls", prog(ProgramType::SchedClassifier));
        add("prog:tracepoint", prog(ProgramType::TracePoint));
        add("prog:cgroup_sock_addr", prog(ProgramType::CgroupSockAddr));
        add("map:ringbuf", map(MapType::RingBuf));
        add("map:lru_hash", map(MapType::LruHash));
        add("map:percpu_array", map(MapType::PerCpuArray));
        let version = KernelVersion::current().map_err(|e| e.to_string());
        add("tcx", version.map(|v| v >= KernelVersion::new(6, 6, 0)));
        add(
            "btf:vmlinux",
            Ok(Path::new("/sys/kernel/btf/vmlinux").exists()),
        );
        for (name, group, event) in [
            ("tracepoint:skb:kfree_skb", "skb", "kfree_skb"),
            (
                "tracepoint:sock:inet_sock_set_state",
                "sock",
                "inet_sock_set_state",
            ),
            (
                "tracepoint:tcp:tcp_retransmit_skb",
                "tcp",
                "tcp_retransmit_skb",
            ),
        ] {
            add(
                name,
                tracefs::has_event(group, event).map_err(|e| e.to_string()),
            );
        }
        add(
            "bpf_stats",
            Ok(Path::new("/proc/sys/kernel/bpf_stats_enabled").exists()),
        );
        KernelFeatures { features }
    }

    pub fn has(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.name == name && f.available)
    }

    /// The first of `needed` that is missing, if any.
    pub fn missing<'a>(&self, needed: &[&'a str]) -> Option<&'a str> {
        needed.iter().copied().find(|n| !self.has(n))
    }
}

/// Features the tc flow capture cannot work without.
pub const FLOW_CAPTURE_NEEDS: &[&str] = &[
    "prog:sched_cls",
    "map:ringbuf",
    "map:lru_hash",
    "map:percpu_array",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_offers_what_flow_capture_needs() {
        let f = KernelFeatures::probe();
        assert_eq!(f.missing(FLOW_CAPTURE_NEEDS), None, "{:?}", f.features);
        assert!(f.has("tcx"), "Linux 6.18 has tcx");
        let fake = KernelFeatures {
            features: vec![Feature {
                name: "map:ringbuf",
                available: false,
                detail: String::new(),
            }],
        };
        assert_eq!(fake.missing(&["map:ringbuf", "tcx"]), Some("map:ringbuf"));
    }
}
