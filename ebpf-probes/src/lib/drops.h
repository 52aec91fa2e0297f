/* SPDX-License-Identifier: GPL-2.0 */
/* Kernel drops (tracepoint skb:kfree_skb) of packets to or from lab endpoints:
 * the packet's addresses and ports are read from the skb with CO-RE, the peer
 * filter is the ipcache (only known endpoints), benign reasons are skipped, and
 * a per-CPU token bucket bounds the event rate. */
#ifndef OBSERVE_DROPS_H
#define OBSERVE_DROPS_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "events.h"
#include "lib/maps.h"
#include "lib/policy.h"

/* Only the fields we read; CO-RE finds them in the running kernel's layout. */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	int ifindex;
	unsigned short type;
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sock_common {
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct sk_buff {
	unsigned char *head;
	__u16 mac_header;
	__u16 network_header;
	__u16 transport_header;
	__u16 protocol;
	unsigned int len;
	struct net_device *dev;
	struct sock *sk;
} __attribute__((preserve_access_index));

/* Tracepoint field offsets, read by flow-probe from the event's format file. */
const volatile __u32 kfree_skbaddr_off = 8;
const volatile __u32 kfree_reason_off = 36;
/* Kernel drop reasons not worth reporting, as a 128-bit set. */
const volatile __u64 benign_reasons_lo = 0;
const volatile __u64 benign_reasons_hi = 0;
/* Drop events per second and CPU; bursts up to the same number. */
const volatile __u64 drop_events_per_sec = 1000;

/* Network namespaces (inode numbers) whose drops this probe reports: its node's
 * and its endpoints'. Others may reuse the same addresses. */
const volatile __u32 filter_netns = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} DROP_NETNS SEC(".maps");

/* The network namespace a dropped packet was in: its device's, or, for a
 * packet sent here and dropped before it had one (an output hook of the
 * sender's firewall), its socket's. */
static __always_inline __u32 skb_netns(struct sk_buff *skb)
{
	if (BPF_CORE_READ(skb, dev))
		return BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	return BPF_CORE_READ(skb, sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline int netns_watched(struct sk_buff *skb)
{
	__u32 inum;

	if (!filter_netns)
		return 1;
	inum = skb_netns(skb);
	return inum && bpf_map_lookup_elem(&DROP_NETNS, &inum) != NULL;
}

struct drop_bucket {
	__u64 tokens;
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct drop_bucket);
} DROP_BUCKET SEC(".maps");

static __always_inline int benign(__u32 reason)
{
	if (reason < 64)
		return (benign_reasons_lo >> reason) & 1;
	if (reason < 128)
		return (benign_reasons_hi >> (reason - 64)) & 1;
	return 0;
}

static __always_inline int take_token(__u64 now)
{
	__u32 zero = 0;
	struct drop_bucket *b = bpf_map_lookup_elem(&DROP_BUCKET, &zero);
	__u64 refill;

	if (!b)
		return 0;
	refill = (now - b->last_ns) * drop_events_per_sec / 1000000000ULL;
	if (refill) {
		b->tokens = b->tokens + refill > drop_events_per_sec ? drop_events_per_sec
								  : b->tokens + refill;
		b->last_ns = now;
	}
	if (!b->tokens)
		return 0;
	b->tokens--;
	return 1;
}

/* What a drop event says about the dropped packet. */
struct drop_info {
	struct flow_key key;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
};

/* Reads addresses and ports of the dropped packet; 0 on success. */
/* ARPHRD_ETHER: the device has Ethernet headers. */
#define DEV_TYPE_ETHER 1

/* The dropped packet's Ethernet header (destination, then source MAC) into
 * `macs` (12 bytes, zeroed by the caller), when it has one. */
static __always_inline void skb_ethernet(struct sk_buff *skb, __u8 *macs)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 mac = BPF_CORE_READ(skb, mac_header);
	__u16 nh = BPF_CORE_READ(skb, network_header);

	if (mac == (__u16)~0U || nh == (__u16)~0U || nh - mac != ETH_HLEN ||
	    BPF_CORE_READ(skb, dev, type) != DEV_TYPE_ETHER)
		return;
	bpf_probe_read_kernel(macs, 2 * ETH_ALEN, head + mac);
}

static __always_inline int skb_flow_key(struct sk_buff *skb, struct drop_info *info)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 proto = BPF_CORE_READ(skb, protocol);
	__u32 l4_off;
	__u8 ports[4];

	if (nh == (__u16)~0U)
		return -1;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh) < 0 || ip.ihl < 5)
			return -1;
		info->key.family = 4;
		info->key.proto = ip.protocol;
		__builtin_memcpy(info->key.saddr, &ip.saddr, 4);
		__builtin_memcpy(info->key.daddr, &ip.daddr, 4);
		/* A later fragment holds data where the ports would be. */
		if (ip.frag_off & bpf_htons(0x1fff))
			return 0;
		l4_off = nh + ip.ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh) < 0)
			return -1;
		info->key.family = 6;
		info->key.proto = ip6.nexthdr;
		__builtin_memcpy(info->key.saddr, &ip6.saddr, 16);
		__builtin_memcpy(info->key.daddr, &ip6.daddr, 16);
		l4_off = nh + sizeof(ip6);
	} else {
		return -1;
	}
	if (info->key.proto == IPPROTO_TCP || info->key.proto == IPPROTO_UDP) {
		if (bpf_probe_read_kernel(ports, 4, head + l4_off) == 0) {
			info->key.sport = ((__u16)ports[0] << 8) | ports[1];
			info->key.dport = ((__u16)ports[2] << 8) | ports[3];
		}
		if (info->key.proto == IPPROTO_TCP)
			bpf_probe_read_kernel(&info->tcp_flags, 1, head + l4_off + 13);
	} else if (info->key.proto == IPPROTO_ICMP || info->key.proto == IPPROTO_ICMPV6) {
		__u8 tc[2];

		if (bpf_probe_read_kernel(tc, 2, head + l4_off) == 0) {
			info->icmp_type = tc[0];
			info->icmp_code = tc[1];
			info->key.dport = ((__u16)tc[0] << 8) | tc[1];
		}
	}
	return 0;
}

/* Whether the packet went to a group: IPv4 multicast (224.0.0.0/4) or
 * broadcast, IPv6 multicast (ff00::/8). Such a frame reaches every port and
 * namespace of the segment, and each that does not want it (not in the group,
 * IPv6 off, a neighbour solicitation for another's address) discards its
 * copy: those discards say nothing about whether it reached its group. */
static __always_inline int to_a_group(const struct flow_key *k)
{
	if (k->family == 6)
		return k->daddr[0] == 0xff;
	return (k->daddr[0] & 0xf0) == 0xe0 ||
	       (k->daddr[0] == 0xff && k->daddr[1] == 0xff && k->daddr[2] == 0xff &&
		k->daddr[3] == 0xff);
}

#endif
