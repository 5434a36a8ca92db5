/**
 * A multi-host test network in network namespaces, for e2e tests, the demo
 * and benchmarks:
 *
 *     client ─┐
 *     remote ─┴ fabric (router) ── hostA ── app x (10.200.0.10), app y (10.200.0.11)
 *                              └── hostB ── app x (same address: the migration target)
 *
 * - `client` (eth0 10.100.0.2/24, fd00:100::2/64) and `remote` (eth0
 *   10.101.0.2/24, fd00:101::2/64) route everything via the fabric. The
 *   client keeps the veth's default offloads, so what it sends carries
 *   partial checksums, as from any other namespace of the same kernel;
 *   `remote` has TX checksum offload off, like a sender behind a NIC.
 * - each host (eth0 10.<i>.0.2/24, fd00:<i>::2/64, i = 1, 2, …) has its
 *   uplink to the fabric; the uplink address is the host's tunnel address.
 * - the fabric routes each application's /32 (/128) to one host; announce()
 *   moves it (the "announce" step of a migration).
 *
 * How applications hang off their host (`appLink`):
 * - 'routed' (default): each app in its own namespace behind a veth (host
 *   side named as given, app side `eth0`), its address a /32 (/128) on eth0
 *   beside a link address, and the host routing `ADDR/32 via <link address>
 *   dev <veth>` — an app behind a next hop, as container runtimes and
 *   routed pod networks set them up;
 * - 'bridge': every app's veth on one Linux bridge `rsbr0` per host
 *   (10.200.0.1/24, fd00:200::1/64, like docker0), apps on its subnet.
 *
 * The default is a host nobody prepared for routeshift: veths keep their
 * default offloads, no peer runs an XDP program, neighbours are learnt by
 * ARP/ND. `prepared: true` builds the first testbed instead: rs_pass (from
 * bpf/uplink.o) on every veth peer that native XDP frames arrive at (the
 * fabric side of each uplink, every app's eth0), checksum offloads off,
 * permanent neighbour entries, apps with a /32 and an on-link host route —
 * the layout where native XDP redirects deliver. Each knob can also be set
 * on its own (peerXdp, offloads, staticNeighbours).
 *
 * Inside the namespaces: forwarding on (v4 and v6), rp_filter 0, DAD off.
 * Every MAC is deterministic (see macOf). Nothing here touches the root
 * namespace; destroy() deletes every namespace by exact name, and Netns
 * deletes them at process exit too.
 */
import { join } from 'node:path';
import { BpfObject, inNetns, ifindexOf, type Program } from '../bpf/index.js';
import { repoRoot } from '../bpf/native.js';
import { PROGRAMS, type DeliverValue, type Path, type RedirectValue } from '../datapath/structs.js';
import { Netns, uniquePrefix, veth, type VethEnd } from './netns.js';

export type PeerXdp = 'native' | 'generic' | 'none';
export type AppLink = 'routed' | 'bridge';

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
  /** The first testbed's layout, prepared for native XDP (see above); default false. */
  prepared?: boolean;
  /** How apps hang off their host (default 'routed'). */
  appLink?: AppLink;
  /** XDP_PASS program on the peers of veths that receive native XDP frames (default 'none'; prepared: 'native'). */
  peerXdp?: PeerXdp;
  /** Checksum offloads of every veth: the kernel's defaults, or off as a NIC's wire delivers (default 'default'; prepared: 'off'). */
  offloads?: 'default' | 'off';
  /** Permanent neighbour entries everywhere instead of ARP/ND (default false; prepared: true). */
  staticNeighbours?: boolean;
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
/** The bridge of appLink 'bridge' and its addresses (the apps' gateway). */
export const BRIDGE = { dev: 'rsbr0', addr4: '10.200.0.1', prefix4: 24, addr6: 'fd00:200::1', prefix6: 64 } as const;

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
  /**
   * The host device packets for the app go to — its veth, or the bridge
   * (appLink 'bridge') — with its ifindex (in the host namespace) and MAC
   * (the source MAC of entries).
   */
  hostDev: string;
  hostIfindex: number;
  hostMac: string;
  /** The host side of the app's veth (the bridge port with appLink 'bridge'). */
  vethDev: string;
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

/** The /30 of an app's veth in appLink 'routed' (100.64.0.0/10, shared address space): host side .1, app side .2. */
function linkNet4(link: number): { host: string; app: string } {
  const base = link * 4;
  const net = `100.${64 + ((base >> 16) & 63)}.${(base >> 8) & 255}`;
  return { host: `${net}.${(base & 255) + 1}`, app: `${net}.${(base & 255) + 2}` };
}
const LINK6 = { host: 'fe80::1', app: 'fe80::2' } as const;

export class Topology implements Disposable {
  readonly prefix: string;
  readonly ipv6: boolean;
  readonly peerXdp: PeerXdp;
  readonly appLink: AppLink;
  readonly offloads: 'default' | 'off';
  readonly staticNeighbours: boolean;
  /** Apps as the first testbed made them: on-link /32 routes, permanent neighbours. */
  readonly prepared: boolean;
  readonly client: ClientNode;
  readonly remote: ClientNode;
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
    this.prepared = opts.prepared ?? false;
    this.peerXdp = opts.peerXdp ?? (this.prepared ? 'native' : 'none');
    this.offloads = opts.offloads ?? (this.prepared ? 'off' : 'default');
    this.staticNeighbours = opts.staticNeighbours ?? this.prepared;
    this.appLink = opts.appLink ?? 'routed';
    this.#objectPath = opts.objectPath ?? join(repoRoot(), 'bpf', 'uplink.o');
    this.fabric = this.#ns('fab');
    this.client = { ns: this.#ns('cl'), dev: 'eth0', addr4: '10.100.0.2', addr6: 'fd00:100::2', mac: macOf(0, 0, 2) };
    this.remote = { ns: this.#ns('rm'), dev: 'eth0', addr4: '10.101.0.2', addr6: 'fd00:101::2', mac: macOf(0, 1, 2) };
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

  /** The delivery path into an app's host device that works on this layout (for entries written by hand). */
  pathFor(): { path: Path; slowPath: Path } {
    const tc: Path = this.appLink === 'bridge' ? 'tc' : 'tc-peer';
    return this.peerXdp !== 'none' && this.appLink === 'routed' ? { path: 'xdp', slowPath: tc } : { path: tc, slowPath: tc };
  }

  /** The redirect entry that delivers `app` on its own host (LOCAL). */
  localEntry(app: AppNode, appId: number): RedirectValue {
    return { action: 'local', appId, ifindex: app.hostIfindex, dmac: app.mac, smac: app.hostMac, ...this.pathFor() };
  }

  /** The delivery entry for `app` on its host (the destination role). */
  deliverEntry(app: AppNode, appId: number): DeliverValue {
    return { appId, ifindex: app.hostIfindex, dmac: app.mac, smac: app.hostMac, ...this.pathFor() };
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
    const vethDev = spec.hostDev ?? `v${spec.name}`;
    const app: AppNode = {
      name: spec.name,
      host: spec.host,
      ns,
      addr4: spec.addr4,
      addr6: spec.addr6 ?? v6For(spec.addr4),
      mac: macOf(h.index, link, 2),
      hostDev: this.appLink === 'bridge' ? BRIDGE.dev : vethDev,
      hostIfindex: 0,
      hostMac: macOf(h.index, link, 1),
      vethDev,
    };
    this.#veth({ ns: h.ns, dev: vethDev, mac: app.hostMac }, { ns, dev: 'eth0', mac: app.mac });
    if (this.appLink === 'bridge') this.#bridged(h, app);
    else if (this.prepared) this.#onLink(h, app);
    else this.#routed(h, app, link);
    const dev = h.ns.link(app.hostDev);
    app.hostIfindex = dev.ifindex;
    app.hostMac = dev.mac;
    // the app's eth0 receives native XDP redirects (LOCAL, delivery) when prepared
    this.#attachPass(ns, 'eth0');
    this.apps.push(app);
    const announce = spec.announced ?? !this.apps.some((a) => a !== app && a.addr4 === app.addr4);
    if (announce) this.announce(app.name, app.host);
    return app;
  }

  /** The first testbed's app: a /32 on eth0, on-link host route, permanent neighbours both ways. */
  #onLink(h: HostNode, app: AppNode): void {
    const six = this.ipv6;
    app.ns.ipBatch([
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
    h.ns.ipBatch([
      `route add ${app.addr4}/32 dev ${app.vethDev}`,
      `neigh replace ${app.addr4} lladdr ${app.mac} dev ${app.vethDev} nud permanent`,
      ...(six
        ? [
            `route add ${app.addr6}/128 dev ${app.vethDev}`,
            `neigh replace ${app.addr6} lladdr ${app.mac} dev ${app.vethDev} nud permanent`,
          ]
        : []),
    ]);
  }

  /** An app behind a next hop: its /32 beside a link address, the host routing the /32 via that address. */
  #routed(h: HostNode, app: AppNode, link: number): void {
    const six = this.ipv6;
    const l4 = linkNet4(link);
    app.ns.ipBatch([
      `addr add ${app.addr4}/32 dev eth0`,
      `addr add ${l4.app}/30 dev eth0`,
      `route add default via ${l4.host} dev eth0 src ${app.addr4}`,
      ...(six
        ? [
            `addr add ${app.addr6}/128 dev eth0 nodad`,
            `addr add ${LINK6.app}/64 dev eth0 nodad`,
            `route add default via ${LINK6.host} dev eth0 src ${app.addr6}`,
          ]
        : []),
    ]);
    h.ns.ipBatch([
      `addr add ${l4.host}/30 dev ${app.vethDev}`,
      `route add ${app.addr4}/32 via ${l4.app} dev ${app.vethDev}`,
      ...(six
        ? [`addr add ${LINK6.host}/64 dev ${app.vethDev} nodad`, `route add ${app.addr6}/128 via ${LINK6.app} dev ${app.vethDev}`]
        : []),
    ]);
    if (this.staticNeighbours) {
      app.ns.ipBatch([`neigh replace ${l4.host} lladdr ${app.hostMac} dev eth0 nud permanent`]);
      h.ns.ipBatch([`neigh replace ${l4.app} lladdr ${app.mac} dev ${app.vethDev} nud permanent`]);
    }
  }

  /** An app on the host's bridge (docker0-like): its address on the bridge's subnet, the bridge its gateway. */
  #bridged(h: HostNode, app: AppNode): void {
    const six = this.ipv6;
    h.ns.ip('link', 'set', 'dev', app.vethDev, 'master', BRIDGE.dev);
    app.ns.ipBatch([
      `addr add ${app.addr4}/${BRIDGE.prefix4} dev eth0`,
      `route add default via ${BRIDGE.addr4} dev eth0`,
      ...(six ? [`addr add ${app.addr6}/${BRIDGE.prefix6} dev eth0 nodad`, `route add default via ${BRIDGE.addr6} dev eth0`] : []),
    ]);
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

  #veth(a: VethEnd, b: VethEnd, offloads: 'default' | 'off' = this.offloads): void {
    veth(a, b, { offloads });
  }

  /** Permanent neighbour lines, or none when neighbours are learnt (staticNeighbours off). */
  #neigh(lines: string[]): string[] {
    return this.staticNeighbours ? lines : [];
  }

  #build(hostNames: string[], apps: AppPlacement[]): void {
    const six = this.ipv6;
    const f = this.fabric;
    const fabricLines: string[] = [];
    // clients <-> fabric: the client as configured, the remote as from a NIC (no partial checksums)
    for (const [c, dev, net, offloads] of [
      [this.client, 'cl', 100, this.offloads],
      [this.remote, 'rm', 101, 'off'],
    ] as const) {
      const gw4 = `10.${net}.0.1`;
      const gw6 = `fd00:${net}::1`;
      const gwMac = macOf(0, net - 100, 1);
      this.#veth(
        { ns: f, dev, mac: gwMac, addrs: [`${gw4}/24`, ...(six ? [`${gw6}/64`] : [])] },
        { ns: c.ns, dev: 'eth0', mac: c.mac, addrs: [`${c.addr4}/24`, ...(six ? [`${c.addr6}/64`] : [])] },
        offloads,
      );
      c.ns.ipBatch([
        ...this.#neigh([`neigh replace ${gw4} lladdr ${gwMac} dev eth0 nud permanent`]),
        `route add default via ${gw4} dev eth0`,
        ...(six ? [...this.#neigh([`neigh replace ${gw6} lladdr ${gwMac} dev eth0 nud permanent`]), `route add default via ${gw6} dev eth0`] : []),
      ]);
      fabricLines.push(...this.#neigh([`neigh replace ${c.addr4} lladdr ${c.mac} dev ${dev} nud permanent`]));
      if (six) fabricLines.push(...this.#neigh([`neigh replace ${c.addr6} lladdr ${c.mac} dev ${dev} nud permanent`]));
    }

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
      this.#veth(
        { ns: f, dev: h.fabricDev, mac: h.fabricMac, addrs: [`${h.fabricAddr4}/24`, ...(six ? [`${h.fabricAddr6}/64`] : [])] },
        { ns, dev: 'eth0', mac: h.mac, addrs: [`${h.addr4}/24`, ...(six ? [`${h.addr6}/64`] : [])] },
      );
      ns.ipBatch([
        ...this.#neigh([`neigh replace ${h.fabricAddr4} lladdr ${h.fabricMac} dev eth0 nud permanent`]),
        `route add default via ${h.fabricAddr4} dev eth0`,
        ...(six
          ? [...this.#neigh([`neigh replace ${h.fabricAddr6} lladdr ${h.fabricMac} dev eth0 nud permanent`]), `route add default via ${h.fabricAddr6} dev eth0`]
          : []),
      ]);
      if (this.appLink === 'bridge') {
        ns.ipBatch([
          `link add ${BRIDGE.dev} type bridge`,
          `addr add ${BRIDGE.addr4}/${BRIDGE.prefix4} dev ${BRIDGE.dev}`,
          ...(six ? [`addr add ${BRIDGE.addr6}/${BRIDGE.prefix6} dev ${BRIDGE.dev} nodad`] : []),
          `link set ${BRIDGE.dev} up`,
        ]);
      }
      fabricLines.push(...this.#neigh([`neigh replace ${h.addr4} lladdr ${h.mac} dev ${h.fabricDev} nud permanent`]));
      if (six) fabricLines.push(...this.#neigh([`neigh replace ${h.addr6} lladdr ${h.mac} dev ${h.fabricDev} nud permanent`]));
      h.ifindex = ns.link('eth0').ifindex;
      // the fabric side receives the host's native XDP_TX (FORWARD) when prepared
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
      this.#pass = obj.program(PROGRAMS.pass);
    }
    const prog = this.#pass;
    inNetns(ns.name, () => prog.attachXdp(ifindexOf(dev), { mode, replace: true }));
  }
}
