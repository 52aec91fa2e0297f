//! The `/metrics` endpoint of flow-probe and the relay: hyper's HTTP/1.1
//! server answering `GET` and `HEAD /metrics` with Prometheus' text format
//! (0.0.4), 404 for other paths and 405 for other methods.
//!
//! What keeps a client from holding the server ([`Limits`]): a deadline for
//! each request head (it also ends keep-alive connections that stay quiet), an
//! idle deadline for a connection on which no byte moves ([`idle`]), and a cap
//! on open connections. At the cap a new connection takes the place of the
//! one on which nothing moved for the longest ([`room`]), so idle connections
//! never keep a scrape out. Accept errors (EMFILE and the like) are logged
//! once per burst, with a short pause before each retry ([`crate::accept`]).

mod idle;
mod room;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::accept::Acceptor;
use idle::IdleTimeout;
use room::{Activity, Room};

/// Prometheus' text exposition format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the text is asked for: a `GET` scrapes (flow-probe's new series show
/// their 0 to the first scrape only), a `HEAD` only looks, so a health check
/// takes no scraper's 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    Scrape,
    Look,
}

/// What a connection may take of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time for a request head to arrive, counted from when the server starts
    /// waiting for it (so it also closes quiet keep-alive connections).
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed
    /// (a client that stopped reading its response).
    pub idle_timeout: Duration,
    /// Connections served at once; at the cap a new one takes the place of
    /// the stalest.
    pub max_connections: usize,
    /// Pause after a failed accept before trying again.
    pub accept_backoff: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 64,
            accept_backoff: crate::accept::DEFAULT_BACKOFF,
        }
    }
}

/// Serves `render(ask)` on `/metrics` with the default [`Limits`] until
/// `shutdown` resolves.
pub async fn serve<F>(listener: TcpListener, render: Arc<F>, shutdown: impl Future<Output = ()>)
where
    F: Fn(Ask) -> String + Send + Sync + 'static,
{
    serve_with(listener, render, Limits::default(), shutdown).await;
}

/// Serves `render(ask)` on `/metrics` within `limits` until `shutdown`
/// resolves; open connections are closed then.
pub async fn serve_with<F>(
    listener: TcpListener,
    render: Arc<F>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(Ask) -> String + Send + Sync + 'static,
{
    let room = Room::new(limits.max_connections);
    let mut acceptor = Acceptor::new(listener, "metrics listener", limits.accept_backoff);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            stream = acceptor.accept() => stream,
        };
        while connections.try_join_next().is_some() {}
        let place = tokio::select! {
            () = &mut shutdown => break,
            place = room.enter() => place,
        };
        let Some(place) = place else {
            break;
        };
        let render = render.clone();
        connections.spawn(async move {
            tokio::select! {
                served = connection(stream, render, limits, place.activity.clone()) => {
                    if let Err(e) = served {
                        log::debug!("metrics connection: {e}");
                    }
                }
                () = place.close.notified() => {
                    log::debug!("metrics connection closed to make room for a new one");
                }
            }
            drop(place);
        });
    }
    connections.shutdown().await;
}

/// Serves one connection's requests (keep-alive) within `limits`.
async fn connection<F>(
    stream: TcpStream,
    render: Arc<F>,
    limits: Limits,
    activity: Activity,
) -> hyper::Result<()>
where
    F: Fn(Ask) -> String + Send + Sync + 'static,
{
    let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout, activity));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let response = respond(req.method(), req.uri().path(), &*render);
        async move { Ok::<_, Infallible>(response) }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(io, service)
        .await
}

/// The answer to `method path` (hyper leaves out the body of a HEAD answer).
fn respond(
    method: &Method,
    path: &str,
    render: &(dyn Fn(Ask) -> String + Send + Sync),
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if path != "/metrics" {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let ask = if method == Method::GET {
        Ask::Scrape
    } else {
        Ask::Look
    };
    let mut r = Response::new(Full::new(Bytes::from(render(ask))));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
    r
}

/// Parses a `--metrics-listen` value: an address, or "off".
pub fn parse_listen(s: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| {
        format!("--metrics-listen {s:?}: {e} (an address like 127.0.0.1:9965, or off)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_flag() {
        assert_eq!(parse_listen("off"), Ok(None));
        assert_eq!(
            parse_listen("127.0.0.1:0"),
            Ok(Some("127.0.0.1:0".parse().unwrap()))
        );
        let err = parse_listen("nope").unwrap_err();
        assert!(err.starts_with("--metrics-listen \"nope\""), "{err}");
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One answer read off a keep-alive connection: status line, headers
    /// (lower-case names), body.
    #[derive(Debug)]
    struct Answer {
        status: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Sends `method path` and reads the answer's head and, unless `method`
    /// is HEAD, its Content-Length bytes of body.
    async fn ask(s: &mut TcpStream, method: &str, path: &str) -> Answer {
        s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0, "connection closed before an answer");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().to_string();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        let mut body = buf[head_end + 4..].to_vec();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let want = if method == "HEAD" { 0 } else { len };
        while body.len() < want {
            let mut chunk = vec![0u8; want - body.len()];
            let n = s.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0, "connection closed inside a body");
            body.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(body.len(), want, "nothing after the body");
        Answer {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    }

    /// A server of "up 1\n" within `limits`, and what stops it.
    async fn start(
        limits: Limits,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let render = Arc::new(|_| "up 1\n".to_string());
        let server = tokio::spawn(serve_with(listener, render, limits, async {
            let _ = stopped.await;
        }));
        (addr, stop, server)
    }

    /// A HEAD (a health check) must not take the 0 a new series shows to
    /// the first scrape only.
    #[tokio::test]
    async fn a_head_looks_and_a_get_scrapes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = asked.clone();
        let render = Arc::new(move |ask| {
            seen.lock().unwrap().push(ask);
            "up 1\n".to_string()
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, render, async {
            let _ = stopped.await;
        }));
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut s, "HEAD", "/metrics").await.body, "");
        assert_eq!(ask(&mut s, "GET", "/metrics").await.body, "up 1\n");
        stop.send(()).unwrap();
        server.await.unwrap();
        assert_eq!(*asked.lock().unwrap(), [Ask::Look, Ask::Scrape]);
    }

    #[tokio::test]
    async fn answers_get_head_404_and_405_on_one_connection() {
        let (addr, stop, server) = start(Limits::default()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let ok = ask(&mut s, "GET", "/metrics?x=1").await;
        assert_eq!(ok.status, "HTTP/1.1 200 OK");
        assert_eq!(ok.header("content-type"), Some(CONTENT_TYPE_TEXT));
        assert_eq!(ok.header("content-length"), Some("5"));
        assert_eq!(ok.body, "up 1\n");
        let head = ask(&mut s, "HEAD", "/metrics").await;
        assert_eq!(head.status, "HTTP/1.1 200 OK");
        assert_eq!(head.header("content-type"), Some(CONTENT_TYPE_TEXT));
        assert_eq!(head.header("content-length"), Some("5"));
        assert_eq!(head.body, "");
        let missing = ask(&mut s, "GET", "/").await;
        assert_eq!(missing.status, "HTTP/1.1 404 Not Found");
        assert_eq!(missing.body, "not found\n");
        let post = ask(&mut s, "POST", "/metrics").await;
        assert_eq!(post.status, "HTTP/1.1 405 Method Not Allowed");
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
        stop.send(()).unwrap();
        server.await.unwrap();
        // Stopping the server closed the kept-alive connection too.
        assert_eq!(s.read(&mut [0u8; 16]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn http_1_0_gets_its_answer_and_the_close() {
        let (addr, stop, server) = start(Limits::default()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).await.unwrap();
        assert!(all.starts_with("HTTP/1.0 200 OK\r\n"), "{all}");
        assert!(all.ends_with("\r\n\r\nup 1\n"), "{all}");
        stop.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(50),
            ..Limits::default()
        };
        let (addr, stop, server) = start(limits).await;
        let mut quiet = TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        quiet.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"", "closed without an answer");
        // The same once a first request was answered (keep-alive idle).
        let mut kept = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut kept, "GET", "/metrics").await.body, "up 1\n");
        kept.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"");
        stop.send(()).unwrap();
        server.await.unwrap();
    }

    /// In paused time: the runtime's clock jumps to the next deadline once
    /// every task waits, so "longer than the idle timeout" takes no time and
    /// the order of deadlines is exact.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_closed() {
        const BIG: usize = 32 << 20;
        let limits = Limits {
            idle_timeout: Duration::from_millis(50),
            ..Limits::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // An answer far larger than the socket buffers.
        let render = Arc::new(|_| "x".repeat(BIG));
        let server = tokio::spawn(serve_with(listener, render, limits, async {
            let _ = stopped.await;
        }));
        let mut stuck = TcpStream::connect(addr).await.unwrap();
        stuck
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // The answer has started; then this client reads nothing for a
        // second, twenty idle timeouts.
        let mut received = stuck.read(&mut [0u8; 1]).await.unwrap();
        assert_eq!(received, 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match stuck.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
        assert!(received < BIG, "the server gave up after {received} bytes");
        // Others are still served.
        let mut next = TcpStream::connect(addr).await.unwrap();
        let head = ask(&mut next, "HEAD", "/metrics").await;
        assert_eq!(head.status, "HTTP/1.1 200 OK");
        assert_eq!(
            head.header("content-length"),
            Some(BIG.to_string().as_str())
        );
        stop.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn at_the_cap_a_new_connection_takes_the_place_of_the_stalest() {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let (addr, stop, server) = start(limits).await;
        let mut stale = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut stale, "GET", "/metrics").await.body, "up 1\n");
        let mut quiet = TcpStream::connect(addr).await.unwrap();
        // The server has taken `quiet` once a third connection is answered
        // (connections are accepted in order); `stale` moved bytes before
        // `quiet` was accepted, so it is the one that makes room.
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut third, "GET", "/metrics").await.body, "up 1\n");
        let mut rest = Vec::new();
        stale.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"", "closed, without an answer");
        // Now `quiet` is the stalest: a fourth takes its place.
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            ask(&mut fourth, "HEAD", "/metrics").await.status,
            "HTTP/1.1 200 OK"
        );
        quiet.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"");
        // `third` stays served on its kept-alive connection.
        assert_eq!(ask(&mut third, "GET", "/metrics").await.body, "up 1\n");
        stop.send(()).unwrap();
        server.await.unwrap();
    }
}
