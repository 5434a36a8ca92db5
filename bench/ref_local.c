// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The reference LOCAL forwarder of the paths benchmark (bench/paths.ts): the
 * least code that delivers a packet for an application on this host the way
 * rs_uplink's 'xdp' path does.
 *
 * bench_ref_local  Ethernet + IPv4 parse, ONE hash lookup by destination
 *                  (the same 20-byte key layout as rs_app_key, like
 *                  bench_ref_ipip), MACs from the entry, TTL decremented
 *                  with an incremental header checksum update (RFC 1624),
 *                  bpf_redirect into the app's veth. No counters, no VLAN,
 *                  no IPv6, no port entries, no checksum-state check, no
 *                  TC handover: that is its advantage over rs_uplink, on
 *                  purpose. A packet it has no entry for, or whose TTL
 *                  would expire, passes to the kernel untouched.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct ref_local_key { /* = struct rs_app_key */
	__u8 family;
	__u8 proto;
	__be16 port;
	__u8 addr[16];
};

struct ref_local_value {
	__u32 ifindex;
	__u8 dmac[6];
	__u8 smac[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct ref_local_key);
	__type(value, struct ref_local_value);
} ref_local_map SEC(".maps");

SEC("xdp")
int bench_ref_local(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct ref_local_key key = { .family = 4 };
	struct ref_local_value *v;
	__u32 sum;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (ip->ttl <= 1)
		return XDP_PASS;
	key.addr[10] = 0xff;
	key.addr[11] = 0xff;
	__builtin_memcpy(&key.addr[12], &ip->daddr, 4);
	v = bpf_map_lookup_elem(&ref_local_map, &key);
	if (!v)
		return XDP_PASS;

	/* TTL - 1, checksum + 0x0100 (the word holding TTL), as ip_decrease_ttl() */
	sum = (__u32)ip->check + bpf_htons(0x0100);
	ip->check = (__u16)(sum + (sum >= 0xffff));
	ip->ttl--;
	__builtin_memcpy(eth->h_dest, v->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, v->smac, ETH_ALEN);
	return bpf_redirect(v->ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
