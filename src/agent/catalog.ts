/**
 * The committed state of an agent's entries as the store reads it: straight
 * from the maps, plus the little the maps cannot answer quickly — which ids
 * are free (a bitmap), how many entries of each kind, which addresses have
 * port entries, which devices entries deliver into.
 */
import type { HostDatapath } from '../datapath/host.js';
import type { EntryKind, MetaValue } from '../datapath/meta.js';
import type { AppKey, DeliverValue, RedirectValue } from '../datapath/structs.js';
import { keyString } from '../model/entry.js';
import { Fingerprints } from './fingerprints.js';

export interface Entry {
  appId: number;
  meta: MetaValue;
}

/** An entry for one protocol/port of an address (not the whole address). */
export function isPortKey(key: AppKey): boolean {
  return key.proto !== 'any' || key.port !== 0;
}

export function wholeKey(address: string): AppKey {
  return { address, proto: 'any', port: 0 };
}

export const nameId = (kind: EntryKind, name: string): string => `${kind}:${name}`;
export const keyId = (kind: EntryKind, key: AppKey): string => `${kind}:${keyString(key)}`;

/**
 * Reads of the committed state, straight from the maps, plus the little the
 * maps cannot answer quickly: which ids are free (a bitmap), how many
 * entries of each kind, and which addresses have port entries.
 */
export class Catalog {
  readonly #ids: Uint8Array;
  #idHint = 0;
  readonly counts = { apps: 0, deliveries: 0 };
  /** Address → how many app entries of it are port entries (usually few addresses). */
  readonly portKeys = new Map<string, number>();
  /** Device → how many entries deliver into it (few devices, many entries). */
  readonly devices = new Map<string, number>();
  /** Entries each map holds now (placeholders included): what a change may add before the map is full. */
  readonly entries: Record<string, number> = { rs_redirect: 0, rs_deliver: 0, rs_app_meta: 0, rs_app_names: 0 };
  /**
   * Which keys the name index and the data plane's maps may hold (by nameId
   * and keyString): a name or key absent here is absent there, with no
   * lookup. Rebuilt by adoption, kept by Plan.publish; only the store writes these maps.
   */
  readonly present = { names: new Fingerprints(), redirect: new Fingerprints(), deliver: new Fingerprints() };
  /** The agent's write counter: the newest generation an entry carries (entries' generations never repeat while it grows). */
  generation = 0;

  constructor(private readonly dp: HostDatapath) {
    this.#ids = new Uint8Array(Math.ceil(dp.capacity / 8));
  }

  entry(kind: EntryKind, name: string): Entry | undefined {
    if (!this.present.names.mayHave(nameId(kind, name))) return undefined;
    const appId = this.dp.names.lookup({ kind, name });
    if (appId === undefined) return undefined;
    const meta = this.dp.meta.lookup(appId);
    return meta && meta.kind === kind && meta.name === name ? { appId, meta } : undefined;
  }

  /** Name of the entry of this kind holding `key`, if any. */
  owner(kind: EntryKind, key: AppKey): string | undefined {
    return this.holder(kind, key).owner;
  }

  /** What the map holds for `key`, and the name of the entry it belongs to (none for a placeholder). */
  holder(kind: EntryKind, key: AppKey, ks: string = keyString(key)): { value: RedirectValue | DeliverValue | undefined; owner: string | undefined } {
    if (!this.keysOf(kind).mayHave(ks)) return { value: undefined, owner: undefined };
    const value = kind === 'app' ? this.dp.redirect.lookup(key) : this.dp.deliver.lookup(key);
    if (!value || ('action' in value && value.action === 'ports-only')) return { value, owner: undefined };
    const meta = this.dp.meta.lookup(value.appId);
    return { value, owner: meta && meta.kind === kind ? meta.name : undefined };
  }

  /** Which keys the data-plane map of this kind may hold. */
  keysOf(kind: EntryKind): Fingerprints {
    return kind === 'app' ? this.present.redirect : this.present.deliver;
  }

  idUsed(id: number): boolean {
    return (this.#ids[id >> 3]! & (1 << (id & 7))) !== 0;
  }

  setId(id: number, used: boolean): void {
    if (used) this.#ids[id >> 3]! |= 1 << (id & 7);
    else {
      this.#ids[id >> 3]! &= ~(1 << (id & 7));
      this.#idHint = Math.min(this.#idHint, id);
    }
  }

  /** Lowest id that may be free (ids below it are all taken). */
  get idHint(): number {
    return this.#idHint;
  }

  set idHint(v: number) {
    this.#idHint = v;
  }

  countPortKey(address: string, by: number): void {
    const n = (this.portKeys.get(address) ?? 0) + by;
    if (n > 0) this.portKeys.set(address, n);
    else this.portKeys.delete(address);
  }

  countDevice(dev: string, by: number): void {
    const n = (this.devices.get(dev) ?? 0) + by;
    if (n > 0) this.devices.set(dev, n);
    else this.devices.delete(dev);
  }
}

