//! A counter family that accepts at most `cap` distinct label sets. Beyond that,
//! every label value of a new set becomes [`OVERFLOW`], and the overflow is
//! counted in `observe_metrics_overflow_total{metric}`.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// The label value of every label of a set that did not fit under the cap.
pub const OVERFLOW: &str = "__overflow__";

/// Default number of label sets a metric accepts.
pub const DEFAULT_MAX_LABEL_SETS: usize = 1000;

pub struct CappedCounter {
    vec: IntCounterVec,
    cap: usize,
    seen: Mutex<HashSet<Vec<String>>>,
    overflow: IntCounter,
}

impl CappedCounter {
    /// Registers `name` with `labels`; `overflow` is the family of
    /// `observe_metrics_overflow_total`, whose `{metric=name}` starts at 0.
    pub fn register(
        registry: &Registry,
        names: &mut Vec<&'static str>,
        name: &'static str,
        help: &str,
        labels: &[&str],
        cap: usize,
        overflow: &IntCounterVec,
    ) -> prometheus::Result<Self> {
        let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(vec.clone()))?;
        names.push(name);
        Ok(CappedCounter {
            vec,
            cap,
            seen: Mutex::new(HashSet::new()),
            overflow: overflow.with_label_values(&[name]),
        })
    }

    /// Adds `n` to the series of `values`, or to the overflow series when the
    /// metric already has `cap` other label sets.
    pub fn inc_by(&self, values: &[&str], n: u64) {
        let fits = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            if seen.contains(&key) {
                true
            } else if seen.len() < self.cap {
                seen.insert(key);
                true
            } else {
                false
            }
        };
        if fits {
            self.vec.with_label_values(values).inc_by(n);
        } else {
            let overflow = vec![OVERFLOW; values.len()];
            self.vec.with_label_values(&overflow).inc_by(n);
            self.overflow.inc();
        }
    }

    pub fn inc(&self, values: &[&str]) {
        self.inc_by(values, 1);
    }

    /// Creates the series of `values` at 0 (so a dashboard shows 0, not nothing).
    pub fn touch(&self, values: &[&str]) {
        self.inc_by(values, 0);
    }

    /// Distinct label sets accepted so far (the overflow set not included).
    pub fn label_sets(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
