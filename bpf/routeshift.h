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
 * so an all-zero value is never a valid action. 3 is kept for the planned
 * connection-preserving action (forward only flows not seen before SWITCH).
 */
enum rs_action {
	RS_ACTION_LOCAL = 1,      /* redirect to the app's interface on this host */
	RS_ACTION_FORWARD = 2,    /* encapsulate to another host's tunnel address */
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

/* Value of rs_redirect (source role). 48 bytes. */
struct rs_redirect_value {
	__u32 action;        /* enum rs_action */
	__u32 app_id;        /* index into rs_app_stats */
	__u32 ifindex;       /* LOCAL: the app's interface on this host */
	__u32 flags;         /* enum rs_redirect_flag bits; others 0 */
	__u8 dmac[6];        /* LOCAL: destination MAC to write */
	__u8 smac[6];        /* LOCAL: source MAC to write */
	__u8 tunnel_family;  /* FORWARD: RS_FAMILY_IPV4 or RS_FAMILY_IPV6 */
	__u8 pad[3];         /* zero */
	__u8 tunnel_dst[16]; /* FORWARD: remote host's tunnel address, v4 mapped */
};

/* Value of rs_deliver (destination role); the key is the INNER destination.
 * 24 bytes. */
struct rs_deliver_value {
	__u32 app_id;  /* index into rs_app_stats */
	__u32 ifindex; /* the app's interface on this host */
	__u8 dmac[6];  /* destination MAC to write */
	__u8 smac[6];  /* source MAC to write */
	__u32 flags;   /* none defined yet; must be 0 */
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
 * Why a packet was not forwarded by the program. Indexes rs_drops. Most of
 * them end in XDP_DROP; the exceptions are noted (the packet was handed to
 * the kernel or answered, but not forwarded by us).
 */
enum rs_drop {
	RS_DROP_MALFORMED = 0,       /* truncated/inconsistent headers of a packet we own */
	RS_DROP_NO_ROUTE = 1,        /* fib lookup for the tunnel destination failed */
	RS_DROP_TOO_BIG = 2,         /* over the MTU after encap: ICMP sent back (XDP_TX) */
	RS_DROP_NO_DELIVERY = 3,     /* tunnel packet to us, no delivery entry */
	RS_DROP_TTL = 4,             /* TTL/hop limit <= 1: XDP_PASS, the kernel answers */
	RS_DROP_REDIRECT_FAILED = 5, /* a helper refused to rewrite (adjust_head) or redirect */
	RS_DROP_BAD_ENTRY = 6,       /* entry or config the program cannot act on */
	RS_DROP_FRAGMENTATION = 7,   /* needs fragmentation XDP cannot do */
	RS_DROP_MAX = 8,
};

/* Packets passed to the kernel that are worth counting. Indexes rs_events. */
enum rs_event {
	RS_EVENT_UNPARSED = 0, /* IP ethertype but unparsable, no entry: passed */
	RS_EVENT_NO_ENTRY = 1, /* parsed, no redirect entry: passed untouched */
	RS_EVENT_NO_NEIGH = 2, /* encapsulated, next hop unresolved: passed */
	RS_EVENT_MAX = 3,
};

/* Value of rs_config (ARRAY, one entry at index 0). All zero = no tunnel
 * addresses: nothing is delivered and FORWARD entries cannot be used. */
struct rs_config {
	__u8 tunnel_addr4[4];  /* this host's IPv4 tunnel address, or 0 */
	__u8 tunnel_addr6[16]; /* this host's IPv6 tunnel address, or :: */
	__u32 mtu;             /* outer MTU limit; 0 = the route's MTU (fib lookup) */
	__u32 flags;           /* none defined yet; must be 0 */
};

/*
 * Next-hop cache (rs_nexthop, PERCPU_ARRAY of RS_NEXTHOP_SLOTS): FORWARD
 * needs the egress interface, MACs and route MTU towards a tunnel
 * destination, which bpf_fib_lookup answers at a cost comparable to the
 * rest of the forwarding path. Each CPU keeps the answers it got, in a slot
 * chosen by a hash of the lookup's inputs (ingress interface, tunnel family
 * and destination, TOS), and uses one for at most RS_NEXTHOP_TTL_NS
 * (bpf_ktime_get_coarse_ns, so at most one clock tick more) before looking
 * the route up again. Only SUCCESS answers are kept: a destination with no
 * route or an unresolved neighbour is looked up on every packet, as before.
 * A slot whose inputs differ (another destination hashed there) is simply
 * replaced. User space may zero the map to drop every cached answer.
 * 48 bytes.
 */
#define RS_NEXTHOP_SLOTS 256
#define RS_NEXTHOP_TTL_NS (20ULL * 1000 * 1000)

struct rs_nexthop {
	__u64 refreshed_ns;  /* bpf_ktime_get_coarse_ns() of the fib lookup */
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
_Static_assert(sizeof(struct rs_config) == 28, "rs_config layout");
_Static_assert(sizeof(struct rs_nexthop) == 48, "rs_nexthop layout");
_Static_assert(sizeof(enum rs_drop) == 4 && sizeof(enum rs_action) == 4, "enum size");

#endif /* ROUTESHIFT_H */
