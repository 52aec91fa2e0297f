/* SPDX-License-Identifier: GPL-2.0 */
/* Every map of the probes, in one place. Sizes are defaults; flow-probe may
 * override max_entries at load time. */
#ifndef OBSERVE_MAPS_H
#define OBSERVE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "events.h"

/* Per-flow counters, aggregated in the kernel. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} FLOWS SEC(".maps");

/* Events to user space. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} EVENTS SEC(".maps");

/* Per-CPU counters indexed by enum stat_index; lost events are never silent. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} STATS SEC(".maps");

static __always_inline void stat_add(__u32 index, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&STATS, &index);

	if (v)
		*v += n; /* per-CPU: no other writer */
}

#endif
