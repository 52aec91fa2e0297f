//! Flows history did not keep, per node and second of flow time, so a reader
//! of a time range learns how much of it is missing (`observe query`, and a
//! `LostEvent` in GetFlows). A flow dropped here has its own time; flows a
//! probe's buffer dropped before the relay read them have none, only the gap
//! between the flows read before and after: a span of seconds, whose whole
//! count goes to every range that meets it.
//!
//! A probe's own count of events its kernel ring buffer dropped (a
//! `PERF_EVENT_RING_BUFFER` record) is recorded at the second the probe
//! stamped it: those events never became flows anywhere, so history lacks
//! them too ([`Losses::record_probe_loss`]).
//!
//! Kept in `<dir>/losses.tsv` (node, second since the epoch, flows; a span:
//! node, first second, last second, flows; the highest flow-probe flow
//! number recorded lost: node, `newest`, the probe run, the number; the time
//! of the newest probe record counted: node, `probe_lost`, ns since the
//! epoch; one line each; a tab, line break or backslash in a node's name written as `\t`,
//! `\n`, `\r`, `\\`), rewritten through a temporary file when it changed,
//! and read back at start: a restarted relay still knows what its files
//! lack. Seconds older than retention are forgotten with the files.
//!
//! A restarted relay takes again what the probes still buffer of the flows
//! history does not hold, among them flows the last run took and then could
//! not write (a failing disk, a stop with rows in memory). A flow-probe
//! numbers its flows in the order it sends them
//! ([`crate::flow_numbers`]): a flow of the run and at most the number of the
//! newest one lost is one the last run took, so taking it again
//! ([`Losses::retaken`]) is one loss fewer in its second. Other flows (of
//! other servers, or without that line) give nothing back: the count errs
//! toward too many missing, never too few.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use observer_proto::tsv;

use super::files;
use crate::flow_numbers::run_and_number;

/// The file name in the history directory.
pub const FILE: &str = "losses.tsv";

/// One node's losses.
#[derive(Default)]
struct NodeLosses {
    /// second → flows lost.
    secs: BTreeMap<i64, u64>,
    /// (first second, last second) → flows lost somewhere in it.
    spans: BTreeMap<(i64, i64), u64>,
}

impl NodeLosses {
    fn is_empty(&self) -> bool {
        self.secs.is_empty() && self.spans.is_empty()
    }

    /// The flows lost in seconds `lo..=hi`, and the first and last second
    /// with a loss there (a span's taken within `lo..=hi`).
    fn between(&self, lo: i64, hi: i64) -> Option<(u64, i64, i64)> {
        let secs = self.secs.range(lo..=hi).map(|(&s, &n)| (s, s, n));
        let spans = self
            .spans
            .range(..=(hi, i64::MAX))
            .filter(|((_, last), _)| *last >= lo)
            .map(|(&(first, last), &n)| (first.max(lo), last.min(hi), n));
        secs.chain(spans)
            .fold(None, |acc, (first, last, n)| match acc {
                None => Some((n, first, last)),
                Some((all, f, l)) => Some((all + n, f.min(first), l.max(last))),
            })
    }
}

/// A node's flows an earlier run recorded lost by their time, as read at
/// start: what taking them again may give back.
struct Carried {
    secs: BTreeMap<i64, u64>,
    /// The probe run and number of the newest of them: that run took every
    /// flow of the run up to it.
    newest: (u64, u64),
}

#[derive(Default)]
struct Inner {
    by_node: BTreeMap<String, NodeLosses>,
    /// node → the probe run and number of the newest flow recorded lost.
    newest: BTreeMap<String, (u64, u64)>,
    /// node → the losses by the second read at start, less those taken again.
    carried: BTreeMap<String, Carried>,
    /// node → flows lost since this start (the metric).
    since_start: BTreeMap<String, u64>,
    /// node → the time of the newest probe record of dropped events counted:
    /// a restarted relay is sent the probe's buffer again.
    probe_lost: BTreeMap<String, i64>,
    dirty: bool,
}

/// Losses of one history.
pub struct Losses {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Flows left in `Inner::carried`: while 0, [`Losses::retaken`] takes no lock.
    carried_left: AtomicU64,
}

/// Flows of `node` lost in a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub node: String,
    pub flows: u64,
    /// The first and last second (since the epoch) with a loss.
    pub first_sec: i64,
    pub last_sec: i64,
}

/// `map[key]`, inserted (and the key allocated) only when missing.
pub(super) fn entry<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// The second field of a line that gives a node's newest lost flow.
const NEWEST: &str = "newest";
/// The second field of a line that gives the time of a node's newest probe
/// record of dropped events counted.
const PROBE_LOST: &str = "probe_lost";

/// A line of the file.
enum Line {
    /// node, first second, last second, flows.
    Lost(String, i64, i64, u64),
    /// node, the newest lost flow's probe run and number.
    Newest(String, (u64, u64)),
    /// node, the time of the newest probe record counted.
    ProbeLost(String, i64),
}

/// Takes one from `secs[sec]` (removing it at 0): false when there is none.
fn take_one(secs: &mut BTreeMap<i64, u64>, sec: i64) -> bool {
    match secs.get_mut(&sec) {
        Some(n) if *n > 1 => *n -= 1,
        Some(_) => {
            secs.remove(&sec);
        }
        None => return false,
    }
    true
}

fn second(nanos: i64) -> i64 {
    nanos.div_euclid(1_000_000_000)
}

impl Losses {
    /// The losses recorded in `dir` (none if the file is missing; lines that
    /// do not parse are skipped with a warning).
    pub fn open(dir: &Path) -> io::Result<Losses> {
        let path = dir.join(FILE);
        let mut inner = Inner::default();
        // Read as bytes: a line that is not UTF-8 is one more unreadable
        // line, not a relay that cannot start.
        match std::fs::read(&path).map(|b| String::from_utf8_lossy(&b).into_owned()) {
            Ok(text) => {
                let mut bad = 0;
                for line in text.lines() {
                    let mut f = line.split('\t');
                    let parsed = (|| {
                        let node = tsv::unfield(f.next()?);
                        if line.split('\t').nth(1) == Some(NEWEST) {
                            let run = f.nth(1)?.parse().ok()?;
                            let number = f.next()?.parse().ok()?;
                            return f
                                .next()
                                .is_none()
                                .then_some(Line::Newest(node, (run, number)));
                        }
                        if line.split('\t').nth(1) == Some(PROBE_LOST) {
                            let time = f.nth(1)?.parse().ok()?;
                            return f.next().is_none().then_some(Line::ProbeLost(node, time));
                        }
                        let nums: Vec<i64> = f.map(|n| n.parse().ok()).collect::<Option<_>>()?;
                        match nums[..] {
                            [sec, n] if n >= 0 => Some(Line::Lost(node, sec, sec, n as u64)),
                            [first, last, n] if n >= 0 && first < last => {
                                Some(Line::Lost(node, first, last, n as u64))
                            }
                            _ => None,
                        }
                    })();
                    match parsed {
                        Some(Line::Newest(node, newest)) => {
                            inner.newest.insert(node, newest);
                        }
                        Some(Line::ProbeLost(node, time)) => {
                            inner.probe_lost.insert(node, time);
                        }
                        Some(Line::Lost(node, first, last, n)) => {
                            let at = inner.by_node.entry(node).or_default();
                            if first == last {
                                *at.secs.entry(first).or_default() += n;
                            } else {
                                *at.spans.entry((first, last)).or_default() += n;
                            }
                        }
                        None => bad += 1,
                    }
                }
                if bad > 0 {
                    log::warn!(
                        "history: skipped {bad} unreadable line(s) of {}",
                        path.display()
                    );
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
        // Without a `newest` line (a file from before it was kept) nothing
        // is given back: better too many missing than too few.
        let mut carried_left = 0;
        for (node, &newest) in &inner.newest {
            let Some(losses) = inner.by_node.get(node) else {
                continue;
            };
            carried_left += losses.secs.values().sum::<u64>();
            inner.carried.insert(
                node.clone(),
                Carried {
                    secs: losses.secs.clone(),
                    newest,
                },
            );
        }
        Ok(Losses {
            path,
            inner: Mutex::new(inner),
            carried_left: AtomicU64::new(carried_left),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `n` flows of `node` at `time` (ns since the epoch) were not kept.
    /// Called for every flow a full queue drops, while the merge waits:
    /// a node seen before costs no allocation.
    pub fn record(&self, node: &str, time: i64, n: u64) {
        self.record_flow(node, time, n, "");
    }

    /// [`Self::record`] for flows of which `uuid` is the newest: a
    /// flow-probe's UUID says how far its run was taken.
    pub fn record_flow(&self, node: &str, time: i64, n: u64, uuid: &str) {
        let mut inner = self.lock();
        *entry(&mut inner.by_node, node)
            .secs
            .entry(second(time))
            .or_default() += n;
        *entry(&mut inner.since_start, node) += n;
        if let Some((run, number)) = run_and_number(uuid) {
            match inner.newest.get_mut(node) {
                // A new run (the probe restarted) starts again.
                Some(newest) if newest.0 == run => newest.1 = newest.1.max(number),
                Some(newest) => *newest = (run, number),
                None => {
                    inner.newest.insert(node.to_string(), (run, number));
                }
            }
        }
        inner.dirty = true;
    }

    /// A flow of `node` at `time` (ns since the epoch) with `uuid`, which
    /// history did not hold, was taken again after a restart: when it is a
    /// flow the last run took (see the module's overview) and that run
    /// recorded a flow of its second lost, it is that flow, now kept; one
    /// loss fewer. Returns whether it was; `None` once nothing more of
    /// `node` can come back (it was never lost, or this flow is one the last
    /// run never took, and so is every later one): the caller stops asking.
    /// The flows a probe's buffer dropped (spans) cannot come again.
    pub fn retaken(&self, node: &str, time: i64, uuid: &str) -> Option<bool> {
        if self.carried_left.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut inner = self.lock();
        let carried = inner.carried.get_mut(node)?;
        let (run, newest) = carried.newest;
        if !run_and_number(uuid).is_some_and(|(r, number)| r == run && number <= newest) {
            let left: u64 = carried.secs.values().sum();
            inner.carried.remove(node);
            self.carried_left.fetch_sub(left, Ordering::Relaxed);
            return None;
        }
        let sec = second(time);
        if !take_one(&mut carried.secs, sec) {
            return Some(false);
        }
        self.carried_left.fetch_sub(1, Ordering::Relaxed);
        if let Some(losses) = inner.by_node.get_mut(node) {
            take_one(&mut losses.secs, sec);
            if losses.is_empty() {
                inner.by_node.remove(node);
            }
        }
        inner.dirty = true;
        Some(true)
    }

    /// `n` flows of `node` from somewhere between `from` and `to` (ns since
    /// the epoch) were not kept: a gap in a probe's buffer.
    pub fn record_span(&self, node: &str, from: i64, to: i64, n: u64) {
        let (first, last) = (second(from), second(to.max(from)));
        if first == last {
            return self.record(node, from, n);
        }
        let mut inner = self.lock();
        *entry(&mut inner.by_node, node)
            .spans
            .entry((first, last))
            .or_default() += n;
        *entry(&mut inner.since_start, node) += n;
        inner.dirty = true;
    }

    /// `n` events of `node` its probe's kernel ring dropped, as the probe's
    /// record stamped at `time` (ns since the epoch) says: recorded at that
    /// second unless a record of that node at or after `time` was (the same
    /// record, sent again to a restarted relay). Returns whether it was
    /// recorded.
    pub fn record_probe_loss(&self, node: &str, time: i64, n: u64) -> bool {
        {
            let mut inner = self.lock();
            let newest = entry(&mut inner.probe_lost, node);
            if *newest >= time {
                return false;
            }
            *newest = time;
        }
        self.record(node, time, n);
        true
    }

    /// Flows lost per node since this start.
    pub fn since_start(&self) -> Vec<(String, u64)> {
        self.lock()
            .since_start
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Flows lost since this start, all nodes.
    pub fn total_since_start(&self) -> u64 {
        self.lock().since_start.values().sum()
    }

    /// Per node, the flows lost with a time in `from..=to` (ns since the
    /// epoch, `None` unbounded). Counted by whole seconds: a bound inside a
    /// second takes that second's losses whole, and a span that meets the
    /// range counts whole, so the count never falls short. An empty range (`from` after `to`, as a query's contradictory
    /// bounds make) has none.
    pub fn between(&self, from: Option<i64>, to: Option<i64>) -> Vec<Missing> {
        if from.zip(to).is_some_and(|(from, to)| from > to) {
            return Vec::new();
        }
        let lo = from.map_or(i64::MIN, second);
        let hi = to.map_or(i64::MAX, second);
        let inner = self.lock();
        inner
            .by_node
            .iter()
            .filter_map(|(node, losses)| {
                let (flows, first_sec, last_sec) = losses.between(lo, hi)?;
                Some(Missing {
                    node: node.clone(),
                    flows,
                    first_sec,
                    last_sec,
                })
            })
            .collect()
    }

    /// Forgets seconds before `nanos` (their files are gone).
    pub fn forget_before(&self, nanos: i64) {
        let cut = second(nanos);
        let mut inner = self.lock();
        let mut changed = false;
        inner.by_node.retain(|_, losses| {
            let before = (losses.secs.len(), losses.spans.len());
            losses.secs = losses.secs.split_off(&cut);
            losses.spans.retain(|(_, last), _| *last >= cut);
            changed |= (losses.secs.len(), losses.spans.len()) != before;
            !losses.is_empty()
        });
        inner.dirty |= changed;
    }

    /// Writes the file if anything changed since the last save.
    pub fn save(&self) -> io::Result<()> {
        let text = {
            let mut inner = self.lock();
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            let mut text = String::new();
            for (node, time) in &inner.probe_lost {
                text.push_str(&format!("{}\t{PROBE_LOST}\t{time}\n", tsv::field(node)));
            }
            for (node, losses) in &inner.by_node {
                if let Some((run, number)) = inner.newest.get(node) {
                    text.push_str(&format!(
                        "{}\t{NEWEST}\t{run}\t{number}\n",
                        tsv::field(node)
                    ));
                }
                for (sec, n) in &losses.secs {
                    text.push_str(&format!("{}\t{sec}\t{n}\n", tsv::field(node)));
                }
                for ((first, last), n) in &losses.spans {
                    text.push_str(&format!("{}\t{first}\t{last}\t{n}\n", tsv::field(node)));
                }
            }
            text
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let written = files::write_atomically(dir, FILE, text.as_bytes());
        if written.is_err() {
            self.lock().dirty = true;
        }
        written
            .map_err(|e| io::Error::new(e.kind(), format!("saving {}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const S: i64 = 1_000_000_000;

    /// A probe's gap: flows lost somewhere between two flows read, told to
    /// every range that meets it, within that range.
    #[test]
    fn a_span_counts_whole_in_every_range_that_meets_it() {
        let dir = test_support::scratch::ScratchDir::new("history-loss-spans");
        let l = Losses::open(dir.path()).unwrap();
        l.record_span("n1", 20 * S + 1, 39 * S + 7, 353);
        l.record("n1", 41 * S, 2);
        l.record_span("n2", 50 * S + 1, 50 * S + 9, 4);
        let got = |l: &Losses, from: i64, to: i64| -> Vec<(String, u64, i64, i64)> {
            l.between(Some(from), Some(to))
                .into_iter()
                .map(|m| (m.node, m.flows, m.first_sec, m.last_sec))
                .collect()
        };
        let n1 = |flows, first, last| ("n1".to_string(), flows, first, last);
        assert_eq!(got(&l, 25 * S, 30 * S), [n1(353, 25, 30)], "inside");
        assert_eq!(
            got(&l, 10 * S, 20 * S),
            [n1(353, 20, 20)],
            "its first second"
        );
        assert_eq!(got(&l, 39 * S, 45 * S), [n1(355, 39, 41)], "with a second");
        assert!(got(&l, 40 * S, 40 * S).is_empty(), "between them");
        assert_eq!(
            got(&l, 50 * S, 50 * S),
            [("n2".to_string(), 4, 50, 50)],
            "a span within one second is that second"
        );
        assert_eq!(l.total_since_start(), 359);
        l.save().unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text, "n1\t41\t2\nn1\t20\t39\t353\nn2\t50\t4\n");

        let again = Losses::open(dir.path()).unwrap();
        assert_eq!(got(&again, 25 * S, 30 * S), [n1(353, 25, 30)]);
        again.forget_before(39 * S);
        assert_eq!(
            got(&again, 0, 45 * S)[0],
            n1(355, 20, 41),
            "ends at 39: kept"
        );
        again.forget_before(40 * S);
        assert_eq!(got(&again, 0, 45 * S)[0], n1(2, 41, 41));
    }

    /// A peer names itself: a tab or line break in its name must not break
    /// the file's lines (before, such lines were skipped at the next start).
    #[test]
    fn a_node_name_with_a_tab_or_line_break_survives_a_restart() {
        let dir = test_support::scratch::ScratchDir::new("history-loss-names");
        let l = Losses::open(dir.path()).unwrap();
        let names = ["a\tb", "c\nd\r", "e\\tf", "plain"];
        for (i, name) in names.iter().enumerate() {
            l.record(name, 10 * S, i as u64 + 1);
            l.record_span(name, 20 * S, 30 * S, 10);
        }
        l.save().unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 8, "{text:?}");
        assert!(
            text.starts_with("a\\tb\t10\t1\na\\tb\t20\t30\t10\n"),
            "{text:?}"
        );

        let again = Losses::open(dir.path()).unwrap();
        let mut got: Vec<(String, u64)> = again
            .between(Some(10 * S), Some(25 * S))
            .into_iter()
            .map(|m| (m.node, m.flows))
            .collect();
        got.sort();
        let mut want: Vec<(String, u64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i as u64 + 11))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    /// A probe's record of events its kernel ring dropped is counted once:
    /// a restarted relay is sent the probe's buffer again, that record in it.
    #[test]
    fn a_probe_record_of_dropped_events_counts_once_across_a_restart() {
        let dir = test_support::scratch::ScratchDir::new("history-loss-probe");
        let l = Losses::open(dir.path()).unwrap();
        assert!(l.record_probe_loss("n1", 10 * S + 5, 9));
        assert!(!l.record_probe_loss("n1", 10 * S + 5, 9), "the same record");
        assert!(l.record_probe_loss("n2", 10 * S + 5, 1), "another node's");
        assert!(l.record_probe_loss("n1", 12 * S, 4));
        assert_eq!(l.total_since_start(), 14);
        l.save().unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(
            text,
            "n1\tprobe_lost\t12000000000\nn2\tprobe_lost\t10000000005\n\
             n1\t10\t9\nn1\t12\t4\nn2\t10\t1\n"
        );

        let again = Losses::open(dir.path()).unwrap();
        assert!(!again.record_probe_loss("n1", 10 * S + 5, 9));
        assert!(!again.record_probe_loss("n1", 12 * S, 4));
        assert!(again.record_probe_loss("n1", 13 * S, 2));
        let got: Vec<(String, u64)> = again
            .between(Some(0), Some(20 * S))
            .into_iter()
            .map(|m| (m.node, m.flows))
            .collect();
        assert_eq!(got, [("n1".to_string(), 15), ("n2".to_string(), 1)]);
        assert_eq!(again.since_start(), [("n1".to_string(), 2)]);
    }

    /// From the history review: a file with bytes that are not UTF-8 (a
    /// damaged disk) stopped the relay at start, in a message that did not
    /// name it. Now such a line is one more skipped.
    #[test]
    fn a_line_that_is_not_text_is_skipped_not_fatal() {
        let dir = test_support::scratch::ScratchDir::new("history-loss-bytes");
        let mut bytes = b"node1\t10\t3\n".to_vec();
        bytes.extend(b"node\xff\xfe\t\x80\n");
        bytes.extend(b"node2\t20\t30\t5\n");
        std::fs::write(dir.path().join(FILE), bytes).unwrap();
        let l = Losses::open(dir.path()).unwrap();
        let mut got: Vec<(String, u64)> = l
            .between(Some(0), Some(40 * S))
            .into_iter()
            .map(|m| (m.node, m.flows))
            .collect();
        got.sort();
        assert_eq!(got, [("node1".to_string(), 3), ("node2".to_string(), 5)]);
    }

    /// flow-probe's UUID of flow `number` of run `run` (see `flow_numbers`).
    fn probe_uuid(run: u64, number: u64) -> String {
        let lo = number | (0b10 << 62);
        format!(
            "{:08x}-{:04x}-8{:03x}-{:04x}-{:012x}",
            run >> 32,
            (run >> 16) & 0xffff,
            run & 0xfff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }

    /// A restarted relay takes again, from the probes' buffers, flows the
    /// run before took and could not write: each gives back one loss of
    /// its second, only for that run's losses by the second, only for the
    /// flows that run took (of the probe run and up to the number of the
    /// newest it lost), never more than it lost.
    #[test]
    fn flows_taken_again_after_a_restart_are_no_longer_missing() {
        let dir = test_support::scratch::ScratchDir::new("history-loss-retaken");
        let l = Losses::open(dir.path()).unwrap();
        let (run, other_run) = (0x8abc, 0x8def);
        // Flows 5, 6 and 7 of the run lost in second 10; 7 the newest.
        for (number, at) in [(5, 100), (7, 300), (6, 200)] {
            l.record_flow("n1", 10 * S + at, 1, &probe_uuid(run, number));
        }
        l.record("n2", 11 * S, 1);
        l.record_span("n1", 20 * S, 30 * S, 5);
        assert_eq!(
            l.retaken("n1", 10 * S + 100, &probe_uuid(run, 5)),
            None,
            "this run's own losses: it took those flows already"
        );
        l.save().unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(
            text,
            format!("n1\tnewest\t{run}\t7\nn1\t10\t3\nn1\t20\t30\t5\nn2\t11\t1\n")
        );

        let again = Losses::open(dir.path()).unwrap();
        assert_eq!(
            again.retaken("n2", 11 * S, &probe_uuid(run, 1)),
            None,
            "n2's loss has no number"
        );
        assert_eq!(
            again.retaken("n3", 10 * S, &probe_uuid(run, 1)),
            None,
            "another node"
        );
        assert_eq!(
            again.retaken("n1", 9 * S, &probe_uuid(run, 4)),
            Some(false),
            "a flow the last run took, of a second without a loss"
        );
        assert_eq!(
            again.retaken("n1", 10 * S + 150, &probe_uuid(run, 5)),
            Some(true)
        );
        assert_eq!(
            again.retaken("n1", 10 * S + 250, &probe_uuid(run, 6)),
            Some(true)
        );
        assert_eq!(
            again.retaken("n1", 10 * S + 300, &probe_uuid(run, 7)),
            Some(true),
            "the newest lost"
        );
        assert_eq!(
            again.retaken("n1", 10 * S + 50, &probe_uuid(run, 8)),
            None,
            "past the newest lost: seen after that run, though stamped earlier"
        );
        assert_eq!(
            again.retaken("n1", 10 * S + 150, &probe_uuid(run, 5)),
            None,
            "asked no more"
        );
        let left: Vec<(String, u64, i64, i64)> = again
            .between(None, None)
            .into_iter()
            .map(|m| (m.node, m.flows, m.first_sec, m.last_sec))
            .collect();
        assert_eq!(
            left,
            [("n1".to_string(), 5, 20, 30), ("n2".to_string(), 1, 11, 11)],
            "a probe's gap (a span) never comes again"
        );
        assert_eq!(again.total_since_start(), 0);
        again.save().unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(
            text,
            format!("n1\tnewest\t{run}\t7\nn1\t20\t30\t5\nn2\t11\t1\n")
        );

        // Another probe run's flow (the probe restarted): nothing back.
        std::fs::write(
            dir.path().join(FILE),
            format!("n1\tnewest\t{run}\t7\nn1\t10\t3\n"),
        )
        .unwrap();
        let restarted = Losses::open(dir.path()).unwrap();
        assert_eq!(
            restarted.retaken("n1", 10 * S, &probe_uuid(other_run, 1)),
            None
        );
        assert_eq!(
            restarted.retaken("n1", 10 * S, &probe_uuid(run, 5)),
            None,
            "asked no more"
        );
        assert_eq!(restarted.between(None, None)[0].flows, 3);
        // A file from before the newest flow was kept: nothing is given back.
        std::fs::write(dir.path().join(FILE), "n1\t10\t3\n").unwrap();
        let old = Losses::open(dir.path()).unwrap();
        assert_eq!(old.retaken("n1", 10 * S, &probe_uuid(run, 5)), None);
        assert_eq!(old.between(None, None)[0].flows, 3);
    }

    #[test]
    fn losses_add_up_per_node_and_range_and_survive_a_restart() {
        let dir = test_support::scratch::ScratchDir::new("history-losses");
        let l = Losses::open(dir.path()).unwrap();
        l.record("n1", 10 * S + 5, 2);
        l.record("n1", 10 * S + 900, 1);
        l.record("n1", 12 * S, 4);
        l.record("n2", 11 * S, 7);
        let all = l.between(None, None);
        assert_eq!(
            all,
            [
                Missing {
                    node: "n1".into(),
                    flows: 7,
                    first_sec: 10,
                    last_sec: 12
                },
                Missing {
                    node: "n2".into(),
                    flows: 7,
                    first_sec: 11,
                    last_sec: 11
                },
            ]
        );
        // A bound inside second 10 takes it whole; second 12 is out.
        let some: Vec<(String, u64)> = l
            .between(Some(10 * S + 500), Some(11 * S + 999_999_999))
            .into_iter()
            .map(|m| (m.node, m.flows))
            .collect();
        assert_eq!(some, [("n1".to_string(), 3), ("n2".to_string(), 7)]);
        assert!(l.between(Some(13 * S), None).is_empty());
        assert!(
            l.between(Some(12 * S), Some(10 * S)).is_empty(),
            "an empty range"
        );
        assert!(
            l.between(Some(10 * S + 700), Some(10 * S + 200)).is_empty(),
            "an empty range within one second"
        );
        assert_eq!(l.total_since_start(), 14);
        l.save().unwrap();
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let again = Losses::open(dir.path()).unwrap();
        assert_eq!(again.between(None, None), all);
        assert_eq!(again.total_since_start(), 0, "the metric counts this start");
        again.forget_before(11 * S);
        let left: Vec<(String, u64)> = again
            .between(None, None)
            .into_iter()
            .map(|m| (m.node, m.flows))
            .collect();
        assert_eq!(left, [("n1".to_string(), 4), ("n2".to_string(), 7)]);
    }
}
