//! Accepting TCP connections without spinning when accepting fails.
//!
//! At the file-descriptor limit every `accept` fails at once (EMFILE) while
//! the pending connection stays in the backlog, so a plain accept loop spins
//! and, if it logs, floods the log (787,000 lines in 3 s, issue 15); tonic's
//! own loop retries at once. [`Acceptor`] logs the first failure of a burst
//! and the recovery, and pauses before each retry; [`incoming`] is the same
//! as the connection stream a tonic server takes, each connection closed
//! when its opening bytes have not all come within [`OPENING_WITHIN`]: a
//! client that connects and stays silent, or sends a byte and stalls, would
//! otherwise hold its descriptor for good (plaintext HTTP/2 waits for its
//! preface without a deadline), and a few thousand such reach the limit.
//! [`incoming`] also serves at most a set number of connections at once
//! ([`ServerListener`]): past it a new connection is closed as soon as it is
//! accepted, so a flood of clients never takes the descriptors the server
//! needs for its own files, maps and peers.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Pause after a failed accept before trying again.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a new connection may take to send its [`OPENING_BYTES`] (a TLS
/// hello, HTTP/2's preface): a client that means to talk sends them at once.
pub const OPENING_WITHIN: Duration = Duration::from_secs(20);

/// The bytes every client sends first: HTTP/2's preface is exactly this
/// long (`PRI * HTTP/2.0` and the rest), and a TLS ClientHello is longer.
/// After them, TLS's handshake deadline or HTTP/2 itself takes over.
pub const OPENING_BYTES: usize = 24;

/// A listener whose [`Acceptor::accept`] waits out failures.
pub struct Acceptor {
    listener: TcpListener,
    /// Names the listener in the log: "gRPC listener", "metrics listener".
    what: &'static str,
    backoff: Duration,
    /// Failures since the last connection accepted.
    failed: u64,
}

impl Acceptor {
    pub fn new(listener: TcpListener, what: &'static str, backoff: Duration) -> Self {
        Self {
            listener,
            what,
            backoff,
            failed: 0,
        }
    }

    /// The next connection. A failure is logged once per burst (with one
    /// line when accepting works again) and retried after the backoff.
    pub async fn accept(&mut self) -> TcpStream {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    if self.failed > 0 {
                        log::info!(
                            "{}: accepting again after {} failed attempts",
                            self.what,
                            self.failed
                        );
                    }
                    self.failed = 0;
                    return stream;
                }
                Err(e) => {
                    if self.failed == 0 {
                        log::warn!("{}: {e}; retrying every {:?}", self.what, self.backoff);
                    }
                    self.failed += 1;
                    tokio::time::sleep(self.backoff).await;
                }
            }
        }
    }
}

/// Connections a gRPC server serves at once unless told otherwise: half of
/// the 1,024 descriptors a process may open by default, the other half left
/// for the server's own files, maps and peers.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// A gRPC server's listening socket and how many connections it serves at
/// once (`--max-connections`). A plain listener gets
/// [`DEFAULT_MAX_CONNECTIONS`].
pub struct ServerListener {
    pub listener: TcpListener,
    pub max_connections: usize,
}

impl From<TcpListener> for ServerListener {
    fn from(listener: TcpListener) -> Self {
        ServerListener {
            listener,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The connections of `listener` as a stream that never fails, for tonic's
/// `serve_with_incoming_shutdown`; each must send its [`OPENING_BYTES`]
/// within `opening` ([`OPENING_WITHIN`] for the servers). While
/// `max_connections` are open, a new one is closed at once; the log says so
/// once, and once more when connections are taken again.
pub fn incoming(
    server: ServerListener,
    what: &'static str,
    opening: Duration,
) -> impl Stream<Item = Result<Talking, Infallible>> + Send + 'static {
    let ServerListener {
        listener,
        max_connections,
    } = server;
    let gate = Gate {
        open: Arc::new(AtomicUsize::new(0)),
        max: max_connections,
        turned_away: 0,
    };
    let acceptor = Acceptor::new(listener, what, DEFAULT_BACKOFF);
    futures::stream::unfold(
        (acceptor, gate),
        move |(mut acceptor, mut gate)| async move {
            loop {
                let stream = acceptor.accept().await;
                match gate.admit(what) {
                    Some(place) => {
                        return Some((Ok(Talking::new(stream, opening, place)), (acceptor, gate)));
                    }
                    // Closed unread: the client sees the connection end at once.
                    None => drop(stream),
                }
            }
        },
    )
}

/// Counts the open connections of one listener against its cap.
struct Gate {
    open: Arc<AtomicUsize>,
    max: usize,
    /// Connections closed since the cap was last reached.
    turned_away: u64,
}

impl Gate {
    /// A place for one more connection, or `None` at the cap.
    fn admit(&mut self, what: &str) -> Option<Place> {
        // Only this task adds; connections ending only subtract.
        if self.open.load(Ordering::Acquire) >= self.max {
            if self.turned_away == 0 {
                log::warn!(
                    "{what}: open connections at the cap ({}, --max-connections); \
                     closing new ones until one ends",
                    self.max
                );
            }
            self.turned_away += 1;
            return None;
        }
        if self.turned_away > 0 {
            log::info!(
                "{what}: taking connections again after closing {} at the cap",
                self.turned_away
            );
            self.turned_away = 0;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        Some(Place(self.open.clone()))
    }
}

/// One open connection's share of its listener's cap, given back on drop.
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection whose reads fail (and the server closes it) when its
/// opening bytes have not all come within a deadline; after them, a plain
/// stream.
pub struct Talking {
    stream: TcpStream,
    /// Opening bytes still to come; the deadline ends with them.
    opening_left: usize,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Held while the server holds the connection.
    _place: Place,
}

impl Talking {
    fn new(stream: TcpStream, opening: Duration, place: Place) -> Self {
        Talking {
            stream,
            opening_left: OPENING_BYTES,
            deadline: Some(Box::pin(tokio::time::sleep(opening))),
            _place: place,
        }
    }
}

impl AsyncRead for Talking {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.deadline.is_none() {
            return polled;
        }
        match &polled {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                // No bytes is the end of the stream: nothing left to wait for.
                this.opening_left = if read == 0 {
                    0
                } else {
                    this.opening_left.saturating_sub(read)
                };
            }
            Poll::Ready(Err(_)) => this.opening_left = 0,
            Poll::Pending => {}
        }
        if this.opening_left == 0 {
            this.deadline = None;
        } else if polled.is_pending()
            && let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client sent {} of its {OPENING_BYTES} opening bytes (a TLS hello or \
                     HTTP/2's preface) in time",
                    OPENING_BYTES - this.opening_left
                ),
            )));
        }
        polled
    }
}

impl AsyncWrite for Talking {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Talking {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn the_stream_yields_each_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut connections = Box::pin(incoming(listener.into(), "test listener", OPENING_WITHIN));
        let mut client = TcpStream::connect(addr).await.unwrap();
        let Some(Ok(mut served)) = connections.next().await else {
            panic!("no connection");
        };
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        served.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_and_one_that_talks_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let within = Duration::from_millis(300);
        let mut connections = Box::pin(incoming(listener.into(), "test listener", within));
        let _silent = TcpStream::connect(addr).await.unwrap();
        let Some(Ok(mut served)) = connections.next().await else {
            panic!("no connection");
        };
        let err = served.read(&mut [0u8; 4]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(
            err.to_string(),
            "the client sent 0 of its 24 opening bytes (a TLS hello or HTTP/2's preface) in time"
        );

        let mut talking = TcpStream::connect(addr).await.unwrap();
        let Some(Ok(mut served)) = connections.next().await else {
            panic!("no connection");
        };
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(preface.len(), OPENING_BYTES);
        talking.write_all(preface).await.unwrap();
        let mut got = [0u8; OPENING_BYTES];
        served.read_exact(&mut got).await.unwrap();
        // Quiet past the deadline after its opening: still open.
        tokio::time::sleep(within * 2).await;
        talking.write_all(b"q").await.unwrap();
        served.read_exact(&mut got[..1]).await.unwrap();
        assert_eq!(&got[..1], b"q");
    }

    #[tokio::test]
    async fn a_connection_that_stalls_inside_its_opening_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let within = Duration::from_millis(300);
        let mut connections = Box::pin(incoming(listener.into(), "test listener", within));
        let mut stalling = TcpStream::connect(addr).await.unwrap();
        let Some(Ok(mut served)) = connections.next().await else {
            panic!("no connection");
        };
        stalling.write_all(b"PRI * HTTP").await.unwrap();
        let mut got = [0u8; 10];
        served.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"PRI * HTTP");
        let err = served.read(&mut [0u8; 4]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(
            err.to_string(),
            "the client sent 10 of its 24 opening bytes (a TLS hello or HTTP/2's preface) in time"
        );
    }

    #[tokio::test]
    async fn past_the_cap_a_new_connection_is_closed_until_one_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = ServerListener {
            listener,
            max_connections: 2,
        };
        let mut connections = Box::pin(incoming(server, "test listener", OPENING_WITHIN));
        let mut served = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            let Some(Ok(s)) = connections.next().await else {
                panic!("no connection");
            };
            served.push(s);
        }
        // The third is accepted and closed: its client reads the end, and
        // the stream yields nothing for it.
        let mut third = TcpStream::connect(addr).await.unwrap();
        let next = tokio::spawn(async move {
            let yielded = connections.next().await.map(|c| c.is_ok());
            (yielded, connections)
        });
        let end = tokio::time::timeout(Duration::from_secs(10), third.read(&mut [0u8; 1])).await;
        assert_eq!(end.expect("the third connection closed").unwrap(), 0);
        assert!(!next.is_finished());
        // Both served connections still carry bytes.
        for (client, s) in clients.iter_mut().zip(served.iter_mut()) {
            client.write_all(b"x").await.unwrap();
            let mut got = [0u8; 1];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"x");
        }
        // One ends: the next connection is served.
        drop(served.pop());
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        let (yielded, _connections) = next.await.unwrap();
        assert_eq!(yielded, Some(true));
        fourth.write_all(b"y").await.unwrap();
    }

    #[tokio::test]
    async fn a_client_that_closes_before_its_opening_reads_as_the_end() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let within = Duration::from_millis(300);
        let mut connections = Box::pin(incoming(listener.into(), "test listener", within));
        let mut leaving = TcpStream::connect(addr).await.unwrap();
        let Some(Ok(mut served)) = connections.next().await else {
            panic!("no connection");
        };
        leaving.write_all(b"P").await.unwrap();
        drop(leaving);
        let mut got = Vec::new();
        served.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"P");
    }
}
