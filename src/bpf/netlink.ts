/**
 * What the kernel knows about routes, neighbours and devices, asked over
 * netlink by the addon (no `ip` child process, no text parsing). Every call
 * acts in the calling thread's network namespace, so it works inside
 * inNetns(). Addresses are strings here ('10.0.0.1', 'fd00::1') and bytes
 * only between this module and the addon.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { addon, type NativeNeighbour } from './native.js';
import type { XdpState } from './program.js';

/** NETDEV_XDP_ACT_* (linux/netdev.h): what a device's XDP can do, as xdpFeatures() reports it. */
export const XDP_FEATURE = {
  /** XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX: every driver with XDP. */
  BASIC: 1,
  /** A program on this device may return XDP_REDIRECT. */
  REDIRECT: 2,
  /** Frames can be redirected INTO this device (ndo_xdp_xmit); without it, redirects fail with EOPNOTSUPP. */
  NDO_XMIT: 4,
  XSK_ZEROCOPY: 8,
  HW_OFFLOAD: 16,
  /** Multi-buffer (fragmented) frames on receive. */
  RX_SG: 32,
  /** Multi-buffer frames redirected into this device. */
  NDO_XMIT_SG: 64,
} as const;
export type XdpFeature = keyof typeof XDP_FEATURE;

/** Neighbour states (NUD_*, linux/neighbour.h). */
export const NUD = {
  INCOMPLETE: 0x01,
  REACHABLE: 0x02,
  STALE: 0x04,
  DELAY: 0x08,
  PROBE: 0x10,
  FAILED: 0x20,
  NOARP: 0x40,
  PERMANENT: 0x80,
} as const;
export type NudState = keyof typeof NUD;

/** Neighbour flags (NTF_*) and extended flags (NTF_EXT_*, in NDA_FLAGS_EXT). */
export const NTF = { USE: 0x01, SELF: 0x02, MASTER: 0x04, PROXY: 0x08, EXT_LEARNED: 0x10, OFFLOADED: 0x20, STICKY: 0x40, ROUTER: 0x80 } as const;
export const NTF_EXT = { MANAGED: 0x1, LOCKED: 0x2, EXT_VALIDATED: 0x4 } as const;

/** Interface flags (IFF_*, linux/if.h) found in LinkDetails.flags. */
export const IFF = {
  UP: 0x1,
  BROADCAST: 0x2,
  LOOPBACK: 0x8,
  POINTOPOINT: 0x10,
  RUNNING: 0x40,
  NOARP: 0x80,
  PROMISC: 0x100,
  MASTER: 0x400,
  SLAVE: 0x800,
  MULTICAST: 0x1000,
  LOWER_UP: 0x10000,
} as const;

/** Route types by rtm_type (RTN_*): 'unicast' is a normal route, 'local' an address of this host. */
const ROUTE_TYPES = [
  'unspec',
  'unicast',
  'local',
  'broadcast',
  'anycast',
  'multicast',
  'blackhole',
  'unreachable',
  'prohibit',
  'throw',
  'nat',
  'xresolve',
] as const;
export type RouteType = (typeof ROUTE_TYPES)[number];

/** RFC 2863 operational states (IF_OPER_*) by value. */
const OPER_STATES = ['unknown', 'notpresent', 'down', 'lowerlayerdown', 'testing', 'dormant', 'up'] as const;
export type OperState = (typeof OPER_STATES)[number];

const XDP_MODES = ['none', 'native', 'generic', 'offload', 'multi'] as const;

export interface Route {
  /** Output interface (0 when the kernel names none, e.g. blackhole). */
  ifindex: number;
  /** Next hop; null when the destination is on-link. */
  gateway: string | null;
  /** Source address the kernel would pick. */
  prefsrc: string | null;
  type: RouteType | `unknown(${number})`;
  /** The table the route was found in: 254 main, 255 local (IPv4 reports local routes as main until policy rules exist). */
  table: number;
}

export interface Neighbour {
  /** Link-layer address; null unless the entry is valid (REACHABLE, STALE, DELAY, PROBE, PERMANENT, NOARP). */
  mac: string | null;
  /** The NUD state bits by name, normally exactly one; empty for NUD_NONE (created, not yet probed). */
  state: NudState[];
  /** NTF_* bits. */
  flags: number;
  /** NTF_EXT_* bits. */
  flagsExt: number;
}

export interface LinkDetails {
  ifindex: number;
  name: string;
  /** IFLA_INFO_KIND ('veth', 'bridge', 'vxlan', ...); null for physical devices and loopback. */
  kind: string | null;
  /** The bridge or bond this device is enslaved to. */
  masterIfindex: number | null;
  /**
   * IFLA_LINK: the device this one sits on; for a veth its peer, by the
   * peer's ifindex in the peer's namespace. Null when there is none.
   */
  linkIfindex: number | null;
  /** The namespace of linkIfindex as this namespace's netns id; null when it is this namespace. */
  linkNetnsid: number | null;
  mac: string | null;
  mtu: number;
  /** IFF_* bits. */
  flags: number;
  operState: OperState | `unknown(${number})`;
  /** The attached XDP program's id; 0 when none, and in 'multi' mode (use queryXdp for the per-mode ids). */
  xdpProgId: number;
  xdpMode: XdpState['mode'];
}

function invalidAddress(address: string): TypeError {
  return Object.assign(new TypeError(`invalid IP address ${JSON.stringify(address)}: expected a.b.c.d or an IPv6 address`), {
    code: 'EINVAL',
    errno: 22,
  });
}

/** RFC 4291 text (validated by node:net) into 16 bytes; '::' and an embedded dotted quad allowed. */
function ipv6Bytes(text: string): Buffer {
  const groups = (part: string): number[] =>
    part === ''
      ? []
      : part.split(':').flatMap((g) => {
          if (!g.includes('.')) return [parseInt(g, 16)];
          const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
          return [(a << 8) | b, (c << 8) | d];
        });
  const gap = text.indexOf('::');
  const head = groups(gap < 0 ? text : text.slice(0, gap));
  const tail = gap < 0 ? [] : groups(text.slice(gap + 2));
  const all = gap < 0 ? head : [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** An address string as the family and bytes the addon takes. */
function ipBytes(address: string): { family: 4 | 6; bytes: Buffer } {
  if (isIPv4(address)) return { family: 4, bytes: Buffer.from(address.split('.').map(Number)) };
  if (isIPv6(address) && !address.includes('%')) return { family: 6, bytes: ipv6Bytes(address) };
  throw invalidAddress(address);
}

/** 4 or 16 bytes as text: dotted quad, or RFC 5952 IPv6 (longest zero run as '::', mapped IPv4 dotted). */
function ipText(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length !== 16) return bytes.toString('hex');
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes.readUInt16BE(10) === 0xffff) {
    return `::ffff:${[...bytes.subarray(12)].join('.')}`;
  }
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2));
  let best = -1;
  let bestLen = 1; // a single zero group is not shortened
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j > i ? j : i + 1;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (best < 0) return hex(groups);
  return `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLen))}`;
}

function nudNames(bits: number): NudState[] {
  return (Object.keys(NUD) as NudState[]).filter((k) => (bits & NUD[k]) !== 0);
}

/** The names of the XDP_FEATURE bits set in `bits`. */
export function xdpFeatureNames(bits: number): XdpFeature[] {
  return (Object.keys(XDP_FEATURE) as XdpFeature[]).filter((k) => (bits & XDP_FEATURE[k]) !== 0);
}

/**
 * The route the kernel would use to send to `address` (as `ip route get`).
 * Throws the kernel's errno with `code`: ENETUNREACH without a route,
 * EHOSTUNREACH / EACCES / EINVAL for an unreachable / prohibit / blackhole
 * route (both families).
 */
export function routeGet(address: string): Route {
  const { family, bytes } = ipBytes(address);
  const r = addon().routeGet(family, bytes);
  return {
    ifindex: r.ifindex,
    gateway: r.gateway ? ipText(r.gateway) : null,
    prefsrc: r.prefsrc ? ipText(r.prefsrc) : null,
    type: ROUTE_TYPES[r.type] ?? `unknown(${r.type})`,
    table: r.table,
  };
}

function toNeighbour(n: NativeNeighbour): Neighbour {
  return { mac: n.mac, state: nudNames(n.state), flags: n.flags, flagsExt: n.flagsExt };
}

/** The neighbour entry for `address` on `ifindex`, or null when the table has none. */
export function neighGet(ifindex: number, address: string): Neighbour | null {
  const { family, bytes } = ipBytes(address);
  const n = addon().neighGet(ifindex, family, bytes);
  return n ? toNeighbour(n) : null;
}

/**
 * Ask the kernel to resolve `address` on `ifindex` itself (ARP request or
 * neighbour solicitation, creating the entry if needed), so the data plane
 * learns a MAC without sending traffic. Returns at once; poll neighGet for
 * the answer. An existing entry's MAC is never written. An IPv6 probe
 * made this way has no packet to take a source from, so it is sent from
 * the device's link-local address: on a device that just came up, not
 * before that address finished duplicate address detection (1-2 s).
 *
 * Returns 'skipped' and sends nothing when the entry is static (PERMANENT,
 * NOARP) or owned by someone else (EXT_LEARNED, MANAGED, EXT_VALIDATED):
 * the kernel (5.16+) treats the request as an administrative update that
 * clears PERMANENT, which turns a static entry into an unresolved one, and
 * strips those ownership flags. The check and the request are two calls,
 * so an entry made static in between is not protected.
 */
export function neighResolve(ifindex: number, address: string): 'requested' | 'skipped' {
  const { family, bytes } = ipBytes(address);
  const n = addon().neighGet(ifindex, family, bytes);
  if (n) {
    const isStatic = (n.state & (NUD.PERMANENT | NUD.NOARP)) !== 0;
    const owned = (n.flags & NTF.EXT_LEARNED) !== 0 || (n.flagsExt & (NTF_EXT.MANAGED | NTF_EXT.EXT_VALIDATED)) !== 0;
    if (isStatic || owned) return 'skipped';
  }
  addon().neighResolve(ifindex, family, bytes);
  return 'requested';
}

/**
 * A device by ifindex or by name (in the calling thread's namespace): kind,
 * master, veth peer, addresses, state and XDP attachment. ENODEV when absent.
 */
export function linkInfo(link: number | string): LinkDetails {
  const l = addon().linkInfo(link);
  return {
    ifindex: l.ifindex,
    name: l.name,
    kind: l.kind,
    masterIfindex: l.masterIfindex,
    linkIfindex: l.linkIfindex,
    linkNetnsid: l.linkNetnsid,
    mac: l.mac,
    mtu: l.mtu,
    flags: l.flags,
    operState: OPER_STATES[l.operState] ?? `unknown(${l.operState})`,
    xdpProgId: l.xdpProgId,
    xdpMode: XDP_MODES[l.xdpAttachMode] ?? 'multi',
  };
}

/**
 * The XDP_FEATURE bits `ifindex` announces (netdev generic netlink). Before
 * redirecting into a device, check NDO_XMIT: a veth has it only while its
 * peer has an XDP program or GRO enabled. ENOENT on kernels before 6.3.
 */
export function xdpFeatures(ifindex: number): number {
  return addon().xdpFeatures(ifindex);
}
