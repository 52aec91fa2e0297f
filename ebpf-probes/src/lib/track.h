/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the tc programs do with a parsed packet.
 *
 * The common packet belongs to a flow already in its slot (FLOW_SLOTS4/6,
 * else FLOWS4/6): one array element read, two plain adds, a look at its TCP
 * flags, done. No clock, no atomics, no
 * second lookup; an event only when a user learns something: the first packet
 * of each direction, a TCP flag of the emit mask (SYN, FIN, RST by default)
 * new in its direction, or every packet when aggregation is off. Periodic
 * reports are flow-probe's: it reads the tables in batches.
 *
 * A packet without an entry takes the slow path (`miss`): on an interface with
 * policy, connection tracking (CT4/CT6) tells a known connection, whose
 * counters were evicted, from a new one; a new connection is judged by the
 * endpoint's policy (replies never are, nor an ICMP error about a tracked
 * connection), dropped and reported when denied,
 * else tracked. Denied packets are reported every time; nothing else is
 * ever dropped.
 */
#ifndef OBSERVE_TRACK_H
#define OBSERVE_TRACK_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/flow_key.h"
#include "lib/policy.h"

#ifndef EEXIST
#define EEXIST 17
#endif

#define TCP_SYN 0x02
#define TCP_ACK 0x10

/* Tunables, set by flow-probe at load time. */
const volatile __u32 aggregate = 1;          /* 0: an event for every packet */
/* TCP flags whose first appearance in a direction is an event. */
const volatile __u8 emit_tcp_flags = 0x07;   /* FIN | SYN | RST */
/* 1: the programs time each run by the path it took (flow.bpf.c,
 * PATH_TIMES), for the cost benchmark's breakdown. Pruned when 0: with it
 * off, no packet even notes its path. */
const volatile __u32 time_paths = 0;
/* Wake the reader each time this much more is pending (see wakeup_flag): a
 * wake-up per event costs more than the rest of the program (an IPI), and
 * flow-probe also drains on a timer. */
const volatile __u64 wakeup_bytes = 32768;
/* enum cost_stop: where runs stop short, for the cost benchmark; tc_egress
 * still jumps into tc_ingress first. The verifier prunes each check when it
 * is COST_STOP_NOWHERE. */
const volatile __u32 cost_stop = COST_STOP_NOWHERE;

/* What an event says about its packet besides the counters. */
struct sighting {
	const void *key;        /* struct flow4_key or flow6_key */
	const struct pkt *p;
	struct __sk_buff *skb;  /* read only when an event is emitted */
	__u32 ifindex;
	__u32 slot;             /* the first of the key's two slots (slot_of), set by track */
	__u8 side;              /* the side of the key that sent the packet */
	__u8 hook;
	__u8 path;              /* enum tc_path, set by track (only with time_paths) */
};

static __always_inline void note_path(struct sighting *s, __u8 path)
{
	if (time_paths)
		s->path = path;
}

static __always_inline void fill_addr(__u8 *out, const void *addr, __u8 family)
{
	__u32 *o = (__u32 *)out;

	if (family == 6) {
		__builtin_memcpy(out, addr, 16);
		return;
	}
	o[0] = *(const __u32 *)addr;
	o[1] = 0;
	o[2] = 0;
	o[3] = 0;
}

/* Bytes a record of `size` takes in the ring: its 8-byte header, rounded up to 8. */
#define RING_FOOTPRINT(size) ((((size) + 8) + 7) / 8 * 8)

/* Wakes the reader once per `wakeup_bytes` of backlog: on the record that
 * took the pending data past a multiple of it (the query counts this record).
 * Never on every record past the mark: with a backlog each wake-up would be
 * an irq_work self-IPI, a VM exit here, about 8 us, for one event. A crossing
 * two CPUs step over together is caught by flow-probe's drain timer. */
static __always_inline __u64 wakeup_flag(__u32 size)
{
	__u64 pending = bpf_ringbuf_query(&EVENTS, BPF_RB_AVAIL_DATA);

	if (!wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return pending >= wakeup_bytes && pending % wakeup_bytes < RING_FOOTPRINT(size) ?
		       BPF_RB_FORCE_WAKEUP :
		       BPF_RB_NO_WAKEUP;
}

/* Writes every field of a flow event: nothing is zeroed first. `family` is a
 * constant in every caller, so each family's code is its own. */
static __always_inline void emit(const struct sighting *s, __u8 family, const struct flow_stats *st,
				 __u8 reason, const struct policy_decision *d)
{
	struct flow_event *ev;
	const struct pkt *p = s->p;
	__u8 side = s->side;

	if (cost_stop == COST_STOP_BEFORE_EVENTS)
		return;
	ev = reserve_event_unzeroed(sizeof(*ev), EVENT_FLOW);
	if (!ev)
		return;
	ev->ktime_ns = bpf_ktime_get_ns();
	fill_addr(ev->key.saddr, key_addr(s->key, family, side), family);
	fill_addr(ev->key.daddr, key_addr(s->key, family, side ^ 1), family);
	ev->key.sport = p->sport;
	ev->key.dport = p->dport;
	ev->key.proto = p->proto;
	ev->key.family = family;
	ev->key.hook = s->hook;
	ev->key._pad0 = 0;
	ev->key.ifindex = s->ifindex;
	ev->key._pad1 = 0;
	ev->packets = side ? st->packets[1] : st->packets[0];
	ev->bytes = side ? st->bytes[1] : st->bytes[0];
	ev->rev_packets = side ? st->packets[0] : st->packets[1];
	ev->rev_bytes = side ? st->bytes[0] : st->bytes[1];
	ev->pkt_len = p->len;
	ev->tcp_flags = p->tcp_flags;
	ev->reason = reason;
	ev->is_reply = side != st->opener;
	ev->icmp_type = p->icmp_type;
	ev->icmp_code = p->icmp_code;
	ev->verdict = d->verdict;
	ev->kind = d->kind;
	ev->policy_match = d->match;
	ev->drop_reason = d->drop_reason;
	ev->policy_dir = d->direction;
	ev->_pad0 = 0;
	ev->policy_id = d->policy_id;
	ev->remote_identity = d->remote_identity;
	/* The Ethernet addresses, only here: the common packet never reads them. */
	if (bpf_skb_load_bytes(s->skb, 0, ev->dmac, sizeof(ev->dmac) + sizeof(ev->smac)) < 0) {
		__builtin_memset(ev->dmac, 0, sizeof(ev->dmac));
		__builtin_memset(ev->smac, 0, sizeof(ev->smac));
	}
	__builtin_memset(ev->_pad1, 0, sizeof(ev->_pad1));
	bpf_ringbuf_submit(ev, wakeup_flag(sizeof(*ev)));
}

/* Whether a packet without an entry answers a connection the peer opened. */
static __always_inline __u8 opened_by_peer(const struct pkt *p)
{
	switch (p->proto) {
	case IPPROTO_TCP:
		return (p->tcp_flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK);
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return is_echo(p) && p->icmp_type == (p->proto == IPPROTO_ICMP ? 0 : 129);
	}
	return 0;
}

/* Whether a packet going out to endpoint `ep` is addressed to another
 * endpoint: a frame the bridge flooded, its forwarding table having
 * forgotten the destination's MAC, reaches every port, of this node and,
 * over the node links, of the others. It is not `ep`'s traffic to count or
 * judge (its destination's interface does both, and `ep`'s kernel discards
 * it: OTHERHOST). The address's place says so even for a replica of `ep`'s
 * identity; an address it does not know is another endpoint's when its
 * identity is another endpoint's. An address that is no endpoint's (world,
 * a CIDR) stays `ep`'s: it may route. */
static __always_inline int sent_to_another_endpoint(const struct endpoint_info *ep,
						   const struct sighting *s, __u8 family)
{
	const void *dst;
	long place;
	__u32 id;

	if (s->hook != HOOK_TC_EGRESS)
		return 0;
	dst = key_addr(s->key, family, s->side ^ 1);
	place = endpoint_place(dst, family);
	if (place >= 0)
		return place != s->ifindex;
	id = identity_of(dst, family);
	return id >= IDENTITY_FIRST_ENDPOINT && id < IDENTITY_FIRST_CIDR && id != ep->identity;
}

/* Neighbour discovery and multicast listener messages keep IPv6 working;
 * like ARP for IPv4, policy does not apply to them. */
static __always_inline int policy_exempt(const struct pkt *p)
{
	return p->proto == IPPROTO_ICMPV6 &&
	       ((p->icmp_type >= 130 && p->icmp_type <= 137) || p->icmp_type == 143);
}

/* Judges the first packet of a connection on an endpoint's interface. */
static __always_inline void judge(const struct endpoint_info *ep, const struct sighting *s,
				  __u8 family, struct policy_decision *d)
{
	const struct pkt *p = s->p;
	/* tc ingress of the host-side veth carries what the endpoint sends. */
	int sent = s->hook == HOOK_TC_INGRESS;
	__u8 mode = sent ? ep->egress : ep->ingress;
	__u16 dport = p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP ? p->dport : 0;
	const void *peer = key_addr(s->key, family, sent ? s->side ^ 1 : s->side);

	if (mode == ENFORCE_NONE || policy_exempt(p))
		return;
	policy_decide(ep, sent ? POLICY_EGRESS : POLICY_INGRESS, identity_of(peer, family),
		      dport, p->proto, d);
}

/* Slots per family minus one (a power of two minus one), set by flow-probe
 * to the size it gave FLOW_SLOTS4/6; flow-probe computes the same hash. */
const volatile __u32 flow_slot_mask = 65535;
/* 64-bit words of SLOT_SPILLS per family: a bit per slot pair, at least one
 * word; set by flow-probe with the mask. */
const volatile __u32 spill_words = 512;

static __always_inline __u32 key_words(__u8 family)
{
	return family == 4 ? sizeof(struct flow4_key) / 4 : sizeof(struct flow6_key) / 4;
}

/* The word of a key that holds its ifindex: the last but one. */
static __always_inline __u32 ifindex_word(__u8 family)
{
	return family == 4 ? __builtin_offsetof(struct flow4_key, ifindex) / 4 :
			     __builtin_offsetof(struct flow6_key, ifindex) / 4;
}

/* The key's 32-bit words but its ifindex mixed: a multiply and rotate per
 * word, then a finalizer. Without the ifindex, a connection's entries on the
 * interfaces it crosses share a pair of slots: a packet between two endpoints
 * of this node reaches the receiver's veth right after the sender's, and
 * finds its slot's line in cache there. Mirrored by flow-probe
 * (kernel::flow_tables::slot_hash). */
static __always_inline __u32 slot_hash(const void *key, __u8 family)
{
	const __u32 *w = key;
	__u32 h = 0;

#pragma unroll
	for (int i = 0; i < sizeof(struct flow6_key) / 4; i++) {
		if (i >= key_words(family))
			break;
		if (i == ifindex_word(family))
			continue;
		h = (h ^ w[i]) * 0x9E3779B1u;
		h = h << 13 | h >> 19;
	}
	h ^= h >> 16;
	h *= 0x85EBCA6Bu;
	h ^= h >> 13;
	return h;
}

static __always_inline int same_key(const __u32 *a, const __u32 *b, __u8 family)
{
	__u32 diff = 0;

#pragma unroll
	for (int i = 0; i < sizeof(struct flow6_key) / 4; i++) {
		if (i >= key_words(family))
			break;
		diff |= a[i] ^ b[i];
	}
	return diff == 0;
}

/* A slot as 32-bit words: the state, then the key. */
static __always_inline __u32 *slot_at(__u32 index, __u8 family)
{
	if (family == 4)
		return bpf_map_lookup_elem(&FLOW_SLOTS4, &index);
	return bpf_map_lookup_elem(&FLOW_SLOTS6, &index);
}

static __always_inline struct flow_stats *slot_stats(__u32 *slot, __u8 family)
{
	if (family == 4)
		return &((struct flow4_slot *)slot)->st;
	return &((struct flow6_slot *)slot)->st;
}

/* The first of the two slots of `key`. */
static __always_inline __u32 slot_of(const void *key, __u8 family)
{
	return slot_hash(key, family) & flow_slot_mask;
}

/* The counters of `key` in its slots (`first` and its neighbour), or NULL. */
static __always_inline struct flow_stats *slot_find(const void *key, __u8 family, __u32 first)
{
#pragma unroll
	for (int c = 0; c < 2; c++) {
		__u32 *slot = slot_at(first ^ c, family);

		if (!slot)
			return NULL;
		if (slot[0] == SLOT_USED && same_key(slot + 1, key, family))
			return slot_stats(slot, family);
	}
	return NULL;
}

/* Puts a new flow in a free one of its two slots: 0, or -1 when both are taken.
 * The swap makes one CPU the slot's owner; the exchange that marks it used is
 * ordered after the writes, so a reader that sees SLOT_USED sees the key. */
static __always_inline long slot_claim(const void *key, __u8 family, __u32 first,
				       const struct flow_stats *st)
{
#pragma unroll
	for (int c = 0; c < 2; c++) {
		__u32 *slot = slot_at(first ^ c, family);

		if (!slot)
			return -1;
		if (slot[0] != SLOT_FREE ||
		    __sync_val_compare_and_swap(slot, SLOT_FREE, SLOT_BUSY) != SLOT_FREE)
			continue;
		__builtin_memcpy(slot + 1, key, key_words(family) * 4);
		__builtin_memcpy(slot_stats(slot, family), st, sizeof(*st));
		__sync_lock_test_and_set(slot, SLOT_USED);
		return 0;
	}
	return -1;
}

/* Out of line: only new flows go there, and inlined it doubles miss6's stack. */
static __noinline long slot_claim4(const void *key, __u32 first, const struct flow_stats *st)
{
	return slot_claim(key, 4, first, st);
}

static __noinline long slot_claim6(const void *key, __u32 first, const struct flow_stats *st)
{
	return slot_claim(key, 6, first, st);
}

/* The SLOT_SPILLS word with the bit of the pair of slot `first`; `*bit`: that bit. */
static __always_inline __u64 *spill_word(__u32 first, __u8 family, __u64 *bit)
{
	__u32 pair = first >> 1;
	__u32 index = (family == 4 ? 0 : spill_words) + pair / 64;

	*bit = 1ull << (pair % 64);
	return bpf_map_lookup_elem(&SLOT_SPILLS, &index);
}

/* A flow's counters: in its slots; else, when a flow of those slots went
 * beyond them, in the neighbouring pair (`first ^ 2`: the same 256 bytes),
 * then in the LRU table (a lookup there costs more than the rest of the
 * packet). `first`: slot_of(key). */
static __always_inline struct flow_stats *flows_lookup(const void *key, __u8 family, __u32 first)
{
	struct flow_stats *st = slot_find(key, family, first);
	__u64 bit, *spills;

	if (st)
		return st;
	spills = spill_word(first, family, &bit);
	/* Without its word (the map smaller than the settings say) look anyway. */
	if (spills && !(*spills & bit))
		return NULL;
	st = slot_find(key, family, first ^ 2);
	if (st)
		return st;
	if (family == 4)
		return bpf_map_lookup_elem(&FLOWS4, key);
	return bpf_map_lookup_elem(&FLOWS6, key);
}

static __always_inline long claim(const void *key, __u8 family, __u32 first,
				  const struct flow_stats *st)
{
	return family == 4 ? slot_claim4(key, first, st) : slot_claim6(key, first, st);
}

/* A new flow: into a free one of its slots, else of the neighbouring pair's,
 * else into the LRU table (0, or the insert's error: -EEXIST when another CPU
 * made the entry first). Beyond its own pair, the pair's spill bit is set
 * first, so other CPUs look further at once, and again after the claim or
 * insert with an or that returns the old value (fully ordered on every JIT;
 * the form without fetch orders nothing on arm64): flow-probe clears bits of
 * pairs none of whose flows it finds beyond them and then looks again
 * (FlowTables::clear_spill_marks), so a clear that missed this flow is undone
 * here. */
static __always_inline long flows_insert(const void *key, __u8 family, __u32 first,
					 const struct flow_stats *st)
{
	if (claim(key, family, first, st) == 0)
		return 0;
	__u64 bit, *spills = spill_word(first, family, &bit);
	long err = 0;

	if (spills && !(*spills & bit))
		__sync_fetch_and_or(spills, bit);
	if (claim(key, family, first ^ 2, st) != 0) {
		stat_add(STAT_SLOTS_TAKEN, 1);
		if (family == 4)
			err = bpf_map_update_elem(&FLOWS4, key, st, BPF_NOEXIST);
		else
			err = bpf_map_update_elem(&FLOWS6, key, st, BPF_NOEXIST);
	}
	if (spills) {
		/* Used, so that clang emits the fetching form. */
		volatile __u64 before = __sync_fetch_and_or(spills, bit);

		(void)before;
	}
	return err;
}

static __always_inline struct ct_entry *ct_lookup(const void *key, __u8 family)
{
	if (family == 4)
		return bpf_map_lookup_elem(&CT4, key);
	return bpf_map_lookup_elem(&CT6, key);
}

static __always_inline long ct_insert(const void *key, __u8 family, const struct ct_entry *ct)
{
	if (family == 4)
		return bpf_map_update_elem(&CT4, key, ct, BPF_NOEXIST);
	return bpf_map_update_elem(&CT6, key, ct, BPF_NOEXIST);
}

/* An ICMP error: it quotes the start of the packet that caused it (an
 * unreachable port or host, a packet too big, an expired TTL). */
static __always_inline int icmp_error(const struct pkt *p)
{
	if (p->proto == IPPROTO_ICMP)
		return p->icmp_type == 3 || p->icmp_type == 11 || p->icmp_type == 12;
	if (p->proto == IPPROTO_ICMPV6)
		return p->icmp_type >= 1 && p->icmp_type <= 4;
	return 0;
}

/* Ports (and ICMP echo's type and identifier) of a quoted packet from the
 * first 8 bytes of its L4 header, as parse_l4 reads them; -1 for a protocol
 * whose packets the flow tables do not key by ports. Byte by byte: the
 * bytes are on the stack, where the verifier refuses a misaligned 16-bit
 * load (load_be16 reads the packet). */
static __always_inline int quoted_l4(const __u8 *l4, struct pkt *q)
{
	switch (q->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		q->sport = (__u16)l4[0] << 8 | l4[1];
		q->dport = (__u16)l4[2] << 8 | l4[3];
		return 0;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		q->icmp_type = l4[0];
		q->icmp_code = l4[1];
		q->sport = (__u16)l4[4] << 8 | l4[5];
		q->dport = (__u16)l4[0] << 8 | l4[1];
		return 0;
	}
	return -1;
}

/* Whether an IPv4 ICMP error quotes a packet of a connection this interface
 * tracks (CT4): related to it, as Cilium's conntrack says, it passes as that
 * connection's reply would. Read with bpf_skb_load_bytes: only ICMP errors
 * without an entry, on an interface with policy, come here. */
static __noinline int related4(struct __sk_buff *skb, __u32 ifindex)
{
	struct iphdr outer, quoted;
	struct pkt q = {};
	struct flow4_key k;
	__u8 l4[8];
	__u32 at;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &outer, sizeof(outer)) < 0)
		return 0;
	/* Past the outer header and the 8 bytes of the ICMP header. */
	at = ETH_HLEN + outer.ihl * 4 + 8;
	if (bpf_skb_load_bytes(skb, at, &quoted, sizeof(quoted)) < 0 || quoted.ihl < 5 ||
	    quoted.frag_off & bpf_htons(0x1fff))
		return 0;
	if (bpf_skb_load_bytes(skb, at + quoted.ihl * 4, l4, sizeof(l4)) < 0)
		return 0;
	q.proto = quoted.protocol;
	if (quoted_l4(l4, &q) < 0)
		return 0;
	key4(&k, &quoted, &q, ifindex);
	return bpf_map_lookup_elem(&CT4, &k) != NULL;
}

/* related4 for ICMPv6, whose error quotes an IPv6 header right after its
 * own (no extension header on either, or it is not taken as related). */
static __noinline int related6(struct __sk_buff *skb, __u32 ifindex)
{
	struct ipv6hdr quoted;
	struct pkt q = {};
	struct flow6_key k;
	__u8 next, l4[8];
	__u32 at = ETH_HLEN + sizeof(struct ipv6hdr) + 8;

	if (bpf_skb_load_bytes(skb, ETH_HLEN + 6, &next, 1) < 0 || next != IPPROTO_ICMPV6)
		return 0;
	if (bpf_skb_load_bytes(skb, at, &quoted, sizeof(quoted)) < 0)
		return 0;
	if (bpf_skb_load_bytes(skb, at + sizeof(quoted), l4, sizeof(l4)) < 0)
		return 0;
	q.proto = quoted.nexthdr;
	if (quoted_l4(l4, &q) < 0)
		return 0;
	key6(&k, &quoted, &q, ifindex);
	return bpf_map_lookup_elem(&CT6, &k) != NULL;
}

/* Side-indexed fields are written through branches, not an index: the
 * verifier refuses the pointer arithmetic clang makes of a variable index
 * into the stack. */

/* A connection's opening SYN: SYN without ACK. */
static __always_inline int opening_syn(const struct pkt *p)
{
	return p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
}

/* Keeps the low 24 bits of an opening SYN's sequence number. */
static __always_inline void note_syn(struct flow_stats *st, __u32 seq)
{
	st->syn_seq[0] = seq;
	st->syn_seq[1] = seq >> 8;
	st->syn_seq[2] = seq >> 16;
}

/* A new entry's counters: this packet (and an opening SYN's sequence). */
static __always_inline void first_packet(struct flow_stats *st, const struct sighting *s)
{
	__u8 side = s->side;
	__u32 seq = opening_syn(s->p) ? s->p->syn_seq : 0;

	st->packets[0] = side ? 0 : s->p->segs;
	st->packets[1] = side ? s->p->segs : 0;
	st->bytes[0] = side ? 0 : s->p->len;
	st->bytes[1] = side ? s->p->len : 0;
	st->flags[0] = side ? 0 : s->p->tcp_flags;
	st->flags[1] = side ? s->p->tcp_flags : 0;
	note_syn(st, seq);
}

/* An opening SYN from a side that sent another SYN before, with another
 * sequence number: a new connection on the same 5-tuple (a client port used
 * again after a connect that never got an answer, whose entry nothing
 * closed). A retransmitted SYN carries the sequence number of the first. A
 * side's first SYN on an entry made otherwise (from the peer's answer after
 * a probe restart, say) is noted, so its retransmissions match. */
static __always_inline int reopens(struct flow_stats *st, const struct sighting *s)
{
	__u8 sent = s->side ? st->flags[1] : st->flags[0];
	__u32 seq = s->p->syn_seq;

	if (!opening_syn(s->p))
		return 0;
	if (!(sent & TCP_SYN)) {
		note_syn(st, seq);
		return 0;
	}
	return st->syn_seq[0] != (__u8)seq || st->syn_seq[1] != (__u8)(seq >> 8) ||
	       st->syn_seq[2] != (__u8)(seq >> 16);
}

/* Adds the packet to what `side` has sent; returns the packets it had sent
 * before. */
static __always_inline __u64 count(struct flow_stats *st, __u8 side, const struct pkt *p)
{
	__u64 before;

	if (side) {
		st->bytes[1] += p->len;
		before = st->packets[1];
		st->packets[1] = before + p->segs;
		return before;
	}
	st->bytes[0] += p->len;
	before = st->packets[0];
	st->packets[0] = before + p->segs;
	return before;
}

/* Adds `flags` to what `side` has sent; returns the ones new to it. */
static __always_inline __u8 new_flags(struct flow_stats *st, __u8 side, __u8 flags)
{
	__u8 seen = side ? st->flags[1] : st->flags[0];
	__u8 fresh = flags & ~seen;

	if (fresh) {
		if (side)
			st->flags[1] = seen | fresh;
		else
			st->flags[0] = seen | fresh;
	}
	return fresh;
}

/* A packet of a flow without an entry in the flow table. */
static __always_inline int miss(const struct sighting *s, __u8 family)
{
	__u32 ifindex = s->ifindex;
	struct endpoint_info *ep = bpf_map_lookup_elem(&ENDPOINTS, &ifindex);
	int enforced = ep && (ep->ingress != ENFORCE_NONE || ep->egress != ENFORCE_NONE);
	struct policy_decision d = { .verdict = VERDICT_FORWARDED, .kind = KIND_TRACE };
	struct flow_stats fresh = {};
	struct ct_entry *ct = NULL;
	__u8 side = s->side, reason = EMIT_NEW_FLOW;

	if (ep && sent_to_another_endpoint(ep, s, family))
		return TC_ACT_UNSPEC;
	if (enforced)
		ct = ct_lookup(s->key, family);
	if (ct) {
		/* Known: its counters were evicted, or a restarted probe has none
		 * yet. It passes; counting starts again; nothing new to tell. */
		fresh.opener = ct->opener;
		fresh.opener_hook = ct->opener_hook;
		fresh.resumed = 1;
		reason = 0;
	} else {
		/* An ICMP error about a tracked connection answers it too. */
		__u8 related = enforced && icmp_error(s->p) &&
			       (family == 4 ? related4(s->skb, ifindex) : related6(s->skb, ifindex));
		__u8 reply = related || opened_by_peer(s->p);

		fresh.opener = reply ? side ^ 1 : side;
		fresh.opener_hook = s->hook;
		if (reply)
			fresh.opener_hook =
				s->hook == HOOK_TC_INGRESS ? HOOK_TC_EGRESS : HOOK_TC_INGRESS;
		else if (ep)
			judge(ep, s, family, &d);
		if (d.verdict == VERDICT_DROPPED) {
			/* Not remembered: the next attempt is judged again. */
			d.kind = KIND_DROP;
			first_packet(&fresh, s);
			emit(s, family, &fresh, EMIT_NEW_FLOW, &d);
			return TC_ACT_SHOT;
		}
		if (related || (enforced && policy_exempt(s->p))) {
			/* Passed and told, but not remembered: the entry would be
			 * the pair's for every ICMP message but echo (they have no
			 * ports), and would let the next one through unjudged. So
			 * neighbour discovery, unjudged, leaves none either. */
			first_packet(&fresh, s);
			emit(s, family, &fresh, EMIT_NEW_FLOW, &d);
			return TC_ACT_UNSPEC;
		}
		if (enforced) {
			struct ct_entry c = { .opener = fresh.opener, .opener_hook = fresh.opener_hook };
			long err = ct_insert(s->key, family, &c);

			if (err && err != -EEXIST)
				stat_add(STAT_CT_FULL, 1);
		}
	}
	first_packet(&fresh, s);
	if (flows_insert(s->key, family, s->slot, &fresh)) {
		/* Another CPU made the entry first: count there. */
		struct flow_stats *st = flows_lookup(s->key, family, s->slot);

		if (st)
			count(st, side, s->p);
	}
	if (!reason && !aggregate)
		reason = EMIT_PACKET;
	if (reason)
		emit(s, family, &fresh, reason, &d);
	return TC_ACT_UNSPEC;
}

/* A packet whose ports could not be read (enum unreadable): on an endpoint's
 * interface whose policy applies in its direction it cannot be judged, and
 * is dropped and told as Cilium tells such a drop; elsewhere (and in audit
 * mode) it passes, uncounted, as before. Before, it passed unjudged
 * everywhere: a TCP SYN behind five IPv6 extension headers, or a first
 * fragment too short for its TCP header, went past a port's deny. */
static __always_inline int unreadable(const struct sighting *s, __u8 family)
{
	__u32 ifindex = s->ifindex;
	struct endpoint_info *ep = bpf_map_lookup_elem(&ENDPOINTS, &ifindex);
	struct policy_decision d = { .verdict = VERDICT_DROPPED, .kind = KIND_DROP };
	struct flow_stats fresh = { .opener = s->side, .opener_hook = s->hook };

	if (!ep || (s->hook == HOOK_TC_INGRESS ? ep->egress : ep->ingress) != ENFORCE_ON ||
	    sent_to_another_endpoint(ep, s, family))
		return TC_ACT_UNSPEC;
	d.drop_reason = s->p->unreadable == UNREADABLE_EXTHDRS ? DROP_INVALID_EXTHDR :
			s->p->unreadable == UNREADABLE_FRAG    ? DROP_FRAG_NOT_FOUND :
								 DROP_CT_INVALID_HDR;
	first_packet(&fresh, s);
	emit(s, family, &fresh, EMIT_NEW_FLOW, &d);
	return TC_ACT_SHOT;
}

static __noinline int unreadable4(const struct sighting *s)
{
	return unreadable(s, 4);
}

static __noinline int unreadable6(const struct sighting *s)
{
	return unreadable(s, 6);
}

/* Kept out of line: the common packet never goes there. */
static __noinline int miss4(const struct sighting *s)
{
	return miss(s, 4);
}

static __noinline int miss6(const struct sighting *s)
{
	return miss(s, 6);
}

/* An opening SYN that reopens an entry's 5-tuple (see reopens()): a new
 * connection, judged by policy as a missing entry's first packet is; a
 * policy changed since the last one applies to it. Allowed, the entry counts
 * from this SYN on; denied, it is dropped and the entry keeps the earlier
 * connection's counters and sequence, so a retransmission is judged (and
 * dropped) again. */
static __always_inline int reopen(const struct sighting *s, __u8 family, struct flow_stats *st)
{
	__u32 ifindex = s->ifindex;
	struct endpoint_info *ep = bpf_map_lookup_elem(&ENDPOINTS, &ifindex);
	struct policy_decision d = { .verdict = VERDICT_FORWARDED, .kind = KIND_TRACE };

	if (ep && !sent_to_another_endpoint(ep, s, family))
		judge(ep, s, family, &d);
	if (d.verdict == VERDICT_DROPPED) {
		struct flow_stats fresh = { .opener = s->side, .opener_hook = s->hook };

		d.kind = KIND_DROP;
		first_packet(&fresh, s);
		emit(s, family, &fresh, EMIT_NEW_FLOW, &d);
		return TC_ACT_SHOT;
	}
	first_packet(st, s);
	st->opener = s->side;
	st->opener_hook = s->hook;
	st->resumed = 0;
	emit(s, family, st, EMIT_NEW_FLOW, &d);
	return TC_ACT_UNSPEC;
}

static __noinline int reopen4(const struct sighting *s, struct flow_stats *st)
{
	return reopen(s, 4, st);
}

static __noinline int reopen6(const struct sighting *s, struct flow_stats *st)
{
	return reopen(s, 6, st);
}

/* Counts a packet; an event only when it tells something new. */
static __always_inline int track(struct sighting *s, __u8 family)
{
	struct flow_stats *st;
	struct policy_decision d;
	__u8 reason = 0;

	s->slot = slot_of(s->key, family);
	st = flows_lookup(s->key, family, s->slot);
	if (cost_stop == COST_STOP_LOOKED_UP) {
		note_path(s, st ? TC_PATH_COUNTED : TC_PATH_MISS);
		return TC_ACT_UNSPEC;
	}
	if (!st) {
		note_path(s, TC_PATH_MISS);
		return family == 4 ? miss4(s) : miss6(s);
	}
	note_path(s, TC_PATH_COUNTED);
	if (reopens(st, s))
		return family == 4 ? reopen4(s, st) : reopen6(s, st);
	if (count(st, s->side, s->p) == 0 && !st->resumed)
		reason = EMIT_NEW_FLOW; /* the first answer */
	if (new_flags(st, s->side, s->p->tcp_flags) & emit_tcp_flags && !reason)
		reason = EMIT_TCP_FLAGS;
	/* ICMP messages other than echo share one entry per address pair (they
	 * have no ports): each is told, or only the first would be. */
	if (!reason && (!aggregate || icmp_not_echo(s->p)))
		reason = EMIT_PACKET;
	if (!reason)
		return TC_ACT_UNSPEC;
	d = (struct policy_decision){ .verdict = VERDICT_FORWARDED, .kind = KIND_TRACE };
	note_path(s, TC_PATH_EVENT);
	emit(s, family, st, reason, &d);
	return TC_ACT_UNSPEC;
}

#endif
