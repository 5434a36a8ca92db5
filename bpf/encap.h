/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header rewrites: the Ethernet header, TTL decrement, IP-in-IP
 * encapsulation (IPv4/IPv6 inner in IPv4/IPv6 outer, protocol 4 for an IPv4
 * inner packet and 41 for an IPv6 one, whatever the outer family) and
 * decapsulation.
 *
 * The IP packet itself never moves: every rewrite moves the frame start with
 * bpf_xdp_adjust_head so that exactly the new headers (Ethernet, and the
 * outer IP header when encapsulating) precede it, then writes them. A VLAN
 * tag on input is therefore dropped: output frames are untagged.
 *
 * Every pointer is re-derived from ctx and bounds-checked after
 * bpf_xdp_adjust_head.
 */
#ifndef RS_ENCAP_H
#define RS_ENCAP_H

#include "parse.h"
#include "csum.h"

#define RS_AF_INET 2 /* AF_INET, for bpf_fib_lookup */
#define RS_AF_INET6 10
#define RS_OUTER_TTL 64

static __always_inline void rs_eth_fill(struct ethhdr *eth, const __u8 *dmac,
					const __u8 *smac, int family)
{
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	eth->h_proto = bpf_htons(family == RS_FAMILY_IPV4 ? ETH_P_IP : ETH_P_IPV6);
}

/* The one place an IPv4 header is written: tunnel outer headers and ICMP
 * errors. Addresses are 4 bytes, network order. The header is made as five
 * 32-bit words in registers, summed as such (the one's-complement sum of
 * 32-bit words folds to that of the 16-bit words) and stored once, rather
 * than built field by field on the stack and copied. */
static __always_inline void rs_ip4_fill(struct iphdr *ip, __u8 tos, __u16 tot_len,
					__u16 id, __u16 frag_off, __u8 proto,
					const __u8 *saddr, const __u8 *daddr)
{
	__u32 *w = (__u32 *)ip;
	__u32 w0, w1, w2, w3, w4;
	__u64 sum;

	/* byte order in memory: 45 tos len.hi len.lo | id.hi id.lo frag.hi frag.lo | ttl proto 0 0 */
	w0 = bpf_htonl(((__u32)0x45 << 24) | ((__u32)tos << 16) | tot_len);
	w1 = bpf_htonl(((__u32)id << 16) | frag_off);
	w2 = bpf_htonl(((__u32)RS_OUTER_TTL << 24) | ((__u32)proto << 16));
	__builtin_memcpy(&w3, saddr, 4);
	__builtin_memcpy(&w4, daddr, 4);
	sum = (__u64)w0 + w1 + w2 + w3 + w4;
	w2 |= (__u32)rs_csum_fold(sum) << 16; /* the checksum: bytes 10-11, host-order upper half */
	w[0] = w0;
	w[1] = w1;
	w[2] = w2;
	w[3] = w3;
	w[4] = w4;
}

/* The one place an IPv6 header is written. flow is the 20-bit flow label. */
static __always_inline void rs_ip6_fill(struct ipv6hdr *ip6, __u8 tclass, __u32 flow,
					__u16 payload_len, __u8 nexthdr,
					const __u8 *saddr, const __u8 *daddr)
{
	/* version 6 | traffic class | flow label, in network order */
	*(__be32 *)ip6 = bpf_htonl(0x60000000 | ((__u32)tclass << 20) | (flow & 0xfffff));
	ip6->payload_len = bpf_htons(payload_len);
	ip6->nexthdr = nexthdr;
	ip6->hop_limit = RS_OUTER_TTL;
	__builtin_memcpy(&ip6->saddr, saddr, 16);
	__builtin_memcpy(&ip6->daddr, daddr, 16);
}

/* Hash of the inner flow (addresses, protocol, ports) for the outer IPv4 ID
 * or IPv6 flow label, so ECMP and RSS on the path spread tunnelled flows.
 * Fragments hash with ports 0, so all of a datagram's fragments agree. An
 * IPv4 packet mixes only its two 4-byte addresses (the rest of the mapped
 * form is constant). */
static __always_inline __u32 rs_flow_hash(const struct rs_pkt *pkt)
{
	const __u32 *s = (const __u32 *)pkt->saddr, *d = (const __u32 *)pkt->key.addr;
	__u32 h = 0x72730000 | pkt->proto;

	if (pkt->key.family == RS_FAMILY_IPV6) {
#pragma unroll
		for (int i = 0; i < 3; i++) {
			h = rs_mix(h, s[i]);
			h = rs_mix(h, d[i]);
		}
	}
	h = rs_mix(h, s[3]);
	h = rs_mix(h, d[3]);
	h = rs_mix(h, ((__u32)pkt->sport << 16) | pkt->dport);
	h ^= h >> 16;
	h *= 0x85ebca6b;
	return h ^ (h >> 13);
}

/* Decrement the TTL / hop limit of the IP packet at pkt->l3off (before any
 * adjust_head). The caller has checked it is > 1. */
static __always_inline int rs_ttl_dec(struct xdp_md *ctx, const struct rs_pkt *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 off = pkt->l3off;

	rs_opaque(off);
	if (off > RS_MAX_L3OFF)
		return -1;
	if (pkt->key.family == RS_FAMILY_IPV4) {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > data_end)
			return -1;
		rs_ip4_ttl_dec(&ip->ttl, &ip->check);
	} else {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		ip6->hop_limit -= 1;
	}
	return 0;
}

/* Replace everything before the IP packet with a plain Ethernet header. Used
 * for LOCAL (drops a VLAN tag if any). */
static __always_inline int rs_set_eth(struct xdp_md *ctx, __u32 l3off, const __u8 *dmac,
				      const __u8 *smac, int family)
{
	void *data, *data_end;
	struct ethhdr *eth;

	if (bpf_xdp_adjust_head(ctx, (int)l3off - (int)sizeof(*eth)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	rs_eth_fill(eth, dmac, smac, family);
	return 0;
}

/* Strip Ethernet (+VLAN) and the outer IP header of a tunnel packet and put
 * a new Ethernet header in front of the inner packet. */
static __always_inline int rs_decap(struct xdp_md *ctx, const struct rs_pkt *outer,
				    int inner_family, const __u8 *dmac, const __u8 *smac)
{
	return rs_set_eth(ctx, outer->l3off + outer->hlen, dmac, smac, inner_family);
}

/*
 * Encapsulate the IP packet described by pkt towards dst (16 bytes, v4
 * mapped for an IPv4 tunnel) from src (4 or 16 bytes), and write the Ethernet header with
 * the given MACs. Outer header: TOS / traffic class copied from the inner
 * packet, IPv4 ID or IPv6 flow label = inner flow hash, IPv4 DF set (the
 * caller has checked the size; nobody may fragment the outer packet since
 * only our program can decapsulate, and it does not reassemble), TTL 64.
 */
static __always_inline int rs_encap(struct xdp_md *ctx, const struct rs_pkt *pkt,
				    int tunnel_family, const __u8 *src, const __u8 *dst,
				    const __u8 *dmac, const __u8 *smac)
{
	__u8 proto = pkt->key.family == RS_FAMILY_IPV4 ? IPPROTO_IPIP : IPPROTO_IPV6;
	__u32 hash = rs_flow_hash(pkt);
	__u32 len = pkt->l3len;
	void *data, *data_end;
	struct ethhdr *eth;

	if (tunnel_family == RS_FAMILY_IPV4) {
		struct iphdr *ip;

		if (bpf_xdp_adjust_head(ctx, (int)pkt->l3off -
					     (int)(sizeof(*eth) + sizeof(*ip))))
			return -1;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		eth = data;
		ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return -1;
		rs_eth_fill(eth, dmac, smac, RS_FAMILY_IPV4);
		rs_ip4_fill(ip, pkt->tos, len + sizeof(*ip), hash, RS_IP4_DF, proto,
			    src, &dst[12]);
	} else {
		struct ipv6hdr *ip6;

		if (bpf_xdp_adjust_head(ctx, (int)pkt->l3off -
					     (int)(sizeof(*eth) + sizeof(*ip6))))
			return -1;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		eth = data;
		ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return -1;
		rs_eth_fill(eth, dmac, smac, RS_FAMILY_IPV6);
		rs_ip6_fill(ip6, pkt->tos, hash, len, proto, src, dst);
	}
	return 0;
}

#endif /* RS_ENCAP_H */
