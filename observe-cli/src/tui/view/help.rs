//! The key help (`?`): a box over the current view listing every key.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::columns::fit;
use crate::tui::app::App;

/// Keys and what they do, in the order a user meets them.
pub const KEYS: [(&str, &str); 11] = [
    ("space", "pause / resume"),
    ("↑ ↓ k j", "move the selection (scroll on the other tabs)"),
    ("PgUp PgDn", "move a page"),
    ("Home g", "oldest flow"),
    ("End G", "follow the newest flow"),
    ("Enter", "flow detail (Esc: back)"),
    ("/", "filter (Enter: apply, Esc: cancel)"),
    ("Tab", "next tab (Shift-Tab: previous)"),
    ("c", "service map: what changed / the map"),
    ("q Esc Ctrl-C", "quit"),
    ("?", "this help (? or Esc: close)"),
];

/// Width of the key column.
const KEY_WIDTH: usize = 14;

/// The help's lines: `space      pause / resume`.
pub fn lines() -> Vec<String> {
    KEYS.iter()
        .map(|(k, what)| format!("{k:<KEY_WIDTH$}{what}"))
        .collect()
}

impl App {
    pub(super) fn render_help(&self, frame: &mut Frame, area: Rect) {
        let lines = lines();
        let inner_w = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        // A border and a space on each side; cut to the screen if it is small.
        let w = u16::try_from(inner_w + 4)
            .unwrap_or(u16::MAX)
            .min(area.width);
        let h = u16::try_from(lines.len() + 2)
            .unwrap_or(u16::MAX)
            .min(area.height);
        let r = Rect {
            x: area.x + (area.width - w) / 2,
            y: area.y + (area.height - h) / 2,
            width: w,
            height: h,
        };
        // Inside the border: the lines that do not fit scroll (↑ ↓).
        let hidden = u16::try_from(lines.len())
            .unwrap_or(u16::MAX)
            .saturating_sub(h.saturating_sub(2));
        self.help_max_scroll.set(hidden);
        let scroll = self.help_scroll.min(hidden);
        let title = if hidden > 0 {
            " keys (↑ ↓ more) "
        } else {
            " keys "
        };
        let block = Block::new().borders(Borders::ALL).title(title);
        // Inside the borders, cut with a mark on a narrow screen.
        let inner = w.saturating_sub(2);
        let text: Vec<Line> = lines
            .into_iter()
            .map(|l| Line::raw(fit(&format!(" {l}"), inner)))
            .collect();
        frame.render_widget(Clear, r);
        frame.render_widget(Paragraph::new(text).block(block).scroll((scroll, 0)), r);
    }
}
