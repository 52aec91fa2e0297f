/* SPDX-License-Identifier: GPL-2.0 */
/* Identity-based L3/L4 policy: the peer's identity from the LPM ipcache, then the
 * endpoint's rules looked up exact, wildcard port, wildcard identity, both
 * wildcards. Any deny that matches wins; otherwise the first allow. */
#ifndef OBSERVE_POLICY_H
#define OBSERVE_POLICY_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/maps.h"

struct policy_decision {
	__u8 verdict;       /* enum verdict */
	__u8 kind;          /* enum event_kind */
	__u16 drop_reason;
	__u8 match;         /* enum policy_match */
	__u8 direction;     /* enum policy_direction */
	__u32 policy_id;
	__u32 remote_identity;
};

/* The identity of an address (4 bytes for IPv4, 16 for IPv6). */
static __always_inline __u32 identity_of(const void *addr, __u8 family)
{
	struct ipcache_key k = {};
	struct ipcache_value *v;

	k.family = family;
	k.prefixlen = 32 + (family == 6 ? 128 : 32);
	if (family == 6)
		__builtin_memcpy(k.addr, addr, 16);
	else
		__builtin_memcpy(k.addr, addr, 4);
	v = bpf_map_lookup_elem(&IPCACHE, &k);
	return v ? v->identity : IDENTITY_WORLD;
}

/* Where the endpoint of `addr` is: the host-side ifindex of its interface
 * on this node, 0 on another node; -1 when ENDPOINT_ADDRS does not know the
 * address (no endpoint's, or flow-probe has not written it yet). */
static __always_inline long endpoint_place(const void *addr, __u8 family)
{
	struct endpoint_addr k = {};
	__u32 *ifindex;

	k.family = family;
	if (family == 6)
		__builtin_memcpy(k.addr, addr, 16);
	else
		__builtin_memcpy(k.addr, addr, 4);
	ifindex = bpf_map_lookup_elem(&ENDPOINT_ADDRS, &k);
	return ifindex ? (long)*ifindex : -1;
}

/* Decides a new connection of endpoint `ep` in `direction` with peer `remote`. */
static __always_inline void policy_decide(const struct endpoint_info *ep, __u8 direction,
					  __u32 remote, __u16 dport, __u8 proto,
					  struct policy_decision *d)
{
	__u8 mode = direction == POLICY_INGRESS ? ep->ingress : ep->egress;
	struct policy_key keys[4] = {
		{ ep->endpoint_id, remote, dport, proto, direction },
		{ ep->endpoint_id, remote, 0, 0, direction },
		{ ep->endpoint_id, 0, dport, proto, direction },
		{ ep->endpoint_id, 0, 0, 0, direction },
	};
	const __u8 matches[4] = { MATCH_L3_L4, MATCH_L3_ONLY, MATCH_L4_ONLY, MATCH_ALL };
	struct policy_value *allow = NULL;
	__u8 allow_match = MATCH_NONE;

	d->direction = direction;
	d->remote_identity = remote;
	if (mode == ENFORCE_NONE)
		return; /* caller's default: a plain trace of a forwarded packet */
	d->kind = KIND_POLICY_VERDICT;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		struct policy_value *v = bpf_map_lookup_elem(&POLICY, &keys[i]);

		if (!v)
			continue;
		if (v->deny) {
			d->verdict = mode == ENFORCE_AUDIT ? VERDICT_AUDIT : VERDICT_DROPPED;
			d->drop_reason = DROP_POLICY_DENY;
			d->match = matches[i];
			d->policy_id = v->policy_id;
			return;
		}
		if (!allow) {
			allow = v;
			allow_match = matches[i];
		}
	}
	if (allow) {
		d->verdict = VERDICT_FORWARDED;
		d->match = allow_match;
		d->policy_id = allow->policy_id;
		return;
	}
	d->verdict = mode == ENFORCE_AUDIT ? VERDICT_AUDIT : VERDICT_DROPPED;
	d->drop_reason = DROP_POLICY_DENIED;
}

#endif
