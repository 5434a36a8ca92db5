/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * routeshift: every struct and enum shared between the BPF programs and user
 * space. This is the only place a shared layout is defined; the TypeScript
 * codecs in src/datapath/structs.ts mirror it, and test/datapath-btf.test.ts
 * compares both against the BTF of the compiled object, so the two cannot
 * drift.
 *
 * Rules: fixed-width types only, every padding byte is an explicit field that
 * user space writes as zero, sizes are asserted below. Multi-byte fields are
 * host order unless the name or comment says network order.
 */
#ifndef ROUTESHIFT_H
#define ROUTESHIFT_H

#include <linux/types.h>

/* Address families used in keys and values (not AF_*: these are the IP
 * version numbers, readable in a hex dump). */
#define RS_FAMILY_IPV4 4
#define RS_FAMILY_IPV6 6

/*
 * Key of both lookup maps (rs_redirect and rs_deliver): one application,
 * either a whole address or one protocol/port of it. An exact (proto, port)
 * entry beats the whole-address entry (proto 0, port 0).
 *
 * rs_redirect is looked up whole address first, because most addresses
 * have no port entries: the exact key is looked up only when the
 * whole-address entry carries RS_REDIRECT_F_PORTS. So every address that
 * has an exact entry has a whole-address entry too -- the app's own, or a
 * RS_ACTION_PORTS_ONLY placeholder when the address has only port entries.
 * The agent maintains both (src/agent/entries.ts); user space never shows
 * placeholders. rs_deliver (not on the forwarding path) is looked up exact
 * key first, then whole address, and has no placeholders.
 */
struct rs_app_key {
	__u8 family;   /* RS_FAMILY_IPV4 or RS_FAMILY_IPV6 */
	__u8 proto;    /* IPPROTO_*, 0 = whole address */
	__be16 port;   /* destination port, network order; 0 = whole protocol */
	__u8 addr[16]; /* IPv6, or IPv4 mapped as ::ffff:a.b.c.d */
};

/*
 * What the source host does with an application's packets. Values start at 1
 * so an all-zero value is never a valid action.
 */
enum rs_action {
	RS_ACTION_LOCAL = 1,      /* redirect to the app's interface on this host */
	RS_ACTION_FORWARD = 2,    /* encapsulate to another host's tunnel address */
	RS_ACTION_PRESERVE = 3,   /* TCP flows from before SWITCH: LOCAL; new flows
				   * and datagrams: FORWARD (bpf/flows.h). The value
				   * holds both the LOCAL and the FORWARD fields */
	RS_ACTION_PORTS_ONLY = 4, /* placeholder, whole-address key only: no action
				   * for the address itself; a packet that matches no
				   * port entry of it passes as if it had no entry */
};

/* rs_redirect_value.flags */
enum rs_redirect_flag {
	/* whole-address entry: this address also has exact (proto, port)
	 * entries, so look the packet's exact key up too */
	RS_REDIRECT_F_PORTS = 1,
};

/*
 * How a packet reaches the application's interface on this host (LOCAL and
 * delivery entries). The agent chooses per entry the fastest path that the
 * target device delivers on, and decides again when the device changes
 * (src/agent/paths.ts):
 *  - XDP: bpf_redirect from XDP. Only for devices that take XDP frames
 *    (xdp-features "redirect target": a veth whose peer runs an XDP program
 *    or GRO); anything else drops redirected frames.
 *  - TC_PEER / TC: the program rewrites the frame, leaves a struct rs_meta in
 *    front of it and passes it; rs_uplink_tc, on the uplink's TC ingress,
 *    redirects the skb: into the veth's peer namespace (bpf_redirect_peer,
 *    the way Cilium delivers into pods), or to the device's egress (a
 *    bridge, a veth whose peer is in this namespace). Works on every device
 *    and keeps the skb's checksum state.
 *  - KERNEL: the packet is handed to the host's stack as if routeshift were
 *    not there (a delivery entry's packet decapsulated and addressed to
 *    this host), which routes it to the app. Also taken when the driver
 *    cannot carry rs_meta.
 * slow_path is taken instead of an XDP path for a packet whose checksum is
 * still partial (RS_CONFIG_F_SKB_CSUM): an XDP frame would lose that.
 */
enum rs_path {
	RS_PATH_XDP = 0,
	RS_PATH_TC_PEER = 1,
	RS_PATH_TC = 2,
	RS_PATH_KERNEL = 3,
	RS_PATH_MAX = 4,
};

/* Value of rs_redirect (source role). 48 bytes. */
struct rs_redirect_value {
	__u32 action;        /* enum rs_action */
	__u32 app_id;        /* index into rs_app_stats */
	__u32 ifindex;       /* LOCAL: the app's interface on this host */
	__u32 flags;         /* enum rs_redirect_flag bits; others 0 */
	__u8 dmac[6];        /* LOCAL: destination MAC to write */
	__u8 smac[6];        /* LOCAL: source MAC to write */
	__u8 tunnel_family;  /* FORWARD, PRESERVE: RS_FAMILY_IPV4 or RS_FAMILY_IPV6 */
	__u8 path;           /* LOCAL, PRESERVE: enum rs_path */
	__u8 slow_path;      /* LOCAL, PRESERVE: enum rs_path for partial checksums */
	__u8 pad;            /* zero */
	__u8 tunnel_dst[16]; /* FORWARD, PRESERVE: remote host's tunnel address, v4 mapped */
};

/* Value of rs_deliver (destination role); the key is the INNER destination.
 * 24 bytes. */
struct rs_deliver_value {
	__u32 app_id;   /* index into rs_app_stats */
	__u32 ifindex;  /* the app's interface on this host */
	__u8 dmac[6];   /* destination MAC to write */
	__u8 smac[6];   /* source MAC to write */
	__u8 path;      /* enum rs_path */
	__u8 slow_path; /* enum rs_path for partial checksums */
	__u8 pad[2];    /* zero */
};

/* Per-application counters, one slot per action taken. */
enum rs_stat {
	RS_STAT_LOCAL = 0,   /* redirected to the app on this host */
	RS_STAT_FORWARD = 1, /* encapsulated towards another host */
	RS_STAT_DELIVER = 2, /* received through the tunnel, decapsulated */
	RS_STAT_MAX = 3,
};

struct rs_counter {
	__u64 packets;
	__u64 bytes; /* frame length as received, Ethernet header included */
};

/* Value of rs_app_stats (PERCPU_ARRAY keyed by app_id). */
struct rs_app_stats {
	struct rs_counter by_action[RS_STAT_MAX];
};

/*
 * Why a packet was dropped: every packet the data plane loses is counted
 * under one of these (rs_drops), once, when rs_uplink ends, except
 * XMIT_FAILED, which the watcher (bpf/watch.c) counts when the kernel fails
 * to transmit a frame rs_uplink had sent on (and which it takes back from
 * the app's counter, so app counters count packets delivered).
 */
enum rs_drop {
	RS_DROP_MALFORMED = 0,     /* truncated/inconsistent headers of a packet we own */
	RS_DROP_NO_ROUTE = 1,      /* fib lookup for the tunnel destination failed */
	RS_DROP_TOO_BIG = 2,       /* over the MTU after encap, and no ICMP error could be sent */
	RS_DROP_NO_DELIVERY = 3,   /* tunnel packet to us, no delivery entry */
	RS_DROP_REWRITE = 4,       /* the frame could not be rewritten (bpf_xdp_adjust_head/meta) */
	RS_DROP_BAD_ENTRY = 5,     /* entry or config the program cannot act on */
	RS_DROP_FRAGMENTATION = 6, /* needs fragmentation XDP cannot do */
	RS_DROP_XMIT_FAILED = 7,   /* the target refused the frame after XDP_REDIRECT/XDP_TX */
	RS_DROP_MAX = 8,
};

/* Packets handed to the kernel, or answered, worth counting. Indexes rs_events. */
enum rs_event {
	RS_EVENT_UNPARSED = 0,    /* IP ethertype but unparsable, no entry: passed */
	RS_EVENT_NO_ENTRY = 1,    /* parsed, no redirect entry: passed untouched */
	RS_EVENT_NO_NEIGH = 2,    /* encapsulated, next hop unresolved: passed to be routed */
	RS_EVENT_TTL = 3,         /* TTL/hop limit <= 1: passed untouched, the kernel answers */
	RS_EVENT_ICMP_SENT = 4,   /* over the MTU after encap: answered with ICMP too big */
	RS_EVENT_KERNEL_PATH = 5, /* delivered through the host's stack (RS_PATH_KERNEL) */
	RS_EVENT_MAX = 6,
};

/*
 * Connection-preserving migration (RS_ACTION_PRESERVE, bpf/flows.h). A TCP
 * flow is the packet's 5-tuple as it arrives (client -> app); only that
 * direction crosses the uplink's XDP. 40 bytes.
 */
struct rs_flow_key {
	__u8 saddr[16]; /* v4 mapped */
	__u8 daddr[16]; /* v4 mapped */
	__be16 sport;   /* network order */
	__be16 dport;   /* network order */
	__u8 family;    /* RS_FAMILY_IPV4 or RS_FAMILY_IPV6 */
	__u8 proto;     /* IPPROTO_TCP */
	__u8 pad[2];    /* zero */
};

/* Value of rs_new_flows (LRU): a flow whose SYN arrived while the entry was
 * PRESERVE, i.e. after SWITCH; it goes to the destination. 8 bytes. */
struct rs_new_flow {
	__u32 app_id;
	__u32 pad;
};

/* rs_old_flow.flags: what the client sent that ends a flow. */
enum rs_flow_flag {
	RS_FLOW_F_FIN = 1,
	RS_FLOW_F_RST = 2,
};

/* Value of rs_old_flows (LRU): a flow from before SWITCH, still served by
 * this host's copy; the agent counts the live ones (GET /v1/apps/:name/flows).
 * 16 bytes. */
struct rs_old_flow {
	__u64 last_ns; /* bpf_ktime_get_coarse_ns() of its last packet */
	__u32 app_id;
	__u32 flags;   /* enum rs_flow_flag bits seen so far */
};

/* Per-application flow counters of the PRESERVE action (rs_flow_stats). */
enum rs_flow_stat {
	RS_FLOW_STAT_PINNED = 0,  /* flows first seen as old: kept on this host */
	RS_FLOW_STAT_SENT = 1,    /* new flows (SYN) recorded and sent to the destination */
	RS_FLOW_STAT_REFUSED = 2, /* a SYN rs_new_flows could not record: served here
				   * instead, so its later packets (unknown, hence
				   * old) find the same copy */
	RS_FLOW_STAT_MAX = 3,
};

/* Value of rs_flow_stats (PERCPU_ARRAY keyed by app_id). */
struct rs_flow_stats {
	__u64 by_kind[RS_FLOW_STAT_MAX];
};

/* rs_config.flags: what the uplink is, as the agent found it. */
enum rs_config_flag {
	/* the uplink's XDP runs on skbs that may carry partial checksums (a
	 * veth: senders in other namespaces leave them to a NIC that is never
	 * there): such packets take an entry's slow_path */
	RS_CONFIG_F_SKB_CSUM = 1,
	/* frames back out of the uplink (FORWARD, ICMP errors): XDP redirect to
	 * the uplink itself instead of XDP_TX (a veth: XDP_TX needs an XDP
	 * program on the peer, a redirect only NAPI) */
	RS_CONFIG_F_TX_REDIRECT = 2,
	/* frames back out of the uplink go through rs_uplink_tc (the uplink
	 * takes no XDP frames at all) */
	RS_CONFIG_F_TX_TC = 4,
};

/* Value of rs_config (ARRAY, one entry at index 0). All zero = no tunnel
 * addresses: nothing is delivered and FORWARD entries cannot be used. */
struct rs_config {
	__u8 tunnel_addr4[4];  /* this host's IPv4 tunnel address, or 0 */
	__u8 tunnel_addr6[16]; /* this host's IPv6 tunnel address, or :: */
	__u32 mtu;             /* outer MTU limit; 0 = the route's MTU (fib lookup) */
	__u32 flags;           /* enum rs_config_flag bits */
	__u32 meta_cookie;     /* random, per agent start: rs_uplink_tc trusts only
				* struct rs_meta carrying it */
};

/*
 * The frame rs_uplink sent on last on this CPU by XDP redirect or XDP_TX
 * (rs_pending, PERCPU_ARRAY of one). When the kernel then fails to transmit
 * it, the xdp_redirect_err / xdp_exception tracepoint fires on the same CPU
 * before the next frame is processed, and the watcher moves the frame from
 * the app's counter to RS_DROP_XMIT_FAILED. 16 bytes.
 */
struct rs_pending {
	__u32 app_id; /* RS_APP_NONE: not an app's frame (an ICMP error) */
	__u32 stat;   /* enum rs_stat it was counted under */
	__u32 bytes;
	__u32 pad;
};
#define RS_APP_NONE 0xffffffff

/* Value of rs_watch_config (ARRAY, one entry): whose failures the watcher counts. 8 bytes. */
struct rs_watch_config {
	__u32 uplink_prog_id; /* the rs_uplink program attached now; 0 = count nothing */
	__u32 pad;
};

/* In front of a frame rs_uplink hands to rs_uplink_tc (XDP data_meta). Not
 * seen by user space. 12 bytes. */
struct rs_meta {
	__u32 cookie;  /* rs_config.meta_cookie */
	__u32 ifindex; /* where rs_uplink_tc redirects the skb */
	__u32 flags;   /* RS_META_F_* */
};
#define RS_META_F_PEER 1         /* bpf_redirect_peer into the veth's peer namespace */

/*
 * Next-hop cache (rs_nexthop, PERCPU_ARRAY of RS_NEXTHOP_SLOTS): FORWARD
 * needs the egress interface, MACs and route MTU towards a tunnel
 * destination, which bpf_fib_lookup answers at a cost comparable to the
 * rest of the forwarding path. Each CPU keeps the answers it got, in a slot
 * chosen by a hash of the lookup's inputs (ingress interface, tunnel family
 * and destination, TOS), and uses one while the jiffies clock has moved by
 * less than RS_NEXTHOP_TTL_TICKS since the lookup: under 2 ticks, i.e. at
 * most 20 ms at the smallest HZ (100), 8 ms at HZ=250, 2 ms at HZ=1000.
 * The clock is jiffies because bpf_jiffies64() is a plain load, while
 * bpf_ktime_get_coarse_ns() cost about a sixth of the FORWARD path
 * (bench/README.md). Only SUCCESS answers are kept: a destination with no
 * route or an unresolved neighbour is looked up on every packet, as before.
 * A slot whose inputs differ (another destination hashed there) is simply
 * replaced. User space may zero the map to drop every cached answer.
 * 48 bytes.
 */
#define RS_NEXTHOP_SLOTS 256
#define RS_NEXTHOP_TTL_TICKS 2

struct rs_nexthop {
	__u64 refreshed_jiffies; /* bpf_jiffies64() of the fib lookup */
	__u32 in_ifindex;    /* input: ingress interface */
	__u32 out_ifindex;   /* answer: egress interface */
	__u8 family;         /* input: RS_FAMILY_IPV4/6; 0 = empty slot */
	__u8 tos;            /* input: TOS given to the lookup (IPv4) */
	__u16 mtu;           /* answer: the route's MTU */
	__u8 dst[16];        /* input: tunnel destination, v4 mapped */
	__u8 dmac[6];        /* answer: next hop's MAC */
	__u8 smac[6];        /* answer: egress interface's MAC */
};

_Static_assert(sizeof(struct rs_app_key) == 20, "rs_app_key layout");
_Static_assert(sizeof(struct rs_redirect_value) == 48, "rs_redirect_value layout");
_Static_assert(sizeof(struct rs_deliver_value) == 24, "rs_deliver_value layout");
_Static_assert(sizeof(struct rs_counter) == 16, "rs_counter layout");
_Static_assert(sizeof(struct rs_app_stats) == 16 * RS_STAT_MAX, "rs_app_stats layout");
_Static_assert(sizeof(struct rs_config) == 32, "rs_config layout");
_Static_assert(sizeof(struct rs_nexthop) == 48, "rs_nexthop layout");
_Static_assert(sizeof(struct rs_pending) == 16, "rs_pending layout");
_Static_assert(sizeof(struct rs_watch_config) == 8, "rs_watch_config layout");
_Static_assert(sizeof(struct rs_meta) % 4 == 0 && sizeof(struct rs_meta) <= 32, "XDP metadata: 4-byte multiple, at most 32");
_Static_assert(sizeof(struct rs_flow_key) == 40, "rs_flow_key layout");
_Static_assert(sizeof(struct rs_new_flow) == 8, "rs_new_flow layout");
_Static_assert(sizeof(struct rs_old_flow) == 16, "rs_old_flow layout");
_Static_assert(sizeof(struct rs_flow_stats) == 8 * RS_FLOW_STAT_MAX, "rs_flow_stats layout");
_Static_assert(sizeof(enum rs_drop) == 4 && sizeof(enum rs_action) == 4, "enum size");

#endif /* ROUTESHIFT_H */
