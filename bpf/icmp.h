/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * "Packet too big" answers, built in place from the packet that did not
 * fit: ICMP destination unreachable / fragmentation needed (type 3 code 4,
 * RFC 1191) for IPv4, ICMPv6 packet too big (type 2, RFC 4443) for IPv6.
 *
 * The original IP packet stays where it is and becomes the quoted part; new
 * Ethernet, IP and ICMP headers are put in front of it and the tail is cut
 * so the error is at most 576 bytes of IPv4 (RFC 1812 4.3.2.3) or 1280 bytes
 * of IPv6 (RFC 4443 2.4(c)). MACs are swapped and the frame goes back out of
 * the interface it came in on (XDP_TX); a VLAN tag is not kept.
 *
 * No rate limit yet: one error per oversized packet.
 */
#ifndef RS_ICMP_H
#define RS_ICMP_H

#include "encap.h"

#define RS_ICMP4_QUOTE (576 - 20 - 8)   /* 548 */
#define RS_ICMP6_QUOTE (1280 - 40 - 8)  /* 1232 */
#define RS_ICMP4_MIN_MTU 68
#define RS_ICMP6_MIN_MTU 1280
#define RS_TOS_INTERNETCONTROL 0xc0

/* Source addresses we must not answer (RFC 1812 4.3.2.7, RFC 4443 2.4(e)). */
static __always_inline int rs_icmp_src_ok(const struct rs_pkt *pkt)
{
	const __u8 *s = pkt->saddr;

	if (pkt->key.family == RS_FAMILY_IPV4)
		return s[12] != 0 && s[12] < 224; /* not 0/8, multicast, class E */
	if (s[0] == 0xff)
		return 0; /* multicast */
	for (int i = 0; i < 16; i++)
		if (s[i])
			return 1;
	return 0; /* :: */
}

/* Move the frame start so hdrs bytes precede the IP packet, and cut the
 * frame to hdrs + quote bytes. */
static __always_inline int rs_icmp_reshape(struct xdp_md *ctx, __u32 l3off, __u32 hdrs,
					   __u32 quote)
{
	void *data, *data_end;
	int len;

	if (bpf_xdp_adjust_head(ctx, (int)l3off - (int)hdrs))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	len = data_end - data;
	if (len > (int)(hdrs + quote) &&
	    bpf_xdp_adjust_tail(ctx, (int)(hdrs + quote) - len))
		return -1;
	return 0;
}

/* mtu: the largest inner packet that fits. src: this host's address of the
 * packet's family (4 or 16 bytes). macs: the original dst and src MACs. */
static __always_inline int rs_icmp4_too_big(struct xdp_md *ctx, const struct rs_pkt *pkt,
					    __u32 mtu, const __u8 *src, const __u8 *macs)
{
	__u32 quote = pkt->l3len < RS_ICMP4_QUOTE ? pkt->l3len : RS_ICMP4_QUOTE;
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct rs_icmphdr *ic;

	if (mtu < RS_ICMP4_MIN_MTU)
		mtu = RS_ICMP4_MIN_MTU;
	if (rs_icmp_reshape(ctx, pkt->l3off, sizeof(*eth) + sizeof(*ip) + sizeof(*ic), quote))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	ic = (void *)(ip + 1);
	if ((void *)(ic + 1) > data_end)
		return -1;

	rs_eth_fill(eth, &macs[6], &macs[0], RS_FAMILY_IPV4);
	rs_ip4_fill(ip, RS_TOS_INTERNETCONTROL, sizeof(*ip) + sizeof(*ic) + quote, 0, 0,
		    IPPROTO_ICMP, src, &pkt->saddr[12]);
	ic->type = ICMP_DEST_UNREACH;
	ic->code = ICMP_FRAG_NEEDED;
	ic->checksum = 0;
	ic->unused = 0;
	ic->mtu = bpf_htons(mtu);
	ic->checksum = rs_csum_fold(rs_csum_to_end(ic, data_end, 0));
	return 0;
}

static __always_inline int rs_icmp6_too_big(struct xdp_md *ctx, const struct rs_pkt *pkt,
					    __u32 mtu, const __u8 *src, const __u8 *macs)
{
	__u32 quote = pkt->l3len < RS_ICMP6_QUOTE ? pkt->l3len : RS_ICMP6_QUOTE;
	__u32 plen = sizeof(struct icmp6hdr) + quote;
	void *data, *data_end;
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	struct icmp6hdr *ic;
	__u64 sum;

	if (mtu < RS_ICMP6_MIN_MTU)
		mtu = RS_ICMP6_MIN_MTU;
	if (rs_icmp_reshape(ctx, pkt->l3off, sizeof(*eth) + sizeof(*ip6) + sizeof(*ic), quote))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip6 = (void *)(eth + 1);
	ic = (void *)(ip6 + 1);
	if ((void *)(ic + 1) > data_end)
		return -1;

	rs_eth_fill(eth, &macs[6], &macs[0], RS_FAMILY_IPV6);
	rs_ip6_fill(ip6, 0, 0, plen, IPPROTO_ICMPV6, src, pkt->saddr);
	ic->icmp6_type = ICMPV6_PKT_TOOBIG;
	ic->icmp6_code = 0;
	ic->icmp6_cksum = 0;
	ic->icmp6_mtu = bpf_htonl(mtu);
	/* pseudo-header: addresses, upper-layer length, next header */
	sum = rs_csum_words(&ip6->saddr, 16, 0);
	sum += bpf_htons(plen) + bpf_htons(IPPROTO_ICMPV6);
	ic->icmp6_cksum = rs_csum_fold(rs_csum_to_end(ic, data_end, sum));
	return 0;
}

#endif /* RS_ICMP_H */
