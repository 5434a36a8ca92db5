/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The next-hop cache (rs_nexthop, struct rs_nexthop in routeshift.h): per
 * CPU, the bpf_fib_lookup answer towards a tunnel destination, used for
 * less than RS_NEXTHOP_TTL_TICKS jiffies before the route is looked up again.
 */
#ifndef RS_NEXTHOP_H
#define RS_NEXTHOP_H

#include <linux/if_ether.h>
#include "maps.h"

/* What a FORWARD needs to know to send: where, to whom, and how big it may be. */
struct rs_hop {
	__u32 ifindex;
	__u32 mtu;
	__u8 dmac[6];
	__u8 smac[6];
};

/* The inputs of one fib lookup, which also pick its cache slot. */
struct rs_hop_query {
	__u32 in_ifindex;
	int family;       /* RS_FAMILY_* of the tunnel */
	__u8 tos;         /* IPv4 only */
	const __u8 *dst;  /* tunnel destination, 16 bytes, v4 mapped */
};

static __always_inline __u32 rs_nexthop_slot(const struct rs_hop_query *q)
{
	const __u32 *dst = (const __u32 *)q->dst;
	__u32 h = rs_mix(0x6e680000 | ((__u32)q->family << 8) | q->tos, q->in_ifindex);

	h = rs_mix(h, dst[3]);
	if (q->family == RS_FAMILY_IPV6) {
		h = rs_mix(h, dst[0]);
		h = rs_mix(h, dst[1]);
		h = rs_mix(h, dst[2]);
	}
	return h & (RS_NEXTHOP_SLOTS - 1);
}

static __always_inline int rs_words_eq16(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

/* This CPU's slot for q, and whether it holds a fresh answer for exactly q.
 * now is bpf_jiffies64(). */
static __always_inline struct rs_nexthop *rs_nexthop_get(const struct rs_hop_query *q, __u64 now,
							 int *fresh)
{
	__u32 slot = rs_nexthop_slot(q);
	struct rs_nexthop *nh = bpf_map_lookup_elem(&rs_nexthop, &slot);

	*fresh = nh && nh->family == q->family && nh->in_ifindex == q->in_ifindex &&
		 nh->tos == q->tos && rs_words_eq16(nh->dst, q->dst) &&
		 now - nh->refreshed_jiffies < RS_NEXTHOP_TTL_TICKS;
	return nh;
}

static __always_inline void rs_nexthop_put(struct rs_nexthop *nh, const struct rs_hop_query *q,
					   const struct rs_hop *hop, __u64 now)
{
	nh->refreshed_jiffies = now;
	nh->in_ifindex = q->in_ifindex;
	nh->out_ifindex = hop->ifindex;
	nh->family = q->family;
	nh->tos = q->tos;
	nh->mtu = hop->mtu;
	__builtin_memcpy(nh->dst, q->dst, 16);
	__builtin_memcpy(nh->dmac, hop->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, hop->smac, ETH_ALEN);
}

static __always_inline void rs_nexthop_hop(const struct rs_nexthop *nh, struct rs_hop *hop)
{
	hop->ifindex = nh->out_ifindex;
	hop->mtu = nh->mtu;
	__builtin_memcpy(hop->dmac, nh->dmac, ETH_ALEN);
	__builtin_memcpy(hop->smac, nh->smac, ETH_ALEN);
}

#endif /* RS_NEXTHOP_H */
