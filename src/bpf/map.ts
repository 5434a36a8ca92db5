/**
 * Typed BPF maps: a raw map handle from the addon plus a key codec and a value
 * codec, so callers deal in TypeScript values and no other module touches
 * bytes. Sizes are checked here, before any syscall.
 */
import { rawBytes, type Codec } from './codec.js';
import { addon, isErrno, type NativeMap, type NativeMapInfo, type NativeScratchOps } from './native.js';

/** Kernel map type numbers (enum bpf_map_type) used by routeshift. */
export const MapType = {
  HASH: 1,
  ARRAY: 2,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
} as const;

/** BPF_ANY: create or replace; BPF_NOEXIST: create only; BPF_EXIST: replace only. */
export type UpdateMode = 'any' | 'noexist' | 'exist';
const UPDATE_FLAGS: Record<UpdateMode, number> = { any: 0, noexist: 1, exist: 2 };

export type MapInfo = NativeMapInfo;

/**
 * updateBatch encodes into buffers of the map's own, kept between calls, up
 * to this size each: a fresh buffer's pages would be faulted in while the
 * batch is encoded, every batch again. Larger batches get buffers of their own.
 */
const BATCH_SCRATCH_BYTES = 1 << 20;


/**
 * Value codec for per-CPU maps: the kernel hands over one value per possible
 * CPU, each padded to 8 bytes.
 */
export function perCpu<V>(value: Codec<V>, cpus: number = addon().possibleCpus()): Codec<V[]> {
  const stride = Math.ceil(value.size / 8) * 8;
  return {
    size: stride * cpus,
    encode(values, into, offset) {
      if (values.length !== cpus) {
        throw new RangeError(`per-CPU value needs ${cpus} entries (one per possible CPU), got ${values.length}`);
      }
      into.fill(0, offset, offset + stride * cpus);
      values.forEach((v, cpu) => value.encode(v, into, offset + cpu * stride));
    },
    decode(from, offset) {
      const out: V[] = [];
      for (let cpu = 0; cpu < cpus; cpu++) out.push(value.decode(from, offset + cpu * stride));
      return out;
    },
  };
}

function expectedValueBytes(info: MapInfo): number {
  return info.perCpu ? Math.ceil(info.valueSize / 8) * 8 * info.possibleCpus : info.valueSize;
}

export class BpfMap<K, V> implements Disposable {
  readonly info: MapInfo;
  #handle: NativeMap;
  // Encoding scratch space, bound to the handle once: single-entry calls
  // encode here and call the addon with no buffers to pass (each buffer
  // argument costs N-API calls of its own). Every call is synchronous, so
  // one pair per map suffices.
  readonly #keyScratch: Buffer;
  readonly #valueScratch: Buffer;
  readonly #scratch: NativeScratchOps;
  #batchKeys = Buffer.alloc(0);
  #batchValues = Buffer.alloc(0);

  constructor(handle: NativeMap, readonly keyCodec: Codec<K>, readonly valueCodec: Codec<V>) {
    this.#handle = handle;
    this.info = handle.info();
    const valueBytes = expectedValueBytes(this.info);
    if (keyCodec.size !== this.info.keySize || valueCodec.size !== valueBytes) {
      handle.close();
      throw new RangeError(
        `map ${this.info.name}: codec sizes key ${keyCodec.size}/value ${valueCodec.size} do not match ` +
          `the map's key ${this.info.keySize}/value ${valueBytes} bytes` +
          (this.info.perCpu ? ' (per-CPU map: wrap the value codec with perCpu())' : ''),
      );
    }
    this.#keyScratch = Buffer.alloc(keyCodec.size);
    this.#valueScratch = Buffer.alloc(valueCodec.size);
    this.#scratch = handle.bindScratch(this.#keyScratch, this.#valueScratch);
  }

  /** Open a map pinned in bpffs. */
  static openPinned<K, V>(path: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    return new BpfMap(addon().openPinnedMap(path), key, value);
  }

  /**
   * Open a map by its kernel id, e.g. one found in a program's mapIds().
   * Without codecs, keys and values are raw bytes of the map's sizes.
   */
  static fromId(id: number): BpfMap<Buffer, Buffer>;
  static fromId<K, V>(id: number, key: Codec<K>, value: Codec<V>): BpfMap<K, V>;
  static fromId<K, V>(id: number, key?: Codec<K>, value?: Codec<V>): BpfMap<K, V> | BpfMap<Buffer, Buffer> {
    const handle = addon().openMapById(id);
    return key && value ? new BpfMap(handle, key, value) : BpfMap.raw(handle);
  }

  /** A pinned map with raw byte keys and values of its sizes (tools and tests that read any map). */
  static openPinnedRaw(path: string): BpfMap<Buffer, Buffer> {
    return BpfMap.raw(addon().openPinnedMap(path));
  }

  /** A native handle with raw byte keys and values of the map's sizes (per-CPU: all CPUs' bytes). */
  static raw(handle: NativeMap): BpfMap<Buffer, Buffer> {
    const info = handle.info();
    return new BpfMap(handle, rawBytes(info.keySize), rawBytes(expectedValueBytes(info)));
  }

  /** Create an anonymous map (mostly for tests and benchmarks). */
  static create<K, V>(
    spec: { type: number; name: string; maxEntries: number; flags?: number },
    key: Codec<K>,
    value: Codec<V>,
    valueSize: number = value.size,
  ): BpfMap<K, V> {
    const handle = addon().createMap(spec.type, spec.name, key.size, valueSize, spec.maxEntries, spec.flags ?? 0);
    return new BpfMap(handle, key, value);
  }

  get name(): string {
    return this.info.name;
  }

  get fd(): number {
    return this.#handle.fd;
  }

  lookup(key: K): V | undefined {
    // Into scratch space: codecs copy what they decode, so nothing aliases it.
    this.#key(key);
    return this.#scratch.lookup() ? this.valueCodec.decode(this.#valueScratch, 0) : undefined;
  }

  /** Many lookups in one call into the addon (one syscall per key): the value of each key, or undefined. */
  lookupMany(keys: readonly K[]): (V | undefined)[] {
    const n = keys.length;
    if (n === 0) return [];
    const vs = this.valueCodec.size;
    const values = Buffer.allocUnsafe(n * vs);
    const found = Buffer.alloc(n);
    this.#handle.lookupMany(this.encodeKeys(keys), n, values, found);
    const out: (V | undefined)[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = found[i] ? this.valueCodec.decode(values, i * vs) : undefined;
    return out;
  }

  update(key: K, value: V, mode: UpdateMode = 'any'): void {
    this.#key(key);
    this.valueCodec.encode(value, this.#valueScratch, 0);
    try {
      this.#scratch.update(UPDATE_FLAGS[mode]);
    } catch (err) {
      throw this.#explain(err);
    }
  }

  /** Returns false when the key was not there. */
  delete(key: K): boolean {
    this.#key(key);
    return this.#scratch.delete();
  }

  *keys(): IterableIterator<K> {
    let cur: Buffer | null = null;
    for (;;) {
      const next: Buffer | null = this.#handle.nextKey(cur);
      if (next === null) return;
      yield this.keyCodec.decode(next, 0);
      cur = next;
    }
  }

  /**
   * All entries, read with batched lookups (one syscall per `chunk` entries)
   * where the map type supports it, else key by key.
   */
  *entries(chunk = 4096): IterableIterator<[K, V]> {
    let token: Buffer | null = null;
    for (;;) {
      let page;
      try {
        page = this.page(token, chunk);
      } catch (err) {
        if (token === null && isErrno(err) && (err.code === 'EINVAL' || err.code === 'ENOTSUPP' || err.code === 'EOPNOTSUPP')) {
          yield* this.#entriesByKey();
          return;
        }
        throw err;
      }
      yield* page.entries;
      if (!page.next) return;
      token = page.next;
    }
  }

  /**
   * One page of a resumable batched lookup: up to `count` entries, and the
   * token that continues after them (null when the map is done). The kernel
   * returns whole hash buckets: a page may end short of `count`, or, when a
   * single bucket holds more than `count`, hold that whole bucket.
   */
  page(token: Buffer | null, count: number): { entries: [K, V][]; next: Buffer | null } {
    let want = Math.max(1, count);
    for (;;) {
      let batch;
      try {
        batch = this.#handle.lookupBatch(token, want);
      } catch (err) {
        if (isErrno(err, 'ENOSPC') && want < 1 << 16) {
          want *= 2; // the next bucket is larger than the page: take it whole
          continue;
        }
        throw err;
      }
      const entries: [K, V][] = [];
      for (let i = 0; i < batch.count; i++) {
        entries.push([this.keyCodec.decode(batch.keys, i * this.keyCodec.size), this.valueCodec.decode(batch.values, i * this.valueCodec.size)]);
      }
      return { entries, next: batch.done ? null : batch.token };
    }
  }

  *#entriesByKey(): IterableIterator<[K, V]> {
    for (const key of this.keys()) {
      const value = this.lookup(key);
      if (value !== undefined) yield [key, value];
    }
  }

  /** Number of entries (walks the keys). */
  count(): number {
    let n = 0;
    for (const _ of this.keys()) n++;
    return n;
  }

  /**
   * Create or replace many entries in one syscall (the kernel takes no
   * exist/noexist mode for batches). When the kernel stops part-way (a full
   * map), the thrown error has `count`: how many entries it applied.
   */
  updateBatch(entries: readonly (readonly [K, V])[]): number {
    if (entries.length === 0) return 0;
    const [keys, values] = this.#encodeEntries(entries);
    return this.updateEncoded(keys, values, entries.length);
  }

  /** Keys and values encoded back to back, as updateBatch takes them. */
  #encodeEntries(entries: readonly (readonly [K, V])[]): [Buffer, Buffer] {
    const ks = this.keyCodec.size;
    const vs = this.valueCodec.size;
    const keys = this.#batchScratch('keys', entries.length * ks);
    const values = this.#batchScratch('values', entries.length * vs);
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!; // indexed, not destructured: no iterator per entry
      this.keyCodec.encode(entry[0], keys, i * ks);
      this.valueCodec.encode(entry[1], values, i * vs);
    }
    return [keys, values];
  }

  /**
   * updateBatch of keys and values already encoded back to back (`count`
   * of each, e.g. by encodeKeys/encodeValues): no second copy of a large change.
   */
  updateEncoded(keys: Buffer, values: Buffer, count: number): number {
    if (count === 0) return 0;
    try {
      return this.#handle.updateBatch(keys, values, count, 0);
    } catch (err) {
      throw this.#explain(err);
    }
  }

  /** Delete many keys in one syscall; every key must exist (ENOENT otherwise). */
  deleteBatch(keys: readonly K[]): number {
    return this.deleteEncoded(this.encodeKeys(keys), keys.length);
  }

  /** deleteBatch of `count` keys already encoded back to back. */
  deleteEncoded(keys: Buffer, count: number): number {
    if (count === 0) return 0;
    return this.#handle.deleteBatch(keys, count);
  }

  /** Keys encoded back to back (zero padding included), as the batch calls take them. */
  encodeKeys(keys: readonly K[]): Buffer {
    const size = this.keyCodec.size;
    const buf = Buffer.alloc(keys.length * size);
    for (let i = 0; i < keys.length; i++) this.keyCodec.encode(keys[i]!, buf, i * size);
    return buf;
  }

  /** Values encoded back to back, as the batch calls take them. */
  encodeValues(values: readonly V[]): Buffer {
    const size = this.valueCodec.size;
    const buf = Buffer.alloc(values.length * size);
    for (let i = 0; i < values.length; i++) this.valueCodec.encode(values[i]!, buf, i * size);
    return buf;
  }

  pin(path: string): void {
    this.#handle.pin(path);
  }

  /** Make the map read-only for user space (BPF programs may still write). */
  freeze(): void {
    this.#handle.freeze();
  }

  close(): void {
    this.#handle.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** `bytes` of batch scratch space (valid until the next updateBatch on this map). */
  #batchScratch(which: 'keys' | 'values', bytes: number): Buffer {
    if (bytes > BATCH_SCRATCH_BYTES) return Buffer.alloc(bytes);
    let buf = which === 'keys' ? this.#batchKeys : this.#batchValues;
    if (buf.length < bytes) {
      buf = Buffer.alloc(bytes);
      if (which === 'keys') this.#batchKeys = buf;
      else this.#batchValues = buf;
    }
    return buf.length === bytes ? buf : buf.subarray(0, bytes);
  }

  /** The key encoded into scratch space (codecs write every byte, padding included). */
  #key(key: K): void {
    this.keyCodec.encode(key, this.#keyScratch, 0);
  }

  /** Add what the errno means for a map to the addon's message. */
  #explain(err: unknown): unknown {
    if (isErrno(err, 'E2BIG')) {
      err.message += ` (map full, ${this.info.maxEntries} entries)`;
    } else if (isErrno(err, 'EEXIST')) {
      err.message += ' (entry exists and mode is noexist)';
    } else if (isErrno(err, 'ENOENT')) {
      err.message += ' (no such entry and mode is exist)';
    }
    return err;
  }
}
