/* SPDX-License-Identifier: GPL-2.0 */
/* The flow tables' keys (struct flow4_key, flow6_key): both ends of a
 * connection in a fixed order, so a packet and its reply share one entry, and
 * which side of the key the packet's source is. */
#ifndef OBSERVE_FLOW_KEY_H
#define OBSERVE_FLOW_KEY_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "events.h"
#include "lib/parse.h"

static __always_inline int is_echo(const struct pkt *p)
{
	/* A later fragment's type was never read (0 would be echo reply). */
	if (p->frag == FRAG_LATER)
		return 0;
	if (p->proto == IPPROTO_ICMP)
		return p->icmp_type == 0 || p->icmp_type == 8;
	return p->icmp_type == 128 || p->icmp_type == 129;
}

/* An ICMP error or control message (unreachable, neighbour discovery...). */
static __always_inline int icmp_not_echo(const struct pkt *p)
{
	return (p->proto == IPPROTO_ICMP || p->proto == IPPROTO_ICMPV6) && !is_echo(p);
}

/* The key's ports of the packet's source and destination: ICMP echo request
 * and reply share the identifier; other ICMP messages have no ports. */
static __always_inline void key_ports(const struct pkt *p, __u16 *src, __u16 *dst)
{
	*src = p->sport;
	*dst = p->dport;
	if (p->proto == IPPROTO_ICMP || p->proto == IPPROTO_ICMPV6) {
		*src = is_echo(p) ? p->sport : 0;
		*dst = *src;
	}
}

/* Fills `k`; returns the side of the key the packet's source is (0 or 1). */
static __always_inline __u8 key4(struct flow4_key *k, const struct iphdr *ip, const struct pkt *p,
				 __u32 ifindex)
{
	__u32 s = ip->saddr, d = ip->daddr;
	__u16 ps, pd;
	__u8 side;

	key_ports(p, &ps, &pd);
	side = s > d || (s == d && ps > pd);
	k->addr[0] = side ? d : s;
	k->addr[1] = side ? s : d;
	k->port[0] = side ? pd : ps;
	k->port[1] = side ? ps : pd;
	k->ifindex = ifindex;
	k->proto = p->proto;
	k->_pad0[0] = 0;
	k->_pad0[1] = 0;
	k->_pad0[2] = 0;
	return side;
}

/* Compares two IPv6 addresses word by word: any fixed order will do. */
static __always_inline int addr6_greater(const __u32 *a, const __u32 *b)
{
	if (a[0] != b[0])
		return a[0] > b[0];
	if (a[1] != b[1])
		return a[1] > b[1];
	if (a[2] != b[2])
		return a[2] > b[2];
	return a[3] > b[3];
}

static __always_inline int addr6_equal(const __u32 *a, const __u32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline __u8 key6(struct flow6_key *k, const struct ipv6hdr *ip6,
				 const struct pkt *p, __u32 ifindex)
{
	__u32 s[4], d[4];
	__u16 ps, pd;
	__u8 side;

	__builtin_memcpy(s, &ip6->saddr, 16);
	__builtin_memcpy(d, &ip6->daddr, 16);
	key_ports(p, &ps, &pd);
	side = addr6_greater(s, d) || (addr6_equal(s, d) && ps > pd);
	if (side) {
		__builtin_memcpy(k->addr[0], d, 16);
		__builtin_memcpy(k->addr[1], s, 16);
		k->port[0] = pd;
		k->port[1] = ps;
	} else {
		__builtin_memcpy(k->addr[0], s, 16);
		__builtin_memcpy(k->addr[1], d, 16);
		k->port[0] = ps;
		k->port[1] = pd;
	}
	k->ifindex = ifindex;
	k->proto = p->proto;
	k->_pad0[0] = 0;
	k->_pad0[1] = 0;
	k->_pad0[2] = 0;
	return side;
}

/* The address of one side of a key: 4 bytes for IPv4, 16 for IPv6. */
static __always_inline const void *key_addr(const void *k, __u8 family, __u8 side)
{
	if (family == 4) {
		const struct flow4_key *k4 = k;

		return side ? &k4->addr[1] : &k4->addr[0];
	}
	const struct flow6_key *k6 = k;

	return side ? k6->addr[1] : k6->addr[0];
}

#endif
