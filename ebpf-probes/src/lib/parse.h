/* SPDX-License-Identifier: GPL-2.0 */
/* Header parsing for tc programs: Ethernet, IPv4, IPv6 (with a bounded walk over
 * extension headers), TCP, UDP, ICMPv4, ICMPv6. Reads go through
 * bpf_skb_load_bytes so every access is bounds-checked by the kernel. */
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

struct packet_info {
	struct flow_key key;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
};

static __always_inline int is_ipv6_ext(__u8 nexthdr)
{
	return nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
	       nexthdr == IPPROTO_DSTOPTS || nexthdr == IPPROTO_FRAGMENT;
}

/* Fills info->key.{sport,dport} and the L4 extras; returns 0 on success. */
static __always_inline int parse_l4(struct __sk_buff *skb, __u32 off, struct packet_info *info)
{
	__u8 b[14];

	switch (info->key.proto) {
	case IPPROTO_TCP:
		if (bpf_skb_load_bytes(skb, off, b, 14) < 0)
			return -1;
		info->key.sport = ((__u16)b[0] << 8) | b[1];
		info->key.dport = ((__u16)b[2] << 8) | b[3];
		info->tcp_flags = b[13];
		return 0;
	case IPPROTO_UDP:
		if (bpf_skb_load_bytes(skb, off, b, 4) < 0)
			return -1;
		info->key.sport = ((__u16)b[0] << 8) | b[1];
		info->key.dport = ((__u16)b[2] << 8) | b[3];
		return 0;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		/* type, code, checksum, identifier (echo) */
		if (bpf_skb_load_bytes(skb, off, b, 6) < 0)
			return -1;
		info->icmp_type = b[0];
		info->icmp_code = b[1];
		info->key.sport = ((__u16)b[4] << 8) | b[5];
		info->key.dport = ((__u16)b[0] << 8) | b[1];
		return 0;
	default:
		return 0; /* other protocols: addresses only */
	}
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, __u32 off, struct packet_info *info)
{
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
		return -1;
	if (ip.ihl < 5)
		return -1;
	info->key.family = 4;
	info->key.proto = ip.protocol;
	__builtin_memcpy(info->key.saddr, &ip.saddr, 4);
	__builtin_memcpy(info->key.daddr, &ip.daddr, 4);
	/* Only the first fragment carries the L4 header. */
	if (ip.frag_off & bpf_htons(0x1fff))
		return 0;
	return parse_l4(skb, off + ip.ihl * 4, info);
}

static __always_inline int parse_ipv6(struct __sk_buff *skb, __u32 off, struct packet_info *info)
{
	struct ipv6hdr ip6;
	__u8 nexthdr;
	__u8 ext[2];

	if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
		return -1;
	info->key.family = 6;
	__builtin_memcpy(info->key.saddr, &ip6.saddr, 16);
	__builtin_memcpy(info->key.daddr, &ip6.daddr, 16);
	nexthdr = ip6.nexthdr;
	off += sizeof(ip6);
#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		if (!is_ipv6_ext(nexthdr))
			break;
		if (bpf_skb_load_bytes(skb, off, ext, 2) < 0)
			return -1;
		if (nexthdr == IPPROTO_FRAGMENT) {
			__u8 frag[4];

			if (bpf_skb_load_bytes(skb, off, frag, 4) < 0)
				return -1;
			nexthdr = ext[0];
			off += 8;
			/* A non-first fragment has no L4 header. */
			if (((frag[2] << 8) | frag[3]) & 0xfff8) {
				info->key.proto = nexthdr;
				return 0;
			}
			continue;
		}
		nexthdr = ext[0];
		off += (ext[1] + 1) * 8;
	}
	info->key.proto = nexthdr;
	return parse_l4(skb, off, info);
}

/* Returns 0 when the packet is IPv4 or IPv6 and was parsed. */
static __always_inline int parse_packet(struct __sk_buff *skb, struct packet_info *info)
{
	__u16 proto = skb->protocol;

	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(skb, ETH_HLEN, info);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(skb, ETH_HLEN, info);
	return -1;
}

#endif
