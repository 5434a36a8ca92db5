/**
 * Which keys a map may hold, answered without a syscall: a set of 32-bit
 * hashes of the keys (by the ids the store names them with: catalog.ts
 * nameId, keyString). "Absent" is exact — a key whose hash is not in the
 * set is not in the map — so staging a batch of new names and addresses
 * costs no lookups; "maybe" is confirmed by a lookup (two keys share a hash
 * about once in 2^32 / entries). 4–8 bytes per entry, no strings kept: the
 * maps stay the one copy of the state.
 *
 * Open addressing with linear probing on the hashes themselves, so the
 * table can grow (a hash's slot in any table size follows from it) and
 * removal shifts entries back instead of leaving tombstones. Duplicates are
 * kept (two keys of one hash are two entries), so removing one key leaves
 * the other's hash in place.
 */

/** A 32-bit hash of a string, never 0 (0 marks an empty slot). */
export function hash32(s: string): number {
  let h = 0x811c9dc5 ^ s.length;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0 || 1;
}

const MIN_SLOTS = 1024;

export class Fingerprints {
  #slots = new Uint32Array(MIN_SLOTS);
  #mask = MIN_SLOTS - 1;
  #count = 0;

  get size(): number {
    return this.#count;
  }

  /** False: no key of this id is in the map. True: one may be (look it up). */
  mayHave(id: string): boolean {
    const h = hash32(id);
    for (let i = h & this.#mask; ; i = (i + 1) & this.#mask) {
      const s = this.#slots[i]!;
      if (s === h) return true;
      if (s === 0) return false;
    }
  }

  add(id: string): void {
    if ((this.#count + 1) * 2 > this.#slots.length) this.#grow();
    this.#place(hash32(id));
    this.#count++;
  }

  /** Forget one key of this id (one of them, if several share its hash). */
  remove(id: string): void {
    const h = hash32(id);
    const slots = this.#slots;
    const mask = this.#mask;
    let i = h & mask;
    for (; ; i = (i + 1) & mask) {
      const s = slots[i]!;
      if (s === 0) return; // not there
      if (s === h) break;
    }
    // Shift the entries after it back while that keeps each reachable from its home slot.
    let hole = i;
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const s = slots[j]!;
      if (s === 0) break;
      const home = s & mask;
      // s may fill the hole if its home is not in (hole, j] (cyclically)
      const between = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!between) {
        slots[hole] = s;
        hole = j;
      }
    }
    slots[hole] = 0;
    this.#count--;
  }

  clear(): void {
    this.#slots = new Uint32Array(MIN_SLOTS);
    this.#mask = MIN_SLOTS - 1;
    this.#count = 0;
  }

  #place(h: number): void {
    let i = h & this.#mask;
    while (this.#slots[i] !== 0) i = (i + 1) & this.#mask;
    this.#slots[i] = h;
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new Uint32Array(old.length * 2);
    this.#mask = this.#slots.length - 1;
    for (const h of old) if (h !== 0) this.#place(h);
  }
}
