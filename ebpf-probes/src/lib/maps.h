/* SPDX-License-Identifier: GPL-2.0 */
/* Every map of the probes, in one place. Sizes are defaults; flow-probe may
 * override max_entries at load time. */
#ifndef OBSERVE_MAPS_H
#define OBSERVE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "events.h"

/* Per-flow counters, aggregated in the kernel; also the connection tracking that
 * lets replies and established flows pass without a new policy decision. Pinned
 * (like the policy maps) so enforcement survives a flow-probe restart. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} FLOWS SEC(".maps");

/* Endpoint behind each host-side interface, and its enforcement per direction. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct endpoint_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ENDPOINTS SEC(".maps");

/* Address → security identity; no match is world. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IPCACHE SEC(".maps");

/* Compiled policy: identity-based L3/L4 rules per endpoint. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} POLICY SEC(".maps");

/* Events to user space. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
	__uint(pinning, LIBBPF_PIN_BY_NAME); /* shared with sock_lb.bpf.c */
} EVENTS SEC(".maps");

/* Per-CPU counters indexed by enum stat_index; lost events are never silent. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME); /* shared with sock_lb.bpf.c */
} STATS SEC(".maps");

static __always_inline void stat_add(__u32 index, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&STATS, &index);

	if (v)
		*v += n; /* per-CPU: no other writer */
}

/* Reserves a zeroed event of `size` bytes with its header filled in; counts the
 * attempt, and the loss when the ring is full (then returns NULL). */
static __always_inline void *reserve_event(__u32 size, __u8 type)
{
	struct event_header *hdr;

	stat_add(STAT_EVENTS_TRIED, 1);
	hdr = bpf_ringbuf_reserve(&EVENTS, size, 0);
	if (!hdr) {
		stat_add(STAT_EVENTS_LOST, 1);
		return NULL;
	}
	__builtin_memset(hdr, 0, size);
	hdr->type = type;
	hdr->version = EVENT_VERSION;
	hdr->len = size;
	return hdr;
}

#endif
