//! The application state and its event loop: [`App`] takes responses from the
//! flow stream ([`App::on_response`]), terminal events ([`App::handle_event`],
//! in `input`), ticks ([`App::on_tick`]) and a signal that ends it, and draws
//! itself ([`App::render`], in `view`) at most once per tick.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use crossterm::event::Event;
use futures::FutureExt;
use observer_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio_stream::{Stream, StreamExt};

use super::buffer::{DEFAULT_CAPACITY, FlowBuffer};
use super::changes::ChangesCache;
use super::filter::LiveFilter;
use super::reconnect::{self, Backoff, FlowSource, Link, RecentIds, Step};
use super::signals::{Signal, Stopped};
use super::stats::{self, Stats};
use service_graph::{GraphBuilder, ServiceGraph};

/// How often the screen is redrawn and the rate sampled.
pub const TICK: Duration = Duration::from_millis(100);
/// How long an edge of the service map stays without new flows (by flow time).
pub const GRAPH_WINDOW: Duration = Duration::from_secs(300);
/// Connections the service map tracks at most (about 150 bytes each), so a
/// flood of new connections cannot grow memory without bound.
pub const GRAPH_MAX_CONNECTIONS: usize = 50_000;
/// Flow uuids remembered at most to drop repeats after a reconnect (those of
/// the last [`reconnect::REOPEN_MARGIN`]): 100,000 flows a second for 5 s,
/// about 16 MB.
pub const RECENT_IDS: usize = 500_000;

/// Lost-event records remembered to drop repeats after a reconnect (they
/// are few: one per node and cause as it happens).
const RECENT_LOST: usize = 1024;

/// What the keyboard is driving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keys scroll, pause, switch tabs.
    Normal,
    /// Keys edit the filter bar.
    Filter,
    /// The detail pane of one flow is open.
    Detail,
}

/// The views, switched with Tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Flows,
    ServiceMap,
    TopTalkers,
}

impl Tab {
    pub const ALL: [Tab; 3] = [Tab::Flows, Tab::ServiceMap, Tab::TopTalkers];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Flows => "Flows",
            Tab::ServiceMap => "Service map",
            Tab::TopTalkers => "Top talkers",
        }
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// Whether the loop goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Quit,
}

/// The filter bar: the applied filter, the text being edited, the last error.
#[derive(Debug, Default)]
pub struct FilterBar {
    pub applied: LiveFilter,
    pub input: String,
    pub error: Option<String>,
}

/// The service map's graph and connection counts, kept at a pause.
#[derive(Debug)]
pub struct FrozenMap {
    pub graph: ServiceGraph,
    pub connections: usize,
    pub forgotten: u64,
}

impl FrozenMap {
    pub fn of(b: &GraphBuilder) -> Self {
        FrozenMap {
            graph: b.graph().clone(),
            connections: b.connections(),
            forgotten: b.forgotten(),
        }
    }
}

/// The whole state of `observe flows --follow`.
#[derive(Debug)]
pub struct App {
    pub mode: Mode,
    pub tab: Tab,
    pub buffer: FlowBuffer,
    pub filter: FilterBar,
    pub stats: Stats,
    pub graph: GraphBuilder,
    /// While paused: the flows on screen, frozen; new flows go to `buffer`.
    pub frozen: Option<FlowBuffer>,
    /// While paused: the service map as it was (`graph` goes on counting).
    pub frozen_map: Option<FrozenMap>,
    /// The selected flow; `None` follows the newest.
    pub selected: Option<u64>,
    /// First flow shown at the top of the table, once the user scrolled.
    pub top: Option<u64>,
    /// The flow in the detail pane, and how far it is scrolled.
    pub detail: Option<u64>,
    /// A copy of that flow, taken when the pane opened: shown once the flow
    /// has left the buffer (within a second on a busy cluster).
    pub detail_flow: Option<Box<observer_proto::flow::Flow>>,
    pub detail_scroll: u16,
    /// How far the detail pane can scroll: its lines past the last screenful,
    /// as it was last drawn.
    pub detail_max_scroll: Cell<u16>,
    /// First row shown on the service map and top talkers tabs.
    pub list_scroll: usize,
    /// As those lists were last drawn: the most `list_scroll` shows rows
    /// at (the last screenful), and a screenful's rows.
    pub list_max_scroll: Cell<usize>,
    pub list_page: Cell<usize>,
    /// The service map shows what changed (`c`) instead of the map.
    pub show_changes: bool,
    /// The changes view's last comparison.
    pub changes_cache: ChangesCache,
    /// Rows the flow table had at the last render (for paging).
    pub table_rows: Cell<u16>,
    /// The widest type shown so far: the column keeps it, so that it does
    /// not jump as a long type (`policy-verdict:L3-Only INGRESS`) scrolls
    /// in and out.
    pub type_width: Cell<u16>,
    /// The key help (`?`) is open over the view, scrolled this far (on a
    /// screen too small for it), at most `help_max_scroll` as last drawn.
    pub help: bool,
    pub help_scroll: u16,
    pub help_max_scroll: Cell<u16>,
    /// The command line's filters, which the server applies to the stream
    /// (`--verdict DROPPED`, `--allowlist …`): the bar narrows within them
    /// and cannot widen past them. Empty when there were none.
    pub server_filter: String,
    /// Something changed since the last draw.
    pub dirty: bool,
    /// The newest flow time received: a reconnect asks from there on.
    pub newest: Option<prost_types::Timestamp>,
    /// Recent flows' uuids, to drop those a reconnect sends again.
    pub recent: RecentIds,
    /// The stream was reopened at least once.
    pub reopened: bool,
    /// The last lost-event records counted: a reopened stream sends those
    /// of its first seconds again.
    pub recent_lost: std::collections::VecDeque<GetFlowsResponse>,
    /// The wait before the next reconnect attempt.
    pub backoff: Backoff,
}

impl App {
    /// An app whose filter bar starts with `filter` (the `observe flows` flags).
    pub fn new(filter: &str) -> Result<Self, String> {
        Self::with_capacity(filter, DEFAULT_CAPACITY)
    }

    pub fn with_capacity(filter: &str, capacity: usize) -> Result<Self, String> {
        let applied = LiveFilter::parse(filter)?;
        Ok(App {
            mode: Mode::Normal,
            tab: Tab::Flows,
            buffer: FlowBuffer::new(capacity),
            filter: FilterBar {
                input: applied.text.clone(),
                applied,
                error: None,
            },
            stats: Stats::default(),
            graph: GraphBuilder::with_window(GRAPH_WINDOW)
                .with_max_connections(GRAPH_MAX_CONNECTIONS),
            frozen: None,
            frozen_map: None,
            selected: None,
            top: None,
            detail: None,
            detail_flow: None,
            detail_scroll: 0,
            detail_max_scroll: Cell::new(u16::MAX),
            list_scroll: 0,
            list_max_scroll: Cell::new(0),
            list_page: Cell::new(1),
            show_changes: false,
            changes_cache: ChangesCache::default(),
            table_rows: Cell::new(20),
            type_width: Cell::new(0),
            help: false,
            help_scroll: 0,
            help_max_scroll: Cell::new(0),
            server_filter: String::new(),
            dirty: true,
            newest: None,
            recent: RecentIds::new(RECENT_IDS),
            reopened: false,
            recent_lost: std::collections::VecDeque::new(),
            backoff: Backoff::default(),
        })
    }

    /// Takes one response of the flow stream.
    pub fn on_response(&mut self, resp: GetFlowsResponse) {
        match resp.response_types {
            Some(ResponseTypes::Flow(mut flow)) => {
                // Every view shows these names: escaped once, here.
                crate::flows::output::escape_flow_text(&mut flow);
                let ns = observer_proto::time::nanos;
                let time = flow
                    .time
                    .as_ref()
                    .map_or_else(|| stats::epoch_ns(SystemTime::now()), ns);
                let newest = self.newest.as_ref().map_or(time, |n| ns(n).max(time));
                // Only a reopened stream repeats flows; the first one is
                // taken as the server sends it.
                if !self.recent.insert(&flow.uuid, time, newest) && self.reopened {
                    return;
                }
                if let Some(t) = &flow.time
                    && self
                        .newest
                        .as_ref()
                        .is_none_or(|n| (t.seconds, t.nanos) > (n.seconds, n.nanos))
                {
                    self.newest = Some(*t);
                }
                self.stats.flows_seen += 1;
                self.stats.rate.flow_at(time);
                self.stats.flow_from(&flow.node_name);
                let pass = self.filter.applied.matches(&flow);
                if pass {
                    self.graph.add(&flow);
                }
                self.buffer.push(flow, pass);
            }
            Some(ResponseTypes::LostEvents(ref l)) => {
                if self.reopened && self.recent_lost.contains(&resp) {
                    return;
                }
                self.stats.lost_events(l);
                if self.recent_lost.len() == RECENT_LOST {
                    self.recent_lost.pop_front();
                }
                self.recent_lost.push_back(resp);
            }
            Some(ResponseTypes::NodeStatus(n)) => self.stats.node_status(&n),
            None => return,
        }
        self.dirty = true;
    }

    /// Samples the flow rate. (The service map ages by flow time, as flows
    /// arrive, so history replayed with `--since` keeps its edges.)
    pub fn on_tick(&mut self, now: SystemTime) {
        self.stats.rate.sample(now);
        self.dirty = true;
    }

    /// Applies the filter bar's text, or keeps the old filter and shows why not.
    pub fn apply_filter(&mut self) -> bool {
        match LiveFilter::parse(&self.filter.input) {
            // The same filter again: the map keeps what it counted beyond
            // the buffer's flows.
            Ok(f) if f.text == self.filter.applied.text => {
                self.filter.input = f.text;
                self.filter.error = None;
                true
            }
            Ok(f) => {
                self.buffer.refilter(|fl| f.matches(fl));
                if let Some(frozen) = &mut self.frozen {
                    frozen.refilter(|fl| f.matches(fl));
                }
                self.graph = GraphBuilder::with_window(GRAPH_WINDOW)
                    .with_max_connections(GRAPH_MAX_CONNECTIONS);
                // The frozen map is what the frozen flows make under the new
                // filter; the later flows then count on, out of sight.
                if let Some(frozen) = &self.frozen {
                    frozen.iter_matching().for_each(|fl| self.graph.add(fl));
                    self.frozen_map = Some(FrozenMap::of(&self.graph));
                }
                for fl in self.buffer.iter_matching() {
                    self.graph.add(fl);
                }
                self.filter.input = f.text.clone();
                self.filter.applied = f;
                self.filter.error = None;
                true
            }
            Err(e) => {
                self.filter.error = Some(e);
                false
            }
        }
    }

    /// Runs until `q`, the end of the terminal events, a terminal error, or
    /// `stop` (a signal: the error is then [`Stopped`]). When the flow stream
    /// ends or fails, `source` reopens it, with backoff; when it cannot, the
    /// end is shown, not fatal.
    pub async fn run<B, S, R, E>(
        &mut self,
        terminal: &mut Terminal<B>,
        flows: S,
        mut source: R,
        mut events: E,
        stop: impl Future<Output = Signal>,
    ) -> anyhow::Result<()>
    where
        B: Backend,
        B::Error: Send + Sync + 'static,
        S: Stream<Item = Result<GetFlowsResponse, tonic::Status>> + 'static,
        R: FlowSource,
        E: Stream<Item = std::io::Result<Event>> + Unpin,
    {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut link = Link::Open(Box::pin(flows));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                sig = &mut stop => return Err(Stopped(sig).into()),
                _ = tick.tick() => {
                    self.on_tick(SystemTime::now());
                    self.draw(terminal)?;
                }
                ev = events.next() => {
                    // Every key already waiting (typed fast, pasted) is
                    // taken before one draw: a draw per key lagged behind.
                    let mut next = Some(ev);
                    while let Some(ev) = next {
                        match ev {
                            Some(Ok(ev)) => {
                                if self.handle_event(&ev) == Control::Quit {
                                    return Ok(());
                                }
                            }
                            Some(Err(e)) => return Err(e.into()),
                            None => return Ok(()),
                        }
                        next = events.next().now_or_never();
                    }
                    self.draw(terminal)?;
                }
                step = link.step() => self.on_step(step, &mut link, &mut source),
            }
        }
    }

    /// Takes what happened on the flow stream `link`: a response, its end or
    /// failure (then `link` becomes the attempt to reopen it), or a reopening.
    pub fn on_step(&mut self, step: Step, link: &mut Link, source: &mut impl FlowSource) {
        match step {
            Step::Item(Some(Ok(resp))) => {
                // Only a stream that sends flows ends the backoff: one that
                // opens, says which nodes it has and fails is asked again
                // later each time.
                if matches!(resp.response_types, Some(ResponseTypes::Flow(_))) {
                    self.backoff.reset();
                }
                self.on_response(resp);
            }
            Step::Item(Some(Err(s))) => {
                let detail = match s.message() {
                    "" => format!("{:?}", s.code()),
                    m => m.to_string(),
                };
                let end = format!("server: {} ({:?})", s.message(), s.code());
                if reconnect::is_final(s.code()) {
                    *link = self.ended(end);
                    return;
                }
                *link = self.on_lost(source, reconnect::short_reason(&detail), &detail, end);
            }
            Step::Item(None) => {
                *link = self.on_lost(source, "the stream ended", "", "stream ended".into());
            }
            Step::Opened(Ok(stream)) => {
                self.reopened = true;
                self.stats.reconnecting = None;
                self.dirty = true;
                *link = Link::Open(stream);
            }
            Step::Opened(Err(e)) => {
                let detail = format!("{e:#}");
                let refused = e.chain().find_map(|c| {
                    (c.downcast_ref::<crate::connect::ServerError>()
                        .map(|s| s.code))
                    .or_else(|| c.downcast_ref::<tonic::Status>().map(tonic::Status::code))
                });
                if refused.is_some_and(reconnect::is_final) {
                    *link = self.ended(detail);
                    return;
                }
                let reason = reconnect::short_reason(&detail);
                *link = self.on_lost(source, reason, &detail, detail.clone());
            }
        }
    }

    /// The stream ended for good: `end` is shown, nothing is asked again.
    fn ended(&mut self, end: String) -> Link {
        self.stats.reconnecting = None;
        self.stats.stream_end = Some(end);
        self.dirty = true;
        Link::Closed
    }

    /// The stream is gone: reopen it a margin before the newest flow (late
    /// flows of a lagging node come then too) after the backoff,
    /// saying so, or show `end` when `source` cannot.
    fn on_lost(
        &mut self,
        source: &mut impl FlowSource,
        reason: &str,
        detail: &str,
        end: String,
    ) -> Link {
        self.dirty = true;
        let Some(open) = source.reopen(reconnect::reopen_from(self.newest)) else {
            return self.ended(end);
        };
        let delay = self.backoff.next_delay();
        self.stats.reconnecting = Some(reconnect::banner(reason, detail));
        // Which nodes are up is unknown until the relay tells again.
        self.stats.nodes.clear();
        Link::Opening(Box::pin(async move {
            tokio::time::sleep(delay).await;
            open.await
        }))
    }

    fn draw<B>(&mut self, terminal: &mut Terminal<B>) -> anyhow::Result<()>
    where
        B: Backend,
        B::Error: Send + Sync + 'static,
    {
        if self.dirty {
            terminal.draw(|f| self.render(f))?;
            self.dirty = false;
        }
        Ok(())
    }
}
