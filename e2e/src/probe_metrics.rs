//! The probe's `/metrics`, read as Prometheus reads it, so a test can wait
//! until the probe says a change is in force (its policy and services
//! generations) instead of sleeping.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::{Env, WAIT};

/// Advances once a changed policy directory is enforced.
pub const POLICY_GENERATION: &str = "observe_probe_policy_generation";
/// Advances once a changed services or endpoints file is balanced.
pub const SERVICES_GENERATION: &str = "observe_probe_services_generation";

/// `GET /metrics` over HTTP/1.0; the body.
fn get_metrics(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!("/metrics answered {text:?}"))),
    }
}

/// The value of the unlabelled series `name` in a text exposition.
fn value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

impl Env {
    /// Where the probe serves `/metrics` (its metrics ready file, written
    /// before the probe reports ready).
    pub fn metrics_addr(&self) -> SocketAddr {
        let file = self
            .lab
            .state_dir()
            .join(format!("probe-{}.metrics", self.probe.node));
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("metrics ready file {}: {e}", file.display()));
        text.trim()
            .parse()
            .expect("an address in the metrics ready file")
    }

    /// The probe's `/metrics` now, as text.
    pub fn metrics_text(&self) -> String {
        get_metrics(self.metrics_addr()).expect("the probe's /metrics")
    }

    /// The probe's gauge or counter `name` now.
    pub fn metric(&self, name: &str) -> u64 {
        let text = get_metrics(self.metrics_addr()).expect("the probe's /metrics");
        value(&text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }

    /// Blocks until the probe's `name` reaches `at_least` (a generation: the
    /// change is in force), scraping as Prometheus would; returns the value.
    /// Panics after [`WAIT`] with the value it saw.
    pub fn wait_for_metric(&self, name: &str, at_least: u64) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = self.metric(name);
            if now >= at_least {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{name} stayed at {now}, below {at_least}; the probe's log: {}",
                self.probe.log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::value;

    #[test]
    fn reads_the_unlabelled_series_of_a_name() {
        let text = "# HELP a_b x\n# TYPE a_b gauge\na_b 3\na_bc 7\nc{l=\"1\"} 9\n";
        assert_eq!(value(text, "a_b"), Some(3));
        assert_eq!(value(text, "a_bc"), Some(7));
        assert_eq!(value(text, "c"), None);
    }
}
