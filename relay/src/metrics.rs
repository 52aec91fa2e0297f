//! Prometheus metrics of the relay, read from [`RelayState`] at every scrape:
//! peers by state, flows taken from each node, and what the reorder window did.
//! [`serve`] answers `GET /metrics` (text format) on its own listener.

use std::future::Future;
use std::sync::{Arc, Mutex};

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::state::RelayState;

/// Default `/metrics` listen address.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9966";

/// The relay's metrics over its state.
pub struct RelayMetrics {
    state: Arc<RelayState>,
    registry: Registry,
    names: Vec<&'static str>,
    peers: IntGaugeVec,
    ingested: IntCounterVec,
    released: IntCounter,
    late: IntCounter,
    forced: IntCounter,
    /// Counts already added: per peer (flows seen), and released, late, forced.
    last: Mutex<(Vec<u64>, [u64; 3])>,
}

impl RelayMetrics {
    pub fn new(state: Arc<RelayState>) -> Self {
        Self::build(state).expect("metric names and labels are valid and unique")
    }

    fn build(state: Arc<RelayState>) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let peers = IntGaugeVec::new(
            Opts::new("observe_relay_peers", "Peers (flow-probes) by state"),
            &["state"],
        )?;
        let ingested = IntCounterVec::new(
            Opts::new(
                "observe_relay_flows_ingested_total",
                "Flows and other records taken from each node",
            ),
            &["node"],
        )?;
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let released = counter(
            "observe_relay_reorder_released_total",
            "Flows released by the reorder window",
        )?;
        let late = counter(
            "observe_relay_reorder_late_total",
            "Flows older than one already released: passed on at once, out of order",
        )?;
        let forced = counter(
            "observe_relay_reorder_forced_total",
            "Flows released before their hold was over because the window was full",
        )?;
        let mut names = Vec::new();
        for (name, c) in [
            (
                "observe_relay_peers",
                Box::new(peers.clone()) as Box<dyn prometheus::core::Collector>,
            ),
            (
                "observe_relay_flows_ingested_total",
                Box::new(ingested.clone()),
            ),
            (
                "observe_relay_reorder_released_total",
                Box::new(released.clone()),
            ),
            ("observe_relay_reorder_late_total", Box::new(late.clone())),
            (
                "observe_relay_reorder_forced_total",
                Box::new(forced.clone()),
            ),
        ] {
            registry.register(c)?;
            names.push(name);
        }
        Ok(RelayMetrics {
            last: Mutex::new((vec![0; state.peers().len()], [0; 3])),
            state,
            registry,
            names,
            peers,
            ingested,
            released,
            late,
            forced,
        })
    }

    /// Names of every metric family the relay exports.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Brings the metrics up to date with the state and encodes them.
    pub fn render(&self) -> String {
        let views = self.state.peers().views();
        let connected = views.iter().filter(|v| v.is_connected()).count();
        self.peers
            .with_label_values(&["connected"])
            .set(connected as i64);
        self.peers
            .with_label_values(&["unavailable"])
            .set((views.len() - connected) as i64);
        let stats = self.state.reorder_stats();
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            for (seen, v) in last.0.iter_mut().zip(&views) {
                let node = self.ingested.with_label_values(&[v.name.as_str()]);
                node.inc_by(v.flows_seen.saturating_sub(*seen));
                *seen = v.flows_seen.max(*seen);
            }
            let now = [stats.released, stats.late, stats.forced];
            for ((c, then), now) in [&self.released, &self.late, &self.forced]
                .into_iter()
                .zip(&mut last.1)
                .zip(now)
            {
                c.inc_by(now.saturating_sub(*then));
                *then = now.max(*then);
            }
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::warn!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Names of every metric the relay exports (for checking dashboards).
pub fn metric_names() -> Vec<&'static str> {
    let state = Arc::new(RelayState::new(
        crate::store::FlowStore::new(1),
        crate::peer::Peers::new(&[]),
    ));
    RelayMetrics::new(state).names().to_vec()
}

/// Parses a `--metrics-listen` value: an address, or "off".
pub fn parse_listen(s: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| format!("--metrics-listen {s:?}: {e} (an address, or off)"))
}

/// Answers `GET /metrics` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<RelayMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let m = metrics.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &m).await {
                            log::debug!("metrics request: {e}");
                        }
                    });
                }
                Err(e) => log::warn!("metrics listener: {e}"),
            },
            () = &mut shutdown => return,
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: &RelayMetrics) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let ok = parts.next() == Some("GET")
        && parts
            .next()
            .is_some_and(|p| p.split('?').next() == Some("/metrics"));
    let (status, body) = if ok {
        ("200 OK", metrics.render())
    } else {
        ("404 Not Found", "not found\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Peers;
    use crate::reorder::ReorderStats;
    use crate::store::FlowStore;

    #[test]
    fn peers_ingest_and_reorder_counts() {
        let state = Arc::new(RelayState::new(
            FlowStore::new(10),
            Peers::new(&["a:1".into(), "b:2".into()]),
        ));
        let m = RelayMetrics::new(state.clone());
        for _ in 0..3 {
            state.peers().count_flow(0);
        }
        state.set_reorder_stats(ReorderStats {
            released: 5,
            late: 2,
            forced: 1,
        });
        let text = m.render();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                r#"observe_relay_flows_ingested_total{node="a:1"} 3"#,
                r#"observe_relay_flows_ingested_total{node="b:2"} 0"#,
                r#"observe_relay_peers{state="connected"} 0"#,
                r#"observe_relay_peers{state="unavailable"} 2"#,
                "observe_relay_reorder_forced_total 1",
                "observe_relay_reorder_late_total 2",
                "observe_relay_reorder_released_total 5",
            ]
        );
        // A second scrape adds only what is new.
        state.peers().count_flow(0);
        let text = m.render();
        assert!(
            text.contains(r#"observe_relay_flows_ingested_total{node="a:1"} 4"#),
            "{text}"
        );
        assert!(text.contains("observe_relay_reorder_released_total 5"));
        assert_eq!(metric_names().len(), 5);
    }

    #[test]
    fn listen_flag() {
        assert_eq!(parse_listen("off"), Ok(None));
        assert!(parse_listen("127.0.0.1:9966").unwrap().is_some());
        assert!(parse_listen("x").is_err());
    }
}
