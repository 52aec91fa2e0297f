//! Rust mirror of the enums of `ebpf-probes/include/events.h`.
//!
//! Each set of constants is declared with `c_enum!`, which also records the C
//! enum and member names it mirrors; `btf_layout` compares every value with
//! the compiled object's BTF, both ways, before anything loads.

/// One C enum as flow-probe mirrors it: its name and every member's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumMirror {
    pub name: &'static str,
    /// (C member name, value)
    pub members: &'static [(&'static str, i64)],
}

/// Declares constants together with the [`EnumMirror`] that names them in C.
macro_rules! c_enum {
    // A module of constants named after the C members minus `prefix`.
    ($(#[$doc:meta])* pub mod $module:ident: enum $c:ident as $ty:ty, prefix $prefix:literal {
        $($(#[$mdoc:meta])* $name:ident = $value:expr),* $(,)?
    }) => {
        $(#[$doc])*
        pub mod $module {
            $($(#[$mdoc])* pub const $name: $ty = $value;)*
            /// The C enum these constants mirror, for the BTF check.
            pub const MIRROR: super::EnumMirror = super::EnumMirror {
                name: stringify!($c),
                members: &[$((concat!($prefix, stringify!($name)), $name as i64)),*],
            };
        }
    };
    // Constants at this level, named as in C.
    ($(#[$doc:meta])* pub const $mirror:ident: enum $c:ident as $ty:ty {
        $($(#[$mdoc:meta])* $name:ident = $value:expr),* $(,)?
    }) => {
        $($(#[$mdoc])* pub const $name: $ty = $value;)*
        $(#[$doc])*
        pub const $mirror: EnumMirror = EnumMirror {
            name: stringify!($c),
            members: &[$((stringify!($name), $name as i64)),*],
        };
    };
}

c_enum! {
    /// `enum event_version`: bumped on every layout change.
    pub const EVENT_VERSIONS: enum event_version as u8 {
        EVENT_VERSION = 7,
    }
}

c_enum! {
    /// `enum event_type`: which struct follows the header.
    pub const EVENT_TYPES: enum event_type as u8 {
        EVENT_FLOW = 1,
        EVENT_SOCK_XLATE = 2,
        EVENT_TCP_LIFECYCLE = 3,
    }
}

c_enum! {
    /// `enum tcp_lifecycle_kind`.
    pub mod lifecycle: enum tcp_lifecycle_kind as u8, prefix "TCP_LC_" {
        ESTABLISHED = 1,
        CLOSED = 2,
        RETRANSMIT = 3,
    }
}

c_enum! {
    /// `enum emit_reason`: why a flow event was emitted.
    pub mod reason: enum emit_reason as u8, prefix "EMIT_" {
        /// The first packet of a flow in this direction.
        NEW_FLOW = 1,
        /// A TCP flag of the emit mask, new in this direction.
        TCP_FLAGS = 2,
        /// A periodic report, made by flow-probe from the flow tables.
        REPORT = 3,
        /// "Every packet" aggregation.
        PACKET = 4,
    }
}

c_enum! {
    /// `enum event_kind`: Cilium's monitor message numbers (Hubble's event_type).
    pub mod kind: enum event_kind as u8, prefix "KIND_" {
        DROP = 1,
        TRACE = 4,
        POLICY_VERDICT = 5,
    }
}

c_enum! {
    /// `enum verdict`: Hubble's numbers.
    pub mod verdict: enum verdict as u8, prefix "VERDICT_" {
        FORWARDED = 1,
        DROPPED = 2,
        AUDIT = 4,
    }
}

c_enum! {
    /// `enum drop_reason`: Cilium's drop reasons for policy (flow.proto
    /// DropReason numbers).
    pub mod drop_reason: enum drop_reason as u16, prefix "DROP_" {
        /// Default deny: no rule allowed it.
        POLICY_DENIED = 133,
        /// Its L4 header could not be read (Cilium's CT_TRUNCATED_OR_INVALID_HEADER).
        CT_INVALID_HDR = 135,
        /// More IPv6 extension headers than are read (INVALID_IPV6_EXTENSION_HEADER).
        INVALID_EXTHDR = 156,
        /// A later fragment whose first was not seen
        /// (FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND).
        FRAG_NOT_FOUND = 175,
        /// An explicit deny rule.
        POLICY_DENY = 181,
    }
}

c_enum! {
    /// `enum policy_match`: Hubble's policy_match_type, which lookup decided.
    pub mod policy_match: enum policy_match as u8, prefix "MATCH_" {
        NONE = 0,
        L3_ONLY = 1,
        L3_L4 = 2,
        L4_ONLY = 3,
        ALL = 4,
    }
}

c_enum! {
    /// `enum policy_direction`: the policy map's direction, which is
    /// cluster-spec's compiled
    /// [`Direction`](cluster_spec::policy::Direction).
    pub mod policy_direction: enum policy_direction as u8, prefix "POLICY_" {
        INGRESS = cluster_spec::policy::Direction::Ingress as u8,
        EGRESS = cluster_spec::policy::Direction::Egress as u8,
    }
}

c_enum! {
    /// `enum enforcement` in `EndpointInfo`.
    pub mod enforcement: enum enforcement as u8, prefix "ENFORCE_" {
        NONE = 0,
        ON = 1,
        AUDIT = 2,
    }
}

c_enum! {
    /// `enum policy_id`: the policy id of an event no rule decided.
    pub const POLICY_IDS: enum policy_id as u32 {
        POLICY_ID_NONE = 0,
    }
}

c_enum! {
    /// `enum reserved_identity`: the identities the kernel assigns itself,
    /// and where endpoints' and CIDRs' identities start; cluster-spec's numbers.
    pub const RESERVED_IDENTITIES: enum reserved_identity as u32 {
        IDENTITY_WORLD = cluster_spec::endpoints::reserved::WORLD,
        IDENTITY_FIRST_ENDPOINT = cluster_spec::endpoints::reserved::FIRST_CLUSTER_LOCAL,
        IDENTITY_FIRST_CIDR = cluster_spec::policy::FIRST_CIDR_IDENTITY,
    }
}

c_enum! {
    /// `enum hook_point`: the hook that saw the packet.
    pub mod hook: enum hook_point as u8, prefix "HOOK_" {
        TC_INGRESS = 1,
        TC_EGRESS = 2,
        KFREE_SKB = 3,
    }
}

c_enum! {
    /// `enum stat_index`: per-CPU counters in the `STATS` map.
    pub mod stat: enum stat_index as u32, prefix "STAT_" {
        EVENTS_TRIED = 0,
        EVENTS_LOST = 1,
        /// Connections of interfaces with policy not tracked: CT4/CT6 was full.
        CT_FULL = 2,
        /// New flows whose two slots were taken, counted in FLOWS4/FLOWS6.
        SLOTS_TAKEN = 3,
        /// The number of counters.
        MAX = 4,
    }
}

c_enum! {
    /// `enum tc_path`: the path a tc run took, indexes `PATH_TIMES`.
    pub mod tc_path: enum tc_path as u32, prefix "TC_PATH_" {
        /// Not IP, or stopped after parsing (`cost_stop::PARSED`).
        UNTRACKED = 0,
        /// A packet of a flow with an entry, counted, no event.
        COUNTED = 1,
        /// The same, with an event.
        EVENT = 2,
        /// No entry: a new flow, a resumed one or a denied packet.
        MISS = 3,
        /// The number of paths.
        MAX = 4,
    }
}

c_enum! {
    /// `enum slot_state`: a slot of FLOW_SLOTS4/FLOW_SLOTS6.
    pub mod slot_state: enum slot_state as u32, prefix "SLOT_" {
        FREE = 0,
        /// Claimed by a program that is writing it.
        BUSY = 1,
        USED = 2,
    }
}

c_enum! {
    /// `enum cost_stop`: where tc runs stop short of their whole path
    /// (`ProbeConfig::cost_stop`), for the cost benchmark's rungs.
    pub mod cost_stop: enum cost_stop as u32, prefix "COST_STOP_" {
        /// The whole path: what flow-probe runs.
        NOWHERE = 0,
        /// Parsed, then passed: the benchmark's floor.
        PARSED = 1,
        /// Parsed and its flow looked up, nothing more.
        LOOKED_UP = 2,
        /// Everything but sending events: counted, inserted, judged.
        BEFORE_EVENTS = 3,
    }
}

c_enum! {
    /// `enum egress_jump_mark`: what `tc_egress` writes into the packet's
    /// control block before it jumps into `tc_ingress`.
    pub const EGRESS_JUMP_MARKS: enum egress_jump_mark as u32 {
        EGRESS_JUMP_MARK = 0x6a75_6d70,
    }
}

c_enum! {
    /// `enum sock_xlate_point`: Hubble's SocketTranslationPoint numbers.
    pub mod xlate_point: enum sock_xlate_point as u8, prefix "XLATE_" {
        PRE_DIRECTION_FWD = 1,
        POST_DIRECTION_FWD = 2,
        PRE_DIRECTION_REV = 3,
        POST_DIRECTION_REV = 4,
    }
}

c_enum! {
    /// `enum sock_hook`: the socket call that was translated.
    pub mod sock_hook: enum sock_hook as u8, prefix "SOCK_HOOK_" {
        CONNECT = 1,
        SENDMSG = 2,
        RECVMSG = 3,
    }
}

/// Every mirrored enum, for the BTF check; `struct mirrored_enums` in
/// `events.h` lists the same ones on the C side.
pub const MIRRORED_ENUMS: &[EnumMirror] = &[
    EVENT_VERSIONS,
    EVENT_TYPES,
    lifecycle::MIRROR,
    reason::MIRROR,
    kind::MIRROR,
    verdict::MIRROR,
    drop_reason::MIRROR,
    policy_match::MIRROR,
    policy_direction::MIRROR,
    enforcement::MIRROR,
    POLICY_IDS,
    RESERVED_IDENTITIES,
    hook::MIRROR,
    stat::MIRROR,
    tc_path::MIRROR,
    slot_state::MIRROR,
    EGRESS_JUMP_MARKS,
    cost_stop::MIRROR,
    xlate_point::MIRROR,
    sock_hook::MIRROR,
];
