/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * routeshift map definitions. Names are prefixed rs_ so pinned maps are
 * recognisable under /sys/fs/bpf. Nothing is pinned here: the agent chooses
 * pin paths (/sys/fs/bpf/routeshift/...) before load, and may override
 * max_entries of the hash and stats maps too.
 */
#ifndef RS_MAPS_H
#define RS_MAPS_H

#include "counter_maps.h"

/* Source role: application key -> LOCAL or FORWARD. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RS_MAX_APPS);
	__type(key, struct rs_app_key);
	__type(value, struct rs_redirect_value);
} rs_redirect SEC(".maps");

/* Destination role: inner destination key -> delivery to a local app. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RS_MAX_APPS);
	__type(key, struct rs_app_key);
	__type(value, struct rs_deliver_value);
} rs_deliver SEC(".maps");

/* This host's tunnel addresses and MTU: one entry, index 0. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rs_config);
} rs_config SEC(".maps");

/* Next hop per tunnel destination, per CPU (see struct rs_nexthop). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RS_NEXTHOP_SLOTS);
	__type(key, __u32);
	__type(value, struct rs_nexthop);
} rs_nexthop SEC(".maps");

/* Flow tables of the PRESERVE action (bpf/flows.h): LRU, so they never
 * fill up; the agent's --flow-capacity sets their size before load. */
#define RS_MAX_FLOWS 65536

/* Flows that started (SYN) after SWITCH: forwarded to the destination. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RS_MAX_FLOWS);
	__type(key, struct rs_flow_key);
	__type(value, struct rs_new_flow);
} rs_new_flows SEC(".maps");

/* Flows from before SWITCH: delivered here; last packet time and FIN/RST. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RS_MAX_FLOWS);
	__type(key, struct rs_flow_key);
	__type(value, struct rs_old_flow);
} rs_old_flows SEC(".maps");

/* Per application (app_id), per enum rs_flow_stat, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RS_MAX_APPS);
	__type(key, __u32);
	__type(value, struct rs_flow_stats);
} rs_flow_stats SEC(".maps");

/*
 * Enum constants leave no trace in BTF unless a type uses them. This unused
 * variable names every shared enum so test/datapath-btf.test.ts can compare
 * their values with TypeScript. It lives in a section libbpf skips (it logs
 * "skipping unrecognized data section"), so it creates no map.
 */
struct rs_btf_enums {
	enum rs_action action;
	enum rs_redirect_flag redirect_flag;
	enum rs_stat stat;
	enum rs_drop drop;
	enum rs_event event;
	enum rs_path path;
	enum rs_config_flag config_flag;
	enum rs_flow_flag flow_flag;
	enum rs_flow_stat flow_stat;
};
SEC(".rs_btf") __attribute__((used)) struct rs_btf_enums rs_btf_enums;

#endif /* RS_MAPS_H */
