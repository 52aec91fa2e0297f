//! The per-peer task: sessions one after another, with exponential backoff in
//! between, until the relay stops.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;

use super::resume::Resume;
use super::session::{self, PeerCtx};
use crate::error::PeerError;
use crate::merge::MergeInput;
use observer_runtime::backoff::Backoff;

/// One session with the peer, until the error that ends it.
type Session = for<'a> fn(&'a PeerCtx, &'a mut Resume, &'a mut Backoff) -> BoxFuture<'a, PeerError>;

/// Follows one peer until `stop` turns true (or its sender is dropped).
pub(crate) async fn run(ctx: PeerCtx, stop: watch::Receiver<bool>) {
    fn real<'a>(c: &'a PeerCtx, r: &'a mut Resume, b: &'a mut Backoff) -> BoxFuture<'a, PeerError> {
        Box::pin(session::run(c, r, b))
    }
    sessions(ctx, stop, real).await;
}

async fn sessions(ctx: PeerCtx, mut stop: watch::Receiver<bool>, session: Session) {
    let mut backoff = Backoff::new(ctx.opts.backoff_min, ctx.opts.backoff_max);
    let mut resume = Resume::default();
    loop {
        // A panic (a peer's message no one foresaw) ends this session like
        // an error would: the peer is followed again after the backoff.
        let guarded = AssertUnwindSafe(session(&ctx, &mut resume, &mut backoff)).catch_unwind();
        let error = tokio::select! {
            e = guarded => e.unwrap_or_else(|p| PeerError::Panicked(panic_text(p.as_ref()))),
            () = stopped(&mut stop) => return,
        };
        if matches!(error, PeerError::MergeClosed)
            || session::merge(&ctx, MergeInput::Gone(ctx.id))
                .await
                .is_err()
        {
            return;
        }
        if matches!(error, PeerError::Panicked(_)) {
            log::error!("peer {}: {error}", ctx.uri);
        }
        ctx.state
            .peers()
            .mark_unavailable(ctx.id, error.to_string());
        let delay = backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// What a panic said, when it said it as text.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use observer_runtime::store::FlowStore;
    use tokio::sync::mpsc;

    use super::*;
    use crate::config::PeerOptions;
    use crate::peer::state::Peers;
    use crate::state::RelayState;

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    /// Panics in its first session; the second one finds the relay stopping.
    fn panics_once<'a>(
        _: &'a PeerCtx,
        _: &'a mut Resume,
        _: &'a mut Backoff,
    ) -> BoxFuture<'a, PeerError> {
        Box::pin(async {
            if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("a message no one foresaw");
            }
            PeerError::MergeClosed
        })
    }

    #[tokio::test]
    async fn a_panicking_session_marks_the_peer_unavailable_and_follows_it_again() {
        let state = Arc::new(RelayState::new(
            FlowStore::new(16),
            Peers::new(&["node1:4244".to_string()]),
        ));
        let (merge, mut merged) = mpsc::channel(4);
        let ctx = PeerCtx {
            id: 0,
            uri: "http://node1:4244".into(),
            state: state.clone(),
            merge,
            opts: PeerOptions {
                backoff_min: Duration::from_millis(1),
                ..PeerOptions::default()
            },
        };
        let (_stop, stop_rx) = watch::channel(false);
        tokio::spawn(sessions(ctx, stop_rx, panics_once))
            .await
            .expect("the task ends without a panic");
        assert_eq!(CALLS.load(Ordering::SeqCst), 2, "followed again");
        assert!(matches!(merged.try_recv(), Ok(MergeInput::Gone(0))));
        let view = &state.peers().views()[0];
        assert_eq!(
            view.last_error.as_deref(),
            Some("the session panicked: a message no one foresaw")
        );
    }
}
