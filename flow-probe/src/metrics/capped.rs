//! A counter family that accepts at most `cap` distinct label sets. Beyond that,
//! every label value of a new set becomes [`OVERFLOW`], and the overflow is
//! counted in `observe_metrics_overflow_total{metric}`.
//!
//! A family built with [`Expiry::AfterGrace`] remembers when each label set was
//! last updated; [`CappedFamily::sweep`] removes the sets (the overflow set
//! included) not updated for the grace period, which frees their room under
//! the cap. Families whose labels churn (ports, workloads) expire this way, so
//! the series of endpoints that are gone disappear. To keep the clock off the
//! per-flow path, an update only marks its set; the sweep that finds the mark
//! takes its own time as the set's last update. So a set created at `t` and
//! never updated goes at the first sweep at or after `t + grace`, and one
//! updated later goes at the first sweep at least the grace period after the
//! sweep that followed the update: never early, at most one sweep (scrape)
//! interval late.
//!
//! A series of an expiring family is shown at 0 by the first scrape after it
//! appears (or comes back after expiring), and counts from the next one on:
//! Prometheus sees a counter's increase only between two samples, so one
//! that appeared already holding its first burst would lose that burst from
//! `rate()` and `increase()`, each time it came back. Its first amounts wait
//! in the series until [`CappedFamily::settle`], after the scrape that showed
//! it. Until a scrape has shown them the sweep keeps the series, however
//! short the grace period: one shorter than the scrape interval removed a
//! series before any scrape saw what it counted.
//!
//! Label sets are [`super::key`] bytes, and each accepted set keeps its
//! Prometheus counter handle, so an update of a known set is one hash lookup
//! and an atomic add. A family holds no lock: [`super::Metrics`] keeps every
//! family under one mutex, taken once per flow. One family may feed several
//! metrics that always share their label sets (bytes and packets).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::key::{self, BuildKeyHasher, KeyBuf};

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

/// The clock, read at most once per flow and only when a label set is created.
pub struct Now<'a> {
    clock: &'a Clock,
    at: Option<Instant>,
}

impl<'a> Now<'a> {
    pub fn new(clock: &'a Clock) -> Self {
        Now { clock, at: None }
    }

    pub fn get(&mut self) -> Instant {
        *self.at.get_or_insert_with(|| (self.clock)())
    }
}

/// Whether the label sets of a family expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Kept for the life of the process (small, fixed label sets).
    Never,
    /// Removed by [`CappedFamily::sweep`] once not updated for the grace period.
    AfterGrace,
}

/// One metric a family feeds.
struct Member {
    name: &'static str,
    vec: IntCounterVec,
    /// `observe_metrics_overflow_total{metric=name}`.
    overflowed: IntCounter,
}

/// One accepted label set: a counter per member, and when it was last updated.
struct Series {
    counters: Box<[IntCounter]>,
    /// Creation, or the sweep that found the latest update.
    last: Instant,
    /// Updated since `last`.
    touched: bool,
    /// Amounts not added yet: the series has not been scraped at 0.
    pending: Option<Box<[u64]>>,
    /// The scrape epoch it was created in ([`CappedFamily::begin_scrape`]).
    born: u64,
    /// What waited was added after the last scrape: no scrape showed it yet.
    unshown: bool,
}

impl Series {
    /// A new series at 0; with `delay`, what it is given waits for
    /// [`CappedFamily::settle`].
    fn new(counters: Box<[IntCounter]>, delay: bool, now: Instant, born: u64) -> Self {
        Series {
            pending: delay.then(|| vec![0; counters.len()].into()),
            counters,
            last: now,
            touched: false,
            born,
            unshown: false,
        }
    }

    fn add(&mut self, amounts: &[u64]) {
        match &mut self.pending {
            Some(p) => p.iter_mut().zip(amounts).for_each(|(p, n)| *p += n),
            None => add(&self.counters, amounts),
        }
    }

    /// Adds what waited, if the series was created by `cutoff`.
    fn settle(&mut self, cutoff: u64) {
        if self.born <= cutoff
            && let Some(p) = self.pending.take()
        {
            add(&self.counters, &p);
            self.unshown = p.iter().any(|&n| n > 0);
        }
    }

    /// Whether the set has not been updated for `grace` at `now`; takes in
    /// an update mark first. Never while a scrape has still to show what it
    /// holds back or what it added after the last one.
    fn stale(&mut self, now: Instant, grace: Duration) -> bool {
        if std::mem::take(&mut self.touched) {
            self.last = self.last.max(now);
        }
        self.pending.is_none() && !self.unshown && now.saturating_duration_since(self.last) >= grace
    }
}

/// The settings shared by the families of one [`super::Metrics`].
pub struct Registrar<'a> {
    pub registry: &'a Registry,
    pub names: &'a mut Vec<&'static str>,
    pub overflow: &'a IntCounterVec,
    pub cap: usize,
}

pub struct CappedFamily {
    members: Vec<Member>,
    cap: usize,
    arity: usize,
    expiry: Expiry,
    sets: HashMap<Box<[u8]>, Series, BuildKeyHasher>,
    /// The overflow set (`None`: not created or removed).
    overflow: Option<Series>,
    /// [`Self::inc_memo`]: a caller's id of a label set → its counter.
    memo: HashMap<u64, IntCounter, BuildKeyHasher>,
    /// Scrape epoch: series created now are born in it.
    epoch: u64,
    /// The last epoch a running scrape shows.
    cutoff: u64,
}

impl CappedFamily {
    /// Registers one counter metric per `(name, help)` in `metrics`, all with
    /// `labels`; their `observe_metrics_overflow_total{metric}` start at 0.
    pub fn register(
        r: &mut Registrar<'_>,
        metrics: &[(&'static str, &str)],
        labels: &[&str],
        expiry: Expiry,
    ) -> prometheus::Result<Self> {
        let mut members = Vec::new();
        for &(name, help) in metrics {
            let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.registry.register(Box::new(vec.clone()))?;
            r.names.push(name);
            members.push(Member {
                name,
                vec,
                overflowed: r.overflow.with_label_values(&[name]),
            });
        }
        Ok(CappedFamily {
            members,
            cap: r.cap,
            arity: labels.len(),
            expiry,
            sets: HashMap::default(),
            overflow: None,
            memo: HashMap::default(),
            epoch: 1,
            cutoff: 0,
        })
    }

    /// Whether the family feeds the metric `name`.
    pub fn has(&self, name: &str) -> bool {
        self.members.iter().any(|m| m.name == name)
    }

    /// Adds `amounts[i]` to member `i`'s series of the label set `key`, or to
    /// the overflow series when the family already has `cap` other label sets.
    pub fn add(&mut self, key: &[u8], amounts: &[u64], now: &mut Now<'_>) {
        debug_assert_eq!(amounts.len(), self.members.len());
        let delay = self.expiry == Expiry::AfterGrace;
        if let Some(s) = self.sets.get_mut(key) {
            s.add(amounts);
            s.touched = true;
            return;
        }
        if self.sets.len() < self.cap {
            let values = key::values(key);
            debug_assert_eq!(values.len(), self.arity);
            let counters: Box<[IntCounter]> = self
                .members
                .iter()
                .map(|m| m.vec.with_label_values(&values))
                .collect();
            let mut series = Series::new(counters, delay, now.get(), self.epoch);
            series.add(amounts);
            self.sets.insert(key.into(), series);
            return;
        }
        let (members, arity, epoch) = (&self.members, self.arity, self.epoch);
        let slot = self.overflow.get_or_insert_with(|| {
            let counters = members
                .iter()
                .map(|m| m.vec.with_label_values(&vec![OVERFLOW; arity]))
                .collect();
            Series::new(counters, delay, now.get(), epoch)
        });
        slot.add(amounts);
        slot.touched = true;
        for m in members {
            m.overflowed.inc();
        }
    }

    /// Adds 1 to the label set that `fill` writes, which `id` stands for:
    /// the caller's promise is that equal ids mean equal label sets (an id
    /// built from small enum values). A known id costs one lookup of a `u64`
    /// and no key; an unknown one takes [`Self::add`]'s path, and its counter
    /// is remembered if the set was accepted (at most `cap` ids). Only for a
    /// family of one metric that never expires, so a remembered counter stays
    /// registered.
    pub fn inc_memo(
        &mut self,
        id: u64,
        key: &mut KeyBuf,
        fill: impl FnOnce(&mut KeyBuf),
        now: &mut Now<'_>,
    ) {
        debug_assert_eq!(self.expiry, Expiry::Never);
        if let Some(c) = self.memo.get(&id) {
            c.inc();
            return;
        }
        fill(key.clear());
        self.inc(key.bytes(), now);
        if self.memo.len() < self.cap
            && let Some(s) = self.sets.get(key.bytes())
        {
            self.memo.insert(id, s.counters[0].clone());
        }
    }

    /// Adds 1 (a family of one metric).
    pub fn inc(&mut self, key: &[u8], now: &mut Now<'_>) {
        self.add(key, &[1], now);
    }

    /// A scrape starts: the series created so far are shown by it.
    pub fn begin_scrape(&mut self) {
        self.cutoff = self.epoch;
        self.epoch += 1;
        if self.expiry == Expiry::AfterGrace {
            self.sets.values_mut().for_each(|s| s.unshown = false);
            if let Some(s) = &mut self.overflow {
                s.unshown = false;
            }
        }
    }

    /// After the scrape: the series it showed at 0 count what waited.
    pub fn settle(&mut self) {
        let cutoff = self.cutoff;
        self.sets.values_mut().for_each(|s| s.settle(cutoff));
        if let Some(s) = &mut self.overflow {
            s.settle(cutoff);
        }
    }

    /// Distinct label sets accepted and not removed (the overflow set not included).
    pub fn label_sets(&self) -> usize {
        self.sets.len()
    }

    /// Removes the label sets (and the overflow set) not updated for `grace`
    /// before `now`; returns how many series that removed (label sets times
    /// metrics fed). Does nothing for a family that never expires.
    pub fn sweep(&mut self, now: Instant, grace: Duration) -> usize {
        if self.expiry == Expiry::Never {
            return 0;
        }
        let before = self.sets.len();
        let members = &self.members;
        self.sets.retain(|k, s| {
            if !s.stale(now, grace) {
                return true;
            }
            let values = key::values(k);
            for m in members {
                // Absent only if someone else removed it: nothing to do then.
                let _ = m.vec.remove_label_values(&values);
            }
            false
        });
        let mut removed = before - self.sets.len();
        if self.overflow.as_mut().is_some_and(|s| s.stale(now, grace)) {
            self.overflow = None;
            for m in members {
                let _ = m.vec.remove_label_values(&vec![OVERFLOW; self.arity]);
            }
            removed += 1;
        }
        removed * members.len()
    }
}

fn add(counters: &[IntCounter], amounts: &[u64]) {
    for (c, &n) in counters.iter().zip(amounts) {
        c.inc_by(n);
    }
}
