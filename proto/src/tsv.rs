//! Node names as one field of a tab-separated line: in the relay's history
//! files (`losses.tsv`, `policies/in-force.tsv`) and in the lines of a SQL
//! answer's `app_metadata` that `observe query` reads. A peer names itself,
//! so a name may hold the tab or line break that would otherwise make a field
//! or a line of its own.

/// A node name as one field of a line: a peer names itself, so its name may
/// hold a tab or a line break.
pub fn field(node: &str) -> String {
    let mut out = String::with_capacity(node.len());
    for c in node.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// The name [`field`] wrote (an unknown escape stays as it is).
pub fn unfield(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.extend(['\\', other]),
            None => out.push('\\'),
        }
    }
    out
}
