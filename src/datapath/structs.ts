/**
 * TypeScript mirror of bpf/routeshift.h: the layout of every struct shared
 * with the BPF programs, the enum values, and one Codec per struct. The
 * codecs are built from LAYOUT, and test/datapath-btf.test.ts checks LAYOUT,
 * ENUMS and MAPS against the BTF of bpf/uplink.o, so a change to the header
 * that is not made here fails the test.
 *
 * Byte order: multi-byte integers are host order (little endian on x86-64
 * and arm64), except the key's port, which is network order like the packet.
 */
import type { Codec } from '../bpf/codec.js';
import { formatAddress, formatIPv4, formatIPv6, formatMac, ipv4Number, macNumber, parseAddress, parseIPv4, parseIPv6, writeAddress, writeMac } from '../model/address.js';
import type { Family } from '../model/address.js';
import { PORTED_PROTOCOLS, protoName, protoNumber, type AppKey, type Path } from '../model/entry.js';

export type { AppKey, Path } from '../model/entry.js';

// ---------------------------------------------------------------- layout --

interface FieldLayout {
  readonly offset: number;
  readonly size: number;
}
interface StructLayout {
  readonly size: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
}

const f = (offset: number, size: number): FieldLayout => ({ offset, size });

/** Struct name (as in C) -> size, and field name (as in C) -> offset and size. */
export const LAYOUT = {
  rs_app_key: {
    size: 20,
    fields: { family: f(0, 1), proto: f(1, 1), port: f(2, 2), addr: f(4, 16) },
  },
  rs_redirect_value: {
    size: 48,
    fields: {
      action: f(0, 4),
      app_id: f(4, 4),
      ifindex: f(8, 4),
      flags: f(12, 4),
      dmac: f(16, 6),
      smac: f(22, 6),
      tunnel_family: f(28, 1),
      path: f(29, 1),
      slow_path: f(30, 1),
      pad: f(31, 1),
      tunnel_dst: f(32, 16),
    },
  },
  rs_deliver_value: {
    size: 24,
    fields: { app_id: f(0, 4), ifindex: f(4, 4), dmac: f(8, 6), smac: f(14, 6), path: f(20, 1), slow_path: f(21, 1), pad: f(22, 2) },
  },
  rs_counter: {
    size: 16,
    fields: { packets: f(0, 8), bytes: f(8, 8) },
  },
  rs_app_stats: {
    size: 48,
    fields: { by_action: f(0, 48) },
  },
  rs_config: {
    size: 32,
    fields: { tunnel_addr4: f(0, 4), tunnel_addr6: f(4, 16), mtu: f(20, 4), flags: f(24, 4), meta_cookie: f(28, 4) },
  },
  rs_pending: {
    size: 16,
    fields: { app_id: f(0, 4), stat: f(4, 4), bytes: f(8, 4), pad: f(12, 4) },
  },
  rs_watch_config: {
    size: 8,
    fields: { uplink_prog_id: f(0, 4), pad: f(4, 4) },
  },
  rs_flow_key: {
    size: 40,
    fields: { saddr: f(0, 16), daddr: f(16, 16), sport: f(32, 2), dport: f(34, 2), family: f(36, 1), proto: f(37, 1), pad: f(38, 2) },
  },
  rs_new_flow: {
    size: 8,
    fields: { app_id: f(0, 4), pad: f(4, 4) },
  },
  rs_old_flow: {
    size: 16,
    fields: { last_ns: f(0, 8), app_id: f(8, 4), flags: f(12, 4) },
  },
  rs_flow_stats: {
    size: 24,
    fields: { by_kind: f(0, 24) },
  },
  rs_nexthop: {
    size: 48,
    fields: {
      refreshed_jiffies: f(0, 8),
      in_ifindex: f(8, 4),
      out_ifindex: f(12, 4),
      family: f(16, 1),
      tos: f(17, 1),
      mtu: f(18, 2),
      dst: f(20, 16),
      dmac: f(36, 6),
      smac: f(42, 6),
    },
  },
} as const satisfies Record<string, StructLayout>;

export type StructName = keyof typeof LAYOUT;

// ----------------------------------------------------------------- enums --

/** enum rs_action. preserve: TCP flows from before SWITCH stay local, the rest is forwarded (bpf/flows.h). */
export const ACTIONS = { local: 1, forward: 2, preserve: 3 } as const;
export type Action = keyof typeof ACTIONS;

/**
 * RS_ACTION_PORTS_ONLY: the whole-address placeholder the agent keeps for an
 * address that has port entries but no whole-address app (the program looks
 * the whole address up first; see bpf/routeshift.h). Never an app's action.
 */
export const PORTS_ONLY_ACTION = 4;

/** enum rs_redirect_flag: bits of rs_redirect_value.flags. */
export const REDIRECT_FLAGS = { ports: 1 } as const;

/**
 * enum rs_path, in enum order: how a packet reaches an app's interface on
 * this host (bpf/routeshift.h): an XDP redirect, the uplink's TC hook
 * (bpf_redirect_peer into a veth's namespace, or bpf_redirect to a device's
 * egress), or the host's own stack.
 */
export const PATHS = ['xdp', 'tc-peer', 'tc', 'kernel'] as const satisfies readonly Path[];

/** enum rs_config_flag: bits of rs_config.flags. */
export const CONFIG_FLAGS = { skbCsum: 1, txRedirect: 2, txTc: 4 } as const;

/** How frames leave by the uplink again (FORWARD, ICMP errors): XDP_TX, an XDP redirect to the uplink itself, or the TC hook. */
export type UplinkTx = 'xdp-tx' | 'xdp-redirect' | 'tc';

/** Next-hop cache (rs_nexthop): slots per CPU and how long an answer is used (bpf/routeshift.h):
 * under NEXTHOP_TTL_TICKS jiffies, which is at most NEXTHOP_TTL_MS at any HZ (>= 100). */
export const NEXTHOP_SLOTS = 256;
export const NEXTHOP_TTL_TICKS = 2;
export const NEXTHOP_TTL_MS = 20;

/** enum rs_stat, in enum order: the per-application counter slots. */
export const STATS = ['local', 'forward', 'deliver'] as const;
export type Stat = (typeof STATS)[number];

/**
 * enum rs_drop, in enum order: why a packet was not forwarded by the
 * program, for metric labels. 'too_big' packets are answered with ICMP
 * (XDP_TX); 'ttl' packets are passed to the kernel, which answers them.
 */
export const DROP_REASONS = [
  'malformed',
  'no_route',
  'too_big',
  'no_delivery',
  'rewrite',
  'bad_entry',
  'fragmentation',
  'xmit_failed',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** enum rs_flow_stat, in enum order: per-app flow counters of the preserve action. */
export const FLOW_STATS = ['pinned', 'sent', 'refused'] as const;
export type FlowStat = (typeof FLOW_STATS)[number];

/** enum rs_flow_flag: what the client sent that ends an old flow. */
export const FLOW_FLAGS = { fin: 1, rst: 2 } as const;

/** RS_MAX_FLOWS (bpf/maps.h): entries of each flow table unless the agent is given a --flow-capacity. */
export const DEFAULT_FLOW_CAPACITY = 65536;

/** enum rs_event, in enum order: packets passed to the kernel or answered, counted. */
export const EVENTS = ['unparsed', 'no_entry', 'no_neigh', 'ttl', 'icmp_sent', 'kernel_path'] as const;
export type EventName = (typeof EVENTS)[number];

const enumOf = (prefix: string, names: readonly string[]): Record<string, number> => {
  const out: Record<string, number> = {};
  names.forEach((n, i) => (out[`${prefix}_${n.toUpperCase()}`] = i));
  out[`${prefix}_MAX`] = names.length;
  return out;
};

/** C enum name -> constant name -> value, as the BTF must show them. */
export const ENUMS: Readonly<Record<string, Readonly<Record<string, number>>>> = {
  rs_action: {
    ...Object.fromEntries(Object.entries(ACTIONS).map(([n, v]) => [`RS_ACTION_${n.toUpperCase()}`, v])),
    RS_ACTION_PORTS_ONLY: PORTS_ONLY_ACTION,
  },
  rs_redirect_flag: { RS_REDIRECT_F_PORTS: REDIRECT_FLAGS.ports },
  rs_stat: enumOf('RS_STAT', STATS),
  rs_drop: enumOf('RS_DROP', DROP_REASONS),
  rs_event: enumOf('RS_EVENT', EVENTS),
  rs_path: enumOf('RS_PATH', PATHS.map((p) => p.replace('-', '_'))),
  rs_flow_flag: { RS_FLOW_F_FIN: FLOW_FLAGS.fin, RS_FLOW_F_RST: FLOW_FLAGS.rst },
  rs_flow_stat: enumOf('RS_FLOW_STAT', FLOW_STATS),
  rs_config_flag: { RS_CONFIG_F_SKB_CSUM: CONFIG_FLAGS.skbCsum, RS_CONFIG_F_TX_REDIRECT: CONFIG_FLAGS.txRedirect, RS_CONFIG_F_TX_TC: CONFIG_FLAGS.txTc },
};

// ------------------------------------------------------------------ maps --

export interface MapSpec {
  readonly type: 'hash' | 'lru_hash' | 'array' | 'percpu_array';
  /** Struct name from LAYOUT, or 'u32' for array indexes. */
  readonly key: StructName | 'u32';
  readonly value: StructName;
  /** Default max_entries in the object; user space may override before load. */
  readonly maxEntries: number;
}

/** RS_MAX_APPS (bpf/counter_maps.h): entries per map and app ids unless the agent is given a --capacity. */
export const DEFAULT_CAPACITY = 65536;

/** The maps of bpf/uplink.o (bpf/maps.h). */
export const MAPS = {
  rs_redirect: { type: 'hash', key: 'rs_app_key', value: 'rs_redirect_value', maxEntries: DEFAULT_CAPACITY },
  rs_deliver: { type: 'hash', key: 'rs_app_key', value: 'rs_deliver_value', maxEntries: DEFAULT_CAPACITY },
  rs_app_stats: { type: 'percpu_array', key: 'u32', value: 'rs_app_stats', maxEntries: DEFAULT_CAPACITY },
  rs_drops: { type: 'percpu_array', key: 'u32', value: 'rs_counter', maxEntries: DROP_REASONS.length },
  rs_events: { type: 'percpu_array', key: 'u32', value: 'rs_counter', maxEntries: EVENTS.length },
  rs_config: { type: 'array', key: 'u32', value: 'rs_config', maxEntries: 1 },
  rs_pending: { type: 'percpu_array', key: 'u32', value: 'rs_pending', maxEntries: 1 },
  rs_nexthop: { type: 'percpu_array', key: 'u32', value: 'rs_nexthop', maxEntries: NEXTHOP_SLOTS },
  rs_new_flows: { type: 'lru_hash', key: 'rs_flow_key', value: 'rs_new_flow', maxEntries: DEFAULT_FLOW_CAPACITY },
  rs_old_flows: { type: 'lru_hash', key: 'rs_flow_key', value: 'rs_old_flow', maxEntries: DEFAULT_FLOW_CAPACITY },
  rs_flow_stats: { type: 'percpu_array', key: 'u32', value: 'rs_flow_stats', maxEntries: DEFAULT_CAPACITY },
} as const satisfies Record<string, MapSpec>;

export type MapName = keyof typeof MAPS;

/** Programs in bpf/uplink.o: the XDP program, its TC ingress half, and the XDP_PASS one for veth peers. */
export const PROGRAMS = { uplink: 'rs_uplink', tc: 'rs_uplink_tc', pass: 'rs_pass' } as const;

/** The maps of bpf/watch.o of its own (the rest are rs_uplink's, shared by fd). */
export const WATCH_MAPS = {
  rs_watch_config: { type: 'array', key: 'u32', value: 'rs_watch_config', maxEntries: 1 },
} as const satisfies Record<string, MapSpec>;

/** The maps of bpf/uplink.o that bpf/watch.o uses too (loaded with rs_uplink's, by fd). */
export const WATCH_SHARED_MAPS = ['rs_app_stats', 'rs_drops', 'rs_events', 'rs_pending'] as const;

/** Programs in bpf/watch.o (tp_btf, attached to the xdp tracepoints). */
export const WATCH_PROGRAMS = { redirectErr: 'rs_watch_redirect_err', exception: 'rs_watch_exception' } as const;

// ----------------------------------------------------------------- types --

/**
 * A redirect entry. `ports: true` (RS_REDIRECT_F_PORTS, whole-address
 * entries only) tells the program the address also has port entries; it is
 * absent otherwise. 'ports-only' is the agent's placeholder for an address
 * with port entries and no whole-address app (never shown to users).
 */
export type RedirectValue =
  | ({ action: 'local'; appId: number; ports?: true } & Target)
  | { action: 'forward'; appId: number; tunnel: string; ports?: true }
  | ({ action: 'preserve'; appId: number; tunnel: string; ports?: true } & Target)
  | { action: 'ports-only'; appId: number; ports?: true };

/** Where a LOCAL or delivery entry sends packets on this host, and by which paths. */
export interface Target {
  ifindex: number;
  dmac: string;
  smac: string;
  path: Path;
  /** Taken instead of an 'xdp' path for a packet whose checksum is still partial. */
  slowPath: Path;
}

export interface DeliverValue extends Target {
  appId: number;
}

export interface Counter {
  packets: bigint;
  bytes: bigint;
}

export type AppStats = Record<Stat, Counter>;

export interface Config {
  /** This host's IPv4 tunnel address, or null. */
  tunnelAddr4: string | null;
  /** This host's IPv6 tunnel address, or null. */
  tunnelAddr6: string | null;
  /** Outer MTU limit; 0 = the route's MTU. */
  mtu: number;
  /** The uplink's XDP sees skbs that may carry partial checksums (a veth): such packets take an entry's slow path. */
  skbCsum: boolean;
  uplinkTx: UplinkTx;
  /** Random per agent start: rs_uplink_tc trusts only handovers carrying it (0 = no TC paths). */
  metaCookie: number;
}

/** A config from what is given, the rest as a fresh data plane has it. */
export function configOf(c: Partial<Config>): Config {
  return { tunnelAddr4: null, tunnelAddr6: null, mtu: 0, skbCsum: false, uplinkTx: 'xdp-tx', metaCookie: 0, ...c };
}

// --------------------------------------------------------------- helpers --

function checkUint(what: string, value: number, max: number): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${what} must be an integer in 0..${max}, got ${String(value)}`);
  }
  return value;
}

export function pathNumber(path: Path): number {
  const n = PATHS.indexOf(path);
  if (n < 0) throw new TypeError(`unknown delivery path ${JSON.stringify(path)}: expected one of ${PATHS.join(', ')}`);
  return n;
}

/** A path byte as the program reads it; an unknown value is what the program does with it: the kernel path. */
export function pathName(n: number): Path {
  return PATHS[n] ?? 'kernel';
}

/** Write an address's 16 bytes at `offset`; returns its family. Errors name the field. */
function putAddress(address: string, into: Buffer, offset: number, what: string): Family {
  try {
    return writeAddress(address, into, offset);
  } catch (err) {
    throw new TypeError(`${what}: ${(err as Error).message}`);
  }
}

function field<S extends StructName>(s: S, name: keyof (typeof LAYOUT)[S]['fields']): number {
  return (LAYOUT[s].fields as Record<PropertyKey, FieldLayout>)[name]!.offset;
}

/*
 * The encoders of the entries the agent writes by the hundred thousand
 * (rs_app_key, rs_redirect_value, rs_deliver_value) are written for speed
 * (bench/README.md, the map layer): field offsets read from LAYOUT once,
 * here; one bounds check, then whole-word stores through a DataView (one
 * store per field, where Buffer#fill and #writeUInt32LE validate their
 * arguments on every call and byte stores cost one each); IPv4 and MAC text
 * parsed character by character into numbers, no regex, split or
 * intermediate Buffer.
 */
const KEY = LAYOUT.rs_app_key;
const KEY_FAMILY = KEY.fields.family.offset;
const KEY_PROTO = KEY.fields.proto.offset;
const KEY_PORT = KEY.fields.port.offset;
const KEY_ADDR = KEY.fields.addr.offset;
const RV = LAYOUT.rs_redirect_value;
const RV_ACTION = RV.fields.action.offset;
const RV_APP_ID = RV.fields.app_id.offset;
const RV_IFINDEX = RV.fields.ifindex.offset;
const RV_FLAGS = RV.fields.flags.offset;
const RV_DMAC = RV.fields.dmac.offset;
const RV_SMAC = RV.fields.smac.offset;
const RV_TUNNEL_FAMILY = RV.fields.tunnel_family.offset;
const RV_PATH = RV.fields.path.offset;
const RV_SLOW_PATH = RV.fields.slow_path.offset;
const RV_TUNNEL_DST = RV.fields.tunnel_dst.offset;
const DV = LAYOUT.rs_deliver_value;
const DV_APP_ID = DV.fields.app_id.offset;
const DV_IFINDEX = DV.fields.ifindex.offset;
const DV_DMAC = DV.fields.dmac.offset;
const DV_SMAC = DV.fields.smac.offset;
const DV_PATH = DV.fields.path.offset;
const DV_SLOW_PATH = DV.fields.slow_path.offset;

/**
 * A DataView of the buffer a codec writes into, kept for the last buffer:
 * a batch encodes thousands of entries into one buffer, and BpfMap's single
 * updates reuse one scratch buffer, so a view is made once per buffer, not
 * per entry. (It keeps that one buffer alive until the next one.)
 */
function viewCache(): (buf: Buffer) => DataView {
  let last: Buffer | undefined;
  let view: DataView = new DataView(new ArrayBuffer(0));
  return (buf) => {
    if (buf !== last) {
      view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      last = buf;
    }
    return view;
  };
}

function checkRoom(what: StructName, into: Buffer, offset: number, size: number): void {
  if (!(offset >= 0 && offset + size <= into.length)) {
    throw new RangeError(`${what} needs ${size} bytes at offset ${offset} of a ${into.length}-byte buffer`);
  }
}

/**
 * Zero a struct of `size` bytes (a multiple of 4) at `offset` after checking
 * it is inside the buffer: fields the encoder does not write, padding
 * included, stay zero whatever the buffer held.
 */
function clearStruct(what: StructName, into: Buffer, view: DataView, offset: number, size: number): void {
  checkRoom(what, into, offset, size);
  for (let i = 0; i < size; i += 4) view.setUint32(offset + i, 0);
}

/**
 * rs_app_key's encoder writes family, proto, port and the 16 address bytes
 * and clears nothing: true only while those fields cover the key, byte for
 * byte (a field added to the header must be written there too).
 */
function checkKeyTiled(): void {
  const f = KEY.fields;
  const sizes = [f.family, f.proto, f.port, f.addr].reduce((n, x) => n + x.size, 0);
  if (sizes !== KEY.size || f.port.size !== 2 || f.addr.size !== 16) {
    throw new Error(`rs_app_key layout changed (${KEY.size} bytes): update appKeyCodec.encode in src/datapath/structs.ts`);
  }
}
checkKeyTiled();

/**
 * One-entry memo of the last IPv4 text a field held and its number: the
 * tunnel of a drain's thousands of FORWARD entries is one address, parsed
 * once. -1: not a dotted quad (IPv6, or invalid: the slow path says which).
 */
function ipv4Memo(): (text: string) => number {
  let lastText = '';
  let lastNumber = -1;
  return (text) => {
    if (text !== lastText) {
      lastNumber = typeof text === 'string' ? ipv4Number(text) : -1;
      lastText = text;
    }
    return lastNumber;
  };
}

/** The same for MACs (a device's own MAC is every entry's source MAC). */
function macMemo(): (text: string) => number {
  let lastText = '';
  let lastNumber = 0;
  return (text) => {
    if (text !== lastText) {
      lastNumber = macNumber(text); // throws on a bad one, and the memo keeps the last good one
      lastText = text;
    }
    return lastNumber;
  };
}

/**
 * Write an address's 16 bytes (IPv4 as ::ffff:a.b.c.d) at `offset`, `v4`
 * being its dotted-quad number or -1; returns the family. Errors name the field.
 */
function storeAddress(view: DataView, into: Buffer, offset: number, text: string, v4: number, what: string): Family {
  if (v4 < 0) return putAddress(text, into, offset, what);
  view.setUint32(offset, 0);
  view.setUint32(offset + 4, 0);
  view.setUint32(offset + 8, 0xffff);
  view.setUint32(offset + 12, v4);
  return 4;
}

/** A 48-bit MAC number as its 6 bytes, first octet first. */
function storeMac(view: DataView, offset: number, mac: number): void {
  view.setUint16(offset, Math.floor(mac / 0x100000000));
  view.setUint32(offset + 2, mac % 0x100000000);
}

/** Where a struct holds a target's fields, and the MAC memos of those fields. */
interface TargetFields {
  readonly ifindex: number;
  readonly dmac: number;
  readonly smac: number;
  readonly path: number;
  readonly slowPath: number;
  readonly dmacMemo: (text: string) => number;
  readonly smacMemo: (text: string) => number;
}

const RV_TARGET: TargetFields = {
  ifindex: RV_IFINDEX,
  dmac: RV_DMAC,
  smac: RV_SMAC,
  path: RV_PATH,
  slowPath: RV_SLOW_PATH,
  dmacMemo: macMemo(),
  smacMemo: macMemo(),
};
const DV_TARGET: TargetFields = {
  ifindex: DV_IFINDEX,
  dmac: DV_DMAC,
  smac: DV_SMAC,
  path: DV_PATH,
  slowPath: DV_SLOW_PATH,
  dmacMemo: macMemo(),
  smacMemo: macMemo(),
};

/** The ifindex, MACs and paths of a LOCAL/preserve or delivery target, for the struct at `offset`. */
function storeTarget(t: Target, view: DataView, offset: number, at: TargetFields): void {
  view.setUint32(offset + at.ifindex, checkUint('ifindex', t.ifindex, 0xffffffff), true);
  storeMac(view, offset + at.dmac, at.dmacMemo(t.dmac));
  storeMac(view, offset + at.smac, at.smacMemo(t.smac));
  view.setUint8(offset + at.path, pathNumber(t.path));
  view.setUint8(offset + at.slowPath, pathNumber(t.slowPath));
}

function actionNumber(action: RedirectValue['action']): number {
  if (action === 'forward') return ACTIONS.forward;
  if (action === 'local') return ACTIONS.local;
  if (action === 'preserve') return ACTIONS.preserve;
  if (action === 'ports-only') return PORTS_ONLY_ACTION;
  throw new TypeError(`unknown action ${JSON.stringify(action)}: expected local, forward, preserve or ports-only`);
}

// ---------------------------------------------------------------- codecs --

const keyView = viewCache();
const redirectView = viewCache();
const deliverView = viewCache();
const tunnelMemo = ipv4Memo();

export const appKeyCodec: Codec<AppKey> = {
  size: LAYOUT.rs_app_key.size,
  encode(value, into, offset) {
    const proto = protoNumber(value.proto);
    const port = checkUint('port', value.port, 65535);
    if (port !== 0 && !PORTED_PROTOCOLS.has(proto)) {
      throw new RangeError(
        `port ${port} needs proto tcp or udp (the program reads ports of those only), got ${String(value.proto)}`,
      );
    }
    const view = keyView(into);
    checkRoom('rs_app_key', into, offset, KEY.size); // no clearing: the fields tile the key (checkKeyTiled)
    const address = value.address;
    const v4 = typeof address === 'string' ? ipv4Number(address) : -1;
    view.setUint8(offset + KEY_FAMILY, storeAddress(view, into, offset + KEY_ADDR, address, v4, 'application key address'));
    view.setUint8(offset + KEY_PROTO, proto);
    view.setUint16(offset + KEY_PORT, port); // network order, like the packet
  },
  decode(from, offset) {
    const at = (name: keyof typeof LAYOUT.rs_app_key.fields): number => offset + field('rs_app_key', name);
    const addr = from.subarray(at('addr'), at('addr') + 16);
    return {
      address: formatAddress(addr),
      proto: protoName(from.readUInt8(at('proto'))),
      port: from.readUInt16BE(at('port')),
    };
  },
};

export const redirectValueCodec: Codec<RedirectValue> = {
  size: LAYOUT.rs_redirect_value.size,
  encode(value, into, offset) {
    const action = actionNumber(value.action);
    const appId = checkUint('appId', value.appId, 0xffffffff);
    const view = redirectView(into);
    clearStruct('rs_redirect_value', into, view, offset, RV.size);
    view.setUint32(offset + RV_ACTION, action, true);
    view.setUint32(offset + RV_APP_ID, appId, true);
    if (value.ports) view.setUint32(offset + RV_FLAGS, REDIRECT_FLAGS.ports, true);
    if (value.action === 'ports-only') {
      // no target: the program passes what no port entry matches
    } else {
      // preserve holds both halves: the LOCAL target for old flows, the tunnel for the rest
      if (value.action !== 'forward') storeTarget(value, view, offset, RV_TARGET);
      if (value.action !== 'local') {
        const tunnel = value.tunnel;
        const family = storeAddress(view, into, offset + RV_TUNNEL_DST, tunnel, tunnelMemo(tunnel), 'tunnel address');
        view.setUint8(offset + RV_TUNNEL_FAMILY, family);
      }
    }
  },
  decode(from, offset) {
    const at = (name: keyof typeof LAYOUT.rs_redirect_value.fields): number =>
      offset + field('rs_redirect_value', name);
    const action = from.readUInt32LE(at('action'));
    const appId = from.readUInt32LE(at('app_id'));
    const ports = (from.readUInt32LE(at('flags')) & REDIRECT_FLAGS.ports) !== 0 ? { ports: true as const } : {};
    const target = (): Target => ({
      ifindex: from.readUInt32LE(at('ifindex')),
      dmac: formatMac(from.subarray(at('dmac'), at('dmac') + 6)),
      smac: formatMac(from.subarray(at('smac'), at('smac') + 6)),
      path: pathName(from.readUInt8(at('path'))),
      slowPath: pathName(from.readUInt8(at('slow_path'))),
    });
    const tunnel = (): string => {
      const dst = from.subarray(at('tunnel_dst'), at('tunnel_dst') + 16);
      return from.readUInt8(at('tunnel_family')) === 6 ? formatIPv6(dst) : formatAddress(dst);
    };
    if (action === ACTIONS.local) return { action: 'local', appId, ...target(), ...ports };
    if (action === ACTIONS.forward) return { action: 'forward', appId, tunnel: tunnel(), ...ports };
    if (action === ACTIONS.preserve) return { action: 'preserve', appId, tunnel: tunnel(), ...target(), ...ports };
    if (action === PORTS_ONLY_ACTION) return { action: 'ports-only', appId, ...ports };
    throw new RangeError(`rs_redirect_value has unknown action ${action} (expected 1 local, 2 forward, 3 preserve or 4 ports-only)`);
  },
};

export const deliverValueCodec: Codec<DeliverValue> = {
  size: LAYOUT.rs_deliver_value.size,
  encode(value, into, offset) {
    const appId = checkUint('appId', value.appId, 0xffffffff);
    const view = deliverView(into);
    clearStruct('rs_deliver_value', into, view, offset, DV.size);
    view.setUint32(offset + DV_APP_ID, appId, true);
    storeTarget(value, view, offset, DV_TARGET);
  },
  decode(from, offset) {
    const at = (name: keyof typeof LAYOUT.rs_deliver_value.fields): number =>
      offset + field('rs_deliver_value', name);
    return {
      appId: from.readUInt32LE(at('app_id')),
      ifindex: from.readUInt32LE(at('ifindex')),
      dmac: formatMac(from.subarray(at('dmac'), at('dmac') + 6)),
      smac: formatMac(from.subarray(at('smac'), at('smac') + 6)),
      path: pathName(from.readUInt8(at('path'))),
      slowPath: pathName(from.readUInt8(at('slow_path'))),
    };
  },
};

export const counterCodec: Codec<Counter> = {
  size: LAYOUT.rs_counter.size,
  encode(value, into, offset) {
    into.writeBigUInt64LE(value.packets, offset + LAYOUT.rs_counter.fields.packets.offset);
    into.writeBigUInt64LE(value.bytes, offset + LAYOUT.rs_counter.fields.bytes.offset);
  },
  decode(from, offset) {
    return {
      packets: from.readBigUInt64LE(offset + LAYOUT.rs_counter.fields.packets.offset),
      bytes: from.readBigUInt64LE(offset + LAYOUT.rs_counter.fields.bytes.offset),
    };
  },
};

/** One CPU's slot of rs_app_stats (the map wrapper sums CPUs, see sumAppStats). */
export const appStatsCodec: Codec<AppStats> = {
  size: LAYOUT.rs_app_stats.size,
  encode(value, into, offset) {
    STATS.forEach((s, i) => counterCodec.encode(value[s], into, offset + i * counterCodec.size));
  },
  decode(from, offset) {
    const out = {} as AppStats;
    STATS.forEach((s, i) => (out[s] = counterCodec.decode(from, offset + i * counterCodec.size)));
    return out;
  },
};

export const configCodec: Codec<Config> = {
  size: LAYOUT.rs_config.size,
  encode(value, into, offset) {
    const at = (name: keyof typeof LAYOUT.rs_config.fields): number => offset + field('rs_config', name);
    into.fill(0, offset, offset + this.size);
    if (value.tunnelAddr4 !== null) parseIPv4(value.tunnelAddr4).copy(into, at('tunnel_addr4'));
    if (value.tunnelAddr6 !== null) {
      const v6 = parseIPv6(value.tunnelAddr6);
      if (parseAddress(value.tunnelAddr6).family !== 6) {
        throw new TypeError(`tunnelAddr6 ${value.tunnelAddr6} is an IPv4-mapped address; set tunnelAddr4`);
      }
      v6.copy(into, at('tunnel_addr6'));
    }
    into.writeUInt32LE(checkUint('mtu', value.mtu, 0xffff), at('mtu'));
    const flags =
      (value.skbCsum ? CONFIG_FLAGS.skbCsum : 0) |
      (value.uplinkTx === 'xdp-redirect' ? CONFIG_FLAGS.txRedirect : 0) |
      (value.uplinkTx === 'tc' ? CONFIG_FLAGS.txTc : 0);
    into.writeUInt32LE(flags, at('flags'));
    into.writeUInt32LE(checkUint('metaCookie', value.metaCookie, 0xffffffff), at('meta_cookie'));
  },
  decode(from, offset) {
    const at = (name: keyof typeof LAYOUT.rs_config.fields): number => offset + field('rs_config', name);
    const a4 = from.subarray(at('tunnel_addr4'), at('tunnel_addr4') + 4);
    const a6 = from.subarray(at('tunnel_addr6'), at('tunnel_addr6') + 16);
    const flags = from.readUInt32LE(at('flags'));
    return {
      tunnelAddr4: a4.every((b) => b === 0) ? null : formatIPv4(a4),
      tunnelAddr6: a6.every((b) => b === 0) ? null : formatIPv6(a6),
      mtu: from.readUInt32LE(at('mtu')),
      skbCsum: (flags & CONFIG_FLAGS.skbCsum) !== 0,
      uplinkTx: flags & CONFIG_FLAGS.txTc ? 'tc' : flags & CONFIG_FLAGS.txRedirect ? 'xdp-redirect' : 'xdp-tx',
      metaCookie: from.readUInt32LE(at('meta_cookie')),
    };
  },
};

/** A struct of one u32 field the user space reads and writes (the rest is padding, zeroed). */
function u32StructCodec<S extends StructName>(struct: S, name: keyof (typeof LAYOUT)[S]['fields'], label: string): Codec<number> {
  const size = LAYOUT[struct].size;
  const at = field(struct, name);
  return {
    size,
    encode(value, into, offset) {
      into.fill(0, offset, offset + size);
      into.writeUInt32LE(checkUint(label, value, 0xffffffff), offset + at);
    },
    decode(from, offset) {
      return from.readUInt32LE(offset + at);
    },
  };
}

/** rs_watch_config: the rs_uplink program whose failed transmits bpf/watch.o counts. */
export const watchConfigCodec = u32StructCodec('rs_watch_config', 'uplink_prog_id', 'uplink program id');

/** A TCP flow as rs_uplink sees it arrive (client -> app). */
export interface FlowKey {
  source: string;
  destination: string;
  sport: number;
  dport: number;
}

export const flowKeyCodec: Codec<FlowKey> = {
  size: LAYOUT.rs_flow_key.size,
  encode(value, into, offset) {
    const at = (name: keyof typeof LAYOUT.rs_flow_key.fields): number => offset + field('rs_flow_key', name);
    into.fill(0, offset, offset + this.size);
    const family = putAddress(value.source, into, at('saddr'), 'flow source');
    if (putAddress(value.destination, into, at('daddr'), 'flow destination') !== family) {
      throw new TypeError(`flow ${value.source} -> ${value.destination} mixes address families`);
    }
    into.writeUInt16BE(checkUint('sport', value.sport, 65535), at('sport'));
    into.writeUInt16BE(checkUint('dport', value.dport, 65535), at('dport'));
    into.writeUInt8(family, at('family'));
    into.writeUInt8(6, at('proto'));
  },
  decode(from, offset) {
    const at = (name: keyof typeof LAYOUT.rs_flow_key.fields): number => offset + field('rs_flow_key', name);
    const v6 = from.readUInt8(at('family')) === 6;
    const addr = (name: 'saddr' | 'daddr'): string => {
      const b = from.subarray(at(name), at(name) + 16);
      return v6 ? formatIPv6(b) : formatAddress(b);
    };
    return { source: addr('saddr'), destination: addr('daddr'), sport: from.readUInt16BE(at('sport')), dport: from.readUInt16BE(at('dport')) };
  },
};

/** rs_new_flows: the app whose new flow it is. */
export const newFlowCodec = u32StructCodec('rs_new_flow', 'app_id', 'appId');

/** rs_old_flows: a flow from before SWITCH, as last seen. */
export interface OldFlow {
  /** bpf_ktime_get_coarse_ns() of its last packet (CLOCK_MONOTONIC, coarse). */
  lastNs: bigint;
  appId: number;
  fin: boolean;
  rst: boolean;
}

export const oldFlowCodec: Codec<OldFlow> = {
  size: LAYOUT.rs_old_flow.size,
  encode(value, into, offset) {
    into.fill(0, offset, offset + this.size);
    into.writeBigUInt64LE(value.lastNs, offset + field('rs_old_flow', 'last_ns'));
    into.writeUInt32LE(checkUint('appId', value.appId, 0xffffffff), offset + field('rs_old_flow', 'app_id'));
    into.writeUInt32LE((value.fin ? FLOW_FLAGS.fin : 0) | (value.rst ? FLOW_FLAGS.rst : 0), offset + field('rs_old_flow', 'flags'));
  },
  decode(from, offset) {
    const flags = from.readUInt32LE(offset + field('rs_old_flow', 'flags'));
    return {
      lastNs: from.readBigUInt64LE(offset + field('rs_old_flow', 'last_ns')),
      appId: from.readUInt32LE(offset + field('rs_old_flow', 'app_id')),
      fin: (flags & FLOW_FLAGS.fin) !== 0,
      rst: (flags & FLOW_FLAGS.rst) !== 0,
    };
  },
};

export type FlowStats = Record<FlowStat, bigint>;

/** One CPU's slot of rs_flow_stats. */
export const flowStatsCodec: Codec<FlowStats> = {
  size: LAYOUT.rs_flow_stats.size,
  encode(value, into, offset) {
    FLOW_STATS.forEach((s, i) => into.writeBigUInt64LE(value[s], offset + i * 8));
  },
  decode(from, offset) {
    const out = {} as FlowStats;
    FLOW_STATS.forEach((s, i) => (out[s] = from.readBigUInt64LE(offset + i * 8)));
    return out;
  },
};

/** Sum the per-CPU values of one application's flow counters. */
export function sumFlowStats(perCpu: readonly FlowStats[]): FlowStats {
  const out = {} as FlowStats;
  for (const s of FLOW_STATS) out[s] = perCpu.reduce((a, v) => a + v[s], 0n);
  return out;
}

/** One CPU's slot of rs_nexthop, the program's next-hop cache (family 0 = empty). */
export interface NextHop {
  /** bpf_jiffies64() of the fib lookup. */
  refreshedJiffies: bigint;
  inIfindex: number;
  outIfindex: number;
  family: 0 | Family;
  tos: number;
  mtu: number;
  /** Tunnel destination; null in an empty slot. */
  dst: string | null;
  dmac: string;
  smac: string;
}

export const nexthopCodec: Codec<NextHop> = {
  size: LAYOUT.rs_nexthop.size,
  encode(value, into, offset) {
    const at = (name: keyof typeof LAYOUT.rs_nexthop.fields): number => offset + field('rs_nexthop', name);
    into.fill(0, offset, offset + this.size);
    into.writeBigUInt64LE(value.refreshedJiffies, at('refreshed_jiffies'));
    into.writeUInt32LE(checkUint('inIfindex', value.inIfindex, 0xffffffff), at('in_ifindex'));
    into.writeUInt32LE(checkUint('outIfindex', value.outIfindex, 0xffffffff), at('out_ifindex'));
    into.writeUInt8(value.family, at('family'));
    into.writeUInt8(checkUint('tos', value.tos, 255), at('tos'));
    into.writeUInt16LE(checkUint('mtu', value.mtu, 0xffff), at('mtu'));
    if (value.dst !== null) putAddress(value.dst, into, at('dst'), 'next-hop destination');
    writeMac(value.dmac, into, at('dmac'));
    writeMac(value.smac, into, at('smac'));
  },
  decode(from, offset) {
    const at = (name: keyof typeof LAYOUT.rs_nexthop.fields): number => offset + field('rs_nexthop', name);
    const family = from.readUInt8(at('family'));
    const dst = from.subarray(at('dst'), at('dst') + 16);
    return {
      refreshedJiffies: from.readBigUInt64LE(at('refreshed_jiffies')),
      inIfindex: from.readUInt32LE(at('in_ifindex')),
      outIfindex: from.readUInt32LE(at('out_ifindex')),
      family: family === 4 || family === 6 ? family : 0,
      tos: from.readUInt8(at('tos')),
      mtu: from.readUInt16LE(at('mtu')),
      dst: family === 6 ? formatIPv6(dst) : family === 4 ? formatAddress(dst) : null,
      dmac: formatMac(from.subarray(at('dmac'), at('dmac') + 6)),
      smac: formatMac(from.subarray(at('smac'), at('smac') + 6)),
    };
  },
};

// ------------------------------------------------------------ aggregates --

export function zeroCounter(): Counter {
  return { packets: 0n, bytes: 0n };
}

export function sumCounters(values: readonly Counter[]): Counter {
  return values.reduce((a, c) => ({ packets: a.packets + c.packets, bytes: a.bytes + c.bytes }), zeroCounter());
}

/** Sum the per-CPU values of one application's stats. */
export function sumAppStats(perCpu: readonly AppStats[]): AppStats {
  const out = {} as AppStats;
  for (const s of STATS) out[s] = sumCounters(perCpu.map((v) => v[s]));
  return out;
}
