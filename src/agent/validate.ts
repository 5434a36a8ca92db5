/**
 * Request bodies → typed entry specs. Every field is checked and a failure
 * names the field (a JSON path) and what was expected.
 */
import { canonicalAddress, parseMac, formatMac } from '../datapath/address.js';
import { MAX_NAME_BYTES } from '../datapath/meta.js';
import { protoNumber, protoName, type AppKey, type Proto } from '../datapath/structs.js';
import { FieldError } from './errors.js';

export type ActionSpec = { type: 'local' } | { type: 'forward'; tunnel: string };

export interface EntrySpec {
  key: AppKey;
  dev: string;
  mac: string | undefined;
  /** Where `mac` came from when the agent itself restages an entry; a request's MAC is 'given'. */
  macSource?: 'given' | 'resolved';
}

export interface AppSpec extends EntrySpec {
  action: ActionSpec;
}

const NAME_RE = new RegExp(`^[A-Za-z0-9_.-]{1,${MAX_NAME_BYTES}}$`);
const DEV_RE = /^[A-Za-z0-9_.:@-]{1,15}$/;

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
    throw new FieldError(field, `expected 1-${MAX_NAME_BYTES} characters of A-Z a-z 0-9 _ . -`);
  }
  return value;
}

export function parseAddressField(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new FieldError(field, 'expected an IPv4 or IPv6 address string');
  try {
    return canonicalAddress(value);
  } catch (err) {
    throw new FieldError(field, (err as Error).message);
  }
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
  try {
    return formatMac(parseMac(value));
  } catch (err) {
    throw new FieldError(field, (err as Error).message);
  }
}

export function parseAction(value: unknown, field = 'action'): ActionSpec {
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

export type BatchOp =
  | { op: 'put-app'; name: string; spec: AppSpec }
  | { op: 'set-action'; name: string; action: ActionSpec }
  | { op: 'delete-app'; name: string }
  | { op: 'put-delivery'; name: string; spec: EntrySpec }
  | { op: 'delete-delivery'; name: string };

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
