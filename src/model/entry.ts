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

/**
 * What the source host does with an app's packets: deliver them here, or
 * forward them to another host's tunnel address, or preserve connections
 * (TCP flows that exist when it is set stay here, new flows and datagrams
 * are forwarded: bpf/flows.h).
 */
export type Action = { type: 'local' } | { type: 'forward'; tunnel: string } | { type: 'preserve'; tunnel: string };

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

/**
 * A write's condition on the entry it changes: applied only while the
 * entry's generation is this one (0: only while there is no entry).
 */
export interface Conditional {
  ifGeneration?: number;
}

/** One change of a batch, typed (what the store applies). */
export type BatchOp = (
  | { op: 'put-app'; name: string; spec: AppSpec }
  | { op: 'set-action'; name: string; action: Action }
  | { op: 'delete-app'; name: string }
  | { op: 'put-delivery'; name: string; spec: EntrySpec }
  | { op: 'delete-delivery'; name: string }
) &
  Conditional;

/** Who writes, and on what condition: the query of a single-entry write (`?owner=…&ifGeneration=…`). */
export interface WriteGuard extends Conditional {
  /** The lease owner the write is made for (a migration's id); required on a leased name. */
  owner?: string;
}

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
export type OpBody = (
  | ({ op: 'put-app'; name: string } & AppBody)
  | { op: 'set-action'; name: string; action: Action }
  | { op: 'delete-app'; name: string }
  | ({ op: 'put-delivery'; name: string } & DeliveryBody)
  | { op: 'delete-delivery'; name: string }
) &
  Conditional;

/** Body of POST /v1/batch. */
export interface BatchBody {
  ops: OpBody[];
  /** The lease owner every op is made for (required for ops on leased names). */
  owner?: string;
  /** Answer each op's entry generation after the batch (`generations`, 0 for a deleted entry). */
  generations?: boolean;
}

/** Body of POST /v1/leases: lease `names` (apps and deliveries of those names) to `owner` for `ttlMs`, all or none. */
export interface LeaseBody {
  owner: string;
  ttlMs: number;
  names: string[];
  /**
   * The owner held these leases before (a renewal). Only matters right
   * after an agent restart: then the agent grants renewals but refuses new leases.
   */
  renew?: boolean;
}

/** A lease as GET /v1/leases lists it. */
export interface LeaseView {
  name: string;
  owner: string;
  remainingMs: number;
}

/** The answer to POST /v1/leases. */
export interface LeaseGrant {
  owner: string;
  names: number;
  ttlMs: number;
}

/** Body of POST /v1/probe: probe the app behind one of this agent's delivery entries, from this host. */
export interface ProbeBody {
  /** The delivery entry (its address, through its device). */
  name: string;
  proto: 'udp' | 'tcp';
  port: number;
  /** Default 300 ms, at most MAX_PROBE_TIMEOUT_MS. */
  timeoutMs?: number;
}

/** The answer to POST /v1/probe (200 whether or not the app answered). */
export interface ProbeView {
  ok: boolean;
  address: string;
  dev: string;
  rttMs: number | null;
  error?: string;
}

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
  /** Moves with every write of the entry (the agent's write counter then); conditional writes name it. */
  generation: number;
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

/**
 * GET /v1/apps/:name/flows: the preserve action's TCP flows of an app on its
 * source host (src/agent/flows.ts). Counters are decimal strings (64-bit).
 */
export interface FlowsView {
  app: string;
  action: Action['type'];
  /** Old flows (from before SWITCH) still alive, closing ones included: what DRAIN_FLOWS waits for. */
  active: number;
  /** FIN seen from the client, a packet within lingerMs. */
  closing: number;
  /** RST seen, or FIN and quiet for lingerMs. */
  closed: number;
  /** Nothing for idleMs: taken as gone. */
  idle: number;
  /** Old flows first seen while preserving: kept on this host. */
  pinned: string;
  /** New flows (SYN) recorded and forwarded to the destination. */
  sent: string;
  /** SYNs the new-flow table could not record: served on this host instead. */
  refused: string;
  /** New flows whose table entry was evicted (their later packets look old and reach this host, which resets them). */
  evicted: string;
  idleMs: number;
  lingerMs: number;
  /** Entries of each flow table. */
  capacity: number;
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

/** Longest lease owner id (a migration's journal id is ~60). */
export const MAX_OWNER_CHARS = 128;
const OWNER_RE = new RegExp(`^[A-Za-z0-9_.:-]{1,${MAX_OWNER_CHARS}}$`);
/** Generations are 32-bit. */
export const MAX_GENERATION = 0xffffffff;
/** The longest lease an agent grants (a holder renews it; a dead holder's lease must lapse soon). */
export const MAX_LEASE_TTL_MS = 600_000;
export const MIN_LEASE_TTL_MS = 100;
/** Names one lease request may hold (a drain of a full host). */
export const MAX_LEASE_NAMES = 1_000_000;
export const MAX_PROBE_TIMEOUT_MS = 10_000;
export const DEFAULT_PROBE_TIMEOUT_MS = 300;

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
  if (o.type === 'forward' || o.type === 'preserve') {
    onlyKeys(o, ['type', 'tunnel'], field);
    return { type: o.type, tunnel: parseAddressField(o.tunnel, `${field}.tunnel`) };
  }
  throw new FieldError(`${field}.type`, 'expected "local", "forward" or "preserve"');
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

export function parseOwner(value: unknown, field = 'owner'): string {
  if (typeof value !== 'string' || !OWNER_RE.test(value)) throw new FieldError(field, `expected 1-${MAX_OWNER_CHARS} characters of A-Z a-z 0-9 _ . : -`);
  return value;
}

function parseGeneration(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_GENERATION) {
    throw new FieldError(field, `expected an entry generation: an integer 0..${MAX_GENERATION} (0: the entry must not exist)`);
  }
  return value;
}

/** The ops array of a batch body (each op is checked by parseBatchOp). */
export function batchOps(body: unknown): readonly unknown[] {
  const o = object(body, 'body');
  onlyKeys(o, ['ops', 'owner', 'generations'], '');
  if (!Array.isArray(o.ops)) throw new FieldError('ops', 'expected an array of operations');
  if (o.ops.length > MAX_BATCH_OPS) throw new FieldError('ops', `at most ${MAX_BATCH_OPS} operations per batch`);
  return o.ops as unknown[];
}

/** The rest of a batch body: who writes, and whether to answer the generations. */
export function batchOptions(body: unknown): { owner: string | undefined; generations: boolean } {
  const o = object(body, 'body');
  if (o.generations !== undefined && typeof o.generations !== 'boolean') throw new FieldError('generations', 'expected true or false');
  return { owner: o.owner === undefined ? undefined : parseOwner(o.owner), generations: o.generations === true };
}

/** `?owner=…&ifGeneration=…` of a single-entry write. */
export function parseWriteQuery(query: unknown): WriteGuard {
  const o = object(query ?? {}, 'query');
  onlyKeys(o, ['owner', 'ifGeneration'], '');
  const guard: WriteGuard = {};
  if (o.owner !== undefined) guard.owner = parseOwner(o.owner);
  if (o.ifGeneration !== undefined) {
    const n = typeof o.ifGeneration === 'string' && /^[0-9]{1,10}$/.test(o.ifGeneration) ? Number(o.ifGeneration) : NaN;
    guard.ifGeneration = parseGeneration(n, 'ifGeneration');
  }
  return guard;
}

export function parseLeaseBody(body: unknown): LeaseBody {
  const o = object(body, 'body');
  onlyKeys(o, ['owner', 'ttlMs', 'names', 'renew'], '');
  const owner = parseOwner(o.owner);
  if (typeof o.ttlMs !== 'number' || !Number.isInteger(o.ttlMs) || o.ttlMs < MIN_LEASE_TTL_MS || o.ttlMs > MAX_LEASE_TTL_MS) {
    throw new FieldError('ttlMs', `expected an integer ${MIN_LEASE_TTL_MS}..${MAX_LEASE_TTL_MS} (milliseconds)`);
  }
  if (!Array.isArray(o.names) || o.names.length === 0) throw new FieldError('names', 'expected a non-empty array of names');
  if (o.names.length > MAX_LEASE_NAMES) throw new FieldError('names', `at most ${MAX_LEASE_NAMES} names per request`);
  const names = (o.names as unknown[]).map((n, i) => parseName(n, `names[${i}]`));
  if (o.renew !== undefined && typeof o.renew !== 'boolean') throw new FieldError('renew', 'expected true or false');
  return { owner, ttlMs: o.ttlMs, names, ...(o.renew === true ? { renew: true } : {}) };
}

/** `?names=a,b` of DELETE /v1/leases/:owner (none: every name the owner leases). */
export function parseReleaseQuery(query: unknown): string[] | undefined {
  const o = object(query ?? {}, 'query');
  onlyKeys(o, ['names'], '');
  if (o.names === undefined) return undefined;
  if (typeof o.names !== 'string' || o.names === '') throw new FieldError('names', 'expected names separated by commas');
  return o.names.split(',').map((n, i) => parseName(n, `names[${i}]`));
}

export function parseProbeBody(body: unknown): Required<ProbeBody> {
  const o = object(body, 'body');
  onlyKeys(o, ['name', 'proto', 'port', 'timeoutMs'], '');
  const name = parseName(o.name);
  if (o.proto !== 'udp' && o.proto !== 'tcp') throw new FieldError('proto', 'expected "udp" or "tcp"');
  if (typeof o.port !== 'number' || !Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new FieldError('port', 'expected an integer port in 1..65535');
  let timeoutMs = DEFAULT_PROBE_TIMEOUT_MS;
  if (o.timeoutMs !== undefined) {
    if (typeof o.timeoutMs !== 'number' || !Number.isInteger(o.timeoutMs) || o.timeoutMs < 1 || o.timeoutMs > MAX_PROBE_TIMEOUT_MS) {
      throw new FieldError('timeoutMs', `expected an integer 1..${MAX_PROBE_TIMEOUT_MS} (milliseconds)`);
    }
    timeoutMs = o.timeoutMs;
  }
  return { name, proto: o.proto, port: o.port, timeoutMs };
}

/** Op `i` of a batch body. */
export function parseBatchOp(raw: unknown, i: number): BatchOp {
  const f = `ops[${i}]`;
  const op = object(raw, f);
  const name = parseName(op.name, `${f}.name`);
  const cond: Conditional = op.ifGeneration === undefined ? {} : { ifGeneration: parseGeneration(op.ifGeneration, `${f}.ifGeneration`) };
  switch (op.op) {
    case 'put-app':
      return { op: 'put-app', name, spec: parseAppBody(op, f, ['op', 'name', 'ifGeneration']), ...cond };
    case 'set-action':
      onlyKeys(op, ['op', 'name', 'action', 'ifGeneration'], f);
      return { op: 'set-action', name, action: parseAction(op.action, `${f}.action`), ...cond };
    case 'delete-app':
    case 'delete-delivery':
      onlyKeys(op, ['op', 'name', 'ifGeneration'], f);
      return { op: op.op, name, ...cond };
    case 'put-delivery':
      return { op: 'put-delivery', name, spec: parseDeliveryBody(op, f, ['op', 'name', 'ifGeneration']), ...cond };
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
