/* SPDX-License-Identifier: GPL-2.0 */
/* The event ring buffer and the per-CPU counters every probe object shares
 * (pinned by name): reserving an event counts the attempt, and the loss when
 * the ring is full, so lost events are never silent. */
#ifndef OBSERVE_RING_H
#define OBSERVE_RING_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "events.h"

/* Events to user space. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
	__uint(pinning, LIBBPF_PIN_BY_NAME); /* shared by flow.bpf.c and sock_lb.bpf.c */
} EVENTS SEC(".maps");

/* Per-CPU counters indexed by enum stat_index. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME); /* shared by flow.bpf.c and sock_lb.bpf.c */
} STATS SEC(".maps");

static __always_inline void stat_add(__u32 index, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&STATS, &index);

	if (v)
		*v += n; /* per-CPU: no other writer */
}

/* Reserves an event of `size` bytes with its header filled in and the rest
 * left as the ring had it: for callers that write every field. Counts the
 * attempt, and the loss when the ring is full (then returns NULL). */
static __always_inline void *reserve_event_unzeroed(__u32 size, __u8 type)
{
	struct event_header *hdr;

	stat_add(STAT_EVENTS_TRIED, 1);
	hdr = bpf_ringbuf_reserve(&EVENTS, size, 0);
	if (!hdr) {
		stat_add(STAT_EVENTS_LOST, 1);
		return NULL;
	}
	hdr->type = type;
	hdr->version = EVENT_VERSION;
	hdr->len = size;
	hdr->_pad0 = 0;
	return hdr;
}

/* As reserve_event_unzeroed, with everything after the header zeroed. */
static __always_inline void *reserve_event(__u32 size, __u8 type)
{
	struct event_header *hdr = reserve_event_unzeroed(size, type);

	if (hdr)
		__builtin_memset((void *)(hdr + 1), 0, size - sizeof(*hdr));
	return hdr;
}

#endif
