/**
 * The entry model: the one vocabulary of routeshift's wire contract. What an
 * application entry is (its key, its action, the delivery it gets), what a
 * batch op is, what the agent answers (the views), the rules for names and
 * fields, and the validators that turn untrusted JSON into typed values,
 * every failure naming its field (a JSON path) and what was expected.
 *
 * The agent validates requests with it, its store takes the typed ops, the
 * controller's client and the workload drivers speak it, the test double
 * of an agent obeys the same rules, and src/datapath/structs.ts maps it to
 * the C structs of bpf/routeshift.h. Nothing here knows about HTTP, BPF or
 * a process: it sits below all of them.
 */
import { addressProblem, canonicalAddress, formatMac, macProblem, parseMac, quote } from './address.js';
import { FieldError } from './errors.js';

// ------------------------------------------------------------- protocol --

export type ProtoName = 'any' | 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'sctp';
/** A protocol name, or an IP protocol number (0..255). */
export type Proto = ProtoName | number;

const PROTO_NUMBERS: Readonly<Record<ProtoName, number>> = {
  any: 0,
  icmp: 1,
  tcp: 6,
  udp: 17,
  icmpv6: 58,
  sctp: 132,
};
/** Protocols whose packets carry a destination port the data plane reads. */
export const PORTED_PROTOCOLS: ReadonlySet<number> = new Set([6, 17]);

const PROTO_NAMES = new Map<number, ProtoName>(Object.entries(PROTO_NUMBERS).map(([name, num]) => [num, name as ProtoName]));

export function protoNumber(proto: Proto): number {
  if (typeof proto === 'number') {
    if (!Number.isInteger(proto) || proto < 0 || proto > 255) throw new RangeError(`protocol number must be an integer in 0..255, got ${String(proto)}`);
    return proto;
  }
  const n = PROTO_NUMBERS[proto];
  if (n === undefined) {
    throw new TypeError(`unknown protocol ${quote(proto)}: expected one of ${Object.keys(PROTO_NUMBERS).join(', ')} or a number`);
  }
  return n;
}

/** A protocol number by its name when it has one. */
export function protoName(n: number): Proto {
  return PROTO_NAMES.get(n) ?? n;
}

// --------------------------------------------------------------- entries --

/** One application: a whole address, or one protocol (and port) of it. */
export interface AppKey {
  /** '10.0.0.1' or 'fd00::1'; the family follows from it. */
  address: string;
  /** 'any' (whole address), a name, or a protocol number. */
  proto: Proto;
  /** Destination port; 0 = every port (or a protocol without ports). */
  port: number;
}

/** What the source host does with an app's packets: deliver them here, or forward them to another host's tunnel address. */
export type Action = { type: 'local' } | { type: 'forward'; tunnel: string };

/**
 * How packets reach an app's device on this host (enum rs_path in
 * bpf/routeshift.h): an XDP redirect, the uplink's TC hook (into a veth's
 * namespace, or to a device's egress), or the host's own stack.
 */
export type Path = 'xdp' | 'tc-peer' | 'tc' | 'kernel';

/** How frames leave by the uplink again (FORWARD): XDP_TX, an XDP redirect to the uplink itself, or the TC hook. */
export type UplinkTx = 'xdp-tx' | 'xdp-redirect' | 'tc';

/** Whether a MAC was given in a request (kept as is) or resolved by the agent (resolved again when its device changes). */
export type MacSource = 'given' | 'resolved';

/** Longest entry name, in bytes (the pinned name index holds this many). */
export const MAX_NAME_BYTES = 48;
const NAME_RE = new RegExp(`^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,${MAX_NAME_BYTES - 1}}$`);
const DEV_RE = /^[A-Za-z0-9_.:@-]{1,15}$/;

/** An entry as a write gives it (typed). */
export interface EntrySpec {
  key: AppKey;
  dev: string;
  mac: string | undefined;
  /** Where `mac` came from when the agent itself restages an entry; a request's MAC is 'given'. */
  macSource?: MacSource;
}

export interface AppSpec extends EntrySpec {
  action: Action;
}

/** One change of a batch, typed (what the store applies). */
export type BatchOp =
  | { op: 'put-app'; name: string; spec: AppSpec }
  | { op: 'set-action'; name: string; action: Action }
  | { op: 'delete-app'; name: string }
  | { op: 'put-delivery'; name: string; spec: EntrySpec }
  | { op: 'delete-delivery'; name: string };

// ---------------------------------------------------------- wire bodies --

/** Body of PUT /v1/apps/:name (what a client sends). */
export interface AppBody {
  address: string;
  proto?: Proto;
  port?: number;
  dev: string;
  mac?: string;
  action?: Action;
}

/** Body of PUT /v1/deliveries/:name. */
export interface DeliveryBody {
  address: string;
  proto?: Proto;
  port?: number;
  dev: string;
  mac?: string;
}

/** One op of POST /v1/batch, as sent. */
export type OpBody =
  | ({ op: 'put-app'; name: string } & AppBody)
  | { op: 'set-action'; name: string; action: Action }
  | { op: 'delete-app'; name: string }
  | ({ op: 'put-delivery'; name: string } & DeliveryBody)
  | { op: 'delete-delivery'; name: string };

// ---------------------------------------------------------------- views --

/** Decimal strings: the counters are 64-bit. */
export interface CounterView {
  packets: string;
  bytes: string;
}

/** How an entry's packets go now. */
export interface PathView {
  /** Into the app's device (LOCAL, delivery): a Path; out of the uplink (FORWARD): an UplinkTx. */
  via: Path | UplinkTx;
  /** The path a packet with a partial checksum takes instead of 'xdp'. */
  slowVia?: Path;
}

interface EntryView {
  name: string;
  address: string;
  proto: Proto;
  port: number;
  dev: string;
  mac: string | null;
  macSource: MacSource;
  appId: number;
  path: PathView;
}

/** An app as GET /v1/apps/:name answers it. */
export interface AppView extends EntryView {
  action: Action;
  counters: { local: CounterView; forward: CounterView };
}

/** A delivery as GET /v1/deliveries/:name answers it. */
export interface DeliveryView extends EntryView {
  counters: { deliver: CounterView };
}

/** A device entries deliver into, as GET /status shows it. */
export interface DeviceView {
  entries: number;
  ifindex: number | null;
  path: string;
  slowPath?: string;
  why: string;
}

/** GET /status. */
export interface StatusView {
  uplink: string;
  ifindex: number;
  hook: { type: string; mode: string; modeAsked?: string; programId: number; attachedProgramId?: number; tcProgramId?: number; uplinkTx: UplinkTx; checksPartialChecksums: boolean };
  devices: Record<string, DeviceView>;
  /** The host's tunnel endpoints; forwarded packets for this host are sent there. */
  tunnel: { v4: string | null; v6: string | null; mtu: number };
  pinDir: string;
  adopted: boolean;
  adoptedFrom: 'fresh' | 'pins' | 'program';
  uptimeSeconds: number;
  entries: { apps: number; deliveries: number };
  capacity: { apps: number; deliveries: number };
  drops: Record<string, string>;
  version: string;
}

// ----------------------------------------------------------- validators --

type Json = Record<string, unknown>;

function object(value: unknown, field: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FieldError(field, 'expected a JSON object');
  }
  return value as Json;
}

function onlyKeys(o: Json, allowed: readonly string[], field: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new FieldError(`${field}.${k}`.replace(/^\./, ''), `unknown field (expected ${allowed.join(', ')})`);
  }
}

export function parseName(value: unknown, field = 'name'): string {
  if (typeof value !== 'string' || !NAME_RE.test(value)) {
    throw new FieldError(field, `expected 1-${MAX_NAME_BYTES} characters of A-Z a-z 0-9 _ . -, not starting with .`);
  }
  return value;
}

export function parseAddressField(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new FieldError(field, 'expected an IPv4 or IPv6 address string');
  let address: string;
  try {
    address = canonicalAddress(value);
  } catch (err) {
    throw new FieldError(field, (err as Error).message);
  }
  const problem = addressProblem(address);
  if (problem) throw new FieldError(field, `${address} ${problem}: expected a unicast address of one host`);
  return address;
}

function parseProto(value: unknown, field: string): Proto {
  if (value === undefined) return 'any';
  if (typeof value !== 'string' && typeof value !== 'number') throw new FieldError(field, 'expected a protocol name or number');
  try {
    return protoName(protoNumber(value as Proto));
  } catch (err) {
    throw new FieldError(field, (err as Error).message);
  }
}

function parsePort(value: unknown, proto: Proto, field: string): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 65535) {
    throw new FieldError(field, 'expected an integer port in 0..65535');
  }
  if (value !== 0 && proto !== 'tcp' && proto !== 'udp') {
    throw new FieldError(field, `a port needs proto tcp or udp (proto is ${String(proto)})`);
  }
  return value;
}

function parseDev(value: unknown, field: string): string {
  if (typeof value !== 'string' || !DEV_RE.test(value)) throw new FieldError(field, 'expected an interface name (1-15 characters)');
  return value;
}

function parseMacField(value: unknown, field: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new FieldError(field, 'expected a MAC address like 02:00:00:00:00:01');
  let mac: Buffer;
  try {
    mac = parseMac(value);
  } catch (err) {
    throw new FieldError(field, (err as Error).message);
  }
  const problem = macProblem(mac);
  if (problem) throw new FieldError(field, `${formatMac(mac)} ${problem}: expected an application's unicast MAC`);
  return formatMac(mac);
}

export function parseAction(value: unknown, field = 'action'): Action {
  const o = object(value, field);
  if (o.type === 'local') {
    onlyKeys(o, ['type'], field);
    return { type: 'local' };
  }
  if (o.type === 'forward') {
    onlyKeys(o, ['type', 'tunnel'], field);
    return { type: 'forward', tunnel: parseAddressField(o.tunnel, `${field}.tunnel`) };
  }
  throw new FieldError(`${field}.type`, 'expected "local" or "forward"');
}

const ENTRY_FIELDS = ['address', 'proto', 'port', 'dev', 'mac'] as const;

function parseEntry(o: Json, prefix: string): EntrySpec {
  const p = (f: string): string => (prefix ? `${prefix}.${f}` : f);
  const address = parseAddressField(o.address, p('address'));
  const proto = parseProto(o.proto, p('proto'));
  const port = parsePort(o.port, proto, p('port'));
  return { key: { address, proto, port }, dev: parseDev(o.dev, p('dev')), mac: parseMacField(o.mac, p('mac')) };
}

export function parseAppBody(body: unknown, prefix = '', extra: readonly string[] = []): AppSpec {
  const o = object(body ?? {}, prefix || 'body');
  onlyKeys(o, [...ENTRY_FIELDS, 'action', ...extra], prefix);
  const entry = parseEntry(o, prefix);
  const action = o.action === undefined ? { type: 'local' as const } : parseAction(o.action, prefix ? `${prefix}.action` : 'action');
  return { ...entry, action };
}

export function parseDeliveryBody(body: unknown, prefix = '', extra: readonly string[] = []): EntrySpec {
  const o = object(body ?? {}, prefix || 'body');
  onlyKeys(o, [...ENTRY_FIELDS, ...extra], prefix);
  return parseEntry(o, prefix);
}

export const MAX_BATCH_OPS = 1_000_000;

/** The ops array of a batch body (each op is checked by parseBatchOp). */
export function batchOps(body: unknown): readonly unknown[] {
  const o = object(body, 'body');
  onlyKeys(o, ['ops'], '');
  if (!Array.isArray(o.ops)) throw new FieldError('ops', 'expected an array of operations');
  if (o.ops.length > MAX_BATCH_OPS) throw new FieldError('ops', `at most ${MAX_BATCH_OPS} operations per batch`);
  return o.ops as unknown[];
}

/** Op `i` of a batch body. */
export function parseBatchOp(raw: unknown, i: number): BatchOp {
  const f = `ops[${i}]`;
  const op = object(raw, f);
  const name = parseName(op.name, `${f}.name`);
  switch (op.op) {
    case 'put-app':
      return { op: 'put-app', name, spec: parseAppBody(op, f, ['op', 'name']) };
    case 'set-action':
      onlyKeys(op, ['op', 'name', 'action'], f);
      return { op: 'set-action', name, action: parseAction(op.action, `${f}.action`) };
    case 'delete-app':
    case 'delete-delivery':
      onlyKeys(op, ['op', 'name'], f);
      return { op: op.op, name };
    case 'put-delivery':
      return { op: 'put-delivery', name, spec: parseDeliveryBody(op, f, ['op', 'name']) };
    default:
      throw new FieldError(`${f}.op`, 'expected put-app, set-action, delete-app, put-delivery or delete-delivery');
  }
}

/** Listings come in pages: at most this many entries each (default DEFAULT_PAGE). */
export const MAX_PAGE = 100_000;
export const DEFAULT_PAGE = 10_000;

export interface PageQuery {
  limit: number;
  /** Where the previous page ended (its `next`); absent for the first page. */
  cursor: Buffer | null;
}

/** `?limit=N&cursor=C` of a listing. */
export function parsePageQuery(query: unknown): PageQuery {
  const o = object(query ?? {}, 'query');
  onlyKeys(o, ['limit', 'cursor'], '');
  let limit = DEFAULT_PAGE;
  if (o.limit !== undefined) {
    limit = typeof o.limit === 'string' && /^[0-9]{1,6}$/.test(o.limit) ? Number(o.limit) : NaN;
    if (!(limit >= 1 && limit <= MAX_PAGE)) throw new FieldError('limit', `expected an integer 1..${MAX_PAGE}`);
  }
  let cursor: Buffer | null = null;
  if (o.cursor !== undefined) {
    if (typeof o.cursor !== 'string' || !/^[0-9a-f]{16}$/.test(o.cursor)) throw new FieldError('cursor', 'expected the `next` of a previous page');
    cursor = Buffer.from(o.cursor, 'hex');
  }
  return { limit, cursor };
}

/** A key as a string, for indexes and conflict messages. */
export function keyString(key: AppKey): string {
  return `${key.address}/${String(key.proto)}/${key.port}`;
}
