/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Socket-level service load balancing, attached to a cgroup (v2): a connect()
 * or an unconnected sendmsg() to a service VIP:port is rewritten to one of the
 * service's backends before the kernel routes anything, so the packets on the
 * wire carry the backend's address and no per-packet translation is needed.
 *
 * - connect4/6, sendmsg4/6: VIP:port → a backend picked at random; the socket
 *   and backend are remembered in REVNAT; a translation event goes to the ring
 *   buffer (per connect; per new socket and backend for sendmsg).
 * - A service without backends fails the call with ECONNREFUSED (bpf_set_retval;
 *   without it the kernel would report EPERM) and reports the failure.
 * - recvmsg4/6 and getpeername4/6: the backend's address back to the VIP, so a
 *   UDP client sees replies come from the address it sent to.
 *
 * An IPv4-mapped address (::ffff:a.b.c.d) in a *6 hook is a dual-stack socket
 * reaching IPv4: looked up and remembered as the IPv4 address it maps, written
 * back mapped. (A datagram to one goes through sendmsg4: the kernel hands it
 * to IPv4's sendmsg; its reply comes back through recvmsg6, mapped.)
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "events.h"
#include "lib/ring.h"
#include "lib/lb.h"

#ifndef ECONNREFUSED
#define ECONNREFUSED 111
#endif

/* BTF keeps only types reachable from globals, maps and function signatures;
 * these pointers put every mirrored struct there for flow-probe's layout check. */
struct event_header *btf_anchor_event_header __attribute__((unused));
struct sock_xlate_event *btf_anchor_sock_xlate_event __attribute__((unused));
struct lb_service_key *btf_anchor_lb_service_key __attribute__((unused));
struct lb_service *btf_anchor_lb_service __attribute__((unused));
struct lb_backend_key *btf_anchor_lb_backend_key __attribute__((unused));
struct lb_backend *btf_anchor_lb_backend __attribute__((unused));
struct lb_revnat_key *btf_anchor_lb_revnat_key __attribute__((unused));
struct lb_revnat *btf_anchor_lb_revnat __attribute__((unused));

/* The address the user passed (connect, sendmsg) or gets back (recvmsg,
 * getpeername), with the socket's protocol; an IPv4-mapped one as the IPv4
 * address it maps (k->family 4 in a *6 hook). `family` is a constant after
 * inlining, so each program reads only its own fields. */
static __always_inline void user_addr(struct bpf_sock_addr *ctx, __u8 family,
				      struct lb_service_key *k)
{
	k->family = family;
	if (family == 4) {
		__u32 a = ctx->user_ip4;

		__builtin_memcpy(k->addr, &a, 4);
	} else {
		__u32 a[4];

		a[0] = ctx->user_ip6[0];
		a[1] = ctx->user_ip6[1];
		a[2] = ctx->user_ip6[2];
		a[3] = ctx->user_ip6[3];
		if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff)) {
			__builtin_memcpy(k->addr, &a[3], 4);
			k->family = 4;
		} else {
			__builtin_memcpy(k->addr, a, 16);
		}
	}
	k->port = bpf_ntohs((__u16)ctx->user_port);
	k->proto = (__u8)ctx->protocol;
}

/* Writes `addr` of family `addr_family` where the hook of `family` reads it:
 * an IPv4 address in a *6 hook mapped. */
static __always_inline void set_user_addr(struct bpf_sock_addr *ctx, __u8 family,
					  __u8 addr_family, const __u8 *addr, __u16 port)
{
	if (family == 4) {
		__u32 a;

		__builtin_memcpy(&a, addr, 4);
		ctx->user_ip4 = a;
	} else {
		__u32 a[4];

		if (addr_family == 4) {
			a[0] = 0;
			a[1] = 0;
			a[2] = bpf_htonl(0xffff);
			__builtin_memcpy(&a[3], addr, 4);
		} else {
			__builtin_memcpy(a, addr, 16);
		}
		ctx->user_ip6[0] = a[0];
		ctx->user_ip6[1] = a[1];
		ctx->user_ip6[2] = a[2];
		ctx->user_ip6[3] = a[3];
	}
	ctx->user_port = bpf_htons(port);
}

/* The socket's bound address and port; zero when it is not bound yet. */
static __always_inline void sock_source(struct bpf_sock_addr *ctx, __u8 family, __u8 *src,
					__u16 *port)
{
	struct bpf_sock *sk = ctx->sk;

	if (!sk)
		return;
	if (family == 4) {
		__u32 a = sk->src_ip4;

		__builtin_memcpy(src, &a, 4);
	} else {
		__u32 a[4];

		a[0] = sk->src_ip6[0];
		a[1] = sk->src_ip6[1];
		a[2] = sk->src_ip6[2];
		a[3] = sk->src_ip6[3];
		__builtin_memcpy(src, a, 16);
	}
	*port = (__u16)sk->src_port;
}

/* What one translation event reports. */
struct xlate {
	const __u8 *vip;
	const __u8 *backend;   /* NULL: no backend */
	__u64 cookie;
	__u32 service_id;
	__u16 vip_port;
	__u16 backend_port;
	__u8 family;
	__u8 proto;
	__u8 point;            /* enum sock_xlate_point */
	__u8 hook;             /* enum sock_hook */
};

static __always_inline void emit(struct bpf_sock_addr *ctx, const struct xlate *x)
{
	struct sock_xlate_event *ev;

	ev = reserve_event(sizeof(*ev), EVENT_SOCK_XLATE);
	if (!ev)
		return;
	ev->ktime_ns = bpf_ktime_get_ns();
	ev->socket_cookie = x->cookie;
	ev->cgroup_id = bpf_get_current_cgroup_id();
	__builtin_memcpy(ev->vip, x->vip, 16);
	ev->vip_port = x->vip_port;
	if (x->backend) {
		__builtin_memcpy(ev->backend, x->backend, 16);
		ev->backend_port = x->backend_port;
	} else {
		ev->no_backend = 1;
	}
	ev->family = x->family;
	ev->proto = x->proto;
	ev->xlate_point = x->point;
	ev->hook = x->hook;
	ev->service_id = x->service_id;
	sock_source(ctx, x->family, ev->src, &ev->src_port);
	ev->netns_cookie = bpf_get_netns_cookie(ctx);
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline int same_addr(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* connect and sendmsg: VIP → backend. Returns the hook's verdict (1 pass, 0 fail). */
static __always_inline int xlate_fwd(struct bpf_sock_addr *ctx, __u8 family, __u8 hook)
{
	struct lb_service_key key = {};
	struct lb_backend_key bkey = {};
	struct lb_revnat_key rkey = {};
	struct lb_revnat rval = {};
	struct lb_revnat *known;
	struct lb_backend *be = NULL;
	struct lb_service *svc;
	struct xlate x = {};
	__u16 count;

	user_addr(ctx, family, &key);
	if (key.proto != IPPROTO_TCP && key.proto != IPPROTO_UDP)
		return 1;
	svc = bpf_map_lookup_elem(&SERVICES, &key);
	if (!svc)
		return 1;
	x.vip = key.addr;
	x.vip_port = key.port;
	x.family = key.family;
	x.proto = key.proto;
	x.hook = hook;
	x.service_id = svc->service_id;
	x.cookie = bpf_get_socket_cookie(ctx);
	count = svc->backend_count; /* read once: user space may update it */
	if (count) {
		bkey.service_id = x.service_id;
		bkey.slot = bpf_get_prandom_u32() % count;
		be = bpf_map_lookup_elem(&BACKENDS, &bkey);
	}
	if (!be || be->family != key.family) {
		x.point = XLATE_PRE_DIRECTION_FWD;
		emit(ctx, &x);
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	set_user_addr(ctx, family, key.family, be->addr, be->port);

	rkey.cookie = x.cookie;
	__builtin_memcpy(rkey.addr, be->addr, 16);
	rkey.port = be->port;
	rkey.family = key.family;
	__builtin_memcpy(rval.vip, key.addr, 16);
	rval.vip_port = key.port;
	rval.family = key.family;
	rval.service_id = x.service_id;
	/* Looked up first: an insert of a known key still takes the LRU's
	 * locks (and, full, evicts), and this runs for every datagram. */
	known = bpf_map_lookup_elem(&REVNAT, &rkey);
	if (known && known->vip_port == rval.vip_port && same_addr(known->vip, rval.vip)) {
		/* Known socket, backend and VIP: a datagram more needs no new event. */
		if (hook == SOCK_HOOK_SENDMSG)
			return 1;
	}
	/* A connect, a new pair, or another VIP of the same backend (two
	 * ports of one service): the replies must show the VIP sent to last. */
	bpf_map_update_elem(&REVNAT, &rkey, &rval, BPF_ANY);
	x.backend = be->addr;
	x.backend_port = be->port;
	x.point = XLATE_POST_DIRECTION_FWD;
	emit(ctx, &x);
	return 1;
}

/* recvmsg and getpeername: backend → VIP for sockets we translated. */
static __always_inline void xlate_rev(struct bpf_sock_addr *ctx, __u8 family, int report)
{
	struct lb_service_key peer = {};
	struct lb_revnat_key rkey = {};
	struct lb_revnat *rv;
	struct xlate x = {};

	user_addr(ctx, family, &peer);
	rkey.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(rkey.addr, peer.addr, 16);
	rkey.port = peer.port;
	rkey.family = peer.family;
	rv = bpf_map_lookup_elem(&REVNAT, &rkey);
	if (!rv)
		return;
	set_user_addr(ctx, family, peer.family, rv->vip, rv->vip_port);
	if (!report || rv->reported)
		return;
	rv->reported = 1; /* one reverse event per socket and backend */
	x.vip = rv->vip;
	x.vip_port = rv->vip_port;
	x.backend = peer.addr;
	x.backend_port = peer.port;
	x.family = peer.family;
	x.proto = peer.proto;
	x.service_id = rv->service_id;
	x.cookie = rkey.cookie;
	x.point = XLATE_POST_DIRECTION_REV;
	x.hook = SOCK_HOOK_RECVMSG;
	emit(ctx, &x);
}

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx)
{
	return xlate_fwd(ctx, 4, SOCK_HOOK_CONNECT);
}

SEC("cgroup/connect6")
int sock_connect6(struct bpf_sock_addr *ctx)
{
	return xlate_fwd(ctx, 6, SOCK_HOOK_CONNECT);
}

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return xlate_fwd(ctx, 4, SOCK_HOOK_SENDMSG);
}

SEC("cgroup/sendmsg6")
int sock_sendmsg6(struct bpf_sock_addr *ctx)
{
	return xlate_fwd(ctx, 6, SOCK_HOOK_SENDMSG);
}

SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	xlate_rev(ctx, 4, 1);
	return 1;
}

SEC("cgroup/recvmsg6")
int sock_recvmsg6(struct bpf_sock_addr *ctx)
{
	xlate_rev(ctx, 6, 1);
	return 1;
}

SEC("cgroup/getpeername4")
int sock_getpeername4(struct bpf_sock_addr *ctx)
{
	xlate_rev(ctx, 4, 0);
	return 1;
}

SEC("cgroup/getpeername6")
int sock_getpeername6(struct bpf_sock_addr *ctx)
{
	xlate_rev(ctx, 6, 0);
	return 1;
}

char _license[] SEC("license") = "GPL";
