/**
 * The intent of a change that writes many entries: pinned in the pin
 * directory before the first map write, so that a crash anywhere inside
 * the apply leaves a record a restarted agent completes (redo). After a
 * restart the maps are exactly as before the request (no intent was pinned
 * yet) or exactly as after it (the intent is replayed); a change of one
 * entry needs none (its few writes are ordered so that adoption settles
 * any prefix of them, see adopt.ts).
 *
 * One ARRAY map per written map, pinned as intent_<map>, of records
 * [op u8 (1 put, 2 delete), pad[3], key, value] (a map's deletes first, then
 * its puts, copied from the bytes the apply writes), written and read in
 * batches; the app ids whose counters
 * are reset in intent_stats; last, the commit marker `intent`, holding the
 * record counts. The marker is pinned after every record map: records
 * without it belong to an intent whose apply never started, and go.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { BpfMap, MapType, rawBytes, u32, type Codec } from '../bpf/index.js';
import type { HostDatapath } from '../datapath/host.js';
import { crashPoint } from './failpoint.js';
import type { Applicable } from './txn.js';

const MARKER = 'intent';
const PREFIX = 'intent_';
const STATS = 'stats';
const OP_PUT = 1;
const OP_DELETE = 2;
const CHUNK = 4096;

/** The marker's value: how many records each intent map holds (by map name), as JSON in a fixed field. */
const MARKER_BYTES = 512;
const markerCodec: Codec<Record<string, number>> = {
  size: MARKER_BYTES,
  encode(value, into, offset) {
    into.fill(0, offset, offset + MARKER_BYTES);
    const text = Buffer.from(JSON.stringify(value), 'utf8');
    if (text.length > MARKER_BYTES) throw new RangeError('intent marker too long');
    text.copy(into, offset);
  },
  decode(from, offset) {
    const raw = from.subarray(offset, offset + MARKER_BYTES);
    const end = raw.indexOf(0);
    return JSON.parse(raw.subarray(0, end < 0 ? MARKER_BYTES : end).toString('utf8')) as Record<string, number>;
  },
};

function createArray(name: string, entries: number, value: number): BpfMap<number, Buffer> {
  return BpfMap.create({ type: MapType.ARRAY, name, maxEntries: Math.max(1, entries) }, u32, rawBytes(value));
}

/** Indexes 0..n-1 as u32 keys, back to back. */
function indexes(n: number): Buffer {
  const b = Buffer.alloc(n * 4);
  for (let i = 0; i < n; i++) b.writeUInt32LE(i, i * 4);
  return b;
}

/** Write `n` records of `size` bytes, back to back in `records`, into an ARRAY map at 0..n-1, in batches. */
function* fill(m: BpfMap<number, Buffer>, records: Buffer, size: number, n: number): Generator<void, void, void> {
  const keys = indexes(Math.min(n, CHUNK));
  for (let i = 0; i < n; i += CHUNK) {
    const count = Math.min(CHUNK, n - i);
    if (i > 0) for (let j = 0; j < count; j++) keys.writeUInt32LE(i + j, j * 4);
    m.updateEncoded(keys.subarray(0, count * 4), records.subarray(i * size, (i + count) * size), count);
    yield;
  }
}

/** A change's records, [op, pad[3], key, value] each, in one buffer: its deletes first, then its puts. */
function records(c: Applicable): { bytes: Buffer; size: number; count: number } {
  const ks = c.map.keyCodec.size;
  const vs = c.map.valueCodec.size;
  const size = 4 + ks + vs;
  const e = c.encoded();
  const count = e.deleteCount + e.putCount;
  const bytes = Buffer.alloc(count * size);
  for (let i = 0; i < e.deleteCount; i++) {
    const at = i * size;
    bytes[at] = OP_DELETE;
    e.deletes.copy(bytes, at + 4, i * ks, (i + 1) * ks);
  }
  for (let i = 0; i < e.putCount; i++) {
    const at = (e.deleteCount + i) * size;
    bytes[at] = OP_PUT;
    e.putKeys.copy(bytes, at + 4, i * ks, (i + 1) * ks);
    e.putValues.copy(bytes, at + 4 + ks, i * vs, (i + 1) * vs);
  }
  return { bytes, size, count };
}

export class Intent {
  private constructor(private readonly pins: string[]) {}

  /**
   * Pin the intent of these prepared changes (every before-value read) and
   * of the counter resets: once this returns, a crash is completed by the
   * next agent. A step per batched write (the caller may yield between
   * them: nothing is pinned until every record is written).
   */
  static *write(pinDir: string, changes: readonly Applicable[], resetIds: readonly number[]): Generator<void, Intent, void> {
    const pins: string[] = [];
    const counts: Record<string, number> = {};
    const made: { name: string; map: BpfMap<number, Buffer> }[] = [];
    try {
      for (const c of changes) {
        const r = records(c);
        if (!r.count) continue;
        const m = createArray(`rs_i_${c.map.name}`.slice(0, 15), r.count, r.size);
        made.push({ name: c.map.name, map: m });
        yield* fill(m, r.bytes, r.size, r.count);
        counts[c.map.name] = r.count;
      }
      if (resetIds.length) {
        const m = createArray('rs_i_stats', resetIds.length, 4);
        made.push({ name: STATS, map: m });
        yield* fill(m, Buffer.from(Uint32Array.from(resetIds).buffer), 4, resetIds.length);
        counts[STATS] = resetIds.length;
      }
      for (const { name, map } of made) {
        const pin = join(pinDir, PREFIX + name);
        rmSync(pin, { force: true });
        map.pin(pin);
        pins.push(pin);
        crashPoint('intent');
      }
      using marker = BpfMap.create({ type: MapType.ARRAY, name: 'rs_intent', maxEntries: 1 }, u32, markerCodec);
      marker.update(0, counts);
      const pin = join(pinDir, MARKER);
      marker.pin(pin); // the commit point of the intent
      pins.push(pin);
      crashPoint('intent');
      return new Intent(pins);
    } catch (err) {
      for (const p of pins) rmSync(p, { force: true });
      throw err;
    } finally {
      for (const { map } of made) map.close(); // pinned: kept by the pins
    }
  }

  /** The change is applied: its intent goes (the marker first). */
  remove(): void {
    for (const p of [...this.pins].reverse()) rmSync(p, { force: true });
  }

  /**
   * Complete the change an earlier agent left pinned, if any: write every
   * record again (puts and deletes are idempotent), reset the counters it
   * listed, then remove it. Records without a marker are removed unread.
   * Returns how many records were replayed.
   */
  static replay(dp: HostDatapath, log: Logger): number {
    const dir = dp.pinDir;
    const marker = join(dir, MARKER);
    let replayed = 0;
    if (existsSync(marker)) {
      let counts: Record<string, number>;
      {
        using m = BpfMap.openPinned(marker, u32, markerCodec);
        counts = m.lookup(0) ?? {};
      }
      const targets: Record<string, BpfMap<unknown, unknown>> = { rs_redirect: dp.redirect, rs_deliver: dp.deliver, rs_app_meta: dp.meta, rs_app_names: dp.names };
      for (const [name, n] of Object.entries(counts)) {
        const path = join(dir, PREFIX + name);
        if (name === STATS) {
          using m = BpfMap.openPinned(path, u32, rawBytes(4));
          const ids: number[] = [];
          for (const [i, v] of m.entries(CHUNK)) if (i < n) ids.push(v.readUInt32LE(0));
          dp.resetAppStats(ids);
          replayed += n;
          continue;
        }
        const target = targets[name];
        if (!target) throw new Error(`${marker} names map ${name}, which this agent does not have: remove ${dir} with \`routeshift agent --cleanup\``);
        const keySize = target.keyCodec.size;
        using raw = BpfMap.fromId(target.info.id);
        using m = BpfMap.openPinned(path, u32, rawBytes(4 + keySize + target.valueCodec.size));
        const puts: [Buffer, Buffer][] = [];
        const deletes: Buffer[] = [];
        // Read in batched lookups; each record names a key once, so their order does not matter.
        for (const [i, r] of m.entries(CHUNK)) {
          if (i >= n) continue;
          const key = r.subarray(4, 4 + keySize);
          if (r[0] === OP_PUT) puts.push([key, r.subarray(4 + keySize)]);
          else deletes.push(key);
        }
        // Deletes first (the map never holds more than after), each at most once: one an earlier replay
        // made already is gone, and a batch delete stops at a missing key, so that chunk goes key by key.
        for (let i = 0; i < deletes.length; i += CHUNK) {
          const chunk = deletes.slice(i, i + CHUNK);
          try {
            raw.deleteBatch(chunk);
          } catch {
            for (const k of chunk) raw.delete(k);
          }
        }
        for (let i = 0; i < puts.length; i += CHUNK) raw.updateBatch(puts.slice(i, i + CHUNK));
        replayed += puts.length + deletes.length;
      }
      log.warn({ records: replayed, maps: counts }, 'completed a change an earlier agent was applying when it stopped');
    }
    // the marker last: a crash in here replays again
    for (const f of readdirSync(dir)) if (f.startsWith(PREFIX)) rmSync(join(dir, f), { force: true });
    rmSync(marker, { force: true });
    return replayed;
  }
}
