/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Where a rewritten frame goes: the delivery paths of enum rs_path
 * (routeshift.h). A LOCAL or delivery packet's path is chosen before the
 * frame is touched (rs_path_for, rs_meta_reserve), because the KERNEL path
 * rewrites differently; rs_send then sends the rewritten frame.
 */
#ifndef RS_OUT_H
#define RS_OUT_H

#include "counters.h"
#include "csum.h"
#include "parse.h"

/*
 * Whether pkt's TCP/UDP checksum is still partial: it holds only the
 * pseudo-header sum, the rest left to a NIC (CHECKSUM_PARTIAL). Packets
 * from another namespace of the same kernel arrive like this on a veth;
 * their skb says so, but an XDP frame made of it does not, and the
 * receiver would find the checksum wrong. A complete checksum equals the
 * pseudo-header sum once in 65,536 packets: that one takes the slow path,
 * which delivers it too.
 */
static __always_inline int rs_csum_partial(void *data, void *data_end, const struct rs_pkt *pkt)
{
	__u64 off = pkt->csum_off;
	__u16 *check;
	__u64 sum;

	if (!off || (pkt->flags & RS_PKT_FRAG))
		return 0;
	rs_opaque(off);
	if (off > RS_MAX_L3OFF + 60 + 16)
		return 0;
	check = data + off;
	if ((void *)(check + 1) > data_end)
		return 0;
	if (pkt->key.family == RS_FAMILY_IPV4)
		sum = rs_csum_words(&pkt->saddr[12], 2, rs_csum_words(&pkt->key.addr[12], 2, 0));
	else
		sum = rs_csum_words(pkt->saddr, 8, rs_csum_words(pkt->key.addr, 8, 0));
	sum += bpf_htons(pkt->proto) + bpf_htons(pkt->l3len - pkt->hlen);
	return *check == (__u16)~rs_csum_fold(sum);
}

/* The path pkt takes: `path`, or `slow` when that is XDP and pkt's checksum
 * is partial on an uplink that sees skbs (RS_CONFIG_F_SKB_CSUM). */
static __always_inline int rs_path_for(struct xdp_md *ctx, const struct rs_pkt *pkt,
				       const struct rs_config *cfg, int path, int slow)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (path == RS_PATH_XDP && (cfg->flags & RS_CONFIG_F_SKB_CSUM) &&
	    rs_csum_partial(data, data_end, pkt))
		return slow;
	return path;
}

/* A TC path needs room for struct rs_meta, made before the frame is
 * rewritten (bpf_xdp_adjust_head carries it along). A driver without XDP
 * metadata has none: the packet takes the KERNEL path instead. */
static __always_inline int rs_meta_reserve(struct xdp_md *ctx, int path)
{
	if (path != RS_PATH_TC_PEER && path != RS_PATH_TC)
		return path;
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct rs_meta)))
		return RS_PATH_KERNEL;
	return path;
}

/* Send the rewritten frame to ifindex on path (XDP, TC_PEER or TC); the
 * frame is then counted by the caller under (app_id, stat). */
static __always_inline int rs_send(struct xdp_md *ctx, int path, __u32 ifindex,
				   const struct rs_config *cfg, __u32 app_id, enum rs_stat stat,
				   __u32 bytes)
{
	struct rs_meta *m;

	if (path == RS_PATH_XDP) {
		rs_pending_set(app_id, stat, bytes);
		return bpf_redirect(ifindex, 0);
	}
	m = (void *)(long)ctx->data_meta;
	if ((void *)(m + 1) > (void *)(long)ctx->data)
		return RS_DROPPED(RS_DROP_REWRITE);
	m->cookie = cfg->meta_cookie;
	m->ifindex = ifindex;
	m->flags = path == RS_PATH_TC_PEER ? RS_META_F_PEER : 0;
	return XDP_PASS;
}

/* The path of frames back out of the uplink (FORWARD, ICMP errors). */
static __always_inline int rs_uplink_path(const struct rs_config *cfg)
{
	return (cfg->flags & RS_CONFIG_F_TX_TC) ? RS_PATH_TC : RS_PATH_XDP;
}

/* rs_send for a frame leaving by out_if (usually the uplink: XDP_TX, unless
 * the uplink needs a redirect to itself). */
static __always_inline int rs_send_out(struct xdp_md *ctx, const struct rs_config *cfg, int path,
				       __u32 out_if, __u32 app_id, enum rs_stat stat, __u32 bytes)
{
	if (path == RS_PATH_XDP && out_if == ctx->ingress_ifindex &&
	    !(cfg->flags & RS_CONFIG_F_TX_REDIRECT)) {
		rs_pending_set(app_id, stat, bytes);
		return XDP_TX;
	}
	return rs_send(ctx, path, out_if, cfg, app_id, stat, bytes);
}

#endif /* RS_OUT_H */
