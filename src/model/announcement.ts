/**
 * The wire contract of route announcements (docs/agent-api.md,
 * "Announcements"): an agent started with `--bird-include` has its host's
 * BIRD announce an app's address as a /32 (/128) over BGP, or withdraw it.
 * Announcements are by app name, like entries; two names may announce the
 * same address (two ports of one address): the prefix stays announced
 * while one of them does.
 */
import { isIP } from 'node:net';
import { FieldError } from './errors.js';
import { quote } from './address.js';
import { parseAddressField, parseName } from './entry.js';

/** `PUT /v1/announcements/:name` body. */
export interface AnnouncementBody {
  address: string;
}

export interface AnnouncementView {
  name: string;
  address: string;
  /** The prefix BIRD announces: address/32 or address/128. */
  prefix: string;
}

/** `POST /v1/announcements` body: all of it in one BIRD reconfiguration. */
export interface AnnouncementBatchBody {
  announce?: ({ name: string } & AnnouncementBody)[];
  withdraw?: string[];
}

export interface AnnouncementBatch {
  announce: { name: string; address: string }[];
  withdraw: string[];
}

/** `GET /v1/announcements` answer. */
export interface AnnouncementList {
  announcements: AnnouncementView[];
  bird: { socket: string; include: string; protocols: { v4: string; v6: string } };
}

/** Names of one batch: as many as a batch of entry ops (a drain of a full host). */
export const MAX_ANNOUNCEMENT_BATCH = 1_000_000;

export function prefixOf(address: string): string {
  return `${address}/${isIP(address) === 6 ? 128 : 32}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(body: Record<string, unknown>, allowed: readonly string[], field: string): void {
  for (const k of Object.keys(body)) {
    if (!allowed.includes(k)) throw new FieldError(field ? `${field}.${k}` : k, `unknown field (expected ${allowed.join(', ')})`);
  }
}

/** `field`: where the body sits in a batch (its items carry their `name` too). */
export function parseAnnouncementBody(body: unknown, field = ''): AnnouncementBody {
  if (!isObject(body)) throw new FieldError(field || 'body', 'expected a JSON object {"address": IP}');
  onlyKeys(body, field ? ['name', 'address'] : ['address'], field);
  return { address: parseAddressField(body.address, field ? `${field}.address` : 'address') };
}

export function parseAnnouncementBatch(body: unknown): AnnouncementBatch {
  if (!isObject(body)) throw new FieldError('body', 'expected a JSON object {"announce": [{name, address}], "withdraw": [name]}');
  onlyKeys(body, ['announce', 'withdraw'], '');
  const list = (key: 'announce' | 'withdraw'): unknown[] => {
    const v = body[key];
    if (v === undefined) return [];
    if (!Array.isArray(v)) throw new FieldError(key, `expected a list, got ${quote(v)}`);
    if (v.length > MAX_ANNOUNCEMENT_BATCH) throw new FieldError(key, `at most ${MAX_ANNOUNCEMENT_BATCH} per batch, got ${v.length}`);
    return v;
  };
  const seen = new Set<string>();
  const once = (name: string, field: string): string => {
    if (seen.has(name)) throw new FieldError(field, `${name} appears twice in one batch`);
    seen.add(name);
    return name;
  };
  const announce = list('announce').map((item, i) => {
    const field = `announce[${i}]`;
    if (!isObject(item)) throw new FieldError(field, 'expected {"name", "address"}');
    return { name: once(parseName(item.name, `${field}.name`), `${field}.name`), ...parseAnnouncementBody(item, field) };
  });
  const withdraw = list('withdraw').map((item, i) => once(parseName(item, `withdraw[${i}]`), `withdraw[${i}]`));
  return { announce, withdraw };
}
