/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Counter helpers. All counters are per-CPU, so plain increments are safe.
 * Every branch that returns XDP_DROP or XDP_ABORTED goes through rs_drop().
 */
#ifndef RS_COUNTERS_H
#define RS_COUNTERS_H

#include "maps.h"

static __always_inline void rs_count(void *map, __u32 index, __u32 bytes)
{
	struct rs_counter *c = bpf_map_lookup_elem(map, &index);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* Count a packet the program did not forward; returns the verdict to use. */
static __always_inline int rs_drop(enum rs_drop reason, __u32 bytes, int verdict)
{
	rs_count(&rs_drops, reason, bytes);
	return verdict;
}

static __always_inline void rs_event(enum rs_event event, __u32 bytes)
{
	rs_count(&rs_events, event, bytes);
}

/* An app_id beyond the map's size is not counted (user space assigns ids). */
static __always_inline void rs_app_count(__u32 app_id, enum rs_stat stat, __u32 bytes)
{
	struct rs_app_stats *s = bpf_map_lookup_elem(&rs_app_stats, &app_id);

	if (s && stat < RS_STAT_MAX) {
		s->by_action[stat].packets++;
		s->by_action[stat].bytes += bytes;
	}
}

#endif /* RS_COUNTERS_H */
