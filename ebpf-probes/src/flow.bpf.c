/* SPDX-License-Identifier: GPL-2.0 */
/*
 * tc flow probe: one program per direction of an interface. Each packet updates
 * the in-kernel flow table; an event goes to the ring buffer only on a flow's
 * first packet, on TCP flags not yet seen in that direction, on a periodic report,
 * or on every packet when aggregation is off.
 *
 * On an endpoint's host-side veth it also enforces the endpoint's policy: tc
 * ingress there sees what the endpoint sends (its egress policy), tc egress what
 * it receives (its ingress policy). Only the first packet of a connection is
 * judged; replies and established flows pass on the flow table. A denied packet
 * is dropped (TC_ACT_SHOT) and reported every time; nothing else is ever dropped.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/policy.h"
#include "lib/drops.h"
#include "lib/lifecycle.h"

/* BTF keeps only types reachable from globals, maps and function signatures;
 * these pointers put every event struct there for flow-probe's layout check. */
struct event_header *btf_anchor_event_header __attribute__((unused));
struct flow_event *btf_anchor_flow_event __attribute__((unused));
struct endpoint_info *btf_anchor_endpoint_info __attribute__((unused));
struct ipcache_key *btf_anchor_ipcache_key __attribute__((unused));
struct ipcache_value *btf_anchor_ipcache_value __attribute__((unused));
struct policy_key *btf_anchor_policy_key __attribute__((unused));
struct policy_value *btf_anchor_policy_value __attribute__((unused));
struct tcp_lifecycle_event *btf_anchor_tcp_lifecycle_event __attribute__((unused));

/* Tunables, set by flow-probe at load time. */
const volatile __u32 aggregate = 1;            /* 0: an event for every packet */
const volatile __u64 report_interval_ns = 0;   /* 0: no periodic reports */
/* Wake the reader only once this much is pending: a wake-up per event costs more
 * than the rest of the program (an IPI), and flow-probe also drains on a timer. */
const volatile __u64 wakeup_bytes = 32768;

static __always_inline void reverse_key(const struct flow_key *k, struct flow_key *r)
{
	__builtin_memcpy(r->saddr, k->daddr, 16);
	__builtin_memcpy(r->daddr, k->saddr, 16);
	r->proto = k->proto;
	r->family = k->family;
	r->ifindex = k->ifindex;
	r->hook = k->hook == HOOK_TC_INGRESS ? HOOK_TC_EGRESS : HOOK_TC_INGRESS;
	r->_pad0 = 0;
	r->_pad1 = 0;
	if (k->proto == IPPROTO_ICMP || k->proto == IPPROTO_ICMPV6) {
		/* Echo request and reply share the identifier; the type flips. */
		__u8 t = k->dport >> 8;
		__u8 rt = t == 8 ? 0 : t == 0 ? 8 : t == 128 ? 129 : t == 129 ? 128 : 255;

		r->sport = k->sport;
		r->dport = (__u16)rt << 8;
	} else {
		r->sport = k->dport;
		r->dport = k->sport;
	}
}

/* Whether this new flow answers one the other side opened. */
static __always_inline __u8 opened_by_peer(const struct packet_info *info)
{
	const struct flow_key *k = &info->key;
	struct flow_key rk = {};

	switch (k->proto) {
	case IPPROTO_TCP:
		/* SYN without ACK opens; SYN+ACK answers. */
		if ((info->tcp_flags & 0x12) == 0x02)
			return 0;
		if ((info->tcp_flags & 0x12) == 0x12)
			return 1;
		break;
	case IPPROTO_ICMP:
		return info->icmp_type == 0; /* echo reply */
	case IPPROTO_ICMPV6:
		return info->icmp_type == 129; /* echo reply */
	}
	reverse_key(k, &rk);
	return bpf_map_lookup_elem(&FLOWS, &rk) != NULL;
}

static __always_inline void emit(struct __sk_buff *skb, const struct packet_info *info,
				 const struct flow_stats *st, __u8 reason, __u64 now,
				 const struct policy_decision *d)
{
	struct flow_event *ev;
	struct flow_key rk = {};
	struct flow_stats *rev;

	ev = reserve_event(sizeof(*ev), EVENT_FLOW);
	if (!ev)
		return;
	ev->ktime_ns = now;
	ev->key = info->key;
	ev->first_seen_ns = st->first_seen_ns;
	ev->packets = st->packets;
	ev->bytes = st->bytes;
	ev->pkt_len = skb->len;
	ev->tcp_flags = info->tcp_flags;
	ev->tcp_flags_seen = st->tcp_flags_seen;
	ev->reason = reason;
	ev->is_reply = st->is_reply;
	ev->icmp_type = info->icmp_type;
	ev->icmp_code = info->icmp_code;
	ev->verdict = d->verdict;
	ev->kind = d->kind;
	ev->drop_reason = d->drop_reason;
	ev->policy_match = d->match;
	ev->policy_dir = d->direction;
	ev->policy_id = d->policy_id;
	ev->remote_identity = d->remote_identity;
	reverse_key(&info->key, &rk);
	rev = bpf_map_lookup_elem(&FLOWS, &rk);
	if (rev) {
		ev->rev_packets = rev->packets;
		ev->rev_bytes = rev->bytes;
	}
	bpf_ringbuf_submit(ev, bpf_ringbuf_query(&EVENTS, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
				   BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* Judges the first packet of a connection on an endpoint's interface. */
static __always_inline void judge(const struct packet_info *info, struct policy_decision *d)
{
	const struct flow_key *k = &info->key;
	struct endpoint_info *ep = bpf_map_lookup_elem(&ENDPOINTS, &k->ifindex);
	/* tc ingress of the host-side veth carries what the endpoint sends. */
	int sent = k->hook == HOOK_TC_INGRESS;
	__u16 dport = k->proto == IPPROTO_TCP || k->proto == IPPROTO_UDP ? k->dport : 0;

	if (!ep)
		return;
	/* Neighbour discovery and multicast listener messages keep IPv6 working;
	 * like ARP for IPv4, policy does not apply to them. */
	if (k->proto == IPPROTO_ICMPV6 && ((info->icmp_type >= 130 && info->icmp_type <= 137) ||
					  info->icmp_type == 143))
		return;
	policy_decide(ep, sent ? POLICY_EGRESS : POLICY_INGRESS,
		      identity_of(sent ? k->daddr : k->saddr, k->family), dport, k->proto, d);
}

static __always_inline int observe(struct __sk_buff *skb, __u8 hook)
{
	struct packet_info info = {};
	struct policy_decision d = { .verdict = VERDICT_FORWARDED, .kind = KIND_TRACE };
	struct flow_stats *st;
	__u64 now = bpf_ktime_get_ns();
	__u8 reason = 0;

	stat_add(STAT_PACKETS, 1);
	if (parse_packet(skb, &info) < 0)
		return TC_ACT_UNSPEC;
	info.key.hook = hook;
	info.key.ifindex = skb->ifindex;

	st = bpf_map_lookup_elem(&FLOWS, &info.key);
	if (!st) {
		struct flow_stats fresh = {
			.first_seen_ns = now,
			.last_seen_ns = now,
			.last_report_ns = now,
			.packets = 1,
			.bytes = skb->len,
			.tcp_flags_seen = info.tcp_flags,
			.is_reply = opened_by_peer(&info),
		};

		if (!fresh.is_reply)
			judge(&info, &d);
		if (d.verdict == VERDICT_DROPPED) {
			/* Not remembered: the next attempt is judged again. */
			d.kind = KIND_DROP;
			emit(skb, &info, &fresh, EMIT_NEW_FLOW, now, &d);
			return TC_ACT_SHOT;
		}
		bpf_map_update_elem(&FLOWS, &info.key, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&FLOWS, &info.key);
		if (!st)
			return TC_ACT_UNSPEC;
		reason = EMIT_NEW_FLOW;
	} else {
		__sync_fetch_and_add(&st->packets, 1);
		__sync_fetch_and_add(&st->bytes, skb->len);
		st->last_seen_ns = now;
		if (info.tcp_flags & ~st->tcp_flags_seen) {
			st->tcp_flags_seen |= info.tcp_flags;
			reason = EMIT_NEW_FLAGS;
		} else if (report_interval_ns && now - st->last_report_ns >= report_interval_ns) {
			reason = EMIT_REPORT;
		}
	}
	if (!reason && !aggregate)
		reason = EMIT_PACKET;
	if (reason) {
		st->last_report_ns = now;
		emit(skb, &info, st, reason, now, &d);
	}
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int tc_ingress(struct __sk_buff *skb)
{
	return observe(skb, HOOK_TC_INGRESS);
}

SEC("classifier")
int tc_egress(struct __sk_buff *skb)
{
	return observe(skb, HOOK_TC_EGRESS);
}

/* A packet of a lab endpoint freed with a drop reason: report it as a drop. */
SEC("tracepoint/skb/kfree_skb")
int kfree_skb(void *ctx)
{
	struct packet_info info = {};
	struct flow_event *ev;
	struct sk_buff *skb = NULL;
	__u32 reason = 0;
	__u64 now;

	if (bpf_probe_read_kernel(&reason, sizeof(reason), ctx + kfree_reason_off) < 0 ||
	    benign(reason))
		return 0;
	if (bpf_probe_read_kernel(&skb, sizeof(skb), ctx + kfree_skbaddr_off) < 0 || !skb)
		return 0;
	if (!netns_watched(skb))
		return 0;
	if (skb_flow_key(skb, &info) < 0)
		return 0;
	/* Only packets to or from endpoints we know. */
	if (identity_of(info.key.saddr, info.key.family) == IDENTITY_WORLD &&
	    identity_of(info.key.daddr, info.key.family) == IDENTITY_WORLD)
		return 0;
	now = bpf_ktime_get_ns();
	if (!take_token(now))
		return 0;
	ev = reserve_event(sizeof(*ev), EVENT_FLOW);
	if (!ev)
		return 0;
	ev->ktime_ns = now;
	ev->key = info.key;
	ev->key.hook = HOOK_KFREE_SKB;
	ev->key.ifindex = BPF_CORE_READ(skb, dev, ifindex);
	ev->packets = 1;
	ev->bytes = BPF_CORE_READ(skb, len);
	ev->pkt_len = ev->bytes;
	ev->tcp_flags = info.tcp_flags;
	ev->icmp_type = info.icmp_type;
	ev->icmp_code = info.icmp_code;
	ev->reason = EMIT_PACKET;
	ev->verdict = VERDICT_DROPPED;
	ev->kind = KIND_DROP;
	ev->drop_reason = reason;
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

/* TCP established and closed: the connection's duration and retransmissions. */
SEC("tracepoint/sock/inet_sock_set_state")
int inet_sock_set_state(struct set_state_args *args)
{
	struct sock_life fresh = {}, *life;
	/* A copy on the stack: the verifier forbids pointers into the context. */
	struct set_state_args a, *ctx = &a;
	__u64 key, now;

	if (bpf_probe_read_kernel(&a, sizeof(a), args) < 0)
		return 0;
	key = (__u64)ctx->skaddr;

	if (ctx->protocol != IPPROTO_TCP || !sock_watched(ctx->skaddr))
		return 0;
	now = bpf_ktime_get_ns();
	if (ctx->newstate == TCP_STATE_ESTABLISHED) {
		life = bpf_map_lookup_elem(&SOCKS, &key);
		fresh.established_ns = now;
		fresh.retransmits = life ? life->retransmits : 0; /* SYN retransmits count */
		bpf_map_update_elem(&SOCKS, &key, &fresh, BPF_ANY);
		emit_lifecycle(TCP_LC_ESTABLISHED, ctx->family, ctx->saddr, ctx->daddr, ctx->saddr_v6,
			       ctx->daddr_v6, ctx->sport, ctx->dport, ctx->oldstate, ctx->newstate,
			       &fresh, now);
	} else if (ctx->newstate == TCP_STATE_CLOSE) {
		life = bpf_map_lookup_elem(&SOCKS, &key);
		/* Only connections we saw established or retransmitting: not every
		 * listener or never-connected socket. */
		if (!life)
			return 0;
		emit_lifecycle(TCP_LC_CLOSED, ctx->family, ctx->saddr, ctx->daddr, ctx->saddr_v6,
			       ctx->daddr_v6, ctx->sport, ctx->dport, ctx->oldstate, ctx->newstate,
			       life, now);
		bpf_map_delete_elem(&SOCKS, &key);
	}
	return 0;
}

/* A retransmission: counted on the socket and reported. */
SEC("tracepoint/tcp/tcp_retransmit_skb")
int tcp_retransmit_skb(struct retransmit_args *args)
{
	struct sock_life fresh = {}, *life;
	struct retransmit_args a, *ctx = &a;
	__u64 key, now;

	if (bpf_probe_read_kernel(&a, sizeof(a), args) < 0)
		return 0;
	key = (__u64)ctx->skaddr;

	if (!sock_watched(ctx->skaddr))
		return 0;
	now = bpf_ktime_get_ns();
	life = bpf_map_lookup_elem(&SOCKS, &key);
	if (!life) {
		bpf_map_update_elem(&SOCKS, &key, &fresh, BPF_NOEXIST);
		life = bpf_map_lookup_elem(&SOCKS, &key);
		if (!life)
			return 0;
	}
	__sync_fetch_and_add(&life->retransmits, 1);
	if (!take_token(now))
		return 0;
	emit_lifecycle(TCP_LC_RETRANSMIT, ctx->family, ctx->saddr, ctx->daddr, ctx->saddr_v6,
		       ctx->daddr_v6, ctx->sport, ctx->dport, ctx->state, ctx->state, life, now);
	return 0;
}

char _license[] SEC("license") = "GPL";
