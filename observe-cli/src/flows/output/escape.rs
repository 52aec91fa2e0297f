//! Flow text is data from servers and files: a control character in a pod
//! name or a summary (an ESC starting a terminal sequence, a CR that moves
//! back over the line) is shown as text, as Hubble's printer shows it, so a
//! crafted flow cannot drive the reader's terminal. ESC reads `^[` and CR
//! `\r` as in Hubble; other control characters in caret notation (`^G`) or,
//! past ASCII, as `\u{9b}`, as are the marks that reorder a line (U+202E).
//! Tabs and line ends stay. The printers escape each
//! piece of flow text before they colour it, so even a colour code in the
//! data is shown, not obeyed.

use std::borrow::Cow;

/// `text` with its control characters shown as text.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\x1b' => out += "^[",
            '\r' => out += "\\r",
            c if needs_escape(c) && c.is_ascii() => {
                out.push('^');
                out.push(char::from((c as u8) ^ 0x40));
            }
            c if needs_escape(c) => out += &format!("\\u{{{:x}}}", c as u32),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Every text of `f` a screen shows (names, labels, node, summary,
/// interface) with its control characters as text, in place: for the TUI,
/// whose views (table, detail pane, service map, top talkers) all show
/// them.
pub fn escape_flow_text(f: &mut observer_proto::flow::Flow) {
    fn fix(s: &mut String) {
        if let Cow::Owned(o) = escape_controls(s) {
            *s = o;
        }
    }
    for ep in [&mut f.source, &mut f.destination].into_iter().flatten() {
        fix(&mut ep.cluster_name);
        fix(&mut ep.namespace);
        fix(&mut ep.pod_name);
        ep.labels.iter_mut().for_each(fix);
        for w in &mut ep.workloads {
            fix(&mut w.name);
            fix(&mut w.kind);
        }
    }
    for svc in [&mut f.source_service, &mut f.destination_service]
        .into_iter()
        .flatten()
    {
        fix(&mut svc.name);
        fix(&mut svc.namespace);
    }
    f.source_names.iter_mut().for_each(fix);
    f.destination_names.iter_mut().for_each(fix);
    fix(&mut f.node_name);
    fix(&mut f.summary);
    if let Some(i) = &mut f.interface {
        fix(&mut i.name);
    }
    // An edge's drop reason in the service map.
    if let Some(k) = &mut f.kernel_drop {
        fix(&mut k.name);
    }
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c)
}

/// The marks and overrides that reorder how a line reads (U+202E shows
/// `abc` as `cba`): shown too, so a name reads as it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_read_as_text() {
        assert_eq!(
            escape_controls("p\x1b]0;title\x07 a\rb \u{9b}2J"),
            "p^[]0;title^G a\\rb \\u{9b}2J"
        );
        assert_eq!(escape_controls("\x1b[2Jclear\x7f"), "^[[2Jclear^?");
        // Tabs and line ends stay; a colour code in the data is shown too.
        assert_eq!(escape_controls("a\tb\n"), "a\tb\n");
        assert_eq!(
            escape_controls("\x1b[32mFORWARDED\x1b[0m"),
            "^[[32mFORWARDED^[[0m"
        );
        assert!(matches!(escape_controls("plain"), Cow::Borrowed("plain")));
        assert_eq!(escape_controls("a\u{202e}cba"), "a\\u{202e}cba");
        let mut f = observer_proto::flow::Flow {
            node_name: "n\x1b".into(),
            destination: Some(observer_proto::flow::Endpoint {
                pod_name: "db\u{202e}x".into(),
                workloads: vec![observer_proto::flow::Workload {
                    name: "w\x07".into(),
                    kind: "Deployment".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        escape_flow_text(&mut f);
        let d = f.destination.unwrap();
        assert_eq!(
            (
                f.node_name.as_str(),
                d.pod_name.as_str(),
                d.workloads[0].name.as_str()
            ),
            ("n^[", "db\\u{202e}x", "w^G")
        );
    }
}
