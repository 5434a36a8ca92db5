/**
 * The key layout of routeshift's desired state in etcd (docs/etcd.md), one
 * place for building and reading keys. Versioned by its prefix
 * (`/routeshift/v1/`): a layout that changes meaning gets `v2` beside it.
 *
 *   <prefix>hosts/<host>/apps/<name>         app entry spec (AppBody JSON)
 *   <prefix>hosts/<host>/deliveries/<name>   delivery entry spec (DeliveryBody JSON)
 *   <prefix>hosts/<host>/status              the agent's report, under its lease
 *   <prefix>leases/<name>                    the owner of an app's name (a migration), under an etcd lease
 *
 * A host's agent watches `<prefix>hosts/<host>/` (one prefix watch per agent).
 */
import { parseName } from '../model/entry.js';

export const DEFAULT_ETCD_PREFIX = '/routeshift/v1/';
/** How long the status key outlives its agent (its lease's TTL, seconds). */
export const DEFAULT_STATUS_TTL_SECONDS = 10;

const HOST_RE = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,62}$/;

export type EntryKind = 'app' | 'delivery';

/** A key under a host's prefix, read. */
export type HostKey = { type: 'entry'; kind: EntryKind; name: string } | { type: 'status' } | { type: 'other'; rest: string };

/** A host id: 1-63 of A-Z a-z 0-9 _ . -, not starting with a dot (it is one path segment of a key). */
export function parseHostId(value: string): string {
  if (!HOST_RE.test(value)) throw new Error(`host id ${JSON.stringify(value)}: expected 1-63 characters of A-Z a-z 0-9 _ . -, not starting with .`);
  return value;
}

/** A prefix: absolute, ending in one slash (added when missing). */
export function parsePrefix(value: string): string {
  if (!value.startsWith('/') || /\/\//.test(value) || /\s/.test(value)) {
    throw new Error(`etcd prefix ${JSON.stringify(value)}: expected an absolute key path like ${DEFAULT_ETCD_PREFIX} (no empty segments, no spaces)`);
  }
  return value.endsWith('/') ? value : `${value}/`;
}

const SEGMENT: Readonly<Record<EntryKind, string>> = { app: 'apps', delivery: 'deliveries' };

export class KeyLayout {
  readonly prefix: string;

  constructor(prefix: string = DEFAULT_ETCD_PREFIX) {
    this.prefix = parsePrefix(prefix);
  }

  /** Everything of one host: what its agent watches. */
  host(host: string): string {
    return `${this.prefix}hosts/${parseHostId(host)}/`;
  }

  entry(host: string, kind: EntryKind, name: string): string {
    return `${this.host(host)}${SEGMENT[kind]}/${parseName(name)}`;
  }

  status(host: string): string {
    return `${this.host(host)}status`;
  }

  /** Every app name's owner record (src/controller/etcd-agent.ts). */
  leases(): string {
    return `${this.prefix}leases/`;
  }

  /** The owner record of one app name: a migration's claim on it, under an etcd lease. */
  lease(name: string): string {
    return `${this.leases()}${parseName(name)}`;
  }

  /** What a key under `host(host)` is; `other` for keys this version does not know (left alone). */
  read(host: string, key: string): HostKey {
    const base = this.host(host);
    if (!key.startsWith(base)) return { type: 'other', rest: key };
    const rest = key.slice(base.length);
    if (rest === 'status') return { type: 'status' };
    const m = /^(apps|deliveries)\/(.+)$/.exec(rest);
    if (!m) return { type: 'other', rest };
    return { type: 'entry', kind: m[1] === 'apps' ? 'app' : 'delivery', name: m[2]! };
  }
}
