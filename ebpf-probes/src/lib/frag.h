/* SPDX-License-Identifier: GPL-2.0 */
/* Datagrams in fragments. Only the first fragment carries the L4 header: a
 * later one was judged by its addresses alone (so dropped by a rule of
 * ports) and counted as a flow of its own, without ports. The first leaves
 * its ports in FRAGS; a later one takes them and is tracked, judged and
 * counted as a packet of its datagram's flow. A later fragment whose first
 * was not seen (reordered, forgotten by the LRU, or sent before a probe
 * restart) cannot be judged, and is dropped where policy applies (as
 * Cilium drops it, with FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND).
 * Records are not deleted at the last fragment (the LRU ages them out), so
 * an IPv4 identification used again within the LRU's memory, by a datagram
 * whose first fragment was not seen, takes the older datagram's ports, as
 * in Cilium. */
#ifndef OBSERVE_FRAG_H
#define OBSERVE_FRAG_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include "lib/maps.h"
#include "lib/parse.h"

/* Whether a later fragment whose first was not seen has lost what it is
 * judged by: ports (TCP, UDP), an ICMP type, or, IPv6, a protocol behind
 * an extension header. Another protocol's later fragment has its whole key
 * (addresses, protocol) and passes on it, as before. */
static __always_inline int needs_its_first(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_ICMP ||
	       proto == IPPROTO_ICMPV6 || is_ipv6_ext(proto);
}

/* For a fragment (p->frag set, its header readable): the first records its
 * ports; a later one gets them, or is marked UNREADABLE_FRAG. */
static __always_inline void datagram_ports(struct pkt *p, const __u32 *saddr,
					   const __u32 *daddr, __u8 family)
{
	struct frag_key k = { .id = p->frag_id, .family = family };
	struct frag_ports *known;

	if (family == 4) {
		k.proto = p->proto;
		k.saddr[0] = saddr[0];
		k.daddr[0] = daddr[0];
	} else {
		__builtin_memcpy(k.saddr, saddr, 16);
		__builtin_memcpy(k.daddr, daddr, 16);
	}
	if (p->frag == FRAG_FIRST) {
		struct frag_ports first = { .sport = p->sport, .dport = p->dport, .proto = p->proto };

		bpf_map_update_elem(&FRAGS, &k, &first, BPF_ANY);
		return;
	}
	known = bpf_map_lookup_elem(&FRAGS, &k);
	if (!known) {
		if (needs_its_first(p->proto))
			p->unreadable = UNREADABLE_FRAG;
		return;
	}
	p->proto = known->proto;
	p->sport = known->sport;
	p->dport = known->dport;
	/* ICMP's "ports" are the echo identifier and type << 8 | code. */
	if (p->proto == IPPROTO_ICMP || p->proto == IPPROTO_ICMPV6) {
		p->icmp_type = known->dport >> 8;
		p->icmp_code = known->dport & 0xff;
	}
	p->frag = FRAG_NONE;
}

/* Out of line: the key's stack is not the common packet's (the verifier
 * bounds the stack of a whole call chain). */
static __noinline void datagram_ports4(struct pkt *p, const struct iphdr *ip)
{
	datagram_ports(p, &ip->saddr, &ip->daddr, 4);
}

static __noinline void datagram_ports6(struct pkt *p, const struct ipv6hdr *ip6)
{
	datagram_ports(p, ip6->saddr.in6_u.u6_addr32, ip6->daddr.in6_u.u6_addr32, 6);
}

#endif
