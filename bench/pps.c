// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Programs of the netns pps benchmark (bench/netns-pps.ts).
 *
 * bench_gen       the traffic generator, run with BPF_PROG_TEST_RUN and
 *                 BPF_F_TEST_XDP_LIVE_FRAMES on the client's veth: every
 *                 repetition rewrites the frame's first GEN_BYTES from the
 *                 template in gen_tmpl and returns XDP_TX, so the frame
 *                 leaves the client's eth0 for real. Live frames reuse pages
 *                 without resetting their bytes, and the path downstream
 *                 changes them in place (TTL, MACs, encapsulation), so the
 *                 rewrite on every frame is what keeps each one correct.
 *                 The UDP source port counts up, so frames are not identical.
 * bench_sink_tc   TC ingress on the application's eth0: count, drop. The
 *                 same counting point for routeshift and the kernel baseline.
 * bench_sink_xdp  XDP on the first hop (the fabric's side of the client
 *                 veth): count, drop — measures the sender's own rate.
 *                 Both also time the stream they count (sink_time): when
 *                 its first packet arrived, and every 64th, so a rate can be
 *                 taken over the packets themselves, without the test run's
 *                 setup and teardown around them (bench/paths.ts).
 * bench_pass      XDP_PASS, for veth peers that must run an XDP program to
 *                 accept native XDP frames (docs/architecture.md, kernel facts).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define GEN_BYTES 42 /* Ethernet + IPv4 + UDP headers */

struct gen_tmpl {
	__u8 bytes[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_tmpl);
} gen_tmpl SEC(".maps");

/* per-CPU packet counts: 0 = bench_sink_tc, 1 = bench_sink_xdp */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

/* per-CPU, same slots: the stream's first arrival and the latest 64th (ns, bpf_ktime_get_ns) */
struct sink_time {
	__u64 count;      /* packets since user space zeroed the slot */
	__u64 first_ns;   /* arrival of packet 1 */
	__u64 last_ns;    /* arrival of packet last_count */
	__u64 last_count; /* a multiple of 64 */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct sink_time);
} sink_time SEC(".maps");

/* per-CPU source port counter of the generator */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gen_seq SEC(".maps");

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct gen_tmpl *t = bpf_map_lookup_elem(&gen_tmpl, &zero);
	__u32 *seq = bpf_map_lookup_elem(&gen_seq, &zero);

	if (!t || !seq || data + GEN_BYTES > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, t->bytes, GEN_BYTES);
	/* UDP source port (offset 34): 1024 + seq mod 32768; UDP checksum is 0 (none) */
	*(__be16 *)(data + 34) = bpf_htons(1024 + (*seq & 0x7fff));
	*seq += 1;
	return XDP_TX;
}

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&sink_count, &idx);
	struct sink_time *t = bpf_map_lookup_elem(&sink_time, &idx);
	__u64 n;

	if (c)
		*c += 1;
	if (!t)
		return;
	n = ++t->count;
	if (n == 1) {
		t->first_ns = bpf_ktime_get_ns();
	} else if (!(n & 63)) {
		t->last_ns = bpf_ktime_get_ns();
		t->last_count = n;
	}
}

SEC("tc")
int bench_sink_tc(struct __sk_buff *skb)
{
	count(0);
	return TC_ACT_SHOT;
}

SEC("xdp")
int bench_sink_xdp(struct xdp_md *ctx)
{
	count(1);
	return XDP_DROP;
}

SEC("xdp")
int bench_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
