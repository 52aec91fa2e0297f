//! Accepting TCP connections without spinning when accepting fails.
//!
//! At the file-descriptor limit every `accept` fails at once (EMFILE) while
//! the pending connection stays in the backlog, so a plain accept loop spins
//! and, if it logs, floods the log (787,000 lines in 3 s, issue 15); tonic's
//! own loop retries at once. [`Acceptor`] logs the first failure of a burst
//! and the recovery, and pauses before each retry; [`incoming`] is the same
//! as the connection stream a tonic server takes, each connection closed
//! when it sends nothing at all for [`FIRST_BYTE_WITHIN`]: a client that
//! connects and stays silent would otherwise hold its descriptor for good,
//! and a few thousand such reach the limit.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Pause after a failed accept before trying again.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a new connection may wait before its first byte (a TLS hello,
/// HTTP/2's preface): a client that means to talk sends it at once.
pub const FIRST_BYTE_WITHIN: Duration = Duration::from_secs(20);

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

/// The connections of `listener` as a stream that never fails, for tonic's
/// `serve_with_incoming_shutdown`; each must send its first byte within
/// `first_byte` ([`FIRST_BYTE_WITHIN`] for the servers).
pub fn incoming(
    listener: TcpListener,
    what: &'static str,
    first_byte: Duration,
) -> impl Stream<Item = Result<Talking, Infallible>> + Send + 'static {
    let acceptor = Acceptor::new(listener, what, DEFAULT_BACKOFF);
    futures::stream::unfold(acceptor, move |mut acceptor| async move {
        let stream = acceptor.accept().await;
        Some((Ok(Talking::new(stream, first_byte)), acceptor))
    })
}

/// A connection whose reads fail (and the server closes it) when its first
/// byte has not come within a deadline; after that byte, a plain stream.
pub struct Talking {
    stream: TcpStream,
    /// Until the first byte came.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Talking {
    fn new(stream: TcpStream, first_byte: Duration) -> Self {
        Talking {
            stream,
            deadline: Some(Box::pin(tokio::time::sleep(first_byte))),
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
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if polled.is_ready() {
            this.deadline = None; // a byte, the end, or an error
        } else if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client sent nothing after connecting",
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
        let mut connections = Box::pin(incoming(listener, "test listener", FIRST_BYTE_WITHIN));
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
        let mut connections = Box::pin(incoming(listener, "test listener", within));
        let _silent = TcpStream::connect(addr).await.unwrap();
        let Some(Ok(mut served)) = connections.next().await else {
            panic!("no connection");
        };
        let err = served.read(&mut [0u8; 4]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);

        let mut talking = TcpStream::connect(addr).await.unwrap();
        let Some(Ok(mut served)) = connections.next().await else {
            panic!("no connection");
        };
        talking.write_all(b"p").await.unwrap();
        let mut got = [0u8; 1];
        served.read_exact(&mut got).await.unwrap();
        // Quiet past the deadline after its first byte: still open.
        tokio::time::sleep(within * 2).await;
        talking.write_all(b"q").await.unwrap();
        served.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"q");
    }
}
