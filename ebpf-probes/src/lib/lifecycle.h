/* SPDX-License-Identifier: GPL-2.0 */
/* TCP connection lifecycle from tracepoints: established and closed (with the
 * connection's duration) from sock:inet_sock_set_state, and retransmissions from
 * tcp:tcp_retransmit_skb, for sockets in the namespaces this probe watches
 * and, with endpoints, only for its endpoints' own sockets. */
#ifndef OBSERVE_LIFECYCLE_H
#define OBSERVE_LIFECYCLE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "events.h"
#include "lib/maps.h"
#include "lib/drops.h"
#include "lib/policy.h"

/* 1 (set by flow-probe when it attaches to endpoints): only sockets whose
 * own address is one of this node's endpoints' (ENDPOINT_ADDRS) are
 * reported. The tracepoints see every namespace's sockets: the host's own
 * (a CLI talking to the relay over loopback), and in a lab whose nodes share
 * one kernel, the other nodes' endpoints'. */
const volatile __u32 lifecycle_endpoints_only = 0;

#define TCP_STATE_ESTABLISHED 1
#define TCP_STATE_SYN_SENT 2
#define TCP_STATE_CLOSE 7
#define AF_INET_ 2
#define AF_INET6_ 10

/* The tracepoints' records (format files; flow-probe checks these offsets
 * against tracefs before it attaches). */
struct set_state_args {
	__u64 common;
	const void *skaddr;     /* 8 */
	int oldstate;           /* 16 */
	int newstate;           /* 20 */
	__u16 sport;            /* 24 */
	__u16 dport;            /* 26 */
	__u16 family;           /* 28 */
	__u16 protocol;         /* 30 */
	__u8 saddr[4];          /* 32 */
	__u8 daddr[4];          /* 36 */
	__u8 saddr_v6[16];      /* 40 */
	__u8 daddr_v6[16];      /* 56 */
};

struct retransmit_args {
	__u64 common;
	const void *skbaddr;    /* 8 */
	const void *skaddr;     /* 16 */
	int state;              /* 24 */
	__u16 sport;            /* 28 */
	__u16 dport;            /* 30 */
	__u16 family;           /* 32 */
	__u8 saddr[4];          /* 34 */
	__u8 daddr[4];          /* 38 */
	__u8 saddr_v6[16];      /* 42 */
	__u8 daddr_v6[16];      /* 58 */
	int err;                /* 76 */
};

struct sock_life {
	__u64 established_ns;
	__u32 retransmits;
	__u32 _pad0;
};

/* Per socket: when it was established and how often it retransmitted.
 * Pinned, like the programs' links (flow-probe, kernel/tracepoints.rs): a
 * connection established before a probe restart still closes with its
 * duration and count. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sock_life);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} SOCKS SEC(".maps");

static __always_inline int sock_watched(const void *skaddr)
{
	__u32 inum;

	if (!filter_netns)
		return 1;
	inum = BPF_CORE_READ((struct sock *)skaddr, __sk_common.skc_net.net, ns.inum);
	return bpf_map_lookup_elem(&DROP_NETNS, &inum) != NULL;
}

/* Whether an IPv6 address is an IPv4-mapped one (::ffff:a.b.c.d): an
 * AF_INET6 socket talking IPv4, as a server listening on [::] does. */
static __always_inline int v4_mapped(const __u8 *a6)
{
	__u32 w[3];

	__builtin_memcpy(w, a6, sizeof(w));
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

/* Whether the socket's own address (`s4`, or `s6` for AF_INET6, where an
 * IPv4-mapped address is its IPv4 one) is an endpoint's of this node. */
static __always_inline int endpoint_sock(__u16 family, const __u8 *s4, const __u8 *s6)
{
	if (!lifecycle_endpoints_only)
		return 1;
	if (family != AF_INET6_)
		return endpoint_place(s4, 4) > 0;
	if (v4_mapped(s6))
		return endpoint_place(s6 + 12, 4) > 0;
	return endpoint_place(s6, 6) > 0;
}

static __always_inline void emit_lifecycle(__u8 kind, __u16 family, const __u8 *s4, const __u8 *d4,
					   const __u8 *s6, const __u8 *d6, __u16 sport, __u16 dport,
					   int old_state, int new_state, const struct sock_life *life,
					   __u64 now)
{
	struct tcp_lifecycle_event *ev;

	ev = reserve_event(sizeof(*ev), EVENT_TCP_LIFECYCLE);
	if (!ev)
		return;
	ev->ktime_ns = now;
	/* The packets of an IPv4-mapped connection are IPv4, as its tc flows. */
	if (family == AF_INET6_ && v4_mapped(s6) && v4_mapped(d6)) {
		ev->family = 4;
		__builtin_memcpy(ev->saddr, s6 + 12, 4);
		__builtin_memcpy(ev->daddr, d6 + 12, 4);
	} else if (family == AF_INET6_) {
		ev->family = 6;
		__builtin_memcpy(ev->saddr, s6, 16);
		__builtin_memcpy(ev->daddr, d6, 16);
	} else {
		ev->family = 4;
		__builtin_memcpy(ev->saddr, s4, 4);
		__builtin_memcpy(ev->daddr, d4, 4);
	}
	ev->sport = sport;
	ev->dport = dport;
	ev->kind = kind;
	ev->old_state = old_state;
	ev->new_state = new_state;
	if (life) {
		ev->retransmits = life->retransmits;
		if (kind == TCP_LC_CLOSED && life->established_ns)
			ev->duration_ns = now - life->established_ns;
	}
	bpf_ringbuf_submit(ev, 0);
}

#endif
