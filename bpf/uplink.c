// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * rs_uplink: the XDP program on a host's uplink. One program for both roles,
 * because a host can be a source and a destination at once (drained of app X
 * while receiving app Z) and an interface holds one XDP program.
 *
 * A packet's path, top to bottom:
 *   1. parse (Ethernet, one VLAN tag, IPv4/IPv6, TCP/UDP ports);
 *   2. DELIVERY (destination role): IP-in-IP to this host's tunnel address
 *      -> decapsulate, look up rs_deliver by the inner destination, redirect
 *      to the app's interface;
 *   3. REDIRECT (source role): look up rs_redirect by the destination:
 *      LOCAL -> redirect to the app's interface on this host;
 *      FORWARD -> encapsulate towards the app's new host;
 *      no entry -> XDP_PASS, untouched.
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
 *    counted as RS_DROP_TTL and passed, so the kernel sends ICMP time
 *    exceeded as for any routed packet.
 *  - Bytes are counted as the frame length received.
 *
 * Redirect into a veth with native XDP is delivered only if the veth's peer
 * runs an XDP program; rs_pass below is that program (see DESIGN.md).
 */
#include "parse.h"
#include "maps.h"
#include "counters.h"
#include "encap.h"
#include "icmp.h"

/* rs_deliver: the exact key (proto, port) first, then the whole address.
 * exact = 0 when the L4 header could not be read: only the whole-address
 * entry applies. */
static __always_inline void *rs_lookup_deliver(struct rs_pkt *pkt, int exact)
{
	void *val;

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

static __always_inline int rs_redirect_to(__u32 ifindex, __u32 bytes)
{
	int act = bpf_redirect(ifindex, 0);

	if (act != XDP_REDIRECT)
		return rs_drop(RS_DROP_REDIRECT_FAILED, bytes, XDP_ABORTED);
	return act;
}

/* Addresses as 32-bit words: every address used here is 4-byte aligned (at
 * offset 4 of rs_pkt, 0/4 of rs_config, 32 of rs_redirect_value, 16 of
 * rs_nexthop), so word loads replace 4x as many byte loads. n in bytes. */
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

static __always_inline int rs_deliver_pkt(struct xdp_md *ctx, const struct rs_pkt *outer,
					  int parsed, __u32 bytes)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	int family = outer->proto == IPPROTO_IPIP ? RS_FAMILY_IPV4 : RS_FAMILY_IPV6;
	__u64 off = outer->l3off + outer->hlen;
	struct rs_deliver_value *val;
	struct rs_pkt inner = {};

	if (parsed != RS_PARSE_OK)
		return rs_drop(RS_DROP_MALFORMED, bytes, XDP_DROP);
	/* we do not reassemble, and the kernel has no decapsulator */
	if (outer->flags & RS_PKT_FRAG)
		return rs_drop(RS_DROP_FRAGMENTATION, bytes, XDP_DROP);
	rs_opaque(off);
	if (off > RS_MAX_L3OFF ||
	    rs_parse_ip(data, data_end, data + off, family, &inner) != RS_PARSE_OK ||
	    inner.l3len + outer->hlen > outer->l3len)
		return rs_drop(RS_DROP_MALFORMED, bytes, XDP_DROP);

	val = rs_lookup_deliver(&inner, 1);
	if (!val)
		return rs_drop(RS_DROP_NO_DELIVERY, bytes, XDP_DROP);
	if (!val->ifindex)
		return rs_drop(RS_DROP_BAD_ENTRY, bytes, XDP_DROP);
	if (rs_decap(ctx, outer, family, val->dmac, val->smac))
		return rs_drop(RS_DROP_REDIRECT_FAILED, bytes, XDP_DROP);
	rs_app_count(val->app_id, RS_STAT_DELIVER, bytes);
	return rs_redirect_to(val->ifindex, bytes);
}

/* ---- 3. redirect (source role) ----------------------------------------- */

static __always_inline int rs_local(struct xdp_md *ctx, const struct rs_pkt *pkt,
				    const struct rs_redirect_value *val, __u32 bytes)
{
	if (!val->ifindex)
		return rs_drop(RS_DROP_BAD_ENTRY, bytes, XDP_DROP);
	if (rs_ttl_dec(ctx, pkt) ||
	    rs_set_eth(ctx, pkt->l3off, val->dmac, val->smac, pkt->key.family))
		return rs_drop(RS_DROP_REDIRECT_FAILED, bytes, XDP_DROP);
	rs_app_count(val->app_id, RS_STAT_LOCAL, bytes);
	return rs_redirect_to(val->ifindex, bytes);
}

/*
 * The packet does not fit the tunnel: mtu is the largest inner packet that
 * does. IPv6, and IPv4 with DF, get an ICMP error back (XDP_TX). IPv4
 * without DF would need fragmenting, which XDP cannot do, and the far end
 * could not reassemble outer fragments (only our program decapsulates), so
 * it is dropped as RS_DROP_FRAGMENTATION; RFC 1191 forbids the ICMP for it.
 * The packet is still as received.
 */
static __always_inline int rs_too_big(struct xdp_md *ctx, const struct rs_pkt *pkt,
				      __u32 mtu, const struct rs_config *cfg, __u32 bytes)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 macs[12]; /* received dst MAC, src MAC */
	int err;

	if (!(pkt->flags & RS_PKT_DF))
		return rs_drop(RS_DROP_FRAGMENTATION, bytes, XDP_DROP);
	if ((pkt->flags & RS_PKT_ICMP_ERR) || !rs_icmp_src_ok(pkt) ||
	    (void *)((struct ethhdr *)data + 1) > data_end)
		return rs_drop(RS_DROP_TOO_BIG, bytes, XDP_DROP);
	__builtin_memcpy(macs, data, sizeof(macs));

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
		return rs_drop(RS_DROP_TOO_BIG, bytes, XDP_DROP);
	return rs_drop(RS_DROP_TOO_BIG, bytes, XDP_TX);
}

/* The rs_nexthop slot for a fib lookup's inputs (dst: 16 bytes, v4 mapped). */
static __always_inline __u32 rs_nexthop_slot(__u32 in_ifindex, int tfam, __u8 tos,
					     const __u32 *dst)
{
	__u32 h = rs_mix(0x6e680000 | ((__u32)tfam << 8) | tos, in_ifindex);

	h = rs_mix(h, dst[3]);
	if (tfam == RS_FAMILY_IPV6) {
		h = rs_mix(h, dst[0]);
		h = rs_mix(h, dst[1]);
		h = rs_mix(h, dst[2]);
	}
	return h & (RS_NEXTHOP_SLOTS - 1);
}

/* A cached answer for exactly these inputs, younger than the TTL. */
static __always_inline int rs_nexthop_fresh(const struct rs_nexthop *nh, __u32 in_ifindex,
					    int tfam, __u8 tos, const __u8 *dst, __u64 now)
{
	return nh->family == tfam && nh->in_ifindex == in_ifindex && nh->tos == tos &&
	       rs_addr_eq(nh->dst, dst, 16) && now - nh->refreshed_ns < RS_NEXTHOP_TTL_NS;
}

/* The next hop is known: decrement the TTL, encapsulate, count, send. */
static __always_inline int rs_forward_out(struct xdp_md *ctx, const struct rs_pkt *pkt,
					  const struct rs_redirect_value *val, int tfam,
					  const __u8 *src, __u32 out_if, const __u8 *dmac,
					  const __u8 *smac, __u32 bytes)
{
	if (rs_ttl_dec(ctx, pkt) ||
	    rs_encap(ctx, pkt, tfam, src, val->tunnel_dst, dmac, smac))
		return rs_drop(RS_DROP_REDIRECT_FAILED, bytes, XDP_DROP);
	rs_app_count(val->app_id, RS_STAT_FORWARD, bytes);
	if (out_if == ctx->ingress_ifindex)
		return XDP_TX;
	return rs_redirect_to(out_if, bytes);
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
 * FORWARD without a cached next hop: bpf_fib_lookup. The size limit is
 * config.mtu when set, else the route's MTU (tot_len = outer length: the
 * lookup answers FRAG_NEEDED with the MTU in mtu_result). A SUCCESS answer
 * is cached in nh: the kernel (>= 5.12) returns the route's MTU in
 * mtu_result on SUCCESS too; an answer whose mtu_result still equals the
 * tot_len we passed is not cached, so a kernel that leaves it alone can
 * never have a packet's length cached as the MTU.
 *
 * NO_NEIGH: the encapsulated packet is passed to the kernel, which routes it
 * like any packet to the remote tunnel address and resolves the neighbour
 * (no tunnel device is involved: the outer destination is routable). It
 * carries our own address as source, which the IPv4 stack treats as a
 * martian unless accept_local=1 on the uplink; the agent must set it (or
 * keep the tunnel neighbours resolved). The Ethernet header keeps the
 * received MACs so the stack sees a frame addressed to this host.
 */
static __always_inline int rs_forward_fib(struct xdp_md *ctx, const struct rs_pkt *pkt,
					  const struct rs_redirect_value *val,
					  const struct rs_config *cfg, int tfam, const __u8 *src,
					  __u32 ohlen, __u32 outer_len, __u8 tos,
					  struct rs_nexthop *nh, __u64 now, __u32 bytes)
{
	struct bpf_fib_lookup fib = {};
	__u32 limit = 0;
	__u16 tot_len = 0;
	int rc;

	if (tfam == RS_FAMILY_IPV4) {
		fib.family = RS_AF_INET;
		fib.tos = tos;
		__builtin_memcpy(&fib.ipv4_src, src, 4);
		__builtin_memcpy(&fib.ipv4_dst, &val->tunnel_dst[12], 4);
	} else {
		fib.family = RS_AF_INET6;
		__builtin_memcpy(fib.ipv6_src, src, 16);
		__builtin_memcpy(fib.ipv6_dst, val->tunnel_dst, 16);
	}
	fib.l4_protocol = pkt->key.family == RS_FAMILY_IPV4 ? IPPROTO_IPIP : IPPROTO_IPV6;
	fib.ifindex = ctx->ingress_ifindex;
	if (!cfg->mtu)
		tot_len = outer_len > 0xffff ? 0xffff : outer_len;
	fib.tot_len = tot_len;

	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (cfg->mtu) {
		if (outer_len > cfg->mtu)
			limit = cfg->mtu;
	} else if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		limit = fib.mtu_result;
	}
	if (!limit && outer_len > 0xffff)
		limit = 0xffff;
	if (limit)
		return rs_too_big(ctx, pkt, limit > ohlen ? limit - ohlen : 0, cfg, bytes);

	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (nh && fib.mtu_result && fib.mtu_result != tot_len) {
			nh->refreshed_ns = now;
			nh->in_ifindex = ctx->ingress_ifindex;
			nh->out_ifindex = fib.ifindex;
			nh->family = tfam;
			nh->tos = tos;
			nh->mtu = fib.mtu_result;
			__builtin_memcpy(nh->dst, val->tunnel_dst, 16);
			__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
			__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
		}
		return rs_forward_out(ctx, pkt, val, tfam, src, fib.ifindex, fib.dmac, fib.smac,
				      bytes);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;
		__u8 macs[12]; /* received dst MAC, src MAC */

		if ((void *)((struct ethhdr *)data + 1) > data_end)
			return rs_drop(RS_DROP_MALFORMED, bytes, XDP_DROP);
		__builtin_memcpy(macs, data, sizeof(macs));
		if (rs_ttl_dec(ctx, pkt) ||
		    rs_encap(ctx, pkt, tfam, src, val->tunnel_dst, &macs[0], &macs[6]))
			return rs_drop(RS_DROP_REDIRECT_FAILED, bytes, XDP_DROP);
		rs_app_count(val->app_id, RS_STAT_FORWARD, bytes);
		rs_event(RS_EVENT_NO_NEIGH, bytes);
		return XDP_PASS;
	}
	return rs_drop(RS_DROP_NO_ROUTE, bytes, XDP_DROP);
}

/*
 * FORWARD: the next hop is found before the packet is touched, so a failure
 * leaves it intact. It comes from this CPU's rs_nexthop slot when that holds
 * an answer younger than RS_NEXTHOP_TTL_NS for the same inputs, else from
 * bpf_fib_lookup (rs_forward_fib), which refreshes the slot.
 */
static __always_inline int rs_forward(struct xdp_md *ctx, const struct rs_pkt *pkt,
				      const struct rs_redirect_value *val,
				      const struct rs_config *cfg, __u32 bytes)
{
	__u32 in_if = ctx->ingress_ifindex, ohlen, outer_len, limit, slot;
	int tfam = val->tunnel_family;
	struct rs_nexthop *nh;
	const __u8 *src;
	__u8 tos = 0;
	__u64 now;

	if (tfam == RS_FAMILY_IPV4) {
		src = cfg->tunnel_addr4;
		if (rs_addr_is_zero(src, 4))
			return rs_drop(RS_DROP_BAD_ENTRY, bytes, XDP_DROP);
		ohlen = sizeof(struct iphdr);
		tos = pkt->tos;
	} else if (tfam == RS_FAMILY_IPV6) {
		src = cfg->tunnel_addr6;
		if (rs_addr_is_zero(src, 16))
			return rs_drop(RS_DROP_BAD_ENTRY, bytes, XDP_DROP);
		ohlen = sizeof(struct ipv6hdr);
	} else {
		return rs_drop(RS_DROP_BAD_ENTRY, bytes, XDP_DROP);
	}
	outer_len = pkt->l3len + ohlen;

	now = bpf_ktime_get_coarse_ns();
	slot = rs_nexthop_slot(in_if, tfam, tos, (const __u32 *)val->tunnel_dst);
	nh = bpf_map_lookup_elem(&rs_nexthop, &slot);
	if (!nh || !rs_nexthop_fresh(nh, in_if, tfam, tos, val->tunnel_dst, now))
		return rs_forward_fib(ctx, pkt, val, cfg, tfam, src, ohlen, outer_len, tos, nh,
				      now, bytes);

	limit = rs_limit(outer_len, nh->mtu, cfg);
	if (limit)
		return rs_too_big(ctx, pkt, limit > ohlen ? limit - ohlen : 0, cfg, bytes);
	return rs_forward_out(ctx, pkt, val, tfam, src, nh->out_ifindex, nh->dmac, nh->smac,
			      bytes);
}

static __always_inline int rs_redirect_pkt(struct xdp_md *ctx, struct rs_pkt *pkt,
					   int parsed, const struct rs_config *cfg,
					   __u32 bytes)
{
	struct rs_redirect_value *val = rs_lookup_redirect(pkt, parsed == RS_PARSE_OK);

	if (!val || val->action == RS_ACTION_PORTS_ONLY) {
		rs_event(parsed == RS_PARSE_OK ? RS_EVENT_NO_ENTRY : RS_EVENT_UNPARSED, bytes);
		return XDP_PASS;
	}
	if (parsed != RS_PARSE_OK)
		return rs_drop(RS_DROP_MALFORMED, bytes, XDP_DROP);
	if (pkt->ttl <= 1)
		return rs_drop(RS_DROP_TTL, bytes, XDP_PASS);

	switch (val->action) {
	case RS_ACTION_LOCAL:
		return rs_local(ctx, pkt, val, bytes);
	case RS_ACTION_FORWARD:
		return rs_forward(ctx, pkt, val, cfg, bytes);
	default: /* an action this program does not know: newer user space? */
		return rs_drop(RS_DROP_BAD_ENTRY, bytes, XDP_DROP);
	}
}

SEC("xdp")
int rs_uplink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 bytes = data_end - data;
	struct rs_pkt pkt = {};
	struct rs_config *cfg;
	void *l3 = NULL;
	__u32 zero = 0;
	int family, parsed;

	/* 1. parse */
	family = rs_parse_eth(data, data_end, &l3);
	if (!family)
		return XDP_PASS; /* not IP (ARP, LLDP, ...): not ours */
	parsed = rs_parse_ip(data, data_end, l3, family, &pkt);
	if (parsed == RS_PARSE_BAD_L3) {
		rs_event(RS_EVENT_UNPARSED, bytes);
		return XDP_PASS;
	}
	cfg = bpf_map_lookup_elem(&rs_config, &zero);
	if (!cfg) /* cannot happen: an ARRAY slot always exists */
		return XDP_PASS;

	/* 2. delivery: a tunnel packet to this host */
	if (rs_is_tunnel_to_us(&pkt, cfg))
		return rs_deliver_pkt(ctx, &pkt, parsed, bytes);

	/* 3. redirect: an application this host serves or has moved away */
	return rs_redirect_pkt(ctx, &pkt, parsed, cfg, bytes);
}

/* For the peer of a veth that rs_uplink redirects into: native XDP delivers
 * into a veth only when its peer runs an XDP program. */
SEC("xdp")
int rs_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
