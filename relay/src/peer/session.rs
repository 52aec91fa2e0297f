//! One session with a peer: connect, learn its name and status, follow its
//! flows into the merge, and poll its status; ends with the error that ended it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use observer_proto::flow::LostEventSource;
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNodesRequest, ServerStatusRequest,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::transport::Endpoint;

use super::resume::{Gap, Resume};
use super::state::PeerId;
use crate::config::PeerOptions;
use crate::error::{Connection, PeerError};
use crate::history::feed::lost_event;
use crate::history::tail::NodeTail;
use crate::merge::MergeInput;
use crate::state::RelayState;
use observer_proto::time::now_nanos;
use observer_runtime::backoff::Backoff;

/// How often an idle connection is pinged (a peer that vanished without closing
/// its connection fails the ping after `call_timeout`).
const KEEPALIVE: Duration = Duration::from_secs(10);

/// What a peer task works with.
pub(crate) struct PeerCtx {
    pub id: PeerId,
    pub uri: String,
    pub state: Arc<RelayState>,
    pub merge: mpsc::Sender<MergeInput>,
    pub opts: PeerOptions,
}

/// Runs one session until it fails; resets `backoff` once connected.
pub(crate) async fn run(ctx: &PeerCtx, resume: &mut Resume, backoff: &mut Backoff) -> PeerError {
    match session(ctx, resume, backoff).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn session(
    ctx: &PeerCtx,
    resume: &mut Resume,
    backoff: &mut Backoff,
) -> Result<Infallible, PeerError> {
    let opts = &ctx.opts;
    let tls = opts.tls.is_some();
    let mut endpoint = Endpoint::from_shared(ctx.uri.clone())
        .map_err(|e| PeerError::connect(&e, tls))?
        .connect_timeout(opts.connect_timeout)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(opts.call_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    if let Some(t) = &opts.tls {
        // Read at every connection: renewed certificates are picked up.
        endpoint = t.apply(endpoint)?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| PeerError::connect(&e, tls))?;
    let mut client = ObserverClient::new(channel);
    let nodes = call(
        opts,
        ("GetNodes", Connection::New),
        client.get_nodes(GetNodesRequest {}),
    )
    .await?;
    let mut name = nodes
        .nodes
        .into_iter()
        .map(|n| n.name)
        .find(|n| !n.is_empty());
    let status = call(
        opts,
        ("ServerStatus", Connection::Answered),
        client.server_status(ServerStatusRequest {}),
    )
    .await?;
    if resume.wants_seed() {
        let tail = history_tail(ctx, name.as_deref(), status.uptime_ns).await;
        // Only when history said what it holds of the peer.
        resume.giving_back = tail.is_some();
        resume.seed(tail.flatten(), opts.resume_overlap);
    }
    let request = GetFlowsRequest {
        // The peer's whole ring: what happened before we connected counts
        // too (what history already holds of it is dropped below).
        number: status.max_flows.max(1),
        follow: true,
        since: resume.since(opts.resume_overlap),
        ..Default::default()
    };
    resume.start_session();
    let mut stream = call(
        opts,
        ("GetFlows", Connection::Answered),
        client.get_flows(request),
    )
    .await?;
    ctx.state
        .peers()
        .mark_connected(ctx.id, name.clone(), status, client.clone());
    backoff.reset();
    merge(ctx, MergeInput::Connected(ctx.id)).await?;

    let mut poll =
        tokio::time::interval_at(Instant::now() + opts.status_interval, opts.status_interval);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut flows_read = false;
    loop {
        tokio::select! {
            message = stream.message() => {
                let mut response = message
                    .map_err(PeerError::rpc("GetFlows", tls, Connection::Answered))?
                    .ok_or(PeerError::StreamEnded)?;
                let (new, gap) = resume.take(&response);
                if let Some(gap) = gap {
                    let node = name.as_deref().unwrap_or(&response.node_name);
                    let node = ctx.state.peers().naming().full_name(node);
                    report_gap(ctx, node, gap, flows_read).await?;
                }
                // From one flow-probe run, the gap in its flows' numbers
                // tells that loss exactly, with its times (above); the
                // queue's own count would tell it twice. (A record before
                // this session's first flow is passed on.)
                if resume.counts_gaps() && is_queue_loss(&response) {
                    continue;
                }
                flows_read |= matches!(response.response_types, Some(ResponseTypes::Flow(_)));
                // History (and so the ring, which starts from it) has it.
                if !new || resume.in_history(&response) {
                    continue;
                }
                match &name {
                    None if !response.node_name.is_empty() => {
                        ctx.state.peers().learn_name(ctx.id, &response.node_name);
                        name = Some(response.node_name.clone());
                    }
                    Some(n) if response.node_name.is_empty() => response.node_name = n.clone(),
                    _ => {}
                }
                ctx.state.peers().naming().rename(&mut response);
                count_probe_loss(ctx, &response);
                if resume.giving_back && let Some(history) = ctx.state.sql().history() {
                    resume.giving_back = history.retaken(&response).is_some();
                }
                ctx.state.peers().count_flow(ctx.id);
                merge(ctx, MergeInput::Response(ctx.id, response)).await?;
            }
            _ = poll.tick() => {
                let status = call(
                    opts,
                    ("ServerStatus", Connection::Answered),
                    client.server_status(ServerStatusRequest {}),
                )
                .await?;
                ctx.state.peers().update_status(ctx.id, status);
            }
        }
    }
}

/// Whether `r` is a peer's count of entries its queue to this follow let go.
fn is_queue_loss(r: &GetFlowsResponse) -> bool {
    matches!(&r.response_types, Some(ResponseTypes::LostEvents(l))
        if l.source == LostEventSource::ObserverEventsQueue as i32)
}

/// A probe's count of events its kernel ring dropped never became flows:
/// history lacks them too, so its losses count them (`observe query`, and
/// GetFlows over history, then tell them), once: a restarted relay is sent
/// the probe's buffer again. The record still goes to the ring, as before
/// the restart; an answer that reads history leaves out the ring's copy.
fn count_probe_loss(ctx: &PeerCtx, r: &GetFlowsResponse) {
    // Every flow comes through here: the engine only for such a record.
    let Some(ResponseTypes::LostEvents(l)) = &r.response_types else {
        return;
    };
    if l.source != LostEventSource::PerfEventRingBuffer as i32 {
        return;
    }
    if let Some(history) = ctx.state.sql().history() {
        let time = observer_proto::time::event_time(r).unwrap_or_else(now_nanos);
        let time = i64::try_from(time).unwrap_or(i64::MAX);
        history
            .losses()
            .record_probe_loss(&r.node_name, time, l.num_events_lost);
    }
}

/// Flows of the peer the relay never read: in the log, in history's losses
/// (so `observe query` and `flows --since` say history is missing them) and
/// as a `LostEvent` to followers. `in_session`: found after this session's
/// first flow (the relay fell behind), not at its start (the peer's buffer
/// dropped them while no session read it).
async fn report_gap(
    ctx: &PeerCtx,
    node: String,
    gap: Gap,
    in_session: bool,
) -> Result<(), PeerError> {
    let clamp = |t: i128| i64::try_from(t).unwrap_or(i64::MAX);
    let second = |t: i128| observer_proto::time::rfc3339(clamp(t / 1_000_000_000));
    let how = if in_session {
        "were dropped by its queue to the relay, which fell behind"
    } else {
        "were dropped from its buffer before the relay could read them"
    };
    log::warn!(
        "{node}: {} flows {how} (after {}, before {})",
        gap.flows,
        second(gap.after),
        second(gap.before)
    );
    if let Some(history) = ctx.state.sql().history() {
        history.losses().record_span(
            &node,
            clamp(gap.after + 1),
            clamp(gap.before - 1),
            gap.flows,
        );
    }
    let lost = lost_event(node, gap.flows, clamp(gap.after + 1), clamp(gap.before - 1));
    merge(ctx, MergeInput::Response(ctx.id, lost)).await
}

/// How far a node's clock may be ahead of the relay's when history is
/// searched for flows of the peer's current run.
const CLOCK_SLACK: Duration = Duration::from_secs(60);

/// What history holds of the peer named `name` from its current run (it
/// has been up `uptime_ns`; 0: unknown, all of history): what its sessions
/// need not store again (`Some(None)`: nothing). `None` when that is not
/// known: no history, a peer without a name, or a read that failed
/// (logged).
async fn history_tail(
    ctx: &PeerCtx,
    name: Option<&str>,
    uptime_ns: u64,
) -> Option<Option<NodeTail>> {
    let history = ctx.state.sql().history()?.clone();
    let node = ctx.state.peers().naming().full_name(name?);
    let from = match uptime_ns {
        0 => i64::MIN,
        up => {
            let start = now_nanos() - i128::from(up) - CLOCK_SLACK.as_nanos() as i128;
            i64::try_from(start).unwrap_or(i64::MIN)
        }
    };
    let overlap = ctx.opts.resume_overlap;
    let read = {
        let node = node.clone();
        tokio::task::spawn_blocking(move || history.node_tail(&node, from, overlap))
            .await
            .map_err(std::io::Error::other)
            .and_then(|tail| tail)
    };
    read.map_err(|e| {
        log::warn!(
            "history: reading where {node}'s flows end failed ({e}); \
             the flows it still buffers may be stored twice"
        );
    })
    .ok()
}

/// Hands `input` to the merge (waiting while its queue is full).
pub(crate) async fn merge(ctx: &PeerCtx, input: MergeInput) -> Result<(), PeerError> {
    ctx.merge
        .send(input)
        .await
        .map_err(|_| PeerError::MergeClosed)
}

/// A call (its name, and whether the connection answered one before) with
/// the configured time limit.
async fn call<T>(
    opts: &PeerOptions,
    (what, connection): (&'static str, Connection),
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, PeerError> {
    match tokio::time::timeout(opts.call_timeout, call).await {
        Err(_) => Err(PeerError::Timeout(what)),
        Ok(answer) => answer
            .map(tonic::Response::into_inner)
            .map_err(PeerError::rpc(what, opts.tls.is_some(), connection)),
    }
}
