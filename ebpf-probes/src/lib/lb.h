/* SPDX-License-Identifier: GPL-2.0 */
/* Maps of the socket-level service load balancer (sock_lb.bpf.c). flow-probe
 * writes SERVICES and BACKENDS from the services file; REVNAT is the kernel's
 * own memory of which socket was sent where, for the reverse translation.
 * All pinned by name, so the load balancer outlives a flow-probe restart. */
#ifndef OBSERVE_LB_H
#define OBSERVE_LB_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "events.h"

/* Frontends: VIP, port and protocol → service id and backend count. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} SERVICES SEC(".maps");

/* Backends of each frontend, by slot 0..backend_count-1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_backend_key);
	__type(value, struct lb_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BACKENDS SEC(".maps");

/* Socket and backend → the VIP it stands for; LRU because sockets close
 * without telling us. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_revnat_key);
	__type(value, struct lb_revnat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} REVNAT SEC(".maps");

#endif
