//! The per-peer task: sessions one after another, with exponential backoff in
//! between, until the relay stops.

use tokio::sync::watch;

use super::resume::Resume;
use super::session::{self, PeerCtx};
use crate::error::PeerError;
use crate::merge::MergeInput;
use observer_runtime::backoff::Backoff;

/// Follows one peer until `stop` turns true (or its sender is dropped).
pub(crate) async fn run(ctx: PeerCtx, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(ctx.opts.backoff_min, ctx.opts.backoff_max);
    let mut resume = Resume::default();
    loop {
        let error = tokio::select! {
            e = session::run(&ctx, &mut resume, &mut backoff) => e,
            () = stopped(&mut stop) => return,
        };
        if matches!(error, PeerError::MergeClosed)
            || session::merge(&ctx, MergeInput::Gone(ctx.id))
                .await
                .is_err()
        {
            return;
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

pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
