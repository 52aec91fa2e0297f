//! flow-probe's flow numbers: its UUIDs (version 8) carry the probe run and
//! the flow's place in it, so the relay can tell what it never read of a
//! run ([`crate::peer::resume`]) and which flows an earlier relay run took
//! ([`crate::history::losses`]).

/// A flow-probe flow UUID's run (its first 8 bytes) and the flow's number in
/// that run (its last 8, without the variant's 2 bits): flow-probe numbers
/// the flows of a run in order (UUID version 8, see flow-probe's
/// `flow_builder::ids`), so two numbers of one run count the flows between
/// them. `None` for any other UUID (Cilium's are random, version 4).
pub fn run_and_number(uuid: &str) -> Option<(u64, u64)> {
    let b = uuid.as_bytes();
    // ASCII first: the hex digits are sliced by byte below.
    if !uuid.is_ascii() || b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    let variant = u8::from_str_radix(&hex[16..17], 16).ok()?;
    if &hex[12..13] != "8" || variant >> 2 != 0b10 {
        return None;
    }
    let run = u64::from_str_radix(&hex[..16], 16).ok()?;
    let number = u64::from_str_radix(&hex[16..], 16).ok()? & (u64::MAX >> 2);
    Some((run, number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_probe_uuids_give_their_run_and_number_and_others_nothing() {
        assert_eq!(
            run_and_number("3f2a9c41-07d5-8e1b-8000-00000000002a"),
            Some((0x3f2a_9c41_07d5_8e1b, 42))
        );
        assert_eq!(
            run_and_number("00000000-0000-8234-8000-000000000007"),
            Some((0x8234, 7))
        );
        // Random (version 4), a wrong variant, not a UUID.
        assert_eq!(run_and_number("3f2a9c41-07d5-4e1b-8000-00000000002a"), None);
        assert_eq!(run_and_number("3f2a9c41-07d5-8e1b-c000-00000000002a"), None);
        assert_eq!(run_and_number("uuid-7"), None);
        // 36 bytes with its dashes in place, but a two-byte character where
        // the variant's digit is.
        assert_eq!(
            run_and_number("00000000-0000-8000-\u{e9}00-000000000000"),
            None
        );
    }
}
