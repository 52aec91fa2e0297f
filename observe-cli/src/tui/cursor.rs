//! Where the flow table is: which buffer is on screen (the live one, or the
//! one frozen by a pause, with the service map), which passing flow is
//! selected, and which rows fit.
//! Positions are indices into the passing flows; the app stores sequence
//! numbers, so new and evicted flows never move what the user is looking at.

use std::mem;

use service_graph::ServiceGraph;

use super::app::{App, FrozenMap};
use super::buffer::FlowBuffer;

impl App {
    /// The flows on screen: frozen while paused, else the live buffer.
    pub fn shown(&self) -> &FlowBuffer {
        self.frozen.as_ref().unwrap_or(&self.buffer)
    }

    /// How many passing flows the table may show.
    pub fn visible_len(&self) -> usize {
        self.shown().matching().len()
    }

    /// Position of the selected flow (the newest when following), among the
    /// flows on screen: while paused the live buffer holds only later flows.
    pub fn selected_pos(&self) -> Option<usize> {
        let len = self.visible_len();
        let last = len.checked_sub(1)?;
        Some(match self.selected {
            Some(seq) => self
                .shown()
                .matching()
                .partition_point(|&s| s < seq)
                .min(last),
            None => last,
        })
    }

    /// The first row shown when `rows` fit: the newest at the bottom while
    /// following, else the stored top, moved just enough to show the selection.
    pub fn top_pos(&self, rows: usize) -> usize {
        let len = self.visible_len();
        let rows = rows.max(1);
        let Some(sel) = self.selected_pos() else {
            return 0;
        };
        if self.selected.is_none() {
            return len.saturating_sub(rows);
        }
        let top = self
            .top
            .map_or(0, |t| self.shown().matching().partition_point(|&s| s < t));
        if sel < top {
            sel
        } else if sel >= top + rows {
            sel + 1 - rows
        } else {
            top
        }
    }

    /// Moves the selection by `delta` rows; reaching the newest flow while not
    /// paused follows again.
    pub fn move_selection(&mut self, delta: isize) {
        let len = self.visible_len();
        let Some(sel) = self.selected_pos() else {
            return;
        };
        let rows = usize::from(self.table_rows.get());
        let top = self.top_pos(rows);
        let new = sel.saturating_add_signed(delta).min(len - 1);
        if new == len - 1 && self.frozen.is_none() && delta > 0 {
            self.follow();
            return;
        }
        let m = self.shown().matching();
        let (new, top) = (m[new], m[top]);
        self.selected = Some(new);
        self.top = Some(top);
        let top = self.top_pos(rows);
        self.top = Some(self.shown().matching()[top]);
    }

    /// Back to the newest flow.
    pub fn follow(&mut self) {
        self.selected = None;
        self.top = None;
    }

    /// Freezes the table (new flows are buffered aside) and the map (new flows
    /// are counted on, out of sight), or merges what came meanwhile back in
    /// and unfreezes both.
    pub fn toggle_pause(&mut self) {
        match self.frozen.take() {
            Some(frozen) => {
                let live = mem::replace(&mut self.buffer, frozen);
                let filter = &self.filter.applied;
                self.buffer.append(live, |f| filter.matches(f));
                self.frozen_map = None;
            }
            None => {
                let live = self.buffer.continuing();
                self.frozen = Some(mem::replace(&mut self.buffer, live));
                self.frozen_map = Some(FrozenMap::of(&self.graph));
            }
        }
    }

    /// The service map on screen, with its connections tracked and
    /// forgotten: frozen while paused, else the live one.
    pub fn shown_map(&self) -> (&ServiceGraph, usize, u64) {
        match &self.frozen_map {
            Some(m) => (&m.graph, m.connections, m.forgotten),
            None => (
                self.graph.graph(),
                self.graph.connections(),
                self.graph.forgotten(),
            ),
        }
    }

    /// The flow under the cursor, by sequence number.
    pub fn current_seq(&self) -> Option<u64> {
        self.selected_pos().map(|p| self.shown().matching()[p])
    }
}
