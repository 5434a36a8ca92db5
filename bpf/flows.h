/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * RS_ACTION_PRESERVE: which host a packet of a migrating app belongs to.
 * The entry turns PRESERVE at SWITCH; every TCP connection that exists
 * then lives on this host's copy, every later one should live on the
 * destination's. The rule (Beamer's, with the flow table on this host):
 *
 *   TCP SYN without ACK        -> a new flow: recorded in rs_new_flows, FORWARD
 *   TCP, flow in rs_new_flows  -> FORWARD (a flow that started after SWITCH)
 *   TCP, any other flow        -> an old flow: LOCAL, recorded in rs_old_flows
 *                                 with its last packet time and FIN/RST seen
 *   UDP, ICMP, fragments, ...  -> FORWARD: datagrams carry no connection
 *                                 (and a fragment has no ports to classify)
 *
 * Bounded state: both tables are LRU. An rs_new_flows entry evicted while
 * its flow lives makes its later packets look old: they reach this host's
 * copy, which answers them with a reset. The agent counts such evictions
 * (flows sent minus entries still held). A SYN the table cannot record at
 * all (the update fails) is delivered here instead and counted as
 * RS_FLOW_STAT_REFUSED: its later packets are unknown too, so they find
 * this copy and the connection lives. An evicted rs_old_flows entry costs
 * nothing but liveness: the flow is still delivered here, and its next
 * packet records it again.
 */
#ifndef RS_FLOWS_H
#define RS_FLOWS_H

#include "maps.h"

#define RS_TCP_FIN 0x01
#define RS_TCP_SYN 0x02
#define RS_TCP_RST 0x04
#define RS_TCP_ACK 0x10

#define RS_EEXIST 17 /* errno.h is user space's: the one value we test */

static __always_inline void rs_flow_count(__u32 app_id, enum rs_flow_stat stat)
{
	struct rs_flow_stats *s = bpf_map_lookup_elem(&rs_flow_stats, &app_id);

	if (s && stat < RS_FLOW_STAT_MAX)
		s->by_kind[stat]++;
}

static __always_inline void rs_flow_key_of(const struct rs_pkt *pkt, struct rs_flow_key *k)
{
	__builtin_memcpy(k->saddr, pkt->saddr, 16);
	__builtin_memcpy(k->daddr, pkt->key.addr, 16);
	k->sport = pkt->sport;
	k->dport = pkt->dport;
	k->family = pkt->key.family;
	k->proto = pkt->proto;
	k->pad[0] = 0;
	k->pad[1] = 0;
}

/* An old flow's packet: note when, and whether the client is closing it. */
static __always_inline void rs_old_flow_seen(const struct rs_flow_key *k, __u32 app_id, __u8 tcp_flags)
{
	__u32 closing = (tcp_flags & RS_TCP_FIN ? RS_FLOW_F_FIN : 0) |
			(tcp_flags & RS_TCP_RST ? RS_FLOW_F_RST : 0);
	__u64 now = bpf_ktime_get_coarse_ns();
	struct rs_old_flow *old = bpf_map_lookup_elem(&rs_old_flows, k);

	if (old) {
		old->last_ns = now;
		if (closing)
			__sync_fetch_and_or(&old->flags, closing);
		return;
	}
	struct rs_old_flow fresh = { .last_ns = now, .app_id = app_id, .flags = closing };

	/* EEXIST: another CPU recorded it first, and counted it */
	if (!bpf_map_update_elem(&rs_old_flows, k, &fresh, BPF_NOEXIST))
		rs_flow_count(app_id, RS_FLOW_STAT_PINNED);
}

/* The action a PRESERVE entry takes for this packet: RS_ACTION_LOCAL or RS_ACTION_FORWARD. */
static __always_inline __u32 rs_preserve_choose(const struct rs_pkt *pkt, __u32 app_id)
{
	struct rs_flow_key k;

	if (pkt->proto != IPPROTO_TCP || (pkt->flags & RS_PKT_FRAG))
		return RS_ACTION_FORWARD;
	rs_flow_key_of(pkt, &k);
	if ((pkt->tcp_flags & (RS_TCP_SYN | RS_TCP_ACK)) == RS_TCP_SYN) {
		struct rs_new_flow nf = { .app_id = app_id };
		long err;

		if (bpf_map_lookup_elem(&rs_new_flows, &k))
			return RS_ACTION_FORWARD; /* a retransmitted SYN */
		err = bpf_map_update_elem(&rs_new_flows, &k, &nf, BPF_NOEXIST);
		if (!err) {
			rs_flow_count(app_id, RS_FLOW_STAT_SENT);
			return RS_ACTION_FORWARD;
		}
		if (err == -RS_EEXIST) /* recorded by another CPU just now */
			return RS_ACTION_FORWARD;
		rs_flow_count(app_id, RS_FLOW_STAT_REFUSED);
		rs_old_flow_seen(&k, app_id, pkt->tcp_flags);
		return RS_ACTION_LOCAL;
	}
	if (bpf_map_lookup_elem(&rs_new_flows, &k))
		return RS_ACTION_FORWARD;
	rs_old_flow_seen(&k, app_id, pkt->tcp_flags);
	return RS_ACTION_LOCAL;
}

#endif /* RS_FLOWS_H */
