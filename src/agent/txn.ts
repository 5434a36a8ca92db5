/**
 * A change to one BPF map, applied with batched syscalls and undone
 * exactly if a later step of the same request fails, so a request never
 * leaves half-applied state.
 *
 * A drain stages a change per application, so one record per touched key
 * is all this keeps: the key, what to write (or delete), and what the map
 * held before the request when that is already known. Once prepared, the
 * change is encoded once, back to back as the batch syscalls take it; the
 * intent record (intent.ts) and the writes both use those bytes.
 */
import type { BpfMap } from '../bpf/index.js';
import { crashPoint } from './failpoint.js';

/** Entries per batched syscall: small enough that a crash between two lands anywhere in a large change. */
export const APPLY_CHUNK = 2048;

/** A change's writes, encoded: the keys to delete, and the keys and values to put. */
export interface EncodedWrites {
  readonly deletes: Buffer;
  readonly deleteCount: number;
  readonly putKeys: Buffer;
  readonly putValues: Buffer;
  readonly putCount: number;
}

/** What a request's commit needs of a change, whatever its map's types. */
export interface Applicable {
  readonly size: number;
  /** Read what the map holds for every key not yet known (before any write): after it, counts and the intent are exact. */
  prepare(): void;
  /** Entries the map holds after apply, minus before (prepare first). */
  readonly growth: number;
  readonly map: BpfMap<unknown, unknown>;
  /** Every write apply will make, encoded (prepare first). */
  encoded(): EncodedWrites;
  /** The deletes, one batched syscall per step (prepare first). */
  deleteSteps(): Generator<void, void, void>;
  /** The puts, one batched syscall per step (after every change's deletes). */
  putSteps(): Generator<void, void, void>;
  rollback(): string[];
}

/** A record's before-value has not been read yet (prepare reads it). */
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
  #encoded: EncodedWrites | undefined;
  #applied = false;

  /**
   * `mayHold`: false when the map certainly lacks a key (catalog.ts
   * `present`): such a key's before-value is absent, with no lookup.
   */
  constructor(
    readonly map: BpfMap<K, V>,
    private readonly id: (key: K) => KeyId,
    private readonly mayHold: (id: KeyId) => boolean = () => true,
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
    this.#encoded = undefined;
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

  /** `before`: what the map holds now, when the caller just read it (as for upsert). */
  delete(key: K, before?: { value: V | undefined }, id: KeyId = this.id(key)): void {
    const p = this.#pending.get(id);
    if (p) p.value = undefined;
    else this.#pending.set(id, { key, value: undefined, before: before ? before.value : UNREAD });
    this.#encoded = undefined;
  }

  /** What the map holds for a key as this change leaves it: what it stages, else what the map has now. */
  current(key: K, id: KeyId = this.id(key)): V | undefined {
    const p = this.#pending.get(id);
    if (p) return p.value;
    return this.mayHold(id) ? this.map.lookup(key) : undefined;
  }

  get size(): number {
    return this.#pending.size;
  }

  prepare(): void {
    for (const [id, p] of this.#pending) if (p.before === UNREAD) p.before = this.mayHold(id) ? this.map.lookup(p.key) : undefined;
  }

  /** The keys this change adds to the map (true) and removes from it (false), by id (after prepare). */
  *presence(): IterableIterator<[KeyId, boolean]> {
    for (const [id, p] of this.#pending) {
      const had = p.before !== undefined;
      if (p.value !== undefined && !had) yield [id, true];
      else if (p.value === undefined && had) yield [id, false];
    }
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

  encoded(): EncodedWrites {
    if (this.#encoded) return this.#encoded;
    const puts: K[] = [];
    const values: V[] = [];
    const deletes: K[] = [];
    for (const p of this.#pending.values()) {
      if (p.value !== undefined) {
        puts.push(p.key);
        values.push(p.value);
      } else if (p.before !== undefined) deletes.push(p.key); // a key absent before (or unread: prepare first) has nothing to delete
    }
    this.#encoded = {
      deletes: this.map.encodeKeys(deletes),
      deleteCount: deletes.length,
      putKeys: this.map.encodeKeys(puts),
      putValues: this.map.encodeValues(values),
      putCount: puts.length,
    };
    return this.#encoded;
  }

  /**
   * Deletes come before every put of the request (so no map ever holds more
   * than before or after), in batched syscalls of APPLY_CHUNK entries; a
   * single entry is a plain delete or update, the cheapest atomic change.
   */
  *deleteSteps(): Generator<void, void, void> {
    const e = this.encoded();
    const ks = this.map.keyCodec.size;
    this.#applied = true;
    for (let i = 0; i < e.deleteCount; i += APPLY_CHUNK) {
      const n = Math.min(APPLY_CHUNK, e.deleteCount - i);
      const keys = e.deletes.subarray(i * ks, (i + n) * ks);
      if (e.deleteCount === 1) this.map.delete(this.map.keyCodec.decode(keys, 0));
      else this.map.deleteEncoded(keys, n);
      crashPoint('apply');
      yield;
    }
  }

  *putSteps(): Generator<void, void, void> {
    const e = this.encoded();
    const ks = this.map.keyCodec.size;
    const vs = this.map.valueCodec.size;
    this.#applied = true;
    for (let i = 0; i < e.putCount; i += APPLY_CHUNK) {
      const n = Math.min(APPLY_CHUNK, e.putCount - i);
      const keys = e.putKeys.subarray(i * ks, (i + n) * ks);
      const values = e.putValues.subarray(i * vs, (i + n) * vs);
      if (e.putCount === 1) this.map.update(this.map.keyCodec.decode(keys, 0), this.map.valueCodec.decode(values, 0));
      else this.map.updateEncoded(keys, values, n);
      crashPoint('apply');
      yield;
    }
  }

  /** Put back what the steps changed (best effort per entry; returns failures). */
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
