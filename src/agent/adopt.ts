/**
 * Adoption: an agent starting on maps an earlier agent left (a restart, an
 * upgrade) rebuilds the catalog from them and repairs what a crash between
 * two map writes may have left.
 */
import type { Logger } from 'pino';
import type { HostDatapath } from '../datapath/host.js';
import type { EntryKind } from '../datapath/meta.js';
import type { AppKey } from '../datapath/structs.js';
import { keyString } from '../model/entry.js';
import { isPortKey, keyId, nameId, type Catalog } from './catalog.js';

// What adoption knows of each id (#adopt).
const HAS_META = 1;
const IS_DELIVERY = 2;
const KEY_OK = 4;
const NAME_OK = 8;

/**
 * A 53-bit hash of a string (two 32-bit multiplicative hashes, combined):
 * adoption compares what an id claims against what the maps hold without
 * keeping the strings. A false match needs a corrupt entry whose key or
 * name collides with the right one: about one in 2^53.
 */
function hash53(s: string): number {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    a = Math.imul(a ^ ch, 0x01000193);
    b = Math.imul(b ^ ch, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a = Math.imul(a ^ (a >>> 16), 0x85ebca6b);
  b = Math.imul(b ^ (b >>> 13), 0xc2b2ae35);
  return (b & 0x1fffff) * 0x100000000 + (a >>> 0);
}

/**
 * Rebuild the id bitmap, counts and port-key counts from the pinned maps,
 * and repair what a crash between two map writes may have left: a name
 * whose entry never reached its map is dropped, a missing index entry is
 * written. Returns the addresses whose whole-address flag must be checked.
 *
 * One batched pass over each map, no lookup per entry (a million entries
 * adopt in seconds): the first pass notes what each id's meta entry
 * claims (its key and its name, as 53-bit hashes), the others confirm
 * those claims from the data plane's maps and the name index. Only what
 * fails to match is looked up exactly.
 */
export function adopt(dp: HostDatapath, c: Catalog, log: Logger): string[] {
  const capacity = dp.capacity;
  const state = new Uint8Array(capacity);
  const keyClaim = new Float64Array(capacity);
  const nameClaim = new Float64Array(capacity);
  const outOfRange: number[] = [];
  for (const [appId, meta] of dp.meta.entries()) {
    if (appId >= capacity) {
      outOfRange.push(appId);
      continue;
    }
    state[appId] = HAS_META | (meta.kind === 'delivery' ? IS_DELIVERY : 0);
    keyClaim[appId] = hash53(keyId(meta.kind, meta.key));
    nameClaim[appId] = hash53(nameId(meta.kind, meta.name));
    if (meta.generation > c.generation) c.generation = meta.generation; // the write counter goes on where it was
  }

  // An id is live when the entry at its key carries it.
  const flagged = new Set<string>();
  const confirm = (kind: EntryKind, key: AppKey, appId: number): boolean => {
    const want = HAS_META | (kind === 'delivery' ? IS_DELIVERY : 0);
    if (appId >= capacity || (state[appId]! & (HAS_META | IS_DELIVERY | KEY_OK)) !== want) return false;
    if (keyClaim[appId] !== hash53(keyId(kind, key))) return false;
    state[appId]! |= KEY_OK;
    c.setId(appId, true);
    return true;
  };
  // An entry no id confirms is an orphan (its meta never landed, or went first on a delete): it goes.
  const orphanApps: AppKey[] = [];
  const orphanDeliveries: AppKey[] = [];
  for (const [key, value] of dp.redirect.entries()) {
    c.entries.rs_redirect++;
    c.present.redirect.add(keyString(key));
    if (value.action === 'ports-only') continue;
    if (!confirm('app', key, value.appId)) {
      orphanApps.push(key);
      continue;
    }
    c.counts.apps++;
    if (isPortKey(key)) c.countPortKey(key.address, +1);
    else if (value.ports) flagged.add(key.address);
  }
  for (const [key, value] of dp.deliver.entries()) {
    c.entries.rs_deliver++;
    c.present.deliver.add(keyString(key));
    if (confirm('delivery', key, value.appId)) c.counts.deliveries++;
    else orphanDeliveries.push(key);
  }
  if (orphanApps.length) dp.redirect.deleteBatch(orphanApps);
  if (orphanDeliveries.length) dp.deliver.deleteBatch(orphanDeliveries);
  c.entries.rs_redirect -= orphanApps.length;
  c.entries.rs_deliver -= orphanDeliveries.length;
  for (const k of orphanApps) c.present.redirect.remove(keyString(k));
  for (const k of orphanDeliveries) c.present.deliver.remove(keyString(k));
  for (const k of orphanApps) if (isPortKey(k)) flagged.add(k.address); // its placeholder may be left alone

  const stale = outOfRange;
  for (let id = 0; id < capacity; id++) if ((state[id]! & (HAS_META | KEY_OK)) === HAS_META) stale.push(id);
  for (const id of stale) dp.meta.delete(id);
  for (const [id, meta] of dp.meta.entries()) if (id < capacity && state[id]! & KEY_OK) c.countDevice(meta.dev, +1);

  // The name index: each live id needs exactly its own name pointing at it.
  const orphans: [{ kind: EntryKind; name: string }, number][] = [];
  for (const [k, id] of dp.names.entries()) {
    const nid = nameId(k.kind, k.name);
    if (id < capacity && (state[id]! & (KEY_OK | NAME_OK)) === KEY_OK && nameClaim[id] === hash53(nid)) {
      state[id]! |= NAME_OK;
      c.present.names.add(nid);
    } else orphans.push([k, id]);
  }
  for (const [k, id] of orphans) {
    const meta = dp.meta.lookup(id);
    if (!meta || meta.kind !== k.kind || meta.name !== k.name || (state[id]! & NAME_OK) !== 0) dp.names.delete(k);
    else {
      state[id]! |= NAME_OK;
      c.present.names.add(nameId(k.kind, k.name));
    }
  }
  for (let id = 0; id < capacity; id++) {
    if ((state[id]! & (KEY_OK | NAME_OK)) !== KEY_OK) continue;
    const meta = dp.meta.lookup(id);
    if (!meta) continue;
    dp.names.update({ kind: meta.kind, name: meta.name }, id);
    c.present.names.add(nameId(meta.kind, meta.name));
  }
  c.entries.rs_app_meta = c.counts.apps + c.counts.deliveries;
  c.entries.rs_app_names = c.entries.rs_app_meta;
  if (c.counts.apps || c.counts.deliveries || stale.length || orphanApps.length || orphanDeliveries.length) {
    log.info({ ...c.counts, dropped: stale.length, orphans: orphanApps.length + orphanDeliveries.length }, 'adopted pinned entries');
  }
  return [...new Set([...c.portKeys.keys(), ...flagged])];
}

