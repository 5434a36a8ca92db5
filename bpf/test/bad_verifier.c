// SPDX-License-Identifier: GPL-2.0
/* Compiles, but the verifier must reject it: it reads the packet without a
 * bounds check. Used to test that load errors carry the verifier log. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_unchecked(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	return data[20] == 1 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
