/**
 * A change to one BPF map, applied with batched syscalls and undone
 * exactly if a later step of the same request fails, so a request never
 * leaves half-applied state.
 *
 * A drain stages a change per application, so one record per touched key
 * is all this keeps: the key, what to write (or delete), and what the map
 * held before the request when that is already known.
 */
import type { BpfMap } from '../bpf/index.js';
import { crashPoint } from './failpoint.js';

/** Entries per batched syscall: small enough that a crash between two lands anywhere in a large change. */
export const APPLY_CHUNK = 2048;

/** What a request's commit needs of a change, whatever its map's types. */
export interface Applicable {
  readonly size: number;
  /** Read what the map holds for every key (before any write): after it, counts and the intent are exact. */
  prepare(): void;
  /** Entries the map holds after apply, minus before (prepare first). */
  readonly growth: number;
  readonly map: BpfMap<unknown, unknown>;
  /** Every write apply will make: [key, value] or [key, undefined] for a delete (prepare first). */
  writes(): IterableIterator<[unknown, unknown]>;
  apply(): void;
  rollback(): string[];
}

/** A record's before-value has not been read yet (apply reads it). */
const UNREAD = Symbol('unread');

interface Pending<K, V> {
  key: K;
  /** undefined: delete the key. */
  value: V | undefined;
  /** What the map held before this request (undefined: absent). */
  before: V | undefined | typeof UNREAD;
}

/** How a change names a key in its index (numbers for numeric keys: no string per entry). */
export type KeyId = string | number;

export class MapChange<K, V> implements Applicable {
  readonly #pending = new Map<KeyId, Pending<K, V>>();
  #applied = false;

  constructor(
    readonly map: BpfMap<K, V>,
    private readonly id: (key: K) => KeyId,
  ) {}

  /**
   * `before`: what the map holds now, when the caller just read it (saves a
   * lookup at apply). Ignored when this change touched the key already: the
   * first record's before-value is the one rollback needs.
   */
  upsert(key: K, value: V, before?: { value: V | undefined }, id: KeyId = this.id(key)): void {
    const p = this.#pending.get(id);
    if (p) {
      p.key = key;
      p.value = value;
    } else {
      this.#pending.set(id, { key, value, before: before ? before.value : UNREAD });
    }
  }

  /**
   * Upsert a key the caller knows is absent (a fresh id, a name or key no
   * entry holds): its rollback is a delete, with no lookup to find that out.
   * Touched earlier in this change (deleted, then put again), it keeps the
   * before-value of that first touch.
   */
  insert(key: K, value: V, id: KeyId = this.id(key)): void {
    this.upsert(key, value, { value: undefined }, id);
  }

  delete(key: K, id: KeyId = this.id(key)): void {
    const p = this.#pending.get(id);
    if (p) p.value = undefined;
    else this.#pending.set(id, { key, value: undefined, before: UNREAD });
  }

  /** What the map holds for a key as this change leaves it: what it stages, else what the map has now. */
  current(key: K, id: KeyId = this.id(key)): V | undefined {
    const p = this.#pending.get(id);
    return p ? p.value : this.map.lookup(key);
  }

  get size(): number {
    return this.#pending.size;
  }

  prepare(): void {
    for (const p of this.#pending.values()) if (p.before === UNREAD) p.before = this.map.lookup(p.key);
  }

  get growth(): number {
    let n = 0;
    for (const p of this.#pending.values()) {
      const had = p.before !== undefined && p.before !== UNREAD;
      if (p.value !== undefined && !had) n++;
      else if (p.value === undefined && had) n--;
    }
    return n;
  }

  *writes(): IterableIterator<[K, V | undefined]> {
    for (const p of this.#pending.values()) {
      if (p.value !== undefined) yield [p.key, p.value];
      else if (p.before !== undefined) yield [p.key, undefined];
    }
  }

  /**
   * Deletes first (so the map never holds more than before or after), then
   * upserts, each in batched syscalls of APPLY_CHUNK entries; remembers what
   * was there.
   */
  apply(): void {
    this.prepare();
    const upserts: [K, V][] = [];
    const deletes: K[] = [];
    for (const p of this.#pending.values()) {
      if (p.value !== undefined) upserts.push([p.key, p.value]);
      else if (p.before !== undefined) deletes.push(p.key);
    }
    this.#applied = true;
    for (let i = 0; i < deletes.length; i += APPLY_CHUNK) {
      const chunk = deletes.slice(i, i + APPLY_CHUNK);
      if (chunk.length === 1) this.map.delete(chunk[0]!);
      else this.map.deleteBatch(chunk);
      crashPoint('apply');
    }
    for (let i = 0; i < upserts.length; i += APPLY_CHUNK) {
      const chunk = upserts.slice(i, i + APPLY_CHUNK);
      if (chunk.length === 1) this.map.update(chunk[0]![0], chunk[0]![1]); // one entry: a plain update, the cheapest atomic change
      else this.map.updateBatch(chunk);
      crashPoint('apply');
    }
  }

  /** Put back what apply() changed (best effort per entry; returns failures). */
  rollback(): string[] {
    if (!this.#applied) return [];
    const failures: string[] = [];
    for (const [id, p] of this.#pending) {
      try {
        if (p.before === undefined) this.map.delete(p.key);
        else if (p.before !== UNREAD) this.map.update(p.key, p.before);
      } catch (err) {
        failures.push(`${this.map.name} ${id}: ${(err as Error).message}`);
      }
    }
    this.#applied = false;
    return failures;
  }
}
