// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * rs_uplink: the XDP program on a host's uplink. One program for both roles,
 * because a host can be a source and a destination at once (drained of app X
 * while receiving app Z) and an interface holds one XDP program.
 *
 * A packet's path, top to bottom:
 *   1. parse (Ethernet, one VLAN tag, IPv4/IPv6, TCP/UDP ports);
 *   2. DELIVERY (destination role): IP-in-IP to this host's tunnel address
 *      -> decapsulate, look up rs_deliver by the inner destination, send to
 *      the app's interface;
 *   3. REDIRECT (source role): look up rs_redirect by the destination:
 *      LOCAL -> send to the app's interface on this host;
 *      FORWARD -> encapsulate towards the app's new host;
 *      PRESERVE -> LOCAL for TCP flows from before SWITCH, FORWARD for the
 *                  rest (flows.h);
 *      no entry -> XDP_PASS, untouched.
 * "Send" is one of the delivery paths of enum rs_path (routeshift.h, out.h):
 * an XDP redirect where the target takes XDP frames, else the frame is
 * handed to rs_uplink_tc (the uplink's TC ingress, below) with a struct
 * rs_meta saying where to redirect the skb, else the host's stack.
 *
 * Policies:
 *  - Traffic the maps do not name passes to the kernel untouched. A packet
 *    we cannot parse cannot be matched, so it passes too (counted as the
 *    event RS_EVENT_UNPARSED when it has an IP ethertype). A packet that is
 *    clearly ours and broken -- a tunnel packet to our tunnel address with a
 *    bad outer or inner header, or a packet whose destination has a
 *    whole-address entry but whose lengths/L4 header are inconsistent -- is
 *    dropped as RS_DROP_MALFORMED.
 *  - This host routes the app's packets, so it decrements the TTL / hop
 *    limit. A packet arriving with TTL <= 1 is not forwarded by us: it is
 *    passed untouched (RS_EVENT_TTL), so the kernel sends ICMP time exceeded
 *    as for any routed packet.
 *  - Every drop is counted once, at the program's exit (counters.h).
 *  - Bytes are counted as the frame length received.
 */
#include <linux/pkt_cls.h>
#include "parse.h"
#include "maps.h"
#include "counters.h"
#include "encap.h"
#include "icmp.h"
#include "nexthop.h"
#include "out.h"
#include "flows.h"

/* rs_deliver: the exact key (proto, port) first, then the whole address.
 * exact = 0 when the L4 header could not be read: only the whole-address
 * entry applies. */
static __always_inline struct rs_deliver_value *rs_lookup_deliver(struct rs_pkt *pkt, int exact)
{
	struct rs_deliver_value *val;

	if (exact && (pkt->proto || pkt->dport)) {
		rs_key_exact(pkt);
		val = bpf_map_lookup_elem(&rs_deliver, &pkt->key);
		rs_key_whole(pkt);
		if (val)
			return val;
	}
	return bpf_map_lookup_elem(&rs_deliver, &pkt->key);
}

/*
 * rs_redirect: the whole address first; the exact key only when that entry
 * says the address has port entries (RS_REDIRECT_F_PORTS) and the L4 header
 * could be read. Same answer as exact-then-whole, since the agent keeps a
 * whole-address entry (a placeholder if need be) for every address with
 * port entries; most addresses cost one lookup. NULL, or the placeholder
 * when no port entry matched, means "no entry".
 */
static __always_inline struct rs_redirect_value *rs_lookup_redirect(struct rs_pkt *pkt, int exact)
{
	struct rs_redirect_value *val, *port;

	val = bpf_map_lookup_elem(&rs_redirect, &pkt->key);
	if (val && (val->flags & RS_REDIRECT_F_PORTS) && exact && (pkt->proto || pkt->dport)) {
		rs_key_exact(pkt);
		port = bpf_map_lookup_elem(&rs_redirect, &pkt->key);
		rs_key_whole(pkt);
		if (port)
			val = port;
	}
	return val;
}

/* Addresses as 32-bit words: every address used here is 4-byte aligned (at
 * offset 4 of rs_pkt, 0/4 of rs_config, 32 of rs_redirect_value), so word
 * loads replace 4x as many byte loads. n in bytes. */
static __always_inline int rs_addr_is_zero(const __u8 *a, const int n)
{
	const __u32 *w = (const __u32 *)a;
	__u32 acc = 0;

	for (int i = 0; i < n / 4; i++)
		acc |= w[i];
	return acc == 0;
}

static __always_inline int rs_addr_eq(const __u8 *a, const __u8 *b, const int n)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	__u32 acc = 0;

	for (int i = 0; i < n / 4; i++)
		acc |= x[i] ^ y[i];
	return acc == 0;
}

/* The received destination and source MACs (12 bytes), before any rewrite. */
static __always_inline int rs_frame_macs(struct xdp_md *ctx, __u8 *macs)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if ((void *)((struct ethhdr *)data + 1) > data_end)
		return -1;
	__builtin_memcpy(macs, data, 12);
	return 0;
}

/* ---- 2. delivery (destination role) ------------------------------------ */

static __always_inline int rs_is_tunnel_to_us(const struct rs_pkt *pkt,
					      const struct rs_config *cfg)
{
	if (pkt->proto != IPPROTO_IPIP && pkt->proto != IPPROTO_IPV6)
		return 0;
	if (pkt->key.family == RS_FAMILY_IPV4)
		return !rs_addr_is_zero(cfg->tunnel_addr4, 4) &&
		       rs_addr_eq(&pkt->key.addr[12], cfg->tunnel_addr4, 4);
	return !rs_addr_is_zero(cfg->tunnel_addr6, 16) &&
	       rs_addr_eq(pkt->key.addr, cfg->tunnel_addr6, 16);
}

/* KERNEL path of a delivery: decapsulated but still addressed to this host
 * (the received MACs), so the stack routes the inner packet to the app. */
static __always_inline int rs_deliver_kernel(struct xdp_md *ctx, const struct rs_pkt *outer,
					     int family, struct rs_counter *app)
{
	__u8 macs[12];

	if (rs_frame_macs(ctx, macs))
		return RS_DROPPED(RS_DROP_MALFORMED);
	if (rs_decap(ctx, outer, family, &macs[0], &macs[6]))
		return RS_DROPPED(RS_DROP_REWRITE);
	rs_counter_add(app, outer->len);
	rs_event(RS_EVENT_KERNEL_PATH, outer->len);
	return XDP_PASS;
}

static __always_inline int rs_deliver_pkt(struct xdp_md *ctx, const struct rs_pkt *outer,
					  int parsed, const struct rs_config *cfg)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	int family = outer->proto == IPPROTO_IPIP ? RS_FAMILY_IPV4 : RS_FAMILY_IPV6;
	__u64 off = outer->l3off + outer->hlen;
	struct rs_deliver_value *val;
	struct rs_counter *app;
	struct rs_pkt inner = {};
	int path, ret;

	if (parsed != RS_PARSE_OK)
		return RS_DROPPED(RS_DROP_MALFORMED);
	/* we do not reassemble, and the kernel has no decapsulator */
	if (outer->flags & RS_PKT_FRAG)
		return RS_DROPPED(RS_DROP_FRAGMENTATION);
	rs_opaque(off);
	if (off > RS_MAX_L3OFF ||
	    rs_parse_ip(data, data_end, data + off, family, &inner) != RS_PARSE_OK ||
	    inner.l3len + outer->hlen > outer->l3len)
		return RS_DROPPED(RS_DROP_MALFORMED);

	val = rs_lookup_deliver(&inner, 1);
	if (!val)
		return RS_DROPPED(RS_DROP_NO_DELIVERY);
	if (!val->ifindex)
		return RS_DROPPED(RS_DROP_BAD_ENTRY);
	app = rs_app_counter(val->app_id, RS_STAT_DELIVER);
	path = rs_meta_reserve(ctx, rs_path_for(ctx, &inner, cfg, val->path, val->slow_path));
	if (path == RS_PATH_KERNEL)
		return rs_deliver_kernel(ctx, outer, family, app);
	if (rs_decap(ctx, outer, family, val->dmac, val->smac))
		return RS_DROPPED(RS_DROP_REWRITE);
	ret = rs_send(ctx, path, val->ifindex, cfg, val->app_id, RS_STAT_DELIVER, outer->len);
	if (ret >= 0)
		rs_counter_add(app, outer->len);
	return ret;
}

/* ---- 3. redirect (source role) ----------------------------------------- */

static __always_inline int rs_local(struct xdp_md *ctx, const struct rs_pkt *pkt,
				    const struct rs_redirect_value *val,
				    const struct rs_config *cfg, struct rs_counter *app)
{
	int path, ret;

	if (!val->ifindex)
		return RS_DROPPED(RS_DROP_BAD_ENTRY);
	path = rs_meta_reserve(ctx, rs_path_for(ctx, pkt, cfg, val->path, val->slow_path));
	if (path == RS_PATH_KERNEL) {
		/* untouched: the host routes it to the app as it would without us */
		rs_counter_add(app, pkt->len);
		rs_event(RS_EVENT_KERNEL_PATH, pkt->len);
		return XDP_PASS;
	}
	if (rs_ttl_dec(ctx, pkt) ||
	    rs_set_eth(ctx, pkt->l3off, val->dmac, val->smac, pkt->key.family))
		return RS_DROPPED(RS_DROP_REWRITE);
	ret = rs_send(ctx, path, val->ifindex, cfg, val->app_id, RS_STAT_LOCAL, pkt->len);
	if (ret >= 0)
		rs_counter_add(app, pkt->len);
	return ret;
}

/*
 * The packet does not fit the tunnel: mtu is the largest inner packet that
 * does. IPv6, and IPv4 with DF, get an ICMP error back out of the uplink.
 * IPv4 without DF would need fragmenting, which XDP cannot do, and the far
 * end could not reassemble outer fragments (only our program decapsulates),
 * so it is dropped as RS_DROP_FRAGMENTATION; RFC 1191 forbids the ICMP for
 * it. The packet is still as received.
 */
static __always_inline int rs_too_big(struct xdp_md *ctx, const struct rs_pkt *pkt, __u32 mtu,
				      const struct rs_config *cfg)
{
	__u8 macs[12];
	int path, err;

	if (!(pkt->flags & RS_PKT_DF))
		return RS_DROPPED(RS_DROP_FRAGMENTATION);
	if ((pkt->flags & RS_PKT_ICMP_ERR) || !rs_icmp_src_ok(pkt) || rs_frame_macs(ctx, macs))
		return RS_DROPPED(RS_DROP_TOO_BIG);
	path = rs_meta_reserve(ctx, rs_uplink_path(cfg));

	/* source: our tunnel address of the packet's family, else the address
	 * the packet was sent to */
	if (pkt->key.family == RS_FAMILY_IPV4)
		err = rs_icmp4_too_big(ctx, pkt, mtu,
				       rs_addr_is_zero(cfg->tunnel_addr4, 4) ?
					       &pkt->key.addr[12] : cfg->tunnel_addr4,
				       macs);
	else
		err = rs_icmp6_too_big(ctx, pkt, mtu,
				       rs_addr_is_zero(cfg->tunnel_addr6, 16) ?
					       pkt->key.addr : cfg->tunnel_addr6,
				       macs);
	if (err)
		return RS_DROPPED(RS_DROP_TOO_BIG);
	rs_event(RS_EVENT_ICMP_SENT, pkt->len);
	/* no metadata: the stack routes the error back to its sender */
	if (path == RS_PATH_KERNEL)
		return XDP_PASS;
	return rs_send_out(ctx, cfg, path, ctx->ingress_ifindex, RS_APP_NONE, RS_STAT_FORWARD, pkt->len);
}

/* The size limit for an outer packet of outer_len when the route's MTU is
 * route_mtu: config.mtu when set; 0 = it fits. */
static __always_inline __u32 rs_limit(__u32 outer_len, __u32 route_mtu,
				      const struct rs_config *cfg)
{
	__u32 limit = 0;

	if (cfg->mtu) {
		if (outer_len > cfg->mtu)
			limit = cfg->mtu;
	} else if (outer_len > route_mtu) {
		limit = route_mtu;
	}
	if (!limit && outer_len > 0xffff)
		limit = 0xffff;
	return limit;
}

/*
 * FORWARD's next hop from bpf_fib_lookup: SUCCESS (hop filled), NO_NEIGH, or
 * FRAG_NEEDED (hop.mtu set), else a failure. tot_len is the outer length
 * when config.mtu is not set, so the lookup checks the route's MTU; the
 * kernel (>= 5.12) returns that MTU in mtu_result (a union with tot_len) on
 * SUCCESS too. *cacheable says the answer may be kept: a kernel that leaves
 * mtu_result alone would otherwise have a packet's length cached as the MTU.
 */
static __always_inline int rs_fib(struct xdp_md *ctx, const struct rs_pkt *pkt,
				  const struct rs_hop_query *q, const __u8 *src, __u32 outer_len,
				  const struct rs_config *cfg, struct rs_hop *hop, int *cacheable)
{
	struct bpf_fib_lookup fib = {};
	__u16 tot_len = 0;
	int rc;

	if (q->family == RS_FAMILY_IPV4) {
		fib.family = RS_AF_INET;
		fib.tos = q->tos;
		__builtin_memcpy(&fib.ipv4_src, src, 4);
		__builtin_memcpy(&fib.ipv4_dst, &q->dst[12], 4);
	} else {
		fib.family = RS_AF_INET6;
		__builtin_memcpy(fib.ipv6_src, src, 16);
		__builtin_memcpy(fib.ipv6_dst, q->dst, 16);
	}
	fib.l4_protocol = pkt->key.family == RS_FAMILY_IPV4 ? IPPROTO_IPIP : IPPROTO_IPV6;
	fib.ifindex = q->in_ifindex;
	if (!cfg->mtu)
		tot_len = outer_len > 0xffff ? 0xffff : outer_len;
	fib.tot_len = tot_len;

	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	hop->ifindex = fib.ifindex;
	hop->mtu = fib.mtu_result;
	__builtin_memcpy(hop->dmac, fib.dmac, ETH_ALEN);
	__builtin_memcpy(hop->smac, fib.smac, ETH_ALEN);
	*cacheable = rc == BPF_FIB_LKUP_RET_SUCCESS && fib.mtu_result && fib.mtu_result != tot_len;
	return rc;
}

/*
 * FORWARD through the host's stack: encapsulated with the received MACs, so
 * the stack sees a frame addressed to this host and routes it like any
 * packet to the remote tunnel address (no tunnel device is involved). Taken
 * when the next hop is unresolved (the stack resolves it) or the driver has
 * no XDP metadata. The outer source is our own address, which the IPv4
 * stack treats as a martian unless accept_local=1 on the uplink: the agent
 * sets it.
 */
static __always_inline int rs_forward_kernel(struct xdp_md *ctx, const struct rs_pkt *pkt,
					     const struct rs_redirect_value *val, int tfam,
					     const __u8 *src, enum rs_event why, struct rs_counter *app)
{
	__u8 macs[12];

	if (rs_frame_macs(ctx, macs))
		return RS_DROPPED(RS_DROP_MALFORMED);
	if (rs_ttl_dec(ctx, pkt) ||
	    rs_encap(ctx, pkt, tfam, src, val->tunnel_dst, &macs[0], &macs[6]))
		return RS_DROPPED(RS_DROP_REWRITE);
	rs_counter_add(app, pkt->len);
	rs_event(why, pkt->len);
	return XDP_PASS;
}

/*
 * FORWARD: the next hop is found before the packet is touched, so a failure
 * leaves it intact. It comes from this CPU's rs_nexthop slot when that holds
 * an answer younger than RS_NEXTHOP_TTL_TICKS jiffies for the same inputs,
 * else from bpf_fib_lookup, which refreshes the slot.
 */
static __always_inline int rs_forward(struct xdp_md *ctx, const struct rs_pkt *pkt,
				      const struct rs_redirect_value *val,
				      const struct rs_config *cfg, struct rs_counter *app)
{
	struct rs_hop_query q = { .in_ifindex = ctx->ingress_ifindex, .dst = val->tunnel_dst };
	__u32 ohlen, outer_len, limit;
	struct rs_nexthop *nh;
	struct rs_hop hop;
	int fresh, path, ret;
	const __u8 *src;
	__u64 now;

	q.family = val->tunnel_family;
	if (q.family == RS_FAMILY_IPV4) {
		src = cfg->tunnel_addr4;
		if (rs_addr_is_zero(src, 4))
			return RS_DROPPED(RS_DROP_BAD_ENTRY);
		ohlen = sizeof(struct iphdr);
		q.tos = pkt->tos;
	} else if (q.family == RS_FAMILY_IPV6) {
		src = cfg->tunnel_addr6;
		if (rs_addr_is_zero(src, 16))
			return RS_DROPPED(RS_DROP_BAD_ENTRY);
		ohlen = sizeof(struct ipv6hdr);
		q.tos = 0;
	} else {
		return RS_DROPPED(RS_DROP_BAD_ENTRY);
	}
	outer_len = pkt->l3len + ohlen;

	now = bpf_jiffies64();
	nh = rs_nexthop_get(&q, now, &fresh);
	if (fresh) {
		rs_nexthop_hop(nh, &hop);
	} else {
		int cacheable, rc = rs_fib(ctx, pkt, &q, src, outer_len, cfg, &hop, &cacheable);

		if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
			return rs_forward_kernel(ctx, pkt, val, q.family, src, RS_EVENT_NO_NEIGH, app);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_FRAG_NEEDED)
			return RS_DROPPED(RS_DROP_NO_ROUTE);
		if (cacheable && nh)
			rs_nexthop_put(nh, &q, &hop, now);
	}

	limit = rs_limit(outer_len, hop.mtu, cfg);
	if (limit)
		return rs_too_big(ctx, pkt, limit > ohlen ? limit - ohlen : 0, cfg);

	path = rs_meta_reserve(ctx, rs_path_for(ctx, pkt, cfg, rs_uplink_path(cfg), RS_PATH_TC));
	if (path == RS_PATH_KERNEL)
		return rs_forward_kernel(ctx, pkt, val, q.family, src, RS_EVENT_KERNEL_PATH, app);
	if (rs_ttl_dec(ctx, pkt) ||
	    rs_encap(ctx, pkt, q.family, src, val->tunnel_dst, hop.dmac, hop.smac))
		return RS_DROPPED(RS_DROP_REWRITE);
	ret = rs_send_out(ctx, cfg, path, hop.ifindex, val->app_id, RS_STAT_FORWARD, pkt->len);
	if (ret >= 0)
		rs_counter_add(app, pkt->len);
	return ret;
}

static __always_inline int rs_redirect_pkt(struct xdp_md *ctx, struct rs_pkt *pkt, int parsed,
					   const struct rs_config *cfg)
{
	struct rs_redirect_value *val = rs_lookup_redirect(pkt, parsed == RS_PARSE_OK);
	__u32 action;

	if (!val || val->action == RS_ACTION_PORTS_ONLY) {
		rs_event(parsed == RS_PARSE_OK ? RS_EVENT_NO_ENTRY : RS_EVENT_UNPARSED, pkt->len);
		return XDP_PASS;
	}
	if (parsed != RS_PARSE_OK)
		return RS_DROPPED(RS_DROP_MALFORMED);
	if (pkt->ttl <= 1) {
		rs_event(RS_EVENT_TTL, pkt->len);
		return XDP_PASS;
	}

	action = val->action;
	if (action == RS_ACTION_PRESERVE) /* old TCP flows here, the rest on */
		action = rs_preserve_choose(pkt, val->app_id);
	switch (action) {
	case RS_ACTION_LOCAL:
		return rs_local(ctx, pkt, val, cfg, rs_app_counter(val->app_id, RS_STAT_LOCAL));
	case RS_ACTION_FORWARD:
		return rs_forward(ctx, pkt, val, cfg, rs_app_counter(val->app_id, RS_STAT_FORWARD));
	default: /* an action this program does not know: newer user space? */
		return RS_DROPPED(RS_DROP_BAD_ENTRY);
	}
}

SEC("xdp")
int rs_uplink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct rs_pkt pkt = {};
	struct rs_config *cfg;
	void *l3 = NULL;
	__u32 zero = 0;
	int family, parsed;

	/* 1. parse */
	pkt.len = data_end - data;
	family = rs_parse_eth(data, data_end, &l3);
	if (!family)
		return XDP_PASS; /* not IP (ARP, LLDP, ...): not ours */
	parsed = rs_parse_ip(data, data_end, l3, family, &pkt);
	if (parsed == RS_PARSE_BAD_L3) {
		rs_event(RS_EVENT_UNPARSED, pkt.len);
		return XDP_PASS;
	}
	cfg = bpf_map_lookup_elem(&rs_config, &zero);
	if (!cfg) /* cannot happen: an ARRAY slot always exists */
		return XDP_PASS;

	/* 2. delivery: a tunnel packet to this host */
	if (rs_is_tunnel_to_us(&pkt, cfg))
		return rs_verdict(rs_deliver_pkt(ctx, &pkt, parsed, cfg), pkt.len);

	/* 3. redirect: an application this host serves or has moved away */
	return rs_verdict(rs_redirect_pkt(ctx, &pkt, parsed, cfg), pkt.len);
}

/*
 * The uplink's TC ingress: the second half of the TC paths. A frame
 * rs_uplink rewrote and passed with a struct rs_meta carrying this agent's
 * cookie is redirected as the meta says; everything else goes on as the
 * kernel would take it.
 */
SEC("tc")
int rs_uplink_tc(struct __sk_buff *skb)
{
	struct rs_meta *m = (void *)(long)skb->data_meta;
	struct rs_config *cfg;
	__u32 zero = 0;

	if ((void *)(m + 1) > (void *)(long)skb->data)
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&rs_config, &zero);
	if (!cfg || m->cookie != cfg->meta_cookie || !cfg->meta_cookie)
		return TC_ACT_OK;
	if (m->flags & RS_META_F_PEER)
		return bpf_redirect_peer(m->ifindex, 0);
	return bpf_redirect(m->ifindex, 0);
}

/* For the peer of a veth that rs_uplink redirects into: native XDP delivers
 * into a veth only when its peer runs an XDP program (or has GRO on). */
SEC("xdp")
int rs_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
