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
