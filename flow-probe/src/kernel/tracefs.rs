//! Reads tracepoint format files, so the probes use the running kernel's field
//! offsets and names instead of assuming them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::sysfs;

/// One tracepoint's format: field offsets and the symbolic names of its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Format {
    pub offsets: BTreeMap<String, u32>,
    /// `{ N, "NAME" }` pairs from the print format, e.g. drop reasons.
    pub symbols: BTreeMap<u32, String>,
}

/// The folder of one tracepoint in tracefs.
pub fn event_dir(group: &str, event: &str) -> PathBuf {
    Path::new(sysfs::TRACEFS)
        .join("events")
        .join(group)
        .join(event)
}

/// Whether the running kernel has the tracepoint (mounting tracefs if needed).
pub fn has_event(group: &str, event: &str) -> std::io::Result<bool> {
    sysfs::ensure_tracefs()?;
    Ok(event_dir(group, event).join("id").exists())
}

/// Reads a tracepoint's format (mounting tracefs if needed).
pub fn read_format(group: &str, event: &str) -> std::io::Result<Format> {
    sysfs::ensure_tracefs()?;
    let path = event_dir(group, event).join("format");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(parse_format(&text))
}

/// Parses the text of a tracepoint `format` file.
pub fn parse_format(text: &str) -> Format {
    let mut out = Format::default();
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next().unwrap_or("");
        let name = decl
            .rsplit([' ', '*'])
            .next()
            .unwrap_or("")
            .split('[')
            .next()
            .unwrap_or("");
        let offset = parts
            .find_map(|p| p.strip_prefix("offset:"))
            .and_then(|o| o.parse().ok());
        if let (false, Some(off)) = (name.is_empty(), offset) {
            out.offsets.insert(name.to_string(), off);
        }
    }
    if let Some(fmt) = text.split("print fmt:").nth(1) {
        for pair in fmt.split('{').skip(1) {
            let Some((num, rest)) = pair.split_once(',') else {
                continue;
            };
            let Some(name) = rest.split('"').nth(1) else {
                continue;
            };
            if let Ok(n) = num.trim().parse() {
                out.symbols.insert(n, name.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KFREE_SKB: &str = "name: kfree_skb\nID: 2310\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
        \tfield:unsigned short protocol;\toffset:32;\tsize:2;\tsigned:0;\n\
        \tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;\n\
        \tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;\n\n\
        print fmt: \"reason: %s\", __print_symbolic(REC->reason, { 2, \"NOT_SPECIFIED\" }, { 12, \"NETFILTER_DROP\" })\n";

    #[test]
    fn offsets_and_symbols_come_from_the_format_text() {
        let f = parse_format(KFREE_SKB);
        assert_eq!(f.offsets["skbaddr"], 8);
        assert_eq!(f.offsets["reason"], 36);
        assert_eq!(f.offsets["saddr_v6"], 40);
        assert_eq!(f.symbols[&12], "NETFILTER_DROP");
        assert_eq!(f.symbols[&2], "NOT_SPECIFIED");
    }

    #[test]
    fn this_kernel_reports_kfree_skb_reasons() {
        let f = read_format("skb", "kfree_skb").expect("tracefs mounts and has skb:kfree_skb");
        assert!(f.offsets.contains_key("reason") && f.offsets.contains_key("skbaddr"));
        assert_eq!(
            f.symbols
                .values()
                .filter(|n| *n == "NETFILTER_DROP")
                .count(),
            1
        );
    }
}
