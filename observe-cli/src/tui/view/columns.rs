//! The flow table's column widths. Time, node, type and verdict are as wide
//! as their longest value can be, so they never cut and never jump; source,
//! destination and summary share the rest by what they hold on screen. On a
//! narrow terminal whole columns go, the least telling first, so that source
//! and destination stay readable.

use std::sync::LazyLock;

use observer_proto::flow::{CiliumEventType, Flow};
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use crate::tui::text;

pub const TIME: usize = 0;
pub const NODE: usize = 1;
pub const SOURCE: usize = 2;
pub const DESTINATION: usize = 3;
pub const TYPE: usize = 4;
pub const VERDICT: usize = 5;
pub const SUMMARY: usize = 6;

pub const TITLES: [&str; 7] = [
    "TIME",
    "NODE",
    "SOURCE",
    "DESTINATION",
    "TYPE",
    "VERDICT",
    "SUMMARY",
];

/// Columns that take what the fixed ones leave.
const FLEXIBLE: [usize; 3] = [SOURCE, DESTINATION, SUMMARY];
/// Below this a source or destination is no longer readable.
pub const FLEX_MIN: u16 = 20;
/// Node names are the user's; a very long one must not push the rest out.
pub const NODE_MAX: u16 = 24;
/// Dropped in this order when the terminal is too narrow.
const DROP_ORDER: [usize; 5] = [NODE, TYPE, SUMMARY, TIME, VERDICT];
/// Space between columns (ratatui's default).
pub const GAP: u16 = 1;

/// `15:04:05.123`.
pub const TIME_WIDTH: u16 = 12;

/// The longest verdict name: every number maps to a name of the enum or
/// `UNKNOWN`, and the enum's numbers are small, so 0..32 covers them all.
pub static VERDICT_WIDTH: LazyLock<u16> = LazyLock::new(|| {
    (0..32)
        .map(|v| observer_proto::names::verdict(v).len())
        .chain([TITLES[VERDICT].len()])
        .max()
        .map_or(0, width)
});

/// The longest type without a sub-type number (an observation point):
/// monitor types and points are small numbers, so 0..32 covers them. Rarer
/// forms (`type-9:3`) and those that say more (a drop's reason, a policy
/// verdict's match and direction, a socket translation's point) widen the
/// column from when they are first on screen (`App::type_width`).
pub static TYPE_WIDTH: LazyLock<u16> = LazyLock::new(|| {
    let events = (0..32).filter(|t| !matches!(t, 5 | 7)).map(|t| Flow {
        event_type: Some(CiliumEventType {
            r#type: t,
            sub_type: 0,
        }),
        ..Default::default()
    });
    let points = (0..32).map(|p| Flow {
        trace_observation_point: p,
        ..Default::default()
    });
    events
        .chain(points)
        .map(|f| text::kind(&f).len())
        .max()
        .map_or(0, width)
});

fn width(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// `s` cut to `width` cells with `…` as its last one when it is longer: a
/// cut without a mark changes what it says (`cache:35` of `cache:35842`).
pub fn fit(s: &str, width: u16) -> String {
    let width = usize::from(width);
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        cut.push('…');
    }
    cut
}

/// `line` cut to `width` cells as [`fit`] cuts a string, each part keeping
/// its style.
pub fn fit_line(line: Line<'_>, width: u16) -> Line<'static> {
    let room = usize::from(width);
    let total: usize = line.spans.iter().map(|s| s.content.chars().count()).sum();
    let keep = if total <= room {
        total
    } else {
        room.saturating_sub(1)
    };
    let mut left = keep;
    let mut spans: Vec<Span<'static>> = Vec::new();
    for span in line.spans {
        if left == 0 {
            break;
        }
        let text: String = span.content.chars().take(left).collect();
        left -= text.chars().count();
        spans.push(Span::styled(text, span.style));
    }
    if total > room && room > 0 {
        let style = spans.last().map(|s| s.style).unwrap_or_default();
        spans.push(Span::styled("…", style));
    }
    Line::from(spans).style(line.style)
}

/// `line` over at most `rows` lines of `width` cells, broken after a space
/// where the row has one (else anywhere), the last one cut with a mark if it
/// still does not fit.
pub fn wrap_line(line: Line<'_>, width: u16, rows: usize) -> Vec<Line<'static>> {
    let room = usize::from(width).max(1);
    let chars: Vec<(char, Style)> = line
        .spans
        .iter()
        .flat_map(|s| s.content.chars().map(move |c| (c, s.style)))
        .collect();
    let mut out = Vec::new();
    let mut rest = &chars[..];
    while !rest.is_empty() {
        if out.len() + 1 == rows || rest.len() <= room {
            out.push(fit_line(styled_line(rest), width));
            break;
        }
        let cut = rest[..=room]
            .iter()
            .rposition(|(c, _)| *c == ' ')
            .filter(|&i| i > 0)
            .unwrap_or(room);
        out.push(styled_line(&rest[..cut]));
        rest = &rest[cut..];
        if rest.first().is_some_and(|(c, _)| *c == ' ') {
            rest = &rest[1..];
        }
    }
    out
}

/// Characters with their styles as a line, one span per run of a style.
fn styled_line(chars: &[(char, Style)]) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    for &(c, style) in chars {
        match spans.last_mut() {
            Some(last) if last.style == style => last.content.to_mut().push(c),
            _ => spans.push(Span::styled(c.to_string(), style)),
        }
    }
    Line::from(spans)
}

/// Display width of `s` in cells (flow fields are ASCII but for odd names).
pub fn cells(s: &str) -> u16 {
    width(s.chars().count())
}

/// The widths of the columns for a table `total` cells wide, `None` for a
/// column left out. `want[i]` is what column `i` needs: for the fixed ones
/// their longest value, for the flexible ones the longest on screen.
pub fn widths(total: u16, want: [u16; 7]) -> [Option<u16>; 7] {
    let min = |i: usize| {
        if FLEXIBLE.contains(&i) {
            FLEX_MIN
        } else {
            want[i]
        }
    };
    let mut keep = [true; 7];
    let needed = |keep: &[bool; 7]| {
        let kept = (0..7).filter(|&i| keep[i]);
        let n = kept.clone().count() as u16;
        kept.map(min).sum::<u16>() + GAP * n.saturating_sub(1)
    };
    for i in DROP_ORDER {
        if needed(&keep) <= total {
            break;
        }
        keep[i] = false;
    }
    let n = keep.iter().filter(|k| **k).count() as u16;
    let fixed: u16 = (0..7)
        .filter(|&i| keep[i] && !FLEXIBLE.contains(&i))
        .map(|i| want[i])
        .sum();
    let mut rest = total.saturating_sub(fixed + GAP * n.saturating_sub(1));
    // Water-filling: the column that needs least is served first; the others
    // split what is left evenly, none getting more than it shows.
    let mut flex: Vec<usize> = FLEXIBLE.into_iter().filter(|&i| keep[i]).collect();
    flex.sort_by_key(|&i| want[i]);
    let mut out = [None; 7];
    for (served, &i) in flex.iter().enumerate() {
        let share = rest / (flex.len() - served) as u16;
        let w = want[i].max(FLEX_MIN).min(share);
        out[i] = Some(w);
        rest -= w;
    }
    // Whatever no one needs goes to the summary, the last column.
    if let Some(w) = &mut out[SUMMARY] {
        *w += rest;
    }
    for i in (0..7).filter(|&i| keep[i] && !FLEXIBLE.contains(&i)) {
        out[i] = Some(want[i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_field_ends_with_an_ellipsis() {
        assert_eq!(fit("infra/cache:35842", 14), "infra/cache:3…");
        assert_eq!(fit("infra/cache:35842", 17), "infra/cache:35842");
        assert_eq!(fit("api", 1), "…");
        assert_eq!(fit("api", 0), "");
    }

    #[test]
    fn a_cut_line_keeps_its_styles_and_ends_with_an_ellipsis() {
        use ratatui::style::Color;
        let red = Style::new().fg(Color::Red);
        let line = || {
            Line::from(vec![
                Span::raw("12 shown  "),
                Span::styled("PAUSED +34", red),
            ])
        };
        let texts = |l: &Line| {
            l.spans
                .iter()
                .map(|s| s.content.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&fit_line(line(), 20)), ["12 shown  ", "PAUSED +34"]);
        let cut = fit_line(line(), 16);
        assert_eq!(texts(&cut), ["12 shown  ", "PAUSE", "…"]);
        assert_eq!(cut.spans[2].style, red);
        assert_eq!(texts(&fit_line(line(), 0)), Vec::<String>::new());
    }

    #[test]
    fn a_wrapped_line_breaks_after_spaces_and_marks_what_does_not_fit() {
        let rows = |text: &str, width, n| {
            wrap_line(Line::raw(text.to_string()), width, n)
                .iter()
                .map(|l| {
                    l.spans
                        .iter()
                        .map(|s| s.content.to_string())
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rows("relay down; reconnecting", 12, 2),
            ["relay down;", "reconnecting"]
        );
        assert_eq!(
            rows("relay down; reconnecting now", 12, 2),
            ["relay down;", "reconnectin…"]
        );
        // No space to break at: anywhere.
        assert_eq!(rows("abcdefghij", 4, 3), ["abcd", "efgh", "ij"]);
        assert_eq!(rows("short", 12, 2), ["short"]);
    }

    #[test]
    fn fixed_widths_are_the_longest_names() {
        assert_eq!(*VERDICT_WIDTH, cells("VERDICT_UNKNOWN"));
        assert_eq!(*TYPE_WIDTH, cells("from-endpoint"));
    }

    #[test]
    fn flexible_columns_share_what_is_left() {
        // time, node, source, destination, type, verdict, summary
        let want = [12, 5, 26, 24, 14, 15, 41];
        // Room for all: the summary takes the spare cells.
        assert_eq!(widths(160, want), [12, 5, 26, 24, 14, 15, 58].map(Some));
        // 88 cells for three that want 91: the two that fit get theirs.
        assert_eq!(widths(140, want), [12, 5, 26, 24, 14, 15, 38].map(Some));
        // Too narrow: node, type, summary, time and verdict go, in turn.
        assert_eq!(
            widths(80, want),
            [Some(12), None, Some(26), Some(24), None, Some(15), None]
        );
        assert_eq!(
            widths(60, want),
            [None, None, Some(22), Some(21), None, Some(15), None]
        );
        assert_eq!(
            widths(40, want),
            [None, None, Some(20), Some(19), None, None, None]
        );
    }
}
