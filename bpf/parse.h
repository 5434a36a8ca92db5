/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing: Ethernet (+ one 802.1Q/802.1ad tag), IPv4 (options via
 * ihl), IPv6 (fixed header only), and the ports of TCP/UDP. Parsing never
 * writes; it fills a struct rs_pkt with offsets and copies of the fields the
 * program needs later (pointers die at bpf_xdp_adjust_head).
 *
 * Fragments: ports are unknown in non-first fragments, and a datagram whose
 * fragments went different ways would never be reassembled. So every
 * fragment, first or not, is looked up with port 0: all fragments of a
 * datagram follow the entry for their protocol (port 0) or whole address.
 * IPv6 extension headers are not walked: the key's proto is the first
 * next-header value, so packets with extension headers (including IPv6
 * fragments, next header 44) match only whole-address entries.
 */
#ifndef RS_PARSE_H
#define RS_PARSE_H

#include "helpers.h"
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmpv6.h>
#include "routeshift.h"

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

/* ICMPv4 (linux/icmp.h pulls in libc headers, so the few bits we need) */
#define ICMP_DEST_UNREACH 3
#define ICMP_SOURCE_QUENCH 4
#define ICMP_REDIRECT 5
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMP_FRAG_NEEDED 4

struct rs_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 unused;
	__be16 mtu; /* next-hop MTU of "fragmentation needed" */
};

/* Largest offset of an IP header we handle: Ethernet + VLAN + an outer IPv4
 * header with options (18 + 60), rounded up. */
#define RS_MAX_L3OFF 128

#define RS_IP4_DF 0x4000
#define RS_IP4_MF 0x2000
#define RS_IP4_OFFSET 0x1fff

struct rs_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

enum rs_parse_result {
	RS_PARSE_OK = 0,
	RS_PARSE_NOT_IP,  /* not IPv4/IPv6, or a truncated L2 header: not ours */
	RS_PARSE_BAD_L3,  /* IP ethertype, IP header unreadable: addresses unknown */
	RS_PARSE_BAD_L4,  /* addresses known, lengths or L4 header inconsistent */
};

/* pkt flags */
#define RS_PKT_DF 0x01       /* IPv4 don't-fragment (IPv6: always treated as set) */
#define RS_PKT_FRAG 0x02     /* a fragment (IPv4 MF/offset, IPv6 next header 44) */
#define RS_PKT_ICMP_ERR 0x04 /* an ICMP/ICMPv6 error message: never answer it */

/*
 * What parsing learns. key is the whole-address lookup key (proto and port
 * 0), ready to be looked up in place: the exact (proto, port) key is made by
 * filling key.proto/key.port from proto/dport for one lookup and zeroing
 * them again (rs_key_exact / rs_key_whole). Keeping the key in this struct,
 * written field by field from the packet, lets the compiler store it with
 * word stores instead of rebuilding a copy byte by byte before each lookup.
 */
struct rs_pkt {
	struct rs_app_key key; /* destination, whole address: proto 0, port 0 */
	__u8 saddr[16];        /* source, same form as key.addr */
	__u32 l3off;           /* offset of the IP header in the frame */
	__u32 l3len;           /* IP total length from the header */
	__u32 hlen;            /* IP header length: ihl * 4, or 40 */
	__u32 len;             /* frame length as received (what counters count) */
	__u16 csum_off;        /* offset of the TCP/UDP checksum in the frame; 0 if none */
	__be16 sport;          /* L4 source port, 0 if none */
	__be16 dport;          /* L4 destination port, 0 if none (or a fragment) */
	__u8 proto;            /* IP protocol / first IPv6 next header */
	__u8 ttl;              /* TTL / hop limit */
	__u8 tos;              /* TOS / traffic class */
	__u8 flags;            /* RS_PKT_* */
	__u8 tcp_flags;        /* TCP: the flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10); else 0 */
} __attribute__((aligned(8)));

/* Turn pkt->key into the exact key of the packet, and back. */
static __always_inline void rs_key_exact(struct rs_pkt *pkt)
{
	pkt->key.proto = pkt->proto;
	pkt->key.port = pkt->dport;
}

static __always_inline void rs_key_whole(struct rs_pkt *pkt)
{
	pkt->key.proto = 0;
	pkt->key.port = 0;
}

/* Hide a value from the compiler's range analysis, so that the bound check
 * which follows is kept for the verifier (clang drops checks it can prove,
 * and the verifier may not see the same proof). Use it on a 64-bit variable:
 * with a 32-bit one clang may check one zero-extended copy and add another. */
#define rs_opaque(x) asm volatile("" : "+r"(x))

/* Ethernet and one VLAN tag. Returns RS_FAMILY_IPV4/6 and the L3 header in
 * *l3, or 0 for anything else. */
static __always_inline int rs_parse_eth(void *data, void *data_end, void **l3)
{
	struct ethhdr *eth = data;
	void *next = eth + 1;
	__be16 proto;

	if (next > data_end)
		return 0;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct rs_vlan_hdr *vh = next;

		if ((void *)(vh + 1) > data_end)
			return 0;
		proto = vh->proto;
		next = vh + 1;
	}
	*l3 = next;
	if (proto == bpf_htons(ETH_P_IP))
		return RS_FAMILY_IPV4;
	if (proto == bpf_htons(ETH_P_IPV6))
		return RS_FAMILY_IPV6;
	return 0;
}

static __always_inline int rs_icmp_is_error(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMPV6)
		return type < 128;
	return type == ICMP_DEST_UNREACH || type == ICMP_SOURCE_QUENCH ||
	       type == ICMP_REDIRECT || type == ICMP_TIME_EXCEEDED ||
	       type == ICMP_PARAMETERPROB;
}

/* L4 header at l4: ports for TCP/UDP, the error bit for ICMP. The whole
 * minimal header must be inside the packet and inside the IP length. */
static __always_inline int rs_parse_l4(void *data, void *l4, void *data_end, __u32 l4len,
				       struct rs_pkt *pkt)
{
	__u8 proto = pkt->proto;

	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || l4len < sizeof(*th))
			return RS_PARSE_BAD_L4;
		pkt->sport = th->source;
		pkt->dport = th->dest;
		pkt->csum_off = (void *)&th->check - data;
		pkt->tcp_flags = ((__u8 *)th)[13];
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || l4len < sizeof(*uh))
			return RS_PARSE_BAD_L4;
		pkt->sport = uh->source;
		pkt->dport = uh->dest;
		pkt->csum_off = (void *)&uh->check - data;
	} else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		struct rs_icmphdr *ih = l4; /* same 8 bytes in v6 */

		if ((void *)(ih + 1) > data_end || l4len < sizeof(*ih))
			return RS_PARSE_BAD_L4;
		if (rs_icmp_is_error(proto, ih->type))
			pkt->flags |= RS_PKT_ICMP_ERR;
	}
	return RS_PARSE_OK;
}

static __always_inline int rs_parse_ipv4(void *data, void *data_end, void *l3,
					 struct rs_pkt *pkt)
{
	struct iphdr *ip = l3;
	__u32 hlen, tot, avail;
	__u16 frag;

	if ((void *)(ip + 1) > data_end)
		return RS_PARSE_BAD_L3;
	if (ip->version != 4 || ip->ihl < 5)
		return RS_PARSE_BAD_L3;
	hlen = ip->ihl * 4;
	if (l3 + hlen > data_end)
		return RS_PARSE_BAD_L3;

	pkt->l3off = l3 - data;
	pkt->hlen = hlen;
	pkt->key.family = RS_FAMILY_IPV4;
	pkt->key.proto = 0;
	pkt->key.port = 0;
	pkt->proto = ip->protocol;
	pkt->dport = 0;
	pkt->sport = 0;
	pkt->csum_off = 0;
	pkt->ttl = ip->ttl;
	pkt->tos = ip->tos;
	pkt->flags = 0;
	pkt->tcp_flags = 0;
	__builtin_memset(pkt->key.addr, 0, 10);
	pkt->key.addr[10] = 0xff;
	pkt->key.addr[11] = 0xff;
	__builtin_memcpy(&pkt->key.addr[12], &ip->daddr, 4);
	__builtin_memset(pkt->saddr, 0, 10);
	pkt->saddr[10] = 0xff;
	pkt->saddr[11] = 0xff;
	__builtin_memcpy(&pkt->saddr[12], &ip->saddr, 4);

	tot = bpf_ntohs(ip->tot_len);
	pkt->l3len = tot;
	avail = data_end - l3;
	if (tot < hlen || tot > avail)
		return RS_PARSE_BAD_L4;

	frag = bpf_ntohs(ip->frag_off);
	if (frag & RS_IP4_DF)
		pkt->flags |= RS_PKT_DF;
	if (frag & (RS_IP4_MF | RS_IP4_OFFSET)) {
		pkt->flags |= RS_PKT_FRAG;
		return RS_PARSE_OK; /* port 0: see the fragment policy above */
	}
	return rs_parse_l4(data, l3 + hlen, data_end, tot - hlen, pkt);
}

static __always_inline int rs_parse_ipv6(void *data, void *data_end, void *l3,
					 struct rs_pkt *pkt)
{
	struct ipv6hdr *ip6 = l3;
	__u32 tot, avail;

	if ((void *)(ip6 + 1) > data_end)
		return RS_PARSE_BAD_L3;
	if (ip6->version != 6)
		return RS_PARSE_BAD_L3;

	pkt->l3off = l3 - data;
	pkt->hlen = sizeof(*ip6);
	pkt->key.family = RS_FAMILY_IPV6;
	pkt->key.proto = 0;
	pkt->key.port = 0;
	pkt->proto = ip6->nexthdr;
	pkt->dport = 0;
	pkt->sport = 0;
	pkt->csum_off = 0;
	pkt->ttl = ip6->hop_limit;
	pkt->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	pkt->flags = RS_PKT_DF; /* IPv6 routers never fragment */
	pkt->tcp_flags = 0;
	__builtin_memcpy(pkt->key.addr, &ip6->daddr, 16);
	__builtin_memcpy(pkt->saddr, &ip6->saddr, 16);

	/* payload length 0 is a jumbogram (hop-by-hop option), not supported */
	tot = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	pkt->l3len = tot;
	avail = data_end - l3;
	if (tot == sizeof(*ip6) || tot > avail)
		return RS_PARSE_BAD_L4;

	if (ip6->nexthdr == IPPROTO_FRAGMENT) {
		pkt->flags |= RS_PKT_FRAG;
		return RS_PARSE_OK;
	}
	return rs_parse_l4(data, ip6 + 1, data_end, tot - sizeof(*ip6), pkt);
}

/* The IP packet of the given family at l3. */
static __always_inline int rs_parse_ip(void *data, void *data_end, void *l3,
				       int family, struct rs_pkt *pkt)
{
	if (family == RS_FAMILY_IPV4)
		return rs_parse_ipv4(data, data_end, l3, pkt);
	if (family == RS_FAMILY_IPV6)
		return rs_parse_ipv6(data, data_end, l3, pkt);
	return RS_PARSE_NOT_IP;
}

#endif /* RS_PARSE_H */
