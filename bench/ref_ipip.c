// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Benchmark programs for `routeshift bench` (bench/fwd.ts, bench/scale.ts).
 *
 * bench_tx        the floor: returns XDP_TX and does nothing else.
 * bench_ref_ipip  the reference forwarder: Ethernet + IPv4 parse, ONE hash
 *                 lookup by destination (the same 20-byte key layout as
 *                 rs_app_key, so the map behaves the same at every size),
 *                 IPv4-in-IPv4 encapsulation with MACs and tunnel addresses
 *                 from the entry, XDP_TX. No fib lookup (next-hop MACs are
 *                 in the entry), no counters, no TTL, no MTU check, no VLAN:
 *                 that is its advantage over rs_uplink, on purpose.
 * bench_driver    makes BPF_PROG_TEST_RUN's `repeat` measure what we mean.
 *                 A test run repeats the program on the SAME xdp_buff
 *                 without resetting it, so after the first run an encapsulating
 *                 program would see its own output (rs_uplink: a tunnel packet
 *                 that is not for this host -> XDP_PASS). The driver undoes the
 *                 previous run: it moves the frame start back to the original
 *                 length (encap moves only the head), rewrites the first 64
 *                 bytes from a template, optionally puts the next destination
 *                 from a key list into the IPv4 header (random keys for the
 *                 scale benchmark), and tail-calls the program under test
 *                 (bench_progs[0]). Its cost is the same for every target and
 *                 is measured by driving bench_tx.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#undef __always_inline
#define __always_inline inline __attribute__((always_inline))

#define TMPL_BYTES 64

/* ---- reference forwarder -------------------------------------------- */

struct ref_key { /* = struct rs_app_key */
	__u8 family;
	__u8 proto;
	__be16 port;
	__u8 addr[16];
};

struct ref_value {
	__u8 dmac[6];
	__u8 smac[6];
	__be32 saddr;
	__be32 daddr;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct ref_key);
	__type(value, struct ref_value);
} ref_map SEC(".maps");

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

static __always_inline __u16 ip_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return csum_fold(sum);
}

SEC("xdp")
int bench_ref_ipip(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct ref_key key = { .family = 4 };
	struct ref_value *v;
	struct iphdr outer = {};
	__u16 inner_len;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	key.addr[10] = 0xff;
	key.addr[11] = 0xff;
	__builtin_memcpy(&key.addr[12], &ip->daddr, 4);
	v = bpf_map_lookup_elem(&ref_map, &key);
	if (!v)
		return XDP_PASS;
	inner_len = bpf_ntohs(ip->tot_len);

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, v->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, v->smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	outer.version = 4;
	outer.ihl = 5;
	outer.tot_len = bpf_htons(inner_len + sizeof(struct iphdr));
	outer.frag_off = bpf_htons(0x4000);
	outer.ttl = 64;
	outer.protocol = IPPROTO_IPIP;
	outer.saddr = v->saddr;
	outer.daddr = v->daddr;
	outer.check = ip_csum(&outer);
	*ip = outer;
	return XDP_TX;
}

/* ---- floor ------------------------------------------------------------ */

SEC("xdp")
int bench_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

/* ---- driver ----------------------------------------------------------- */

struct bench_tmpl {
	__u32 len;   /* original frame length */
	__u32 nkeys; /* destinations in bench_keys to cycle through; 0 = keep */
	__u8 bytes[TMPL_BYTES]; /* original first bytes (Ethernet + IPv4 + UDP) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_tmpl);
} bench_tmpl SEC(".maps");

/* IPv4 destinations (network order), walked in order; user space shuffles. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __be32);
} bench_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_pos SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_progs SEC(".maps");

SEC("xdp")
int bench_driver(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bench_tmpl *t;
	__u32 zero = 0, *pos;
	int len = data_end - data;

	t = bpf_map_lookup_elem(&bench_tmpl, &zero);
	if (!t || t->len < TMPL_BYTES)
		return XDP_ABORTED;
	if (len != (int)t->len && bpf_xdp_adjust_head(ctx, len - (int)t->len))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + TMPL_BYTES > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, t->bytes, TMPL_BYTES);

	if (t->nkeys) {
		struct iphdr *ip = data + sizeof(struct ethhdr);
		__be32 *daddr;

		pos = bpf_map_lookup_elem(&bench_pos, &zero);
		if (!pos)
			return XDP_ABORTED;
		if (*pos >= t->nkeys)
			*pos = 0;
		daddr = bpf_map_lookup_elem(&bench_keys, pos);
		if (!daddr)
			return XDP_ABORTED;
		*pos += 1;
		ip->daddr = *daddr;
		ip->check = 0;
		ip->check = ip_csum(ip);
	}
	bpf_tail_call(ctx, &bench_progs, 0);
	return XDP_ABORTED;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
