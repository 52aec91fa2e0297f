/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The wire format of every event the probes put on the ring buffer.
 *
 * This header is the single source of truth: flow-probe mirrors each struct in
 * flow-probe/src/kernel/events.rs and checks size and every field offset against
 * the compiled object's BTF before it loads anything. Fixed-width types only,
 * explicit padding, and a leading {type, version} header. Bump EVENT_VERSION on
 * every layout change.
 */
#ifndef OBSERVE_EVENTS_H
#define OBSERVE_EVENTS_H

#include <linux/types.h>

#define EVENT_VERSION 1

enum event_type {
	EVENT_FLOW = 1,
};

/* Why a flow event was emitted. */
enum emit_reason {
	EMIT_NEW_FLOW = 1,   /* first packet of this flow in this direction */
	EMIT_NEW_FLAGS = 2,  /* TCP flags not yet seen in this direction */
	EMIT_REPORT = 3,     /* periodic report of a live flow */
	EMIT_PACKET = 4,     /* "every packet" aggregation mode */
};

/* Hook that saw the packet. */
enum hook_point {
	HOOK_TC_INGRESS = 1,
	HOOK_TC_EGRESS = 2,
};

struct event_header {
	__u8 type;     /* enum event_type */
	__u8 version;  /* EVENT_VERSION */
	__u16 len;     /* size of the whole event in bytes */
	__u32 _pad0;
};

/*
 * Key of the in-kernel flow table: one entry per 5-tuple, interface and hook.
 * IPv4 addresses sit in the first 4 bytes of the 16-byte fields, the rest zero.
 * For ICMP, sport carries the echo identifier and dport is (type << 8 | code).
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

/* Value of the flow table: counters of one direction. */
struct flow_stats {
	__u64 first_seen_ns;
	__u64 last_seen_ns;
	__u64 last_report_ns;
	__u64 packets;
	__u64 bytes;
	__u8 tcp_flags_seen;
	__u8 is_reply;
	__u8 _pad0[6];
};

struct flow_event {
	struct event_header hdr;
	__u64 ktime_ns;        /* bpf_ktime_get_ns() when emitted */
	struct flow_key key;
	__u64 first_seen_ns;
	__u64 packets;         /* this direction, so far */
	__u64 bytes;
	__u64 rev_packets;     /* the reverse direction on the same hook pair */
	__u64 rev_bytes;
	__u32 pkt_len;         /* length of the packet that caused the event */
	__u8 tcp_flags;        /* flags of that packet */
	__u8 tcp_flags_seen;   /* all flags seen in this direction */
	__u8 reason;           /* enum emit_reason */
	__u8 is_reply;         /* 1 when the reverse direction opened the flow */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 _pad0[6];
};

/* Index of the per-CPU counters in the STATS map. */
enum stat_index {
	STAT_EVENTS_TRIED = 0,  /* ring buffer reservations attempted */
	STAT_EVENTS_LOST = 1,   /* reservations that failed */
	STAT_PACKETS = 2,       /* packets seen by the tc programs */
	STAT_MAX = 3,
};

#endif
