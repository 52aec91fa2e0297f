//! Accepting TCP connections without spinning when accepting fails.
//!
//! At the file-descriptor limit every `accept` fails at once (EMFILE) while
//! the pending connection stays in the backlog, so a plain accept loop spins
//! and, if it logs, floods the log (787,000 lines in 3 s, issue 15); tonic's
//! own loop retries at once. [`Acceptor`] logs the first failure of a burst
//! and the recovery, and pauses before each retry; [`incoming`] is the same
//! as the connection stream a tonic server takes.

use std::convert::Infallible;
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed accept before trying again.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);

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
/// `serve_with_incoming_shutdown`.
pub fn incoming(
    listener: TcpListener,
    what: &'static str,
) -> impl Stream<Item = Result<TcpStream, Infallible>> + Send + 'static {
    let acceptor = Acceptor::new(listener, what, DEFAULT_BACKOFF);
    futures::stream::unfold(acceptor, |mut acceptor| async move {
        let stream = acceptor.accept().await;
        Some((Ok(stream), acceptor))
    })
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
        let mut connections = Box::pin(incoming(listener, "test listener"));
        let mut client = TcpStream::connect(addr).await.unwrap();
        let Some(Ok(mut served)) = connections.next().await else {
            panic!("no connection");
        };
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        served.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }
}
