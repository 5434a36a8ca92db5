/**
 * What the agent needs to know about the devices and neighbours of its
 * host, asked of the kernel over netlink in the agent's own network
 * namespace (no process spawned: SWITCH must take microseconds):
 *
 * - a device as a delivery target: its index and MAC, and the fastest path
 *   that delivers into it (enum rs_path in bpf/routeshift.h): an XDP
 *   redirect only where the device takes XDP frames (xdp-features
 *   "ndo-xmit": a veth whose peer runs an XDP program or GRO), else the
 *   uplink's TC hook — bpf_redirect_peer into a veth's namespace, or
 *   bpf_redirect to a device's egress (a bridge, a same-namespace veth);
 * - the MAC of the application's next hop on that device: the route to the
 *   app's address names it (a gateway such as the app's link address, or
 *   the address itself on a link), the neighbour table holds it, and when it
 *   does not, the kernel's own ARP/ND probe is started (NTF_USE) and
 *   awaited, as for any packet the host would send there.
 */
import { isIP } from 'node:net';
import {
  XDP_FEATURE,
  ifindexOf,
  linkInfo,
  neighGet,
  neighResolve,
  routeGet,
  xdpFeatures,
  type LinkDetails,
  type XdpMode,
} from '../bpf/index.js';
import type { Path } from '../datapath/structs.js';
import { quote } from '../model/address.js';
import { FieldError } from '../model/errors.js';

/** A device as a delivery target. */
export interface DeviceTarget {
  ifindex: number;
  /** The device's own MAC: the source MAC of frames sent into it. */
  mac: string;
  path: Path;
  /** For a packet whose checksum is still partial, when `path` is 'xdp'. */
  slowPath: Path;
  /** Why this path, in words (for the API view and the log). */
  why: string;
}

/** An entry that needs the MAC of its application's next hop. */
export interface NeighbourWant {
  address: string;
  dev: string;
  /** The request field the MAC would have come in (for errors). */
  field: string;
}

export interface LinkResolver {
  device(dev: string, field: string): DeviceTarget;
  /** Make the neighbour MACs these entries need known (ARP/ND where the table has none), before staging. */
  resolve(wants: readonly NeighbourWant[]): Promise<void>;
  /** The MAC of `address`'s next hop on `dev`, from the neighbour table; a FieldError naming `field` when it has none. */
  neighbourMac(address: string, dev: string, field: string): string;
  /** The same, undefined when the table has none (yet). */
  knownMac(address: string, dev: string): string | undefined;
}

/** How long resolve() waits for answers to the probes it starts. */
export const RESOLVE_TIMEOUT_MS = 1000;
const RESOLVE_POLL_MS = 10;

/** Neighbour states with a usable link-layer address. */
const USABLE = new Set(['REACHABLE', 'STALE', 'DELAY', 'PROBE', 'PERMANENT', 'NOARP']);

const IFF_UP = 0x1;
const IFF_LOOPBACK = 0x8;

/** The hint every "no MAC" error ends with: how a user gives it by hand. */
const GIVE_MAC = 'give the application\'s MAC with --mac (--dest-mac for migrate; "mac" in the API)';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The delivery path into a device: XDP where it takes XDP frames, else TC
 * (into a veth's peer namespace, or to the device's egress). Generic XDP
 * delivers anywhere (its redirect is an skb's).
 */
export function pathInto(info: LinkDetails, features: number | undefined, xdpMode: XdpMode): Omit<DeviceTarget, 'ifindex' | 'mac'> {
  const peerNamespace = info.kind === 'veth' && info.linkNetnsid !== null;
  const tc: Path = peerNamespace ? 'tc-peer' : 'tc';
  if (xdpMode === 'generic') return { path: 'xdp', slowPath: 'xdp', why: 'generic XDP redirects skbs into any device' };
  if (features !== undefined && (features & XDP_FEATURE.NDO_XMIT) !== 0) {
    return { path: 'xdp', slowPath: tc, why: 'takes XDP frames (xdp-features ndo-xmit)' };
  }
  const kind = info.kind ?? 'device';
  const why =
    info.kind === 'veth'
      ? `veth takes no XDP frames (its peer runs no XDP program and has GRO off): ${peerNamespace ? 'bpf_redirect_peer into its namespace' : 'bpf_redirect to its egress'}`
      : (info.flags & IFF_UP) === 0
        ? `${info.name} is down: bpf_redirect to its egress once it is up`
        : `${kind} takes no XDP frames: bpf_redirect to its egress`;
  return { path: tc, slowPath: tc, why };
}

/** The address whose MAC a packet to `address` sent out of `ifindex` needs: the route's gateway there, else itself. */
function nextHop(address: string, ifindex: number): string {
  try {
    const r = routeGet(address);
    if (r.ifindex === ifindex && r.gateway) return r.gateway;
  } catch {
    /* no route: the address on the link itself */
  }
  return address;
}

export class SystemLinks implements LinkResolver {
  /** `uplink`: the device the data plane runs on, never an app's. */
  constructor(
    private readonly xdpMode: XdpMode = 'native',
    private readonly uplink?: string,
  ) {}

  device(dev: string, field: string): DeviceTarget {
    let ifindex: number;
    try {
      ifindex = ifindexOf(dev);
    } catch {
      throw new FieldError(field, `interface ${quote(dev)} does not exist on this host`);
    }
    if (dev === this.uplink) throw new FieldError(field, `${dev} is this agent's uplink: give the application's own interface (its veth, or the bridge it is on)`);
    const info = linkInfo(ifindex);
    if (info.flags & IFF_LOOPBACK) throw new FieldError(field, `${dev} is a loopback device: give the application's own interface`);
    if (!info.mac) throw new FieldError(field, `interface ${dev} has no MAC address (not an Ethernet device)`);
    let features: number | undefined;
    try {
      features = xdpFeatures(ifindex);
    } catch {
      features = undefined; // a kernel without netdev netlink (< 6.3): never assume XDP frames arrive
    }
    return { ifindex, mac: info.mac, ...pathInto(info, features, this.xdpMode) };
  }

  neighbourMac(address: string, dev: string, field: string): string {
    const found = this.#lookup(address, dev);
    if (found.mac) return found.mac;
    const via = found.hop === address ? '' : ` (its next hop ${found.hop}, from the route to it)`;
    throw new FieldError(field, `no neighbour entry for ${address}${via} on ${dev}: ${GIVE_MAC}`);
  }

  knownMac(address: string, dev: string): string | undefined {
    return this.#lookup(address, dev).mac;
  }

  #lookup(address: string, dev: string): { hop: string; mac: string | undefined } {
    let ifindex: number;
    try {
      ifindex = ifindexOf(dev);
    } catch {
      return { hop: address, mac: undefined };
    }
    const hop = nextHop(address, ifindex);
    const n = neighGet(ifindex, hop);
    return { hop, mac: n?.mac && n.state.some((s) => USABLE.has(s)) ? n.mac : undefined };
  }

  async resolve(wants: readonly NeighbourWant[]): Promise<void> {
    // One probe per distinct next hop, all awaited together, bounded in time.
    const pending = new Map<string, { ifindex: number; hop: string; want: NeighbourWant }>();
    for (const w of wants) {
      let ifindex: number;
      try {
        ifindex = ifindexOf(w.dev);
      } catch {
        continue; // staging reports the missing device, naming its field
      }
      const hop = nextHop(w.address, ifindex);
      const id = `${ifindex} ${hop}`;
      if (pending.has(id)) continue;
      const n = neighGet(ifindex, hop);
      if (n?.mac && n.state.some((s) => USABLE.has(s))) continue;
      neighResolve(ifindex, hop);
      pending.set(id, { ifindex, hop, want: w });
    }
    const deadline = Date.now() + RESOLVE_TIMEOUT_MS;
    while (pending.size && Date.now() < deadline) {
      await sleep(RESOLVE_POLL_MS);
      for (const [id, p] of pending) {
        const n = neighGet(p.ifindex, p.hop);
        if (n?.mac && n.state.some((s) => USABLE.has(s))) pending.delete(id);
      }
    }
    const [first] = pending.values();
    if (first) {
      const { want, hop } = first;
      const proto = isIP(hop) === 6 ? 'neighbour discovery' : 'ARP';
      const via = hop === want.address ? '' : ` (its next hop ${hop}, from the route to it)`;
      const more = pending.size > 1 ? ` (and ${pending.size - 1} more next hops)` : '';
      throw new FieldError(
        want.field,
        `no MAC for ${want.address}${via} on ${want.dev}: no answer to ${proto} within ${RESOLVE_TIMEOUT_MS} ms${more} — is the application up? ${GIVE_MAC}`,
      );
    }
  }
}
