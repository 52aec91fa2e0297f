/* SPDX-License-Identifier: GPL-2.0 */
/* Header parsing for tc programs with direct packet access: Ethernet, IPv4,
 * IPv6 (with a bounded walk over extension headers), TCP, UDP, ICMPv4,
 * ICMPv6. Every read is checked against data_end, as the verifier demands;
 * only when a header lies outside the linear area is the packet pulled. */
#ifndef OBSERVE_PARSE_H
#define OBSERVE_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "events.h"

#define IPV6_EXT_MAX 4
/* Enough for Ethernet, IPv6 with a short extension header and TCP. */
#define PULL_LEN 128

/* What the programs need of one packet besides its addresses. */
struct pkt {
	__u32 len;
	__u16 sport;      /* host byte order; ICMP: the echo identifier */
	__u16 dport;      /* host byte order; ICMP: type << 8 | code */
	__u8 proto;       /* IPPROTO_* */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u32 syn_seq;    /* a SYN without ACK: its sequence number (host order) */
	__u8 frag;        /* enum frag */
	__u8 unreadable;  /* enum unreadable: why its L4 header could not be read */
	__u16 segs;       /* the packets it stands for: a GSO packet's segments, else 1 */
	__u32 frag_id;    /* a fragment's datagram identification (as on the wire) */
	__u16 hdr_len;    /* a GSO packet's headers, which each of its segments carries */
};

/* Where a packet stands in its datagram: only the first fragment carries
 * the L4 header (lib/frag.h gives the later ones its ports). */
enum frag {
	FRAG_NONE = 0,  /* a whole datagram */
	FRAG_LATER = 1, /* a fragment but the first: no L4 header, nothing of it read */
	FRAG_FIRST = 2, /* the first fragment of several */
};

/* A packet whose ports and flags could not be read: it cannot be judged. */
enum unreadable {
	READABLE = 0,
	UNREADABLE_L4 = 1,      /* shorter than its L4 header (a first fragment of 8 bytes) */
	UNREADABLE_EXTHDRS = 2, /* more IPv6 extension headers than the walk takes */
	UNREADABLE_FRAG = 3,    /* a later fragment whose first was not seen */
};

/* Makes the first PULL_LEN bytes (or the whole packet) directly readable when
 * the linear area holds less; returns whether it tried, and so whether the
 * packet's pointers must be read again (the helper invalidates them, whether
 * or not it pulled anything). For a parse that did not fit only: TCP's data
 * packets carry their headers linear and the payload in pages, and pulling
 * such a cloned skb copies its head, on every packet. */
static __always_inline int pull_more(struct __sk_buff *skb)
{
	__u32 linear = skb->data_end - skb->data;

	if (linear >= PULL_LEN || linear >= skb->len)
		return 0;
	bpf_skb_pull_data(skb, skb->len < PULL_LEN ? skb->len : PULL_LEN);
	return 1;
}

/* A big-endian 16-bit field: one load and a swap (x86 and arm64 take any
 * alignment; the verifier only asks for bounds). */
static __always_inline __u16 load_be16(const __u8 *b)
{
	return bpf_ntohs(*(const __u16 *)b);
}

/* Fills ports and the L4 extras; returns 0 on success. `frame` is where
 * the packet starts. */
static __always_inline int parse_l4(const void *frame, const __u8 *l4, const void *end,
				    struct pkt *p)
{
	switch (p->proto) {
	case IPPROTO_TCP:
		if ((const void *)(l4 + 14) > end)
			return -1;
		p->sport = load_be16(l4);
		p->dport = load_be16(l4 + 2);
		p->tcp_flags = l4[13];
		/* Only a connection's opening SYN: the rest never read it. */
		if ((p->tcp_flags & 0x12) == 0x02)
			p->syn_seq = bpf_ntohl(*(const __u32 *)(l4 + 4));
		if (p->segs > 1)
			p->hdr_len = (const void *)l4 - frame + (l4[12] >> 4) * 4;
		return 0;
	case IPPROTO_UDP:
		if ((const void *)(l4 + 4) > end)
			return -1;
		p->sport = load_be16(l4);
		p->dport = load_be16(l4 + 2);
		if (p->segs > 1)
			p->hdr_len = (const void *)l4 - frame + 8;
		return 0;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		/* type, code, checksum, identifier (echo) */
		if ((const void *)(l4 + 6) > end)
			return -1;
		p->icmp_type = l4[0];
		p->icmp_code = l4[1];
		p->sport = load_be16(l4 + 4);
		p->dport = load_be16(l4);
		return 0;
	default:
		return 0; /* other protocols: addresses only */
	}
}

/* A GSO packet's bytes as its segments' on the wire: each but the first
 * carries the headers again (p->hdr_len, from parse_l4). */
static __always_inline void wire_len(struct pkt *p)
{
	if (p->segs > 1)
		p->len += (p->segs - 1) * p->hdr_len;
}

/* The IPv4 header after Ethernet, or NULL; fills `p` from it and its L4 header. */
static __always_inline const struct iphdr *parse_ipv4(const void *data, const void *end,
						      struct pkt *p)
{
	const struct iphdr *ip = data + ETH_HLEN;

	if ((const void *)(ip + 1) > end || ip->ihl < 5)
		return NULL;
	p->proto = ip->protocol;
	/* More fragments, or an offset: a fragment. Only the first carries
	 * the L4 header. */
	if (ip->frag_off & bpf_htons(0x3fff)) {
		p->frag_id = ip->id;
		if (ip->frag_off & bpf_htons(0x1fff)) {
			p->frag = FRAG_LATER;
			return ip;
		}
		p->frag = FRAG_FIRST;
	}
	/* Unreadable here, the caller pulls the packet and parses it again. */
	if (parse_l4(data, (const __u8 *)ip + ip->ihl * 4, end, p) < 0)
		p->unreadable = UNREADABLE_L4;
	return ip;
}

static __always_inline int is_ipv6_ext(__u8 nexthdr)
{
	return nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
	       nexthdr == IPPROTO_DSTOPTS || nexthdr == IPPROTO_FRAGMENT;
}

/* The IPv6 header after Ethernet, or NULL; fills `p` from it and its L4 header. */
static __always_inline const struct ipv6hdr *parse_ipv6(const void *data, const void *end,
							struct pkt *p)
{
	const struct ipv6hdr *ip6 = data + ETH_HLEN;
	const __u8 *next;
	__u8 nexthdr;

	if ((const void *)(ip6 + 1) > end)
		return NULL;
	nexthdr = ip6->nexthdr;
	next = (const __u8 *)(ip6 + 1);
#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		if (!is_ipv6_ext(nexthdr))
			break;
		if ((const void *)(next + 8) > end)
			return NULL;
		if (nexthdr == IPPROTO_FRAGMENT) {
			__u16 offset_more = load_be16(next + 2);

			nexthdr = next[0];
			p->frag_id = *(const __u32 *)(next + 4);
			/* A non-first fragment has no L4 header. */
			if (offset_more & 0xfff8) {
				p->proto = nexthdr;
				p->frag = FRAG_LATER;
				return ip6;
			}
			/* An atomic fragment (no more to come) is a whole datagram. */
			p->frag = offset_more & 1 ? FRAG_FIRST : FRAG_NONE;
			next += 8;
			continue;
		}
		nexthdr = next[0];
		next += (next[1] + 1) * 8;
	}
	p->proto = nexthdr;
	/* Its protocol would be an extension header's, its ports none. */
	if (is_ipv6_ext(nexthdr))
		p->unreadable = UNREADABLE_EXTHDRS;
	else if (parse_l4(data, next, end, p) < 0)
		p->unreadable = UNREADABLE_L4;
	return ip6;
}

#endif
