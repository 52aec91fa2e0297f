//! A counter family that accepts at most `cap` distinct label sets. Beyond that,
//! every label value of a new set becomes [`OVERFLOW`], and the overflow is
//! counted in `observe_metrics_overflow_total{metric}`.
//!
//! A family built with [`Expiry::AfterGrace`] remembers when each label set was
//! last updated; [`CappedCounter::sweep`] removes the sets (the overflow set
//! included) not updated for the grace period, which frees their room under
//! the cap. Families whose labels churn (ports, workloads) expire this way, so
//! the series of endpoints that are gone disappear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// The label value of every label of a set that did not fit under the cap.
pub const OVERFLOW: &str = "__overflow__";

/// Default number of label sets a metric accepts.
pub const DEFAULT_MAX_LABEL_SETS: usize = 1000;

/// Default time after which a label set that was not updated is removed.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10 * 60);

/// The time source of the expiry (injectable for tests).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The real monotonic clock.
pub fn system_clock() -> Clock {
    Arc::new(Instant::now)
}

/// Whether the label sets of a family expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Kept for the life of the process (small, fixed label sets).
    Never,
    /// Removed by [`CappedCounter::sweep`] once not updated for the grace period.
    AfterGrace,
}

/// One accepted label set.
struct Series {
    counter: IntCounter,
    last: Instant,
}

struct State {
    sets: HashMap<Vec<String>, Series>,
    /// The overflow series and when it was last updated (`None`: not created).
    overflow: Option<(IntCounter, Instant)>,
}

pub struct CappedCounter {
    vec: IntCounterVec,
    cap: usize,
    arity: usize,
    expiry: Expiry,
    clock: Clock,
    state: Mutex<State>,
    overflow: IntCounter,
}

impl CappedCounter {
    /// Registers `name` with `labels`; `overflow` is the family of
    /// `observe_metrics_overflow_total`, whose `{metric=name}` starts at 0.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site, all settings of a family"
    )]
    pub fn register(
        registry: &Registry,
        names: &mut Vec<&'static str>,
        name: &'static str,
        help: &str,
        labels: &[&str],
        cap: usize,
        overflow: &IntCounterVec,
        expiry: Expiry,
        clock: Clock,
    ) -> prometheus::Result<Self> {
        let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(vec.clone()))?;
        names.push(name);
        Ok(CappedCounter {
            vec,
            cap,
            arity: labels.len(),
            expiry,
            clock,
            state: Mutex::new(State {
                sets: HashMap::new(),
                overflow: None,
            }),
            overflow: overflow.with_label_values(&[name]),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Option<Instant> {
        (self.expiry == Expiry::AfterGrace).then(|| (self.clock)())
    }

    /// Adds `n` to the series of `values`, or to the overflow series when the
    /// metric already has `cap` other label sets.
    pub fn inc_by(&self, values: &[&str], n: u64) {
        let now = self.now();
        let mut state = self.lock();
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        if let Some(s) = state.sets.get_mut(&key) {
            s.counter.inc_by(n);
            if let Some(now) = now {
                s.last = now;
            }
            return;
        }
        if state.sets.len() < self.cap {
            let counter = self.vec.with_label_values(values);
            counter.inc_by(n);
            let last = now.unwrap_or_else(|| (self.clock)());
            state.sets.insert(key, Series { counter, last });
            return;
        }
        let at = now.unwrap_or_else(|| (self.clock)());
        let arity = self.arity;
        let vec = &self.vec;
        let slot = state
            .overflow
            .get_or_insert_with(|| (vec.with_label_values(&vec![OVERFLOW; arity]), at));
        slot.0.inc_by(n);
        slot.1 = at;
        self.overflow.inc();
    }

    pub fn inc(&self, values: &[&str]) {
        self.inc_by(values, 1);
    }

    /// Creates the series of `values` at 0 (so a dashboard shows 0, not nothing).
    pub fn touch(&self, values: &[&str]) {
        self.inc_by(values, 0);
    }

    /// Distinct label sets accepted and not removed (the overflow set not included).
    pub fn label_sets(&self) -> usize {
        self.lock().sets.len()
    }

    /// Removes the label sets (and the overflow set) not updated for `grace`;
    /// returns how many. Does nothing for a family that never expires.
    pub fn sweep(&self, grace: Duration) -> usize {
        let Some(now) = self.now() else {
            return 0;
        };
        let stale = |last: Instant| now.saturating_duration_since(last) >= grace;
        let mut state = self.lock();
        let before = state.sets.len();
        state.sets.retain(|values, s| {
            if !stale(s.last) {
                return true;
            }
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            // Absent only if someone else removed it: nothing to do then.
            let _ = self.vec.remove_label_values(&values);
            false
        });
        let mut removed = before - state.sets.len();
        if state
            .overflow
            .as_ref()
            .is_some_and(|(_, last)| stale(*last))
        {
            state.overflow = None;
            let _ = self.vec.remove_label_values(&vec![OVERFLOW; self.arity]);
            removed += 1;
        }
        removed
    }
}
