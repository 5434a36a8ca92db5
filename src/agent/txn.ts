/**
 * A change to one BPF map, applied with batched syscalls and undone
 * exactly if a later step of the same request fails, so a request never
 * leaves half-applied state.
 */
import type { BpfMap } from '../bpf/index.js';

/** What a request's commit needs of a change, whatever its map's types. */
export interface Applicable {
  readonly size: number;
  apply(): void;
  rollback(): string[];
}

export class MapChange<K, V> implements Applicable {
  readonly #upserts = new Map<string, [K, V]>();
  readonly #deletes = new Map<string, K>();
  readonly #before = new Map<string, [K, V | undefined]>();
  /** Before-values the caller vouched for (see insert). */
  readonly #known = new Map<string, [K, V | undefined]>();
  #applied = false;

  constructor(
    readonly map: BpfMap<K, V>,
    private readonly id: (key: K) => string,
  ) {}

  /** `before`: what the map holds now, when the caller just read it (saves a lookup at apply). */
  upsert(key: K, value: V, before?: { value: V | undefined }): void {
    const id = this.id(key);
    const touched = this.#upserts.has(id) || this.#deletes.has(id);
    this.#deletes.delete(id);
    this.#upserts.set(id, [key, value]);
    if (before && !touched) this.#known.set(id, [key, before.value]);
  }

  /**
   * Upsert a key the caller knows is absent (a fresh id, a name or key no
   * entry holds): its rollback is a delete, with no lookup to find that out.
   */
  insert(key: K, value: V): void {
    // Touched earlier in this change (deleted, then put again), its
    // before-value is whatever the map holds: upsert then looks it up as usual.
    this.upsert(key, value, { value: undefined });
  }

  delete(key: K): void {
    const id = this.id(key);
    this.#upserts.delete(id);
    this.#deletes.set(id, key);
  }

  get size(): number {
    return this.#upserts.size + this.#deletes.size;
  }

  /** Upserts in one batch, then deletes in one batch; remembers what was there. */
  apply(): void {
    for (const [id, [k]] of this.#upserts) this.#before.set(id, this.#known.get(id) ?? [k, this.map.lookup(k)]);
    for (const [id, k] of this.#deletes) this.#before.set(id, [k, this.map.lookup(k)]);
    this.#applied = true;
    if (this.#upserts.size === 1) {
      const [[k, v]] = this.#upserts.values();
      this.map.update(k!, v!); // one entry: a plain update, the cheapest atomic change
    } else if (this.#upserts.size > 1) {
      this.map.updateBatch([...this.#upserts.values()]);
    }
    const present = [...this.#deletes].filter(([id]) => this.#before.get(id)?.[1] !== undefined).map(([, k]) => k);
    if (present.length > 1) this.map.deleteBatch(present);
    else if (present.length === 1) this.map.delete(present[0]!);
  }

  /** Put back what apply() changed (best effort per entry; returns failures). */
  rollback(): string[] {
    if (!this.#applied) return [];
    const failures: string[] = [];
    for (const [id, [k, before]] of this.#before) {
      try {
        if (before === undefined) this.map.delete(k);
        else this.map.update(k, before);
      } catch (err) {
        failures.push(`${this.map.name} ${id}: ${(err as Error).message}`);
      }
    }
    this.#applied = false;
    return failures;
  }
}
