// SPDX-License-Identifier: GPL-2.0
/* A small object for the addon's attach tests: an XDP program that
 * redirects every frame to one ifindex, and a tp_btf program on
 * xdp_redirect_err that counts that program's failed redirects. Not part
 * of the data plane. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

/* Just the fields read here; CO-RE relocates them against the kernel's BTF. */
struct bpf_prog_aux {
	__u32 id;
} __attribute__((preserve_access_index));

struct bpf_prog {
	struct bpf_prog_aux *aux;
} __attribute__((preserve_access_index));

struct net_device;

enum {
	TR_CFG_PROG_ID = 0,	/* count only errors of this XDP program */
	TR_CFG_IFINDEX = 1,	/* where xdp_redirect_to sends frames */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} tr_config SEC(".maps");

enum {
	TR_EV_COUNT = 0,	/* redirect errors seen */
	TR_EV_ERR = 1,		/* the last one's error (negative errno) */
	TR_EV_INDEX = 2,	/* the last one's target index (ifindex) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __s64);
} tr_events SEC(".maps");

static __always_inline __u32 config(__u32 idx)
{
	__u32 *v = bpf_map_lookup_elem(&tr_config, &idx);

	return v ? *v : 0;
}

static __always_inline void set_event(__u32 idx, __s64 value)
{
	__s64 *v = bpf_map_lookup_elem(&tr_events, &idx);

	if (v)
		*v = value;
}

SEC("xdp")
int xdp_redirect_to(struct xdp_md *ctx)
{
	return bpf_redirect(config(TR_CFG_IFINDEX), 0);
}

SEC("tp_btf/xdp_redirect_err")
int BPF_PROG(trace_redirect_err, const struct net_device *dev, const struct bpf_prog *xdp,
	     const void *tgt, int err, enum bpf_map_type map_type, __u32 map_id, __u32 index)
{
	__u32 idx = TR_EV_COUNT;
	__s64 *count;

	if (xdp->aux->id != config(TR_CFG_PROG_ID))
		return 0;
	count = bpf_map_lookup_elem(&tr_events, &idx);
	if (count)
		__sync_fetch_and_add(count, 1);
	set_event(TR_EV_ERR, err);
	set_event(TR_EV_INDEX, index);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
