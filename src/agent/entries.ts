/**
 * The one path for every entry change (DESIGN.md "One path for every
 * change"): validate → stage the desired entries → apply them to the maps
 * (single or batched updates) → log before/after. The HTTP API calls it
 * today; another source of desired state can call it tomorrow.
 *
 * State lives in bpffs only: the data plane's maps plus two pinned maps of
 * the agent's own (names by id, ids by name). The JS heap holds no copy of
 * the entries — an agent with a million entries stays small, a request
 * costs what it touches, and a restarted agent finds everything in place.
 */
import type { Logger } from 'pino';
import { isErrno } from '../bpf/native.js';
import type { HostDatapath } from '../datapath/host.js';
import type { EntryKind, MetaValue } from '../datapath/meta.js';
import type { AppKey, DeliverValue, RedirectValue, Target } from '../datapath/structs.js';
import { ConflictError, FieldError, NotFoundError } from '../model/errors.js';
import { SystemLinks, type DeviceTarget, type LinkResolver, type NeighbourWant } from './links.js';
import { MapChange, type Applicable } from './txn.js';
import {
  batchOps,
  keyString,
  parseAction,
  parseAppBody,
  parseBatchOp,
  parseDeliveryBody,
  parseAddressField,
  parseName,
  parsePageQuery,
  type Action,
  type AppSpec,
  type AppView,
  type CounterView,
  type DeliveryView,
  type PathView,
  type UplinkTx,
  type BatchOp,
  type EntrySpec,
} from '../model/entry.js';

interface Entry {
  appId: number;
  meta: MetaValue;
}

/** Who asked for a change, for the log. */
export type Source = 'api' | 'startup' | string;

/** An entry for one protocol/port of an address (not the whole address). */
function isPortKey(key: AppKey): boolean {
  return key.proto !== 'any' || key.port !== 0;
}

function wholeKey(address: string): AppKey {
  return { address, proto: 'any', port: 0 };
}

/**
 * The data plane looks an address up whole first and its (proto, port) key
 * only when the whole-address entry carries the `ports` flag (bpf/routeshift.h),
 * so an address with port entries needs a whole-address entry with the flag:
 * its app's, or this placeholder, which the program treats as "no entry" and
 * which users never see (it has no name).
 */
const PORTS_ONLY: RedirectValue = { action: 'ports-only', appId: 0xffffffff, ports: true };

/** The entry with the `ports` flag set or cleared (absent when clear, like the codec decodes it). */
function withPorts(v: RedirectValue, ports: boolean): RedirectValue {
  const { ports: _drop, ...rest } = v;
  return ports ? ({ ...rest, ports: true } as RedirectValue) : (rest as RedirectValue);
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function pathView(t: Target): PathView {
  return t.path === 'xdp' && t.slowPath !== 'xdp' ? { via: t.path, slowVia: t.slowPath } : { via: t.path };
}

/**
 * The LOCAL and delivery entries of a raw batch that need their app's MAC
 * looked up, read leniently before staging: an op this cannot read is left
 * for staging, which names what is wrong with it.
 */
function rawWants(ops: readonly unknown[]): NeighbourWant[] {
  const out: NeighbourWant[] = [];
  ops.forEach((raw, i) => {
    if (typeof raw !== 'object' || raw === null) return;
    const o = raw as Record<string, unknown>;
    const local = o.op === 'put-delivery' || (o.op === 'put-app' && (o.action === undefined || (o.action as { type?: unknown } | null)?.type === 'local'));
    if (!local || o.mac !== undefined || typeof o.address !== 'string' || typeof o.dev !== 'string') return;
    try {
      out.push({ address: parseAddressField(o.address, 'address'), dev: o.dev, field: `ops[${i}].mac` });
    } catch {
      /* staging reports it */
    }
  });
  return out;
}

function counter(c: { packets: bigint; bytes: bigint }): CounterView {
  return { packets: c.packets.toString(), bytes: c.bytes.toString() };
}

const nameId = (kind: EntryKind, name: string): string => `${kind}:${name}`;
const keyId = (kind: EntryKind, key: AppKey): string => `${kind}:${keyString(key)}`;

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

/** A batch yields to the event loop after staging this many ops. */
const STAGE_SLICE = 1024;

/** Per-entry "entry changed" log lines a request writes; the rest are counted. */
const LOGGED_CHANGES = 1000;

/**
 * Reads of the committed state, straight from the maps, plus the little the
 * maps cannot answer quickly: which ids are free (a bitmap), how many
 * entries of each kind, and which addresses have port entries.
 */
class Catalog {
  readonly #ids: Uint8Array;
  #idHint = 0;
  readonly counts = { apps: 0, deliveries: 0 };
  /** Address → how many app entries of it are port entries (usually few addresses). */
  readonly portKeys = new Map<string, number>();
  /** Device → how many entries deliver into it (few devices, many entries). */
  readonly devices = new Map<string, number>();

  constructor(private readonly dp: HostDatapath) {
    this.#ids = new Uint8Array(Math.ceil(dp.capacity / 8));
  }

  entry(kind: EntryKind, name: string): Entry | undefined {
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
  holder(kind: EntryKind, key: AppKey): { value: RedirectValue | DeliverValue | undefined; owner: string | undefined } {
    const value = kind === 'app' ? this.dp.redirect.lookup(key) : this.dp.deliver.lookup(key);
    if (!value || ('action' in value && value.action === 'ports-only')) return { value, owner: undefined };
    const meta = this.dp.meta.lookup(value.appId);
    return { value, owner: meta && meta.kind === kind ? meta.name : undefined };
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

export class EntryStore {
  readonly #catalog: Catalog;
  readonly #links: LinkResolver;
  /** A batch is being staged (across event-loop turns). */
  #staging = false;

  constructor(
    private readonly dp: HostDatapath,
    private readonly log: Logger,
    links: LinkResolver = new SystemLinks(dp.xdpMode),
  ) {
    this.#catalog = new Catalog(dp);
    this.#links = links;
    const settle = this.#adopt();
    // maps pinned by an older agent may lack port flags / placeholders: settle those addresses
    this.#commit([], 'startup', settle);
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
  #adopt(): string[] {
    const c = this.#catalog;
    const capacity = this.dp.capacity;
    const state = new Uint8Array(capacity);
    const keyClaim = new Float64Array(capacity);
    const nameClaim = new Float64Array(capacity);
    const outOfRange: number[] = [];
    for (const [appId, meta] of this.dp.meta.entries()) {
      if (appId >= capacity) {
        outOfRange.push(appId);
        continue;
      }
      state[appId] = HAS_META | (meta.kind === 'delivery' ? IS_DELIVERY : 0);
      keyClaim[appId] = hash53(keyId(meta.kind, meta.key));
      nameClaim[appId] = hash53(nameId(meta.kind, meta.name));
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
    for (const [key, value] of this.dp.redirect.entries()) {
      if (value.action === 'ports-only' || !confirm('app', key, value.appId)) continue;
      c.counts.apps++;
      if (isPortKey(key)) c.countPortKey(key.address, +1);
      else if (value.ports) flagged.add(key.address);
    }
    for (const [key, value] of this.dp.deliver.entries()) if (confirm('delivery', key, value.appId)) c.counts.deliveries++;

    const stale = outOfRange;
    for (let id = 0; id < capacity; id++) if ((state[id]! & (HAS_META | KEY_OK)) === HAS_META) stale.push(id);
    for (const id of stale) this.dp.meta.delete(id);
    for (const [id, meta] of this.dp.meta.entries()) if (id < capacity && state[id]! & KEY_OK) c.countDevice(meta.dev, +1);

    // The name index: each live id needs exactly its own name pointing at it.
    const orphans: [{ kind: EntryKind; name: string }, number][] = [];
    for (const [k, id] of this.dp.names.entries()) {
      if (id < capacity && (state[id]! & (KEY_OK | NAME_OK)) === KEY_OK && nameClaim[id] === hash53(nameId(k.kind, k.name))) state[id]! |= NAME_OK;
      else orphans.push([k, id]);
    }
    for (const [k, id] of orphans) {
      const meta = this.dp.meta.lookup(id);
      if (!meta || meta.kind !== k.kind || meta.name !== k.name || (state[id]! & NAME_OK) !== 0) this.dp.names.delete(k);
      else state[id]! |= NAME_OK;
    }
    for (let id = 0; id < capacity; id++) {
      if ((state[id]! & (KEY_OK | NAME_OK)) !== KEY_OK) continue;
      const meta = this.dp.meta.lookup(id);
      if (meta) this.dp.names.update({ kind: meta.kind, name: meta.name }, id);
    }
    if (c.counts.apps || c.counts.deliveries || stale.length) {
      this.log.info({ ...c.counts, dropped: stale.length }, 'adopted pinned entries');
    }
    return [...new Set([...c.portKeys.keys(), ...flagged])];
  }

  get counts(): { apps: number; deliveries: number } {
    return { ...this.#catalog.counts };
  }

  // ------------------------------------------------------------ reads --

  /**
   * One page of the entries of a kind, sorted by name within the page, and
   * the cursor of the next page (null after the last). Pages follow the
   * meta map's own order, so a million entries are listed without ever
   * holding them all; entries changed while a listing is paged through may
   * be missed or seen twice.
   */
  #page(kind: EntryKind, query: unknown): { entries: Entry[]; next: string | null } {
    const { limit, cursor } = parsePageQuery(query);
    const out: Entry[] = [];
    let token = cursor;
    do {
      const page = this.dp.meta.page(token, limit - out.length);
      for (const [appId, meta] of page.entries) if (meta.kind === kind) out.push({ appId, meta });
      token = page.next;
    } while (token && out.length < limit);
    out.sort((a, b) => (a.meta.name < b.meta.name ? -1 : a.meta.name > b.meta.name ? 1 : 0));
    return { entries: out, next: token ? token.toString('hex') : null };
  }

  /** `query`: `{limit?, cursor?}` (strings, as in a URL). */
  listApps(query?: unknown): { apps: AppView[]; next: string | null } {
    const { entries, next } = this.#page('app', query);
    const tx = this.dp.getConfig().uplinkTx;
    return { apps: entries.map((e) => this.#appView(e, tx)), next };
  }

  getApp(name: string): AppView {
    const e = this.#catalog.entry('app', name);
    if (!e) throw new NotFoundError(`no app named ${JSON.stringify(name)}`);
    return this.#appView(e, this.dp.getConfig().uplinkTx);
  }

  listDeliveries(query?: unknown): { deliveries: DeliveryView[]; next: string | null } {
    const { entries, next } = this.#page('delivery', query);
    return { deliveries: entries.map((e) => this.#deliveryView(e)), next };
  }

  getDelivery(name: string): DeliveryView {
    const e = this.#catalog.entry('delivery', name);
    if (!e) throw new NotFoundError(`no delivery named ${JSON.stringify(name)}`);
    return this.#deliveryView(e);
  }

  /** Per-entry packet/byte counters without building whole views (for /metrics). */
  *counters(limit: number): IterableIterator<{ name: string; kind: EntryKind; stats: ReturnType<HostDatapath['appStats']> }> {
    let n = 0;
    for (const [appId, meta] of this.dp.meta.entries()) {
      if (n++ >= limit) return;
      yield { name: meta.name, kind: meta.kind, stats: this.dp.appStats(appId) };
    }
  }

  /** Each entry's delivery path now, up to a limit (for /metrics). */
  *paths(limit: number): IterableIterator<{ name: string; kind: EntryKind; path: string }> {
    let n = 0;
    const tx = this.dp.getConfig().uplinkTx;
    for (const [, meta] of this.dp.meta.entries()) {
      if (n++ >= limit) return;
      const v = meta.kind === 'delivery' ? this.dp.deliver.lookup(meta.key) : this.dp.redirect.lookup(meta.key);
      const path = !v ? 'none' : 'path' in v ? v.path : v.action === 'forward' ? `forward-${tx}` : 'none';
      yield { name: meta.name, kind: meta.kind, path };
    }
  }

  /** The devices entries deliver into, with how many entries each (the path keeper watches them). */
  devices(): ReadonlyMap<string, number> {
    return this.#catalog.devices;
  }

  #entryView(e: Entry, path: PathView): Omit<AppView, 'action' | 'counters'> {
    const { key } = e.meta;
    return {
      name: e.meta.name,
      address: key.address,
      proto: key.proto,
      port: key.port,
      dev: e.meta.dev,
      mac: e.meta.mac,
      macSource: e.meta.macSource,
      appId: e.appId,
      path,
    };
  }

  #appView(e: Entry, tx: UplinkTx): AppView {
    const v = this.dp.redirect.lookup(e.meta.key);
    const stats = this.dp.appStats(e.appId);
    const action: Action = v?.action === 'forward' ? { type: 'forward', tunnel: v.tunnel } : { type: 'local' };
    const path: PathView = v?.action === 'local' ? pathView(v) : { via: tx };
    return { ...this.#entryView(e, path), action, counters: { local: counter(stats.local), forward: counter(stats.forward) } };
  }

  #deliveryView(e: Entry): DeliveryView {
    const v = this.dp.deliver.lookup(e.meta.key);
    const stats = this.dp.appStats(e.appId);
    return { ...this.#entryView(e, v ? pathView(v) : { via: 'kernel' }), counters: { deliver: counter(stats.deliver) } };
  }

  // ----------------------------------------------------------- writes --

  /**
   * Writes run one at a time, in the order they arrive: a batch stages
   * across event-loop turns (reads and /metrics answer meanwhile), neighbour
   * resolution awaits answers, and the next write starts once it settled.
   */
  #writes: Promise<unknown> = Promise.resolve();

  #serialized<T>(write: () => Promise<T> | T): Promise<T> {
    const run = this.#writes.then(write, write);
    this.#writes = run.catch(() => undefined);
    return run;
  }

  async putApp(name: unknown, body: unknown, who: Source): Promise<{ app: AppView; created: boolean }> {
    const n = parseName(name);
    const spec = parseAppBody(body);
    return this.#serialized(async () => {
      const created = !this.#catalog.entry('app', n);
      const op: BatchOp = { op: 'put-app', name: n, spec };
      await this.#links.resolve(this.#wants([op]));
      this.#commit([op], who);
      return { app: this.getApp(n), created };
    });
  }

  async setAction(name: unknown, body: unknown, who: Source): Promise<AppView> {
    const n = parseName(name);
    const op: BatchOp = { op: 'set-action', name: n, action: parseAction(body, 'body') };
    return this.#serialized(async () => {
      await this.#links.resolve(this.#wants([op]));
      this.#commit([op], who);
      return this.getApp(n);
    });
  }

  async deleteApp(name: unknown, who: Source): Promise<void> {
    const op: BatchOp = { op: 'delete-app', name: parseName(name) };
    return this.#serialized(() => this.#commit([op], who));
  }

  async putDelivery(name: unknown, body: unknown, who: Source): Promise<{ delivery: DeliveryView; created: boolean }> {
    const n = parseName(name);
    const spec = parseDeliveryBody(body);
    return this.#serialized(async () => {
      const created = !this.#catalog.entry('delivery', n);
      const op: BatchOp = { op: 'put-delivery', name: n, spec };
      await this.#links.resolve(this.#wants([op]));
      this.#commit([op], who);
      return { delivery: this.getDelivery(n), created };
    });
  }

  async deleteDelivery(name: unknown, who: Source): Promise<void> {
    const op: BatchOp = { op: 'delete-delivery', name: parseName(name) };
    return this.#serialized(() => this.#commit([op], who));
  }

  /**
   * Many changes, all validated and staged before any is applied, then
   * applied with batched map updates, all or nothing. Ops are parsed one at
   * a time as they are staged: a drain of 100k ops keeps no second copy.
   *
   * Staging yields to the event loop every STAGE_SLICE ops, so /healthz and
   * /metrics keep answering during a batch that takes seconds.
   */
  async batch(body: unknown, who: Source): Promise<number> {
    const ops = batchOps(body);
    return this.#serialized(async () => {
      await this.#links.resolve(rawWants(ops));
      this.#staging = true;
      try {
        const plan = new Plan(this.dp, this.#catalog, this.#links);
        for (let i = 0; i < ops.length; i++) {
          plan.stage(parseBatchOp(ops[i], i), ops.length > 1 ? `ops[${i}]` : '');
          if (i % STAGE_SLICE === STAGE_SLICE - 1) await new Promise<void>((r) => setImmediate(r));
        }
        this.#apply(plan, who);
      } finally {
        this.#staging = false;
      }
      return ops.length;
    });
  }

  /**
   * Put every LOCAL and delivery entry on `dev` again, as it is, after the
   * device changed (its delivery path, index or MAC): each gets the
   * device's path and index now, and a MAC the agent resolved is looked up
   * again (kept when the table has none). FORWARD entries do not send into
   * their device and are left alone. Returns how many entries were put.
   * Scans the meta map: devices change rarely.
   */
  async retarget(dev: string, who: Source): Promise<number> {
    return this.#serialized(() => {
      const ops: BatchOp[] = [];
      for (const [, meta] of this.dp.meta.entries()) {
        if (meta.dev !== dev) continue;
        let mac = meta.mac ?? undefined;
        if (meta.macSource === 'resolved') {
          try {
            mac = this.#links.neighbourMac(meta.key.address, dev, 'mac');
          } catch {
            /* no answer now: keep the MAC it had */
          }
        }
        const spec: EntrySpec = { key: meta.key, dev, mac, macSource: meta.macSource };
        if (meta.kind === 'delivery') ops.push({ op: 'put-delivery', name: meta.name, spec });
        else if (this.dp.redirect.lookup(meta.key)?.action === 'local') ops.push({ op: 'put-app', name: meta.name, spec: { ...spec, action: { type: 'local' } } });
      }
      if (ops.length) this.#commit(ops, who);
      return ops.length;
    });
  }

  /** The entries of these ops that need their app's MAC looked up (no MAC given, LOCAL or delivery). */
  #wants(ops: readonly BatchOp[]): NeighbourWant[] {
    const out: NeighbourWant[] = [];
    for (const op of ops) {
      if ((op.op === 'put-app' && op.spec.action.type === 'local') || op.op === 'put-delivery') {
        if (op.spec.mac === undefined) out.push({ address: op.spec.key.address, dev: op.spec.dev, field: 'mac' });
      } else if (op.op === 'set-action' && op.action.type === 'local') {
        const e = this.#catalog.entry('app', op.name);
        if (e && e.meta.mac === null) out.push({ address: e.meta.key.address, dev: e.meta.dev, field: 'mac' });
      }
    }
    return out;
  }

  #checkIdle(): void {
    if (this.#staging) throw new Error('internal: an entry change started while a batch was being staged (writes must be serialized)');
  }

  // -------------------------------------------------------- the path --

  #commit(ops: readonly BatchOp[], who: Source, settle: readonly string[] = []): void {
    this.#checkIdle();
    const plan = new Plan(this.dp, this.#catalog, this.#links);
    ops.forEach((op, i) => plan.stage(op, ops.length > 1 ? `ops[${i}]` : ''));
    for (const address of settle) plan.touch(address);
    this.#apply(plan, who);
  }

  /** Apply a staged plan to the maps (undone exactly on failure), publish it, log it. */
  #apply(plan: Plan, who: Source): void {
    const changes = plan.changes();
    if (changes.every((c) => c.size === 0)) return; // idempotent: nothing differs
    const applied: Applicable[] = [];
    try {
      for (const c of changes) {
        // Listed before it runs: a batched update the kernel stops part-way has written some entries.
        applied.push(c);
        c.apply();
      }
    } catch (err) {
      const failures = applied.reverse().flatMap((c) => c.rollback());
      this.log.error({ who, err: (err as Error).message, rollbackFailures: failures }, 'entry change failed and was rolled back');
      if (failures.length) (err as Error).message += `; rollback incomplete: ${failures.join('; ')}`;
      else if (isErrno(err, 'E2BIG')) {
        // A full map is the request's conflict with the host's capacity, not an agent fault.
        throw new ConflictError(
          `${err.message}; nothing was changed. Addresses with port entries only also take a slot (a placeholder); ` +
            'free entries, or restart the agent with a larger --capacity after `routeshift agent --cleanup`',
        );
      }
      throw err;
    }
    plan.publish();
    this.dp.resetAppStats(plan.resetStats);
    for (const r of plan.results) {
      this.log.info({ who, op: r.op, name: r.name, before: r.before ?? null, after: r.after ?? null }, 'entry changed');
    }
    const more = plan.changed - plan.results.length;
    if (more > 0) this.log.info({ who, more }, 'entry changes not logged one by one');
    if (plan.settled) this.log.info({ who, addresses: plan.settled }, 'whole-address port flags / placeholders updated');
  }
}

interface StagedResult {
  op: BatchOp['op'];
  name: string;
  before: RedirectValue | DeliverValue | undefined;
  after: RedirectValue | DeliverValue | undefined;
}

type ByKind<T> = Record<EntryKind, T>;

/**
 * The staged effect of one request: an overlay on the catalog, so ops
 * within one batch see each other while nothing committed is touched until
 * every op has been validated; then the map changes to apply.
 *
 * A drain stages one op per application, so per op this keeps only what
 * later ops or the apply need: the entry by name, the key's owner, and one
 * record in each map change.
 */
class Plan {
  /** The first changes, for the log (the rest are counted in `changed`). */
  readonly results: StagedResult[] = [];
  changed = 0;
  readonly resetStats: number[] = [];
  /** Staged entries by name (null = deleted by this plan). */
  readonly #entries: ByKind<Map<string, Entry | null>> = { app: new Map(), delivery: new Map() };
  /** Staged key owners by keyString (null = freed by this plan). */
  readonly #owners: ByKind<Map<string, string | null>> = { app: new Map(), delivery: new Map() };
  readonly #idsTaken = new Set<number>();
  readonly #idsFreed = new Set<number>();
  readonly #portKeys = new Map<string, number>();
  readonly #countDelta = { apps: 0, deliveries: 0 };
  /** Addresses whose whole-address flag/placeholder must be settled. */
  readonly #touched = new Set<string>();
  readonly #links = new Map<string, DeviceTarget>();
  readonly #devices = new Map<string, number>();
  #settled = false;
  /** How many whole-address entries settling changed (for the log). */
  settled = 0;
  #nextId: number;
  readonly #redirect: MapChange<AppKey, RedirectValue>;
  readonly #deliver: MapChange<AppKey, DeliverValue>;
  readonly #meta: MapChange<number, MetaValue>;
  readonly #names: MapChange<{ kind: EntryKind; name: string }, number>;

  constructor(
    private readonly dp: HostDatapath,
    private readonly catalog: Catalog,
    private readonly links: LinkResolver,
  ) {
    this.#nextId = catalog.idHint;
    this.#redirect = new MapChange(dp.redirect, keyString);
    this.#deliver = new MapChange(dp.deliver, keyString);
    this.#meta = new MapChange(dp.meta, (id) => id);
    this.#names = new MapChange(dp.names, (k) => nameId(k.kind, k.name));
  }

  // --------------------------------------------------- overlay reads --

  #entry(kind: EntryKind, name: string): Entry | undefined {
    const staged = this.#entries[kind].get(name);
    if (staged !== undefined) return staged ?? undefined;
    return this.catalog.entry(kind, name);
  }

  #owner(kind: EntryKind, key: AppKey, ks: string): string | undefined {
    const staged = this.#owners[kind].get(ks);
    if (staged !== undefined) return staged ?? undefined;
    return this.catalog.owner(kind, key);
  }

  #portCount(address: string): number {
    return this.#portKeys.get(address) ?? this.catalog.portKeys.get(address) ?? 0;
  }

  #countPortKey(address: string, by: number): void {
    this.#portKeys.set(address, this.#portCount(address) + by);
  }

  #idFree(id: number): boolean {
    return this.#idsFreed.has(id) ? false /* not reused within the plan: rollback stays exact */ : !this.catalog.idUsed(id) && !this.#idsTaken.has(id);
  }

  #allocId(field: string): number {
    while (this.#nextId < this.dp.capacity && !this.#idFree(this.#nextId)) this.#nextId++;
    if (this.#nextId >= this.dp.capacity) throw new ConflictError(`${field || 'request'}: all ${this.dp.capacity} application ids are in use`);
    const id = this.#nextId++;
    this.#idsTaken.add(id);
    return id;
  }

  /** A device as a target, once per device per request (a batch names the same few devices). */
  #link(dev: string, field: string): DeviceTarget {
    let l = this.#links.get(dev);
    if (!l) {
      l = this.links.device(dev, field);
      this.#links.set(dev, l);
    }
    return l;
  }

  #countDevice(dev: string, by: number): void {
    this.#devices.set(dev, (this.#devices.get(dev) ?? 0) + by);
  }

  /** The data-plane map change of a kind of entry. */
  #change(kind: EntryKind): MapChange<AppKey, RedirectValue | DeliverValue> {
    return (kind === 'app' ? this.#redirect : this.#deliver) as MapChange<AppKey, RedirectValue | DeliverValue>;
  }

  #record(r: StagedResult): void {
    if (this.changed++ < LOGGED_CHANGES) this.results.push(r);
  }

  // ------------------------------------------------------------ stage --

  /** Names first, then the data plane. */
  changes(): Applicable[] {
    if (!this.#settled) this.#settle();
    return [this.#meta, this.#names, this.#redirect, this.#deliver];
  }

  /** Settle this address's whole-address entry when the plan is done. */
  touch(address: string): void {
    this.#touched.add(address);
  }

  /** After a successful apply: make the catalog what the maps now hold. */
  publish(): void {
    const c = this.catalog;
    for (const id of this.#idsTaken) c.setId(id, true);
    // Every id below #nextId is now in use; freed ids lower the hint again.
    if (this.#idsTaken.size) c.idHint = Math.max(c.idHint, this.#nextId);
    for (const id of this.#idsFreed) c.setId(id, false);
    c.counts.apps += this.#countDelta.apps;
    c.counts.deliveries += this.#countDelta.deliveries;
    for (const [address, n] of this.#portKeys) {
      if (n > 0) c.portKeys.set(address, n);
      else c.portKeys.delete(address);
    }
    for (const [dev, by] of this.#devices) c.countDevice(dev, by);
  }

  /** `before`: what the map holds for the key, when already read (or known absent). */
  #stageRedirect(key: AppKey, value: RedirectValue | null, ks: string, before?: { value: RedirectValue | undefined }): void {
    if (value) this.#redirect.upsert(key, value, before, ks);
    else this.#redirect.delete(key, ks);
  }

  /**
   * Give every touched address the whole-address entry the program needs:
   * its app's entry with the `ports` flag set exactly when the address has
   * port entries, else a placeholder while it has port entries, else none.
   * Staged in the same map change as the ops, so a request applies all of
   * it or none. Any order of these writes is safe for packets: a port entry
   * not yet flagged is not yet looked up (the whole-address answer, as
   * before the request), a flag without its port entry falls back to the
   * whole address, a placeholder without port entries passes (as no entry).
   */
  #settle(): void {
    this.#settled = true;
    for (const address of this.#touched) {
      const key = wholeKey(address);
      const ks = keyString(key);
      const ports = this.#portCount(address) > 0;
      const current = this.#redirect.current(key, ks) ?? null;
      let want: RedirectValue | null;
      if (this.#owner('app', key, ks) !== undefined) {
        if (!current || current.action === 'ports-only') continue; // staged by the op itself; cannot happen
        want = withPorts(current, ports);
      } else {
        want = ports ? PORTS_ONLY : null;
      }
      if (!sameJson(current, want)) {
        this.#stageRedirect(key, want, ks);
        this.settled++;
      }
    }
  }

  /**
   * Whole-address entries depend on the address's port entries: settle the
   * address when a port entry comes or goes, or when its whole-address
   * entry goes while port entries remain (a placeholder takes its place).
   * Whole-address puts carry the flag the count gives when they are staged.
   */
  #touchIfPortsMatter(key: AppKey, deleting: boolean): void {
    if (isPortKey(key) || (deleting && this.#portCount(key.address) > 0)) this.touch(key.address);
  }

  stage(op: BatchOp, field: string): void {
    const f = (name: string): string => (field ? `${field}.${name}` : name);
    switch (op.op) {
      case 'put-app':
        return this.#putEntry('app', op.name, op.spec, op.spec.action, f);
      case 'put-delivery':
        return this.#putEntry('delivery', op.name, op.spec, undefined, f);
      case 'set-action': {
        const e = this.#entry('app', op.name);
        if (!e) throw new NotFoundError(`${field ? `${field}: ` : ''}no app named ${JSON.stringify(op.name)}`);
        const spec: AppSpec = { key: e.meta.key, dev: e.meta.dev, mac: e.meta.mac ?? undefined, macSource: e.meta.macSource, action: op.action };
        // The key is the entry's own: no other name can hold it, skip the owner lookup.
        return this.#putEntry('app', op.name, spec, op.action, f, e);
      }
      case 'delete-app':
      case 'delete-delivery': {
        const kind: EntryKind = op.op === 'delete-app' ? 'app' : 'delivery';
        const e = this.#entry(kind, op.name);
        if (!e) throw new NotFoundError(`${field ? `${field}: ` : ''}no ${kind} named ${JSON.stringify(op.name)}`);
        const { key } = e.meta;
        const ks = keyString(key);
        const before = this.#change(kind).current(key, ks);
        if (kind === 'app') {
          this.#stageRedirect(key, null, ks);
          if (isPortKey(key)) this.#countPortKey(key.address, -1);
          this.#touchIfPortsMatter(key, true);
          this.#countDelta.apps--;
        } else {
          this.#deliver.delete(key, ks);
          this.#countDelta.deliveries--;
        }
        this.#meta.delete(e.appId);
        this.#names.delete({ kind, name: op.name });
        this.#countDevice(e.meta.dev, -1);
        this.#entries[kind].set(op.name, null);
        this.#owners[kind].set(ks, null);
        if (this.#idsTaken.delete(e.appId)) {
          // created and deleted within this plan: the id was never committed
        } else {
          this.#idsFreed.add(e.appId);
        }
        this.#record({ op: op.op, name: op.name, before, after: undefined });
        return;
      }
    }
  }

  #putEntry(
    kind: EntryKind,
    name: string,
    spec: EntrySpec,
    action: Action | undefined,
    f: (n: string) => string,
    known?: Entry,
  ): void {
    const existing = known ?? this.#entry(kind, name);
    const ks = keyString(spec.key);
    const change = this.#change(kind);
    // Who holds the key, and what the map holds for it before this plan when that came with the answer.
    let owner: string | undefined = known ? name : undefined;
    let committed: { value: RedirectValue | DeliverValue | undefined } | undefined;
    if (!known) {
      const planned = this.#owners[kind].get(ks);
      if (planned !== undefined) owner = planned ?? undefined;
      else {
        const h = this.catalog.holder(kind, spec.key);
        owner = h.owner;
        committed = { value: h.value };
      }
    }
    if (owner !== undefined && owner !== name) {
      throw new ConflictError(`${f('address')}: ${ks} already belongs to ${kind} ${JSON.stringify(owner)}`);
    }
    if (existing && keyString(existing.meta.key) !== ks) {
      throw new ConflictError(
        `${f('address')}: ${kind} ${JSON.stringify(name)} is ${keyString(existing.meta.key)}; delete it before giving the name another address`,
      );
    }
    const link = this.#link(spec.dev, f('dev'));
    const needsMac = kind === 'delivery' || action?.type === 'local';
    let mac: string | null;
    let macSource: MetaValue['macSource'];
    if (spec.mac !== undefined) {
      mac = spec.mac;
      macSource = spec.macSource ?? 'given';
    } else if (needsMac) {
      mac = this.links.neighbourMac(spec.key.address, spec.dev, f('mac'));
      macSource = 'resolved';
    } else {
      mac = existing?.meta.mac ?? null;
      macSource = existing?.meta.macSource ?? 'resolved';
    }
    const appId = existing?.appId ?? this.#allocId(f('name'));
    const meta: MetaValue = { kind, key: spec.key, name, dev: spec.dev, mac, macSource };
    const target = (): Target => ({ ifindex: link.ifindex, dmac: mac!, smac: link.mac, path: link.path, slowPath: link.slowPath });

    let value: RedirectValue | DeliverValue;
    if (kind === 'delivery') {
      value = { appId, ...target() };
    } else if (action?.type === 'forward') {
      value = { action: 'forward', appId, tunnel: action.tunnel };
    } else {
      value = { action: 'local', appId, ...target() };
    }
    if (!existing) this.#countDevice(spec.dev, +1);
    else if (existing.meta.dev !== spec.dev) {
      this.#countDevice(existing.meta.dev, -1);
      this.#countDevice(spec.dev, +1);
    }
    if (kind === 'app') {
      // the whole-address entry says whether the address has port entries
      if (isPortKey(spec.key)) {
        if (!existing) this.#countPortKey(spec.key.address, +1);
      } else {
        value = withPorts(value as RedirectValue, this.#portCount(spec.key.address) > 0);
      }
      this.#touchIfPortsMatter(spec.key, false);
    }
    // What the map holds for the key now (as this plan sees it): read once, and handed
    // to the map change so apply needs no second lookup. No owner does not mean no value
    // for an app key: a ports-only placeholder may hold it. (A key the plan has staged
    // has a planned owner, so `committed` is only set for keys the plan has not touched.)
    const before = committed ? committed.value : change.current(spec.key, ks);
    if (!existing) this.#meta.insert(appId, meta);
    else if (!sameJson(existing.meta, meta)) this.#meta.upsert(appId, meta);
    if (!existing) {
      this.#names.insert({ kind, name }, appId);
      this.resetStats.push(appId);
      if (kind === 'app') this.#countDelta.apps++;
      else this.#countDelta.deliveries++;
    }
    const shownBefore = existing ? before : undefined;
    if (!sameJson(before, value)) {
      change.upsert(spec.key, value, { value: before }, ks);
    }
    this.#entries[kind].set(name, { appId, meta });
    this.#owners[kind].set(ks, name);
    if (!existing || !sameJson(shownBefore, value) || !sameJson(existing.meta, meta)) {
      this.#record({ op: kind === 'app' ? 'put-app' : 'put-delivery', name, before: shownBefore, after: value });
    }
  }
}

export { FieldError };
