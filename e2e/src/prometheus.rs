//! A real Prometheus (the Debian `prometheus` package that scripts/setup.sh
//! installs) for tests: started with a scrape configuration, asked over its
//! HTTP API.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A child process killed (and reaped) on drop, and a folder removed on drop.
pub struct Guard {
    pub child: Option<Child>,
    pub dir: Option<PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d).or_else(|_| std::fs::remove_file(d));
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over HTTP/1.0 (no chunking); the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("{path}: {head}\n{body}")));
    }
    Ok(body.to_string())
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The result vector of an instant query (empty on any error).
pub fn query(prom: SocketAddr, q: &str) -> Vec<Value> {
    http_get(prom, &format!("/api/v1/query?query={}", encode(q)))
        .ok()
        .and_then(|b| serde_json::from_str::<Value>(&b).ok())
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// The single value of a scalar-like query.
pub fn value(prom: SocketAddr, q: &str) -> Option<f64> {
    let r = query(prom, q);
    r.first()?["value"][1].as_str()?.parse().ok()
}

/// `scrape_configs` entries scraping each (job, address) of `targets`.
pub fn static_targets(targets: &[(&str, SocketAddr)]) -> String {
    targets
        .iter()
        .map(|(job, addr)| {
            format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n")
        })
        .collect()
}

/// Debian's `prometheus` scraping every second with `scrape_configs` (the
/// entries, indented under that key), on a free port; stopped and its
/// folder removed when the guard drops.
pub fn start_prometheus(scrape_configs: &str) -> (Guard, SocketAddr) {
    let dir = std::env::temp_dir().join(format!(
        "observe-prom-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs}"
    );
    std::fs::write(dir.join("prometheus.yml"), cfg).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus runs (scripts/setup.sh installs the Debian package)");
    (
        Guard {
            child: Some(child),
            dir: Some(dir),
        },
        addr,
    )
}
