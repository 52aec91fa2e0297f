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

/* Per-connection counters on each interface, both directions in one entry:
 * first in the direct-mapped slots (FLOW_SLOTS4/6, what a packet of an
 * established flow touches: one array element, found without a hash map
 * call), else, when both of a new flow's slots and both of the neighbouring
 * pair's are taken, in FLOWS4/6, LRU hash maps: under pressure their least
 * recently used flows are forgotten (their connection tracking is not).
 * A connection's entries on different interfaces hash to the same pair of
 * slots (track.h, slot_hash). flow-probe frees the slots of closed and idle
 * flows; the slot count is a power of two (flow_slot_mask + 1). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct flow4_slot);
	__uint(map_flags, BPF_F_MMAPABLE); /* flow-probe reads it mapped; a page-aligned array of 64-byte slots: one cache line each */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} FLOW_SLOTS4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct flow6_slot);
	__uint(map_flags, BPF_F_MMAPABLE); /* flow-probe reads it mapped (88-byte slots: some span two lines) */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} FLOW_SLOTS6 SEC(".maps");

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

/* One bit per slot pair (slots 2n and 2n+1): set while a flow whose two
 * slots these are may live beyond them, in the neighbouring pair (slots
 * 2n ^ 2 and 2n ^ 3) or in FLOWS4/FLOWS6. A packet without a slot whose
 * pair's bit is clear is new, and looks no further, however many other flows
 * went further. IPv4's words first, then IPv6's (from spill_words, track.h);
 * flow-probe sizes it to 2 * spill_words. Set when a flow goes beyond its
 * pair (flows_insert); cleared by flow-probe, through its mapping, for pairs
 * with no flow left beyond them (flow-probe/src/kernel/flow_tables.rs,
 * clear_spill_marks). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64); /* an array's elements take 8 bytes at least, mapped too */
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} SLOT_SPILLS SEC(".maps");

/* Connection tracking of interfaces with policy: the connections that passed
 * it, so their later packets and replies pass without a new decision. A plain
 * hash, never evicted: a flood of new connections finds it full (and is judged
 * packet by packet) instead of pushing established ones out. flow-probe
 * deletes closed and idle entries (flow-probe/src/tables/gc.rs). */
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

/* A datagram in fragments: what its reassembly goes by. IPv4: addresses,
 * protocol and identification; IPv6: addresses and identification only (an
 * extension header after the fragment header hides the protocol from the
 * later fragments). */
struct frag_key {
	__u32 saddr[4]; /* IPv4: the first word only */
	__u32 daddr[4];
	__u32 id;       /* as on the wire (IPv4's 16 bits, IPv6's 32) */
	__u8 proto;     /* IPv4's; 0 for IPv6 */
	__u8 family;
	__u8 _pad[2];
};

/* What its first fragment's L4 header said (struct pkt's fields). */
struct frag_ports {
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 _pad[3];
};

/* The ports of datagrams whose first fragment was seen, for the later
 * fragments, which carry none (lib/frag.h). An LRU: a datagram's fragments
 * pass within moments of each other, and one forgotten costs only its later
 * fragments, dropped where policy applies. Shared by every interface (a
 * datagram's ports are the same on each), and not pinned: a restart forgets
 * only the datagrams in flight. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct frag_key);
	__type(value, struct frag_ports);
} FRAGS SEC(".maps");

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

/* Every endpoint's address (of the whole cluster) → the host-side interface
 * of its endpoint on this node, 0 when it is on another node: tells a frame
 * the bridge flooded to an endpoint from one addressed to it, even between
 * replicas that share an identity (track.h, sent_to_another_endpoint). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct endpoint_addr);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ENDPOINT_ADDRS SEC(".maps");

/* Compiled policy: identity-based L3/L4 rules per endpoint. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} POLICY SEC(".maps");

#endif
