//! How large a `GetFlows` filter may be, checked before anything compiles.
//!
//! Matching cost per flow must stay small whatever a client sends: IPs,
//! names, ports and identities are looked up in sets ([`super::sets`]), so
//! their number only costs memory and compile time; FQDN and node-name
//! patterns and label selectors are tried one by one, so their total size has
//! its own, smaller budget.

use observer_proto::flow::{FlowFilter, Workload};

use super::FilterError;

/// Entries in all filters of the whitelist and the blacklist together; a
/// filter with no entry counts as one.
pub const MAX_TOTAL_ENTRIES: usize = 16_384;
/// Entries in one repeated field of one filter.
pub const MAX_FIELD_ENTRIES: usize = 4_096;
/// Bytes of one string entry (an IP, a name, a pattern, a selector).
pub const MAX_ENTRY_BYTES: usize = 1_024;
/// Bytes of all FQDN and node-name patterns and label selectors together:
/// each is tried against every flow.
pub const MAX_PATTERN_BYTES: usize = 8_192;

/// One repeated field as the limits see it: its name, its entry count, and
/// the strings it holds (for lengths).
struct Field<'a> {
    name: &'static str,
    len: usize,
    strings: Vec<&'a str>,
    /// Tried one by one for every flow.
    pattern: bool,
}

fn strings<'a>(name: &'static str, values: &'a [String], pattern: bool) -> Field<'a> {
    Field {
        name,
        len: values.len(),
        strings: values.iter().map(String::as_str).collect(),
        pattern,
    }
}

fn workloads<'a>(name: &'static str, values: &'a [Workload]) -> Field<'a> {
    Field {
        name,
        len: values.len(),
        strings: values
            .iter()
            .flat_map(|w| [w.name.as_str(), w.kind.as_str()])
            .collect(),
        pattern: false,
    }
}

fn counted<T>(name: &'static str, values: &[T]) -> Field<'static> {
    Field {
        name,
        len: values.len(),
        strings: Vec::new(),
        pattern: false,
    }
}

/// Every repeated field of `f` that compiles (the refused L7, tracing and CEL
/// fields are refused by name later).
fn fields(f: &FlowFilter) -> [Field<'_>; 32] {
    [
        strings("uuid", &f.uuid, false),
        strings("source_ip", &f.source_ip, false),
        strings("source_ip_xlated", &f.source_ip_xlated, false),
        strings("source_pod", &f.source_pod, false),
        strings("source_fqdn", &f.source_fqdn, true),
        strings("source_label", &f.source_label, true),
        strings("source_service", &f.source_service, false),
        workloads("source_workload", &f.source_workload),
        strings("source_cluster_name", &f.source_cluster_name, false),
        strings("destination_ip", &f.destination_ip, false),
        strings("destination_pod", &f.destination_pod, false),
        strings("destination_fqdn", &f.destination_fqdn, true),
        strings("destination_label", &f.destination_label, true),
        strings("destination_service", &f.destination_service, false),
        workloads("destination_workload", &f.destination_workload),
        strings(
            "destination_cluster_name",
            &f.destination_cluster_name,
            false,
        ),
        counted("traffic_direction", &f.traffic_direction),
        counted("verdict", &f.verdict),
        counted("drop_reason_desc", &f.drop_reason_desc),
        Field {
            name: "interface",
            len: f.interface.len(),
            strings: f.interface.iter().map(|i| i.name.as_str()).collect(),
            pattern: false,
        },
        counted("event_type", &f.event_type),
        strings("protocol", &f.protocol, false),
        strings("source_port", &f.source_port, false),
        strings("destination_port", &f.destination_port, false),
        counted("reply", &f.reply),
        counted("source_identity", &f.source_identity),
        counted("destination_identity", &f.destination_identity),
        counted("tcp_flags", &f.tcp_flags),
        strings("node_name", &f.node_name, true),
        strings("node_labels", &f.node_labels, true),
        counted("ip_version", &f.ip_version),
        counted("encrypted", &f.encrypted),
    ]
}

/// Refuses filters over the limits above, naming the limit.
pub(super) fn check(whitelist: &[FlowFilter], blacklist: &[FlowFilter]) -> Result<(), FilterError> {
    let mut total = 0usize;
    let mut pattern_bytes = 0usize;
    for f in whitelist.iter().chain(blacklist) {
        let mut entries = 0usize;
        for field in fields(f) {
            if field.len > MAX_FIELD_ENTRIES {
                return Err(FilterError::TooManyFieldEntries {
                    field: field.name,
                    count: field.len,
                    limit: MAX_FIELD_ENTRIES,
                });
            }
            if let Some(long) = field.strings.iter().find(|s| s.len() > MAX_ENTRY_BYTES) {
                return Err(FilterError::EntryTooLong {
                    field: field.name,
                    bytes: long.len(),
                    limit: MAX_ENTRY_BYTES,
                });
            }
            if field.pattern {
                pattern_bytes += field.strings.iter().map(|s| s.len()).sum::<usize>();
            }
            entries += field.len;
        }
        total += entries.max(1);
    }
    if total > MAX_TOTAL_ENTRIES {
        return Err(FilterError::TooManyEntries {
            count: total,
            limit: MAX_TOTAL_ENTRIES,
        });
    }
    if pattern_bytes > MAX_PATTERN_BYTES {
        return Err(FilterError::PatternsTooLarge {
            bytes: pattern_bytes,
            limit: MAX_PATTERN_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::compile;

    fn ips(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255))
            .collect()
    }

    fn message(white: &[FlowFilter], black: &[FlowFilter]) -> String {
        compile(white, black).unwrap_err().to_string()
    }

    #[test]
    fn one_field_may_hold_the_limit_and_no_more() {
        let at = FlowFilter {
            source_ip: ips(MAX_FIELD_ENTRIES),
            ..Default::default()
        };
        assert!(compile(std::slice::from_ref(&at), &[]).is_ok());
        let over = FlowFilter {
            destination_ip: ips(MAX_FIELD_ENTRIES + 1),
            ..Default::default()
        };
        assert_eq!(
            message(&[], &[over]),
            "destination_ip: too many entries: 4097 (limit 4096 per field)"
        );
    }

    #[test]
    fn entries_count_across_both_lists_and_empty_filters_count_one() {
        let full = FlowFilter {
            source_ip: ips(MAX_FIELD_ENTRIES),
            ..Default::default()
        };
        let white = vec![full.clone(), full.clone()];
        let mut black = vec![full.clone(), full];
        assert!(compile(&white, &black).is_ok(), "exactly the limit");
        black.push(FlowFilter::default());
        assert_eq!(
            message(&white, &black),
            "too many entries: 16385 across the whitelist and blacklist (limit 16384)"
        );
        let empties = vec![FlowFilter::default(); MAX_TOTAL_ENTRIES + 1];
        assert_eq!(
            message(&empties, &[]),
            "too many entries: 16385 across the whitelist and blacklist (limit 16384)"
        );
    }

    #[test]
    fn long_entries_name_their_field() {
        let pod = FlowFilter {
            source_pod: vec!["default/".to_string() + &"a".repeat(MAX_ENTRY_BYTES)],
            ..Default::default()
        };
        assert_eq!(
            message(&[pod], &[]),
            "source_pod: an entry of 1032 bytes is too long (limit 1024 bytes)"
        );
        let workload = FlowFilter {
            destination_workload: vec![Workload {
                name: "w".into(),
                kind: "k".repeat(MAX_ENTRY_BYTES + 1),
            }],
            ..Default::default()
        };
        assert_eq!(
            message(&[workload], &[]),
            "destination_workload: an entry of 1025 bytes is too long (limit 1024 bytes)"
        );
    }

    #[test]
    fn patterns_and_selectors_share_one_budget() {
        // 8 selectors and 8 node patterns of 512 bytes: exactly 8 KiB.
        // Values are at most 63 bytes: 8 requirements of 62 and one of 9.
        let selector = vec![format!("k8s:a={}", "a".repeat(56)); 8].join(",") + ",k8s:b=cc";
        assert_eq!(selector.len(), 512);
        let pattern = format!("n*{}", "b".repeat(510));
        let filter = |extra: usize| FlowFilter {
            source_label: vec![selector.clone(); 8],
            node_name: vec![pattern.clone(); 8 + extra],
            ..Default::default()
        };
        assert!(compile(&[filter(0)], &[]).is_ok());
        assert_eq!(
            message(&[filter(0)], &[filter(0)]),
            "patterns and label selectors too large: 16384 bytes in all (limit 8192 bytes)"
        );
        assert_eq!(
            message(&[filter(1)], &[]),
            "patterns and label selectors too large: 8704 bytes in all (limit 8192 bytes)"
        );
    }
}
