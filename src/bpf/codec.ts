/**
 * A fixed-size binary codec: the only way a TypeScript value becomes the bytes
 * of a BPF map key or value. Every struct shared with the kernel has exactly
 * one codec, so layout knowledge lives in one place per struct.
 */
export interface Codec<T> {
  /** Size in bytes; must equal the BPF map's key or value size. */
  readonly size: number;
  /**
   * Write `value` into `into` starting at `offset`: every one of the `size`
   * bytes, padding included (BpfMap reuses its buffers without clearing
   * them), and nothing outside them. Throws on bad input.
   */
  encode(value: T, into: Buffer, offset: number): void;
  /** Read a value from `from` starting at `offset`. */
  decode(from: Buffer, offset: number): T;
}

/** Little-endian u32 (host order on x86-64 and arm64), the usual array-map index. */
export const u32: Codec<number> = {
  size: 4,
  encode(value, into, offset) {
    into.writeUInt32LE(value >>> 0, offset);
  },
  decode(from, offset) {
    return from.readUInt32LE(offset);
  },
};

/** Little-endian u64 as bigint, the usual counter. */
export const u64: Codec<bigint> = {
  size: 8,
  encode(value, into, offset) {
    into.writeBigUInt64LE(value, offset);
  },
  decode(from, offset) {
    return from.readBigUInt64LE(offset);
  },
};

/** Raw bytes of a fixed size, for maps whose layout a caller handles itself. */
export function rawBytes(size: number): Codec<Buffer> {
  return {
    size,
    encode(value, into, offset) {
      if (value.length !== size) {
        throw new RangeError(`expected ${size} bytes, got ${value.length}`);
      }
      into.set(value, offset); // a typed-array copy: Buffer#copy makes a view per call
    },
    decode(from, offset) {
      return Buffer.from(from.subarray(offset, offset + size));
    },
  };
}
