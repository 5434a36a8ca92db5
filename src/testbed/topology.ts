/**
 * A multi-host test network in network namespaces, for e2e tests, the demo
 * and benchmarks:
 *
 *     client ── fabric (router) ── hostA ── app x (10.200.0.10), app y (10.200.0.11)
 *                              └── hostB ── app x (same address: the migration target)
 *
 * - `client` (eth0 10.100.0.2/24, fd00:100::2/64) routes everything via the
 *   fabric.
 * - each host (eth0 10.<i>.0.2/24, fd00:<i>::2/64, i = 1, 2, …) has its
 *   uplink to the fabric; the uplink address is the host's tunnel address.
 * - each application lives in its own namespace, joined to its host by a
 *   veth (host side named as given, app side `eth0`), with a /32 and /128
 *   address and a default route to the host (169.254.1.1 / fe80::1, resolved
 *   by permanent neighbour entries).
 * - the fabric routes each application's /32 (/128) to one host; announce()
 *   moves it (the "announce" step of a migration).
 *
 * Every MAC is deterministic (see macOf) and every neighbour on the path is
 * a permanent entry, so nothing depends on ARP/ND timing. Inside the
 * namespaces: forwarding on (v4 and v6), rp_filter 0, DAD off, and
 * accept_local 1 on host uplinks (the data plane hands the kernel
 * encapsulated packets with our own tunnel address as source when a next
 * hop is unresolved).
 *
 * Kernel facts (DESIGN.md): a frame sent by native XDP (XDP_TX, or a
 * redirect) into a veth is delivered only if the receiving peer runs an XDP
 * program. With `peerXdp` ('native' by default) rs_pass from bpf/uplink.o is
 * attached on every such peer: the fabric side of each host uplink (XDP_TX
 * of FORWARD) and the app side `eth0` of every app veth (LOCAL and delivery
 * redirects). Use 'generic' to attach it in generic mode, or 'none' when
 * the host programs run in generic mode (which delivers unconditionally).
 *
 * Nothing here touches the root namespace; destroy() deletes every
 * namespace by exact name, and Netns deletes them at process exit too.
 */
import { join } from 'node:path';
import { BpfObject, inNetns, ifindexOf, type Program } from '../bpf/index.js';
import { repoRoot } from '../bpf/native.js';
import type { DeliverValue, RedirectValue } from '../datapath/structs.js';
import { Netns, uniquePrefix, veth } from './netns.js';

export type PeerXdp = 'native' | 'generic' | 'none';

export interface AppPlacement {
  /** Short name (letters/digits, ≤ 6 chars), e.g. 'x'. */
  name: string;
  /** Host name, e.g. 'A'. */
  host: string;
  /** IPv4 address (a /32 in the app namespace). */
  addr4: string;
  /** IPv6 address (a /128), when IPv6 is on; default fd00:200::<last v4 octet>. */
  addr6?: string;
  /** Host-side veth name; default `v<name>`. */
  hostDev?: string;
  /** Whether the fabric routes this app to this host now (default: the first placement of an address). */
  announced?: boolean;
}

export interface TopologyOptions {
  /** Namespace name prefix; default uniquePrefix('rs'). Keep it short (≤ 12 chars). */
  prefix?: string;
  /** Host names, default ['A', 'B']; host i (1-based) uses 10.i.0.0/24 and fd00:i::/64. */
  hosts?: string[];
  /** Applications; default x and y on A (see DEFAULT_APPS). */
  apps?: AppPlacement[];
  /** IPv6 addresses and routes too (default true). */
  ipv6?: boolean;
  /** XDP_PASS program on the peers of veths that receive native XDP frames (default 'native'). */
  peerXdp?: PeerXdp;
  /** Object holding rs_pass; default bpf/uplink.o. */
  objectPath?: string;
}

export const DEFAULT_APPS: AppPlacement[] = [
  { name: 'x', host: 'A', addr4: '10.200.0.10' },
  { name: 'y', host: 'A', addr4: '10.200.0.11' },
];

/** The default apps plus x also placed on B (not announced): the usual migration setup. */
export const MIGRATION_APPS: AppPlacement[] = [...DEFAULT_APPS, { name: 'x', host: 'B', addr4: '10.200.0.10' }];

export const APP_GATEWAY4 = '169.254.1.1';
export const APP_GATEWAY6 = 'fe80::1';

export interface ClientNode {
  ns: Netns;
  dev: 'eth0';
  addr4: string;
  addr6: string;
  mac: string;
}

export interface HostNode {
  name: string;
  /** 1-based index: addresses 10.<index>.0.2. */
  index: number;
  ns: Netns;
  uplink: 'eth0';
  /** The uplink ifindex inside the host namespace. */
  ifindex: number;
  /** Tunnel (uplink) addresses. */
  addr4: string;
  addr6: string;
  mac: string;
  /** The fabric's side of this uplink. */
  fabricDev: string;
  fabricAddr4: string;
  fabricAddr6: string;
  fabricMac: string;
}

export interface AppNode {
  name: string;
  host: string;
  ns: Netns;
  addr4: string;
  addr6: string;
  /** MAC of the app's eth0: the destination MAC of LOCAL/delivery entries. */
  mac: string;
  /** Host-side veth: its name, ifindex (in the host namespace) and MAC (the source MAC of entries). */
  hostDev: string;
  hostIfindex: number;
  hostMac: string;
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

/**
 * Deterministic MACs: 02:72:73:<node>:<link>:<side>, node = host index (0 =
 * client/fabric), link = 0 for uplinks or 1 + app number, side 1 = the
 * fabric/host side, 2 = the far side.
 */
export function macOf(node: number, link: number, side: 1 | 2): string {
  return `02:72:73:${hex2(node)}:${hex2(link)}:${hex2(side)}`;
}

function v6For(addr4: string): string {
  const last = Number(addr4.split('.')[3]);
  return `fd00:200::${last.toString(16)}`;
}

export class Topology implements Disposable {
  readonly prefix: string;
  readonly ipv6: boolean;
  readonly peerXdp: PeerXdp;
  readonly client: ClientNode;
  readonly fabric: Netns;
  readonly hosts: Record<string, HostNode> = {};
  readonly apps: AppNode[] = [];
  readonly #namespaces: Netns[] = [];
  readonly #objectPath: string;
  #appCounter = 0;
  #pass: Program | undefined;
  #destroyed = false;

  private constructor(opts: TopologyOptions) {
    this.prefix = opts.prefix ?? uniquePrefix('rs');
    this.ipv6 = opts.ipv6 ?? true;
    this.peerXdp = opts.peerXdp ?? 'native';
    this.#objectPath = opts.objectPath ?? join(repoRoot(), 'bpf', 'uplink.o');
    this.fabric = this.#ns('fab');
    const cns = this.#ns('cl');
    this.client = { ns: cns, dev: 'eth0', addr4: '10.100.0.2', addr6: 'fd00:100::2', mac: macOf(0, 0, 2) };
  }

  /** Build the whole network. On any failure everything made so far is deleted. */
  static create(opts: TopologyOptions = {}): Topology {
    const topo = new Topology(opts);
    try {
      topo.#build(opts.hosts ?? ['A', 'B'], opts.apps ?? DEFAULT_APPS);
    } catch (err) {
      topo.destroy();
      throw err;
    }
    return topo;
  }

  // ------------------------------------------------------------ lookups --

  host(name: string): HostNode {
    const h = this.hosts[name];
    if (!h) throw new Error(`topology has no host ${name} (hosts: ${Object.keys(this.hosts).join(', ')})`);
    return h;
  }

  /** The app placed on `host` (default: its first placement). */
  app(name: string, host?: string): AppNode {
    const a = this.apps.find((x) => x.name === name && (host === undefined || x.host === host));
    if (!a) throw new Error(`topology has no app ${name}${host ? ` on host ${host}` : ''}`);
    return a;
  }

  /** The redirect entry that delivers `app` on its own host (LOCAL). */
  localEntry(app: AppNode, appId: number): RedirectValue {
    return { action: 'local', appId, ifindex: app.hostIfindex, dmac: app.mac, smac: app.hostMac };
  }

  /** The delivery entry for `app` on its host (the destination role). */
  deliverEntry(app: AppNode, appId: number): DeliverValue {
    return { appId, ifindex: app.hostIfindex, dmac: app.mac, smac: app.hostMac };
  }

  /** The redirect entry on the source host that forwards to `toHost` (IPv4 or IPv6 tunnel). */
  forwardEntry(toHost: string, appId: number, family: 4 | 6 = 4): RedirectValue {
    const h = this.host(toHost);
    return { action: 'forward', appId, tunnel: family === 4 ? h.addr4 : h.addr6 };
  }

  /** Namespace names, in creation order. */
  namespaces(): string[] {
    return this.#namespaces.map((n) => n.name);
  }

  // ----------------------------------------------------------- changes --

  /**
   * The announce step: the fabric routes the application's address(es) to
   * `host` from now on (ip route replace, atomic per route).
   */
  announce(appName: string, host: string): void {
    const h = this.host(host);
    const a = this.app(appName);
    const lines = [`route replace ${a.addr4}/32 via ${h.addr4} dev ${h.fabricDev}`];
    if (this.ipv6) lines.push(`route replace ${a.addr6}/128 via ${h.addr6} dev ${h.fabricDev}`);
    this.fabric.ipBatch(lines);
  }

  /** Place an application behind a host (e.g. start X on B during a migration). */
  addApp(spec: AppPlacement): AppNode {
    const h = this.host(spec.host);
    if (this.apps.some((a) => a.name === spec.name && a.host === spec.host)) {
      throw new Error(`app ${spec.name} is already on host ${spec.host}`);
    }
    if (!/^[a-z0-9]{1,6}$/.test(spec.name)) throw new Error(`app name ${spec.name}: 1-6 lowercase letters/digits`);
    const link = ++this.#appCounter;
    const ns = this.#ns(`${spec.name}${spec.host}`);
    const app: AppNode = {
      name: spec.name,
      host: spec.host,
      ns,
      addr4: spec.addr4,
      addr6: spec.addr6 ?? v6For(spec.addr4),
      mac: macOf(h.index, link, 2),
      hostDev: spec.hostDev ?? `v${spec.name}`,
      hostIfindex: 0,
      hostMac: macOf(h.index, link, 1),
    };
    const six = this.ipv6;
    veth({ ns: h.ns, dev: app.hostDev, mac: app.hostMac }, { ns, dev: 'eth0', mac: app.mac });
    // app side: its addresses, default route to the host, the host's MAC pinned
    ns.ipBatch([
      `addr add ${app.addr4}/32 dev eth0`,
      `neigh replace ${APP_GATEWAY4} lladdr ${app.hostMac} dev eth0 nud permanent`,
      `route add default via ${APP_GATEWAY4} dev eth0 onlink`,
      ...(six
        ? [
            `addr add ${app.addr6}/128 dev eth0 nodad`,
            `neigh replace ${APP_GATEWAY6} lladdr ${app.hostMac} dev eth0 nud permanent`,
            `route add default via ${APP_GATEWAY6} dev eth0`,
          ]
        : []),
    ]);
    // host side: a route to the app and its MAC pinned
    h.ns.ipBatch([
      `route add ${app.addr4}/32 dev ${app.hostDev}`,
      `neigh replace ${app.addr4} lladdr ${app.mac} dev ${app.hostDev} nud permanent`,
      ...(six
        ? [
            `route add ${app.addr6}/128 dev ${app.hostDev}`,
            `neigh replace ${app.addr6} lladdr ${app.mac} dev ${app.hostDev} nud permanent`,
          ]
        : []),
    ]);
    app.hostIfindex = h.ns.link(app.hostDev).ifindex;
    // the app's eth0 receives native XDP redirects (LOCAL, delivery)
    this.#attachPass(ns, 'eth0');
    this.apps.push(app);
    const announce = spec.announced ?? !this.apps.some((a) => a !== app && a.addr4 === app.addr4);
    if (announce) this.announce(app.name, app.host);
    return app;
  }

  /** Remove one placement of an application (its namespace is deleted). */
  removeApp(name: string, host: string): void {
    const app = this.app(name, host);
    // the host-side veth goes with the namespace, and the host's routes with it
    app.ns.delete();
    this.apps.splice(this.apps.indexOf(app), 1);
  }

  /** Names of every namespace of this topology (for cleanup after keep()). */
  namespaceNames(): string[] {
    return this.#namespaces.map((ns) => ns.name);
  }

  /** Leave the whole network up when the process exits; destroy() becomes a no-op. */
  keep(): void {
    for (const ns of this.#namespaces) ns.keep();
    this.#destroyed = true;
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const ns of [...this.#namespaces].reverse()) ns.delete();
    this.#pass?.close();
    this.#pass = undefined;
  }

  [Symbol.dispose](): void {
    this.destroy();
  }

  // ------------------------------------------------------------- build --

  #ns(suffix: string): Netns {
    const ns = Netns.create(`${this.prefix}-${suffix}`);
    this.#namespaces.push(ns);
    // before any link exists, so every interface inherits these defaults
    const keys = [
      'net.ipv4.ip_forward=1',
      'net.ipv4.conf.all.rp_filter=0',
      'net.ipv4.conf.default.rp_filter=0',
    ];
    if (this.ipv6) {
      keys.push(
        'net.ipv6.conf.all.forwarding=1',
        'net.ipv6.conf.all.accept_dad=0',
        'net.ipv6.conf.default.accept_dad=0',
        'net.ipv6.conf.default.dad_transmits=0',
      );
    } else {
      keys.push('net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
    }
    ns.exec('sysctl', '-qw', ...keys);
    return ns;
  }

  #build(hostNames: string[], apps: AppPlacement[]): void {
    const six = this.ipv6;
    const f = this.fabric;
    const c = this.client;
    // client <-> fabric
    veth(
      { ns: f, dev: 'cl', mac: macOf(0, 0, 1), addrs: ['10.100.0.1/24', ...(six ? ['fd00:100::1/64'] : [])] },
      { ns: c.ns, dev: 'eth0', mac: c.mac, addrs: [`${c.addr4}/24`, ...(six ? [`${c.addr6}/64`] : [])] },
    );
    c.ns.ipBatch([
      `neigh replace 10.100.0.1 lladdr ${macOf(0, 0, 1)} dev eth0 nud permanent`,
      'route add default via 10.100.0.1 dev eth0',
      ...(six
        ? [`neigh replace fd00:100::1 lladdr ${macOf(0, 0, 1)} dev eth0 nud permanent`, 'route add default via fd00:100::1 dev eth0']
        : []),
    ]);
    const fabricLines = [`neigh replace ${c.addr4} lladdr ${c.mac} dev cl nud permanent`];
    if (six) fabricLines.push(`neigh replace ${c.addr6} lladdr ${c.mac} dev cl nud permanent`);

    // hosts <-> fabric
    hostNames.forEach((name, i) => {
      const index = i + 1;
      if (!/^[A-Za-z0-9]{1,3}$/.test(name)) throw new Error(`host name ${name}: 1-3 letters/digits`);
      const ns = this.#ns(`h${name}`);
      const h: HostNode = {
        name,
        index,
        ns,
        uplink: 'eth0',
        ifindex: 0,
        addr4: `10.${index}.0.2`,
        addr6: `fd00:${index.toString(16)}::2`,
        mac: macOf(index, 0, 2),
        fabricDev: `h${name}`,
        fabricAddr4: `10.${index}.0.1`,
        fabricAddr6: `fd00:${index.toString(16)}::1`,
        fabricMac: macOf(index, 0, 1),
      };
      veth(
        { ns: f, dev: h.fabricDev, mac: h.fabricMac, addrs: [`${h.fabricAddr4}/24`, ...(six ? [`${h.fabricAddr6}/64`] : [])] },
        { ns, dev: 'eth0', mac: h.mac, addrs: [`${h.addr4}/24`, ...(six ? [`${h.addr6}/64`] : [])] },
      );
      ns.exec('sysctl', '-qw', 'net.ipv4.conf.eth0.accept_local=1', 'net.ipv4.conf.eth0.rp_filter=0');
      ns.ipBatch([
        `neigh replace ${h.fabricAddr4} lladdr ${h.fabricMac} dev eth0 nud permanent`,
        `route add default via ${h.fabricAddr4} dev eth0`,
        ...(six
          ? [
              `neigh replace ${h.fabricAddr6} lladdr ${h.fabricMac} dev eth0 nud permanent`,
              `route add default via ${h.fabricAddr6} dev eth0`,
            ]
          : []),
      ]);
      fabricLines.push(`neigh replace ${h.addr4} lladdr ${h.mac} dev ${h.fabricDev} nud permanent`);
      if (six) fabricLines.push(`neigh replace ${h.addr6} lladdr ${h.mac} dev ${h.fabricDev} nud permanent`);
      h.ifindex = ns.link('eth0').ifindex;
      // the fabric side receives the host's native XDP_TX (FORWARD)
      this.#attachPass(f, h.fabricDev);
      this.hosts[name] = h;
    });
    f.ipBatch(fabricLines);
    for (const a of apps) this.addApp(a);
  }

  #attachPass(ns: Netns, dev: string): void {
    if (this.peerXdp === 'none') return;
    const mode = this.peerXdp;
    if (!this.#pass) {
      using obj = BpfObject.load(this.#objectPath, { maxEntries: { rs_redirect: 1, rs_deliver: 1, rs_app_stats: 1 } });
      this.#pass = obj.program('rs_pass');
    }
    const prog = this.#pass;
    inNetns(ns.name, () => prog.attachXdp(ifindexOf(dev), { mode, replace: true }));
  }
}
