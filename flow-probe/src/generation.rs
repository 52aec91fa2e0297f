//! "The change is in force", observable: each watcher (policy, services)
//! counts the distinct states it has put in force. The count is a tokio watch
//! for whoever waits in-process and a gauge on `/metrics`
//! (`observe_probe_policy_generation`, `observe_probe_services_generation`)
//! for whoever waits from outside, so tests wait for a change instead of
//! sleeping.

use prometheus::IntGauge;
use tokio::sync::watch;

/// How many distinct states have been put in force (0: none yet).
pub struct Generation {
    tx: watch::Sender<u64>,
    gauge: Option<IntGauge>,
}

impl Generation {
    pub fn new() -> Self {
        Generation {
            tx: watch::Sender::new(0),
            gauge: None,
        }
    }

    /// Mirrors the count to `gauge`.
    pub fn with_gauge(mut self, gauge: IntGauge) -> Self {
        gauge.set(self.get() as i64);
        self.gauge = Some(gauge);
        self
    }

    pub fn get(&self) -> u64 {
        *self.tx.borrow()
    }

    /// Notified of every advance.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    fn advance(&self) -> u64 {
        self.tx.send_modify(|n| *n += 1);
        let n = self.get();
        if let Some(g) = &self.gauge {
            g.set(n as i64);
        }
        n
    }
}

impl Default for Generation {
    fn default() -> Self {
        Self::new()
    }
}

/// The state in force, and its generation.
pub struct InForce<T> {
    state: Option<T>,
    generation: Generation,
}

impl<T: PartialEq> InForce<T> {
    pub fn new(generation: Generation) -> Self {
        InForce {
            state: None,
            generation,
        }
    }

    /// `state` is now in force: the generation advances if it differs from
    /// the last one (the first always does). Returns the generation.
    pub fn put(&mut self, state: T) -> u64 {
        if self.state.as_ref() != Some(&state) {
            self.state = Some(state);
            self.generation.advance();
        }
        self.generation.get()
    }

    pub fn state(&self) -> Option<&T> {
        self.state.as_ref()
    }

    pub fn generation(&self) -> &Generation {
        &self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_different_state_advances_the_generation_and_its_gauge() {
        let gauge = IntGauge::new("g", "test").unwrap();
        let mut in_force = InForce::new(Generation::new().with_gauge(gauge.clone()));
        let mut seen = in_force.generation().subscribe();
        assert_eq!((in_force.generation().get(), gauge.get()), (0, 0));
        assert_eq!(in_force.put("a"), 1, "the first state");
        assert!(seen.has_changed().unwrap());
        seen.mark_unchanged();
        assert_eq!(in_force.put("a"), 1, "the same state again");
        assert!(!seen.has_changed().unwrap());
        assert_eq!(in_force.put("b"), 2);
        assert_eq!((*seen.borrow_and_update(), gauge.get()), (2, 2));
        assert_eq!(in_force.state(), Some(&"b"));
    }
}
