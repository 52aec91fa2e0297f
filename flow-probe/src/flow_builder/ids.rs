//! Flow UUIDs: a random prefix per probe run and a counter.

/// Flow UUIDs (RFC 9562 version 8, a custom layout): the first 8 bytes are
/// drawn at random once per probe run (60 random bits: the version takes 4),
/// the last 8 are a counter of the run's flows, big-endian (62 bits: the
/// variant takes 2). So they are unique across nodes and restarts (two runs
/// share a prefix with probability about runs² / 2⁶¹), sort by emission
/// within a run, and cost the relay's history a few bytes per flow instead of
/// 16 incompressible random ones. Text: `3f2a9c41-07d5-8e1b-8000-00000000002a`.
pub struct FlowIds {
    prefix: [u8; 8],
    counter: u64,
}

impl FlowIds {
    /// A new run: a random prefix, the counter at 0.
    pub fn new() -> Self {
        use std::hash::{BuildHasher, RandomState};
        // RandomState's keys come from the OS's random source; time and pid
        // only add to them.
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self::with_prefix(RandomState::new().hash_one(salt))
    }

    /// A run with this prefix (the version nibble replaces 4 of its bits).
    pub fn with_prefix(prefix: u64) -> Self {
        FlowIds {
            prefix: prefix.to_be_bytes(),
            counter: 0,
        }
    }

    /// The next flow's UUID, canonical text (lowercase, hyphenated).
    pub fn next_uuid(&mut self) -> String {
        let mut out = String::new();
        self.write_next(&mut out);
        out
    }

    /// Writes the next flow's UUID into `out`, in its memory.
    pub fn write_next(&mut self, out: &mut String) {
        self.counter = (self.counter + 1) & (u64::MAX >> 2);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.prefix);
        bytes[8..].copy_from_slice(&self.counter.to_be_bytes());
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Builder::from_custom_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .encode_lower(&mut text);
        super::reuse::set_str(out, text);
    }

    /// Takes back the number the last UUID drew, for a flow that is never
    /// kept: kept flows' numbers stay consecutive, and the relay counts a
    /// gap in them as flows lost on their way.
    pub fn give_back(&mut self) {
        self.counter = self.counter.wrapping_sub(1) & (u64::MAX >> 2);
    }
}

impl Default for FlowIds {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::FlowIds;

    #[test]
    fn flow_uuids_are_version_8_with_a_run_prefix_and_a_counter() {
        let mut ids = FlowIds::with_prefix(0x0123_4567_89ab_cdef);
        assert_eq!(ids.next_uuid(), "01234567-89ab-8def-8000-000000000001");
        assert_eq!(ids.next_uuid(), "01234567-89ab-8def-8000-000000000002");
        let parsed = uuid::Uuid::parse_str(&ids.next_uuid()).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        // Two runs draw different prefixes.
        let (a, b) = (FlowIds::new().next_uuid(), FlowIds::new().next_uuid());
        assert_ne!(a[..18], b[..18]);
        assert_eq!(a[18..], b[18..]);
    }
}
