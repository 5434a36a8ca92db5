/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The counter maps, shared by rs_uplink (bpf/uplink.c), which counts, and
 * the watcher (bpf/watch.c), which takes back frames the kernel failed to
 * transmit: the agent loads the watcher with these very maps (by fd).
 */
#ifndef RS_COUNTER_MAPS_H
#define RS_COUNTER_MAPS_H

#include "helpers.h"
#include "routeshift.h"

/* Default entries per map and application ids (the agent sets its --capacity before load). */
#define RS_MAX_APPS 65536

/* Per application (app_id), per action, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RS_MAX_APPS);
	__type(key, __u32);
	__type(value, struct rs_app_stats);
} rs_app_stats SEC(".maps");

/* Per drop reason (enum rs_drop), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RS_DROP_MAX);
	__type(key, __u32);
	__type(value, struct rs_counter);
} rs_drops SEC(".maps");

/* Per pass event (enum rs_event), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RS_EVENT_MAX);
	__type(key, __u32);
	__type(value, struct rs_counter);
} rs_events SEC(".maps");

/* The frame last sent on by XDP on this CPU, for the watcher (see struct rs_pending). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rs_pending);
} rs_pending SEC(".maps");

#endif /* RS_COUNTER_MAPS_H */
