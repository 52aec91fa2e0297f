/* SPDX-License-Identifier: GPL-2.0 */
/* The maps of the tc datapath, in one place: flow tables, connection
 * tracking, endpoints, identities and policy. Sizes are defaults; flow-probe
 * may override max_entries at load time. All pinned by name, so enforcement
 * (and the memory of who may talk) outlives a flow-probe restart. */
#ifndef OBSERVE_MAPS_H
#define OBSERVE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/ring.h"

/* Per-connection counters on each interface, both directions in one entry;
 * what every packet of an established flow touches. LRU: under pressure the
 * least recently used flows are forgotten (their connection tracking is not). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow4_key);
	__type(value, struct flow_stats);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} FLOWS4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow6_key);
	__type(value, struct flow_stats);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} FLOWS6 SEC(".maps");

/* Connection tracking of interfaces with policy: the connections that passed
 * it, so their later packets and replies pass without a new decision. A plain
 * hash, never evicted: a flood of new connections finds it full (and is judged
 * packet by packet) instead of pushing established ones out. flow-probe
 * deletes closed and idle entries (flow-probe/src/flow_tables/gc.rs). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct flow4_key);
	__type(value, struct ct_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} CT4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct flow6_key);
	__type(value, struct ct_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} CT6 SEC(".maps");

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

#endif
