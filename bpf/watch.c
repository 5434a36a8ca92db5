// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The watcher: counts the frames rs_uplink sent on that the kernel then
 * failed to transmit, so no packet is lost without a counter.
 *
 * XDP_REDIRECT and XDP_TX are verdicts: the transmit happens after the
 * program has returned, and a target that refuses the frame (a veth whose
 * peer runs neither XDP nor GRO, a device that is gone, a full TX ring)
 * drops it where the program cannot see. The kernel reports it on the
 * xdp_redirect_err and xdp_exception tracepoints, on the same CPU, before
 * the next frame: these programs take the frame back from the app counter
 * rs_uplink had credited (struct rs_pending) and count it as
 * RS_DROP_XMIT_FAILED. Failures of other XDP programs are ignored
 * (rs_watch_config holds our program's id).
 *
 * The agent loads this object with rs_uplink's own counter maps (by fd) and
 * attaches both programs (tp_btf: no tracefs needed).
 */
#include "counter_maps.h"

/* The two fields we read, relocated against the running kernel's BTF (CO-RE). */
struct bpf_prog_aux {
	__u32 id;
} __attribute__((preserve_access_index));

struct bpf_prog {
	struct bpf_prog_aux *aux;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rs_watch_config);
} rs_watch_config SEC(".maps");

static __always_inline int rs_watch(const struct bpf_prog *xdp)
{
	struct rs_watch_config *cfg;
	struct rs_app_stats *stats;
	struct rs_pending *p;
	struct rs_counter *d;
	__u32 zero = 0, reason = RS_DROP_XMIT_FAILED;

	cfg = bpf_map_lookup_elem(&rs_watch_config, &zero);
	if (!cfg || !cfg->uplink_prog_id || xdp->aux->id != cfg->uplink_prog_id)
		return 0;
	p = bpf_map_lookup_elem(&rs_pending, &zero);
	if (!p)
		return 0;
	if (p->app_id != RS_APP_NONE && p->stat < RS_STAT_MAX) {
		stats = bpf_map_lookup_elem(&rs_app_stats, &p->app_id);
		if (stats) {
			__u32 stat = p->stat;

			if (stat < RS_STAT_MAX && stats->by_action[stat].packets) {
				stats->by_action[stat].packets--;
				stats->by_action[stat].bytes -= p->bytes;
			}
		}
	}
	d = bpf_map_lookup_elem(&rs_drops, &reason);
	if (d) {
		d->packets++;
		d->bytes += p->bytes;
	}
	p->app_id = RS_APP_NONE; /* one failure per frame */
	return 0;
}

/* xdp_redirect_err(dev, xdp, tgt, err, map_type, map_id, index) */
SEC("tp_btf/xdp_redirect_err")
int rs_watch_redirect_err(__u64 *ctx)
{
	return rs_watch((const struct bpf_prog *)ctx[1]);
}

/* xdp_exception(dev, xdp, act): also XDP_TX a driver could not send */
SEC("tp_btf/xdp_exception")
int rs_watch_exception(__u64 *ctx)
{
	__u32 act = (__u32)ctx[2];

	if (act != XDP_TX && act != XDP_REDIRECT)
		return 0;
	return rs_watch((const struct bpf_prog *)ctx[1]);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
