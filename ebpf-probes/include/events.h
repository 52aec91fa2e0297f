/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The wire format of every event the probes put on the ring buffer.
 *
 * This header is the single source of truth: flow-probe mirrors each struct in
 * flow-probe/src/kernel/events.rs and checks size and every field offset against
 * the compiled object's BTF before it loads anything, and each enum's values the
 * same way (see struct mirrored_enums at the end). Fixed-width types only,
 * explicit padding, and a leading {type, version} header. Bump EVENT_VERSION on
 * every layout change. Named values are enums, not #defines: BTF carries enums.
 */
#ifndef OBSERVE_EVENTS_H
#define OBSERVE_EVENTS_H

#include <linux/types.h>

enum event_version {
	EVENT_VERSION = 7,
};

enum event_type {
	EVENT_FLOW = 1,
	EVENT_SOCK_XLATE = 2,  /* struct sock_xlate_event: socket-level service translation */
	EVENT_TCP_LIFECYCLE = 3, /* struct tcp_lifecycle_event: established, closed, retransmit */
};

/* What a TCP lifecycle event reports. */
enum tcp_lifecycle_kind {
	TCP_LC_ESTABLISHED = 1,
	TCP_LC_CLOSED = 2,
	TCP_LC_RETRANSMIT = 3,
};

/* Why a flow event was emitted. */
enum emit_reason {
	EMIT_NEW_FLOW = 1,   /* first packet of this flow in this direction */
	EMIT_TCP_FLAGS = 2,  /* a TCP flag of the emit mask (SYN, FIN, RST) new in this direction */
	EMIT_REPORT = 3,     /* periodic report of a live flow (made by flow-probe from FLOWS4/6) */
	EMIT_PACKET = 4,     /* "every packet" aggregation mode */
};

/* Kind of event, with Cilium's monitor message numbers (Hubble's event_type). */
enum event_kind {
	KIND_DROP = 1,
	KIND_TRACE = 4,
	KIND_POLICY_VERDICT = 5,
};

/* Verdicts, with Hubble's numbers. */
enum verdict {
	VERDICT_FORWARDED = 1,
	VERDICT_DROPPED = 2,
	VERDICT_AUDIT = 4,
};

/* Drop reasons, with Cilium's numbers. */
enum drop_reason {
	DROP_POLICY_DENIED = 133,  /* default deny: no rule allowed it */
	DROP_CT_INVALID_HDR = 135, /* its L4 header could not be read */
	DROP_INVALID_EXTHDR = 156, /* more IPv6 extension headers than are read */
	DROP_FRAG_NOT_FOUND = 175, /* a later fragment whose first was not seen */
	DROP_POLICY_DENY = 181,    /* an explicit deny rule */
};

/* Hubble's policy_match_type: which lookup level decided. */
enum policy_match {
	MATCH_NONE = 0,
	MATCH_L3_ONLY = 1,   /* identity, any port */
	MATCH_L3_L4 = 2,     /* identity and port */
	MATCH_L4_ONLY = 3,   /* any identity, port */
	MATCH_ALL = 4,       /* any identity, any port */
};

/* Direction of a policy, from the endpoint's side (the policy map's key). */
enum policy_direction {
	POLICY_INGRESS = 0,
	POLICY_EGRESS = 1,
};

/* How an endpoint's direction is governed. */
enum enforcement {
	ENFORCE_NONE = 0,    /* no policy selects it: allow all */
	ENFORCE_ON = 1,      /* default deny */
	ENFORCE_AUDIT = 2,   /* would deny: report AUDIT and let it pass */
};

/* policy_id of an event that no rule decided. */
enum policy_id {
	POLICY_ID_NONE = 0,
};

/* Reserved security identities, with Cilium's numbers, and where the ranges
 * of assigned ones start. */
enum reserved_identity {
	IDENTITY_WORLD = 2,  /* any address the ipcache does not know */
	IDENTITY_FIRST_ENDPOINT = 256,    /* endpoints' label sets, up to ... */
	IDENTITY_FIRST_CIDR = 16777217,   /* ... here: policies' CIDRs */
};

/* Hook that saw the packet. */
enum hook_point {
	HOOK_TC_INGRESS = 1,
	HOOK_TC_EGRESS = 2,
	HOOK_KFREE_SKB = 3,  /* tracepoint skb:kfree_skb; drop_reason is the kernel's */
};

struct event_header {
	__u8 type;     /* enum event_type */
	__u8 version;  /* EVENT_VERSION */
	__u16 len;     /* size of the whole event in bytes */
	__u32 _pad0;
};

/*
 * A flow as a packet saw it, in events: source and destination, ports, the
 * interface and hook. IPv4 addresses sit in the first 4 bytes of the 16-byte
 * fields, the rest zero. For ICMP, sport carries the echo identifier and dport
 * is (type << 8 | code).
 */
struct flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;    /* host byte order */
	__u16 dport;    /* host byte order */
	__u8 proto;     /* IPPROTO_* */
	__u8 family;    /* 4 or 6 */
	__u8 hook;      /* enum hook_point */
	__u8 _pad0;
	__u32 ifindex;
	__u32 _pad1;
};

/*
 * Keys of the flow tables (FLOWS4, FLOWS6) and of connection tracking (CT4,
 * CT6): one entry per connection and interface, both directions. The two ends
 * are stored in a fixed order (side 0 is the smaller address, then port), so
 * a packet and its reply find the same entry with one lookup. Addresses in
 * network byte order, ports in host byte order; for ICMP echo both ports are
 * the identifier, for other ICMP messages both are zero.
 */
struct flow4_key {
	__u32 addr[2];
	__u16 port[2];
	__u32 ifindex;
	__u8 proto;
	__u8 _pad0[3];
};

struct flow6_key {
	__u8 addr[2][16];
	__u16 port[2];
	__u32 ifindex;
	__u8 proto;
	__u8 _pad0[3];
};

/* Value of the flow tables: counters of both sides of a connection on one
 * interface. Written without atomics: each side is counted by the CPU that
 * carries its packets (see ARCHITECTURE.md). */
struct flow_stats {
	__u64 packets[2];   /* sent by side 0, side 1 of the key */
	__u64 bytes[2];
	__u8 flags[2];      /* TCP flags seen from each side */
	__u8 opener;        /* the side that opened the connection */
	__u8 opener_hook;   /* enum hook_point where the opener's packets pass */
	__u8 resumed;       /* 1: made again for a tracked connection (no first-packet events) */
	__u8 syn_seq[3];    /* low 24 bits of the opening SYN's sequence number, little end
			     * first: a SYN with another one opens a new connection on the
			     * same 5-tuple (a retransmitted SYN has the same) */
};

/*
 * Entries of the direct-mapped flow tables (FLOW_SLOTS4, FLOW_SLOTS6): a
 * connection's key and counters in one array slot, at the slot its key hashes
 * to or that slot's neighbour (index ^ 1). A packet of a flow there touches
 * its slot and nothing else. A program claims a free slot by swapping state
 * from SLOT_FREE to SLOT_BUSY, fills it, then marks it SLOT_USED; flow-probe
 * frees closed and idle flows' slots (writes them back to zero).
 */
enum slot_state {
	SLOT_FREE = 0,
	SLOT_BUSY = 1,
	SLOT_USED = 2,
};

struct flow4_slot {
	__u32 state;        /* enum slot_state */
	struct flow4_key key;
	struct flow_stats st; /* a slot is 64 bytes: one cache line */
};

struct flow6_slot {
	__u32 state;
	struct flow6_key key;
	struct flow_stats st;
};

/* Value of connection tracking: who opened a connection that passed an
 * endpoint's policy. Deleted by flow-probe's garbage collection, never evicted. */
struct ct_entry {
	__u8 opener;
	__u8 opener_hook;
	__u8 _pad0[6];
};

struct flow_event {
	struct event_header hdr;
	__u64 ktime_ns;        /* bpf_ktime_get_ns() when emitted */
	struct flow_key key;
	__u64 packets;         /* this direction, so far */
	__u64 bytes;
	__u64 rev_packets;     /* the reverse direction on the same interface */
	__u64 rev_bytes;
	__u32 pkt_len;         /* length of the packet that caused the event */
	__u8 tcp_flags;        /* flags of that packet (of the direction, in a report) */
	__u8 reason;           /* enum emit_reason */
	__u8 is_reply;         /* 1 when the reverse direction opened the flow */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 verdict;          /* enum verdict */
	__u8 kind;             /* enum event_kind */
	__u8 policy_match;     /* enum policy_match when policy decided */
	__u16 drop_reason;     /* enum drop_reason when dropped */
	__u8 policy_dir;       /* enum policy_direction when policy decided */
	__u8 _pad0;
	__u32 policy_id;       /* the deciding rule's policy, or POLICY_ID_NONE */
	__u32 remote_identity; /* identity of the peer the policy judged */
	__u8 dmac[6];          /* the packet's Ethernet header as it is: the */
	__u8 smac[6];          /* destination, then the source; zero when unknown */
	__u8 _pad1[4];
};

/* ENDPOINTS map value, keyed by the host-side interface index. */
struct endpoint_info {
	__u32 endpoint_id;
	__u32 identity;
	__u8 ingress;          /* enum enforcement */
	__u8 egress;           /* enum enforcement */
	__u8 _pad0[2];
};

/* IPCACHE map key (LPM trie): prefixlen counts the bits after itself, so a
 * /24 IPv4 prefix is 32 + 24. */
struct ipcache_key {
	__u32 prefixlen;
	__u8 family;           /* 4 or 6 */
	__u8 _pad0[3];
	__u8 addr[16];
};

struct ipcache_value {
	__u32 identity;
};

/* ENDPOINT_ADDRS map key: one address of an endpoint. */
struct endpoint_addr {
	__u8 family;           /* 4 or 6 */
	__u8 _pad0[3];
	__u8 addr[16];
};

/* POLICY map key: one rule of one endpoint. 0 is the wildcard for identity,
 * port and protocol. */
struct policy_key {
	__u32 endpoint_id;
	__u32 remote_identity;
	__u16 dport;
	__u8 proto;
	__u8 direction;        /* enum policy_direction */
};

struct policy_value {
	__u8 deny;             /* 1: deny rule, 0: allow rule */
	__u8 _pad0[3];
	__u32 policy_id;
};

/* Index of the per-CPU counters in the STATS map. */
enum stat_index {
	STAT_EVENTS_TRIED = 0,  /* ring buffer reservations attempted */
	STAT_EVENTS_LOST = 1,   /* reservations that failed */
	STAT_CT_FULL = 2,       /* connections not tracked: CT4 or CT6 was full */
	STAT_SLOTS_TAKEN = 3,   /* new flows whose slots and the neighbouring pair were taken: counted in FLOWS4/FLOWS6 */
	STAT_MAX = 4,
};

/* The path a tc run took, for the cost benchmark's breakdown: with the
 * time_paths tunable on, PATH_TIMES[path] sums the runs and their time. */
enum tc_path {
	TC_PATH_UNTRACKED = 0,  /* not IP, or cost_stop PARSED: parsed and passed */
	TC_PATH_COUNTED = 1,    /* a packet of a flow with an entry: counted, no event */
	TC_PATH_EVENT = 2,      /* the same, with an event */
	TC_PATH_MISS = 3,       /* no entry: a new flow, a resumed one or a denied packet */
	TC_PATH_MAX = 4,
};

/* PATH_TIMES value. */
struct path_time {
	__u64 runs;
	__u64 ns;               /* from the run's first clock read to its last */
};

/* Where a tc run stops short of its whole path (track.h, cost_stop): the
 * cost benchmark's rungs between parsing a packet and all it does. With
 * LOOKED_UP a run's tc_path is COUNTED when it found its flow (not counted
 * though), MISS when not; with BEFORE_EVENTS, EVENT when it would have sent
 * one. */
enum cost_stop {
	COST_STOP_NOWHERE = 0,       /* the whole path: what flow-probe runs */
	COST_STOP_PARSED = 1,        /* parsed, then passed: the floor */
	COST_STOP_LOOKED_UP = 2,     /* ... and its flow looked up, nothing more */
	COST_STOP_BEFORE_EVENTS = 3, /* everything but sending events */
};

/* What tc_egress writes into the packet's control block before it jumps
 * into tc_ingress (flow.bpf.c, EGRESS_JUMP). */
enum egress_jump_mark {
	EGRESS_JUMP_MARK = 0x6a756d70, /* "jump" */
};

/* EGRESS_JUMP value (flow.bpf.c), per CPU. */
struct egress_jump {
	__u32 egress;           /* 1: tc_egress jumped into tc_ingress, which clears it */
	__u32 cb0;              /* the control block's first word before tc_egress's mark */
	__u64 own_copy_runs;    /* tc_egress runs that found TC_BODY empty and ran their own copy */
};

/*
 * Socket-level service load balancing (ebpf-probes/src/sock_lb.bpf.c).
 * Addresses as in struct flow_key: IPv4 in the first 4 bytes, ports in host
 * byte order.
 */

/* Hubble's SocketTranslationPoint. */
enum sock_xlate_point {
	XLATE_PRE_DIRECTION_FWD = 1,   /* before translation (nothing translated) */
	XLATE_POST_DIRECTION_FWD = 2,  /* VIP translated to a backend */
	XLATE_PRE_DIRECTION_REV = 3,
	XLATE_POST_DIRECTION_REV = 4,  /* backend translated back to the VIP */
};

/* The socket hook that translated. */
enum sock_hook {
	SOCK_HOOK_CONNECT = 1,
	SOCK_HOOK_SENDMSG = 2,
	SOCK_HOOK_RECVMSG = 3,
};

/* SERVICES map key: one frontend. */
struct lb_service_key {
	__u8 addr[16];         /* the VIP */
	__u16 port;
	__u8 family;           /* 4 or 6 */
	__u8 proto;            /* IPPROTO_TCP or IPPROTO_UDP */
};

struct lb_service {
	__u32 service_id;      /* non-zero; keys the BACKENDS of this frontend */
	__u16 backend_count;   /* 0: connections are refused */
	__u8 _pad0[2];
};

/* BACKENDS map key: slot 0..backend_count-1 of a frontend. */
struct lb_backend_key {
	__u32 service_id;
	__u16 slot;
	__u8 _pad0[2];
};

struct lb_backend {
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 _pad0;
};

/* REVNAT map key: a socket and the backend it was sent to. */
struct lb_revnat_key {
	__u64 cookie;          /* bpf_get_socket_cookie() */
	__u8 addr[16];         /* the backend */
	__u16 port;
	__u8 family;
	__u8 _pad0[5];
};

struct lb_revnat {
	__u8 vip[16];
	__u16 vip_port;
	__u8 family;
	__u8 reported;         /* a reverse translation event went out */
	__u32 service_id;
};

struct sock_xlate_event {
	struct event_header hdr;
	__u64 ktime_ns;
	__u64 socket_cookie;
	__u64 cgroup_id;       /* cgroup v2 id of the calling task */
	__u8 vip[16];
	__u8 backend[16];      /* zero when no_backend */
	__u16 vip_port;
	__u16 backend_port;
	__u8 family;
	__u8 proto;
	__u8 xlate_point;      /* enum sock_xlate_point */
	__u8 no_backend;       /* 1: the service has no backend; the call failed */
	__u32 service_id;
	__u8 src[16];          /* the socket's bound address, zero when unbound */
	__u16 src_port;        /* the socket's bound port, zero when unbound */
	__u8 hook;             /* enum sock_hook */
	__u8 _pad0;
	__u64 netns_cookie;    /* the socket's network namespace: names the client
				* when the socket is not bound yet */
};

/* A TCP socket of a watched endpoint namespace became established or closed, or
 * retransmitted (tracepoints sock:inet_sock_set_state, tcp:tcp_retransmit_skb).
 * Addresses are the socket's view: local first. */
struct tcp_lifecycle_event {
	struct event_header hdr;
	__u64 ktime_ns;
	__u64 duration_ns;     /* closed: time since established, 0 if never */
	__u8 saddr[16];        /* local */
	__u8 daddr[16];        /* remote */
	__u16 sport;           /* host byte order */
	__u16 dport;
	__u8 family;           /* 4 or 6 */
	__u8 kind;             /* enum tcp_lifecycle_kind */
	__u8 old_state;        /* kernel TCP states (TCP_ESTABLISHED = 1, ...) */
	__u8 new_state;
	__u32 retransmits;     /* retransmissions of this socket so far */
	__u32 _pad0;
};

/*
 * Not data: one member of each enum above, so that clang writes every enum's
 * values into the object's BTF (it only keeps types that something refers to).
 * flow-probe compares them with its own constants before it loads anything;
 * an enum added here must be mirrored there. Never read by the programs.
 */
struct mirrored_enums {
	enum event_version event_version;
	enum event_type event_type;
	enum tcp_lifecycle_kind tcp_lifecycle_kind;
	enum emit_reason emit_reason;
	enum event_kind event_kind;
	enum verdict verdict;
	enum drop_reason drop_reason;
	enum policy_match policy_match;
	enum policy_direction policy_direction;
	enum enforcement enforcement;
	enum policy_id policy_id;
	enum reserved_identity reserved_identity;
	enum hook_point hook_point;
	enum stat_index stat_index;
	enum egress_jump_mark egress_jump_mark;
	enum cost_stop cost_stop;
	enum sock_xlate_point sock_xlate_point;
	enum sock_hook sock_hook;
};

/* Each object includes this header once; the variable lands in .rodata. */
const volatile struct mirrored_enums mirrored_enums = { .event_version = EVENT_VERSION };

#endif
