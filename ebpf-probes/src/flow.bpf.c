/* SPDX-License-Identifier: GPL-2.0 */
/*
 * tc flow probe: one program per direction of an interface, with one body of
 * code (tc_egress jumps into tc_ingress; what each packet does is in
 * lib/track.h), and the tracepoint programs that report kernel drops and the
 * TCP lifecycle.
 *
 * On an endpoint's host-side veth the tc programs also enforce the endpoint's
 * policy: tc ingress there sees what the endpoint sends (its egress policy),
 * tc egress what it receives (its ingress policy).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/flow_key.h"
#include "lib/frag.h"
#include "lib/track.h"
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
struct endpoint_addr *btf_anchor_endpoint_addr __attribute__((unused));
struct policy_key *btf_anchor_policy_key __attribute__((unused));
struct policy_value *btf_anchor_policy_value __attribute__((unused));
struct tcp_lifecycle_event *btf_anchor_tcp_lifecycle_event __attribute__((unused));
enum slot_state *btf_anchor_slot_state __attribute__((unused));
enum tc_path *btf_anchor_tc_path __attribute__((unused));
struct path_time *btf_anchor_path_time __attribute__((unused));
struct egress_jump *btf_anchor_egress_jump __attribute__((unused));

/* Run counts and time by enum tc_path, per CPU, with time_paths (track.h)
 * on: two clock reads a run. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TC_PATH_MAX);
	__type(key, __u32);
	__type(value, struct path_time);
} PATH_TIMES SEC(".maps");

/* Parses the packet and counts it; s->path says which path it took. */
static __always_inline int observe_packet(struct sighting *s, struct pkt *p)
{
	struct __sk_buff *skb = s->skb;
	const void *data = (void *)(long)skb->data;
	const void *end = (void *)(long)skb->data_end;

	p->len = skb->len;
	/* A GSO packet (TSO from a local socket, GRO on receive) is several on
	 * the wire, as the TCP stack's own counters count it; its bytes are
	 * theirs too, each with its headers (wire_len, once parsed), as a
	 * NIC's counters count a TSO send. */
	p->segs = skb->gso_segs > 1 ? skb->gso_segs : 1;
	s->ifindex = skb->ifindex;
	/* Parsed where the packet is; pulled and parsed again only when a
	 * header lies outside the linear area (the pull moves the data). */
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		const struct iphdr *ip = parse_ipv4(data, end, p);
		struct flow4_key k;

		if ((!ip || p->unreadable) && pull_more(skb)) {
			p->unreadable = READABLE;
			ip = parse_ipv4((void *)(long)skb->data, (void *)(long)skb->data_end, p);
		}
		if (!ip || cost_stop == COST_STOP_PARSED)
			return TC_ACT_UNSPEC;
		wire_len(p);
		if (p->frag && !p->unreadable)
			datagram_ports4(p, ip);
		s->side = key4(&k, ip, p, s->ifindex);
		s->key = &k;
		if (p->unreadable)
			return unreadable4(s);
		return track(s, 4);
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		const struct ipv6hdr *ip6 = parse_ipv6(data, end, p);
		struct flow6_key k;

		if ((!ip6 || p->unreadable) && pull_more(skb)) {
			p->unreadable = READABLE;
			ip6 = parse_ipv6((void *)(long)skb->data, (void *)(long)skb->data_end, p);
		}
		if (!ip6 || cost_stop == COST_STOP_PARSED)
			return TC_ACT_UNSPEC;
		wire_len(p);
		if (p->frag && !p->unreadable)
			datagram_ports6(p, ip6);
		s->side = key6(&k, ip6, p, s->ifindex);
		s->key = &k;
		if (p->unreadable)
			return unreadable6(s);
		return track(s, 6);
	}
	return TC_ACT_UNSPEC;
}

static __always_inline int observe(struct __sk_buff *skb, __u8 hook)
{
	struct pkt p = {};
	struct sighting s = { .p = &p, .skb = skb, .hook = hook, .path = TC_PATH_UNTRACKED };
	__u64 start = time_paths ? bpf_ktime_get_ns() : 0;
	int verdict = observe_packet(&s, &p);

	if (time_paths) {
		__u32 index = s.path;
		struct path_time *t = bpf_map_lookup_elem(&PATH_TIMES, &index);

		if (t) {
			t->runs += 1;
			t->ns += bpf_ktime_get_ns() - start;
		}
	}
	return verdict;
}

/* tc_egress runs tc_ingress's instructions: it jumps there through TC_BODY
 * (a tail call). A packet between two endpoints of the node runs tc_ingress
 * at the sender's veth, then tc_egress at the receiver's a few microseconds
 * later on the same CPU, and so finds them in cache the second time.
 * flow-probe puts tc_ingress here before it attaches anything. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} TC_BODY SEC(".maps");

/* Per CPU: `egress` is set by tc_egress just before it jumps into tc_ingress,
 * which reads and clears it, so that run counts as egress. Nothing else runs
 * on the CPU in between: tc programs run with bottom halves off (on
 * PREEMPT_RT, under the CPU's softirq lock). tc_ingress reads it only when
 * the packet's control block holds EGRESS_JUMP_MARK, which tc_egress writes
 * there too: the skb's line is in cache, the flag's may not be, and another
 * program may have left any value in the control block, so the flag
 * decides. The word the mark replaced is kept in `cb0` and put back, for
 * programs after these and beyond the veth. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct egress_jump);
} EGRESS_JUMP SEC(".maps");

SEC("classifier")
int tc_ingress(struct __sk_buff *skb)
{
	__u8 hook = HOOK_TC_INGRESS;

	if (skb->cb[0] == EGRESS_JUMP_MARK) {
		__u32 zero = 0;
		struct egress_jump *j = bpf_map_lookup_elem(&EGRESS_JUMP, &zero);

		if (j && j->egress) {
			j->egress = 0;
			skb->cb[0] = j->cb0;
			hook = HOOK_TC_EGRESS;
		}
	}
	return observe(skb, hook);
}

SEC("classifier")
int tc_egress(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct egress_jump *j = bpf_map_lookup_elem(&EGRESS_JUMP, &zero);

	if (j) {
		j->egress = 1;
		j->cb0 = skb->cb[0];
		skb->cb[0] = EGRESS_JUMP_MARK;
		bpf_tail_call(skb, &TC_BODY, 0);
		/* TC_BODY is empty: the kernel empties a program array once no
		 * fd or pin holds it, and pinned links keep the programs
		 * attached after flow-probe exits. The same work, in this
		 * program's own copy. */
		j->egress = 0;
		skb->cb[0] = j->cb0;
		j->own_copy_runs += 1;
	}
	return observe(skb, HOOK_TC_EGRESS);
}

/* A packet of a lab endpoint freed with a drop reason: report it as a drop. */
SEC("tracepoint/skb/kfree_skb")
int kfree_skb(void *ctx)
{
	struct drop_info info = {};
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
	if (skb_flow_key(skb, &info) < 0 || to_a_group(&info.key))
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
	skb_ethernet(skb, ev->dmac);
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

	if (ctx->protocol != IPPROTO_TCP || !sock_watched(ctx->skaddr) ||
	    !endpoint_sock(ctx->family, ctx->saddr, ctx->saddr_v6))
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
		/* Connections we saw established or retransmitting, and connects
		 * that failed (refused, or given up before a retransmission): not
		 * every listener or never-connected socket. */
		if (!life && ctx->oldstate != TCP_STATE_SYN_SENT)
			return 0;
		emit_lifecycle(TCP_LC_CLOSED, ctx->family, ctx->saddr, ctx->daddr, ctx->saddr_v6,
			       ctx->daddr_v6, ctx->sport, ctx->dport, ctx->oldstate, ctx->newstate,
			       life, now);
		if (life)
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

	if (!sock_watched(ctx->skaddr) || !endpoint_sock(ctx->family, ctx->saddr, ctx->saddr_v6))
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
