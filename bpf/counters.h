/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Counters. All are per-CPU, so plain increments are safe.
 *
 * Drops are counted once, where rs_uplink ends: a helper that gives up
 * returns RS_DROPPED(reason) instead of a verdict, and rs_verdict() counts
 * the reason and turns it into XDP_DROP (as Cilium's helpers return a
 * negative DROP_* code to the program's exit). Events and per-app counters
 * are counted where they happen.
 */
#ifndef RS_COUNTERS_H
#define RS_COUNTERS_H

#include "maps.h"

/* A helper's answer that means "drop the packet, for this reason"; < 0, unlike every XDP verdict. */
#define RS_DROPPED(reason) (-1 - (int)(reason))

static __always_inline void rs_count(void *map, __u32 index, __u32 bytes)
{
	struct rs_counter *c = bpf_map_lookup_elem(map, &index);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* The program's verdict for a helper's answer: a drop is counted and dropped. */
static __always_inline int rs_verdict(int ret, __u32 bytes)
{
	if (ret >= 0)
		return ret;
	rs_count(&rs_drops, (__u32)(-1 - ret), bytes);
	return XDP_DROP;
}

static __always_inline void rs_event(enum rs_event event, __u32 bytes)
{
	rs_count(&rs_events, event, bytes);
}

/*
 * The one per-application counter a packet is counted under (this CPU's
 * rs_app_stats[app_id].by_action[stat]), looked up once per packet as soon
 * as the entry names the app, and counted through rs_counter_add once the
 * packet is on its way. With many apps rs_app_stats misses the cache: the
 * volatile load starts that miss here, so it overlaps the rest of the path
 * (next hop, rewrite) instead of stalling its end. NULL when app_id is
 * beyond the map (user space assigns ids): not counted.
 */
static __always_inline struct rs_counter *rs_app_counter(__u32 app_id, enum rs_stat stat)
{
	struct rs_app_stats *s = bpf_map_lookup_elem(&rs_app_stats, &app_id);
	struct rs_counter *c;

	if (!s || stat >= RS_STAT_MAX)
		return NULL;
	c = &s->by_action[stat];
	asm volatile("" : : "r"(*(volatile __u64 *)&c->packets));
	return c;
}

static __always_inline void rs_counter_add(struct rs_counter *c, __u32 bytes)
{
	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* Note the frame about to leave by XDP redirect / XDP_TX, for the watcher
 * (struct rs_pending): if the kernel cannot transmit it, the watcher takes
 * it back from the app's counter and counts it as RS_DROP_XMIT_FAILED. */
static __always_inline void rs_pending_set(__u32 app_id, enum rs_stat stat, __u32 bytes)
{
	__u32 zero = 0;
	struct rs_pending *p = bpf_map_lookup_elem(&rs_pending, &zero);

	if (p) {
		p->app_id = app_id;
		p->stat = stat;
		p->bytes = bytes;
	}
}

#endif /* RS_COUNTERS_H */
