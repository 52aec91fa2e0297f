//! The end of a server's life: SIGINT or SIGTERM, whichever comes first.

/// Resolves on the first SIGINT or SIGTERM. If the handlers cannot be
/// installed it says so and never resolves (the process then ends by a
/// signal's default action, as it would without us).
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            log::error!("cannot handle SIGINT/SIGTERM ({e}): a signal ends the process at once");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received"),
        _ = int.recv() => log::info!("SIGINT received"),
    }
}

/// How long a server's graceful stop may wait for its clients to read the
/// ends of their answers (a follow's last flows and its status).
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A bound on a server's graceful stop. Graceful shutdown waits for every
/// answer to be sent, and a client that stopped reading (its HTTP/2
/// windows full) would hold the process forever: [`Grace::run`] drops the
/// server, its connections with it, [`STOP_GRACE`] after the signal given
/// to it by [`Grace::signal`] fired, and logs that.
pub struct Grace {
    fired: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Grace {
    fn default() -> Self {
        Self::new()
    }
}

impl Grace {
    pub fn new() -> Self {
        Grace {
            fired: std::sync::Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// `shutdown`, for the server; the grace starts when it resolves.
    pub fn signal<F: Future<Output = ()>>(&self, shutdown: F) -> impl Future<Output = ()> + use<F> {
        let fired = self.fired.clone();
        async move {
            shutdown.await;
            fired.send_replace(true);
        }
    }

    /// Runs `serve` until it ends, or until the grace is over; `None` then.
    pub async fn run<T>(self, serve: impl Future<Output = T>) -> Option<T> {
        let mut seen = self.fired.subscribe();
        let over = async move {
            if seen.wait_for(|f| *f).await.is_err() {
                // The signal was dropped unfired: no stop to bound.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(STOP_GRACE).await;
        };
        tokio::select! {
            served = serve => Some(served),
            () = over => {
                log::warn!(
                    "stopped without waiting longer ({} s) for clients that do not read their answers",
                    STOP_GRACE.as_secs()
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_server_that_does_not_end_is_dropped_after_the_grace() {
        let grace = Grace::new();
        let signal = grace.signal(std::future::ready(()));
        let start = tokio::time::Instant::now();
        // A server that waits for its signal, then for a client forever.
        let serve = async {
            signal.await;
            std::future::pending::<()>().await;
        };
        assert_eq!(grace.run(serve).await, None);
        assert_eq!(start.elapsed(), STOP_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_ends_is_waited_for() {
        let grace = Grace::new();
        let signal = grace.signal(std::future::ready(()));
        let serve = async {
            signal.await;
            tokio::time::sleep(STOP_GRACE / 2).await;
            7
        };
        assert_eq!(grace.run(serve).await, Some(7));
        // No signal at all: no bound.
        let grace = Grace::new();
        let _unfired = grace.signal(std::future::pending::<()>());
        let serve = tokio::time::sleep(STOP_GRACE * 10);
        assert_eq!(grace.run(serve).await, Some(()));
    }
}
