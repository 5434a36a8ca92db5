/**
 * The one path for every entry change (DESIGN.md "One path for every
 * change"): validate → stage the desired entries → apply them to the maps
 * (single or batched updates) → log before/after. The HTTP API calls it
 * today; another source of desired state can call it tomorrow.
 *
 * State lives in bpffs only: the maps plus the pinned name map (meta), so a
 * restarted agent rebuilds its indexes from there.
 */
import type { Logger } from 'pino';
import type { HostDatapath } from '../datapath/host.js';
import type { MetaValue } from '../datapath/meta.js';
import type { AppKey, DeliverValue, RedirectValue } from '../datapath/structs.js';
import { ConflictError, FieldError, NotFoundError } from './errors.js';
import { systemLinks, type LinkResolver } from './links.js';
import { MapChange, type Applicable } from './txn.js';
import {
  keyString,
  parseAction,
  parseAppBody,
  parseBatchBody,
  parseDeliveryBody,
  parseName,
  type ActionSpec,
  type AppSpec,
  type BatchOp,
  type EntrySpec,
} from './validate.js';

export interface CounterView {
  packets: string;
  bytes: string;
}

export interface AppView {
  name: string;
  address: string;
  proto: string | number;
  port: number;
  dev: string;
  mac: string | null;
  action: ActionSpec;
  appId: number;
  counters: { local: CounterView; forward: CounterView };
}

export interface DeliveryView {
  name: string;
  address: string;
  proto: string | number;
  port: number;
  dev: string;
  mac: string | null;
  appId: number;
  counters: { deliver: CounterView };
}

interface Entry {
  appId: number;
  meta: MetaValue;
}

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

/** Who asked for a change, for the log. */
export type Source = 'api' | 'startup' | string;

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function counter(c: { packets: bigint; bytes: bigint }): CounterView {
  return { packets: c.packets.toString(), bytes: c.bytes.toString() };
}

export class EntryStore {
  readonly #apps = new Map<string, Entry>();
  readonly #deliveries = new Map<string, Entry>();
  readonly #appByKey = new Map<string, string>();
  readonly #deliveryByKey = new Map<string, string>();
  readonly #usedIds = new Set<number>();
  /** Address -> how many of its app entries are port entries. */
  readonly #portKeys = new Map<string, number>();

  constructor(
    private readonly dp: HostDatapath,
    private readonly log: Logger,
    private readonly links: LinkResolver = systemLinks,
  ) {
    this.#adopt();
    // maps pinned by an older agent may lack port flags / placeholders: settle every address
    this.#commit([], 'startup', [...this.#apps.values()].map((e) => e.meta.key.address));
  }

  /** Rebuild the indexes from pinned state; drop names whose entry never made it into its map. */
  #adopt(): void {
    const stale: number[] = [];
    for (const [appId, meta] of this.dp.meta.entries()) {
      const map = meta.kind === 'app' ? this.dp.redirect : this.dp.deliver;
      if (map.lookup(meta.key) === undefined) {
        stale.push(appId);
        continue;
      }
      this.#index(meta.kind === 'app' ? this.#apps : this.#deliveries, meta.kind === 'app' ? this.#appByKey : this.#deliveryByKey, appId, meta);
    }
    for (const id of stale) this.dp.meta.delete(id);
    if (this.#usedIds.size || stale.length) {
      this.log.info({ apps: this.#apps.size, deliveries: this.#deliveries.size, dropped: stale.length }, 'adopted pinned entries');
    }
  }

  #index(byName: Map<string, Entry>, byKey: Map<string, string>, appId: number, meta: MetaValue): void {
    byName.set(meta.name, { appId, meta });
    byKey.set(keyString(meta.key), meta.name);
    this.#usedIds.add(appId);
    if (meta.kind === 'app' && isPortKey(meta.key)) countPortKey(this.#portKeys, meta.key.address, +1);
  }

  #unindex(byName: Map<string, Entry>, byKey: Map<string, string>, name: string): void {
    const e = byName.get(name);
    if (!e) return;
    byName.delete(name);
    byKey.delete(keyString(e.meta.key));
    this.#usedIds.delete(e.appId);
    if (e.meta.kind === 'app' && isPortKey(e.meta.key)) countPortKey(this.#portKeys, e.meta.key.address, -1);
  }

  get counts(): { apps: number; deliveries: number } {
    return { apps: this.#apps.size, deliveries: this.#deliveries.size };
  }

  // ------------------------------------------------------------ reads --

  listApps(): AppView[] {
    return [...this.#apps.keys()].sort().map((n) => this.getApp(n));
  }

  getApp(name: string): AppView {
    const e = this.#apps.get(name);
    if (!e) throw new NotFoundError(`no app named ${JSON.stringify(name)}`);
    const v = this.dp.redirect.lookup(e.meta.key);
    const stats = this.dp.appStats(e.appId);
    const action: ActionSpec = v?.action === 'forward' ? { type: 'forward', tunnel: v.tunnel } : { type: 'local' };
    return {
      name,
      ...this.#keyView(e.meta.key),
      dev: e.meta.dev,
      mac: e.meta.mac,
      action,
      appId: e.appId,
      counters: { local: counter(stats.local), forward: counter(stats.forward) },
    };
  }

  listDeliveries(): DeliveryView[] {
    return [...this.#deliveries.keys()].sort().map((n) => this.getDelivery(n));
  }

  getDelivery(name: string): DeliveryView {
    const e = this.#deliveries.get(name);
    if (!e) throw new NotFoundError(`no delivery named ${JSON.stringify(name)}`);
    const stats = this.dp.appStats(e.appId);
    return {
      name,
      ...this.#keyView(e.meta.key),
      dev: e.meta.dev,
      mac: e.meta.mac,
      appId: e.appId,
      counters: { deliver: counter(stats.deliver) },
    };
  }

  #keyView(key: AppKey): { address: string; proto: string | number; port: number } {
    return { address: key.address, proto: key.proto, port: key.port };
  }

  // ----------------------------------------------------------- writes --

  putApp(name: unknown, body: unknown, who: Source): { app: AppView; created: boolean } {
    const n = parseName(name);
    const created = !this.#apps.has(n);
    this.#commit([{ op: 'put-app', name: n, spec: parseAppBody(body) }], who);
    return { app: this.getApp(n), created };
  }

  setAction(name: unknown, body: unknown, who: Source): AppView {
    const n = parseName(name);
    this.#commit([{ op: 'set-action', name: n, action: parseAction(body, 'body') }], who);
    return this.getApp(n);
  }

  deleteApp(name: unknown, who: Source): void {
    this.#commit([{ op: 'delete-app', name: parseName(name) }], who);
  }

  putDelivery(name: unknown, body: unknown, who: Source): { delivery: DeliveryView; created: boolean } {
    const n = parseName(name);
    const created = !this.#deliveries.has(n);
    this.#commit([{ op: 'put-delivery', name: n, spec: parseDeliveryBody(body) }], who);
    return { delivery: this.getDelivery(n), created };
  }

  deleteDelivery(name: unknown, who: Source): void {
    this.#commit([{ op: 'delete-delivery', name: parseName(name) }], who);
  }

  /** Many changes, validated first, applied with batched map updates, all or nothing. */
  batch(body: unknown, who: Source): number {
    const ops = parseBatchBody(body);
    this.#commit(ops, who);
    return ops.length;
  }

  // -------------------------------------------------------- the path --

  #commit(ops: readonly BatchOp[], who: Source, settle: readonly string[] = []): void {
    const plan = new Plan(this.dp, this.links, this.#apps, this.#deliveries, this.#appByKey, this.#deliveryByKey, this.#usedIds, this.#portKeys);
    ops.forEach((op, i) => plan.stage(op, ops.length > 1 ? `ops[${i}]` : ''));
    for (const address of settle) plan.touch(address);
    const changes = plan.changes();
    if (changes.every((c) => c.size === 0)) return; // idempotent: nothing differs
    const applied: Applicable[] = [];
    try {
      for (const c of changes) {
        c.apply();
        applied.push(c);
      }
    } catch (err) {
      const failures = applied.reverse().flatMap((c) => c.rollback());
      this.log.error({ who, err: (err as Error).message, rollbackFailures: failures }, 'entry change failed and was rolled back');
      if (failures.length) (err as Error).message += `; rollback incomplete: ${failures.join('; ')}`;
      throw err;
    }
    for (const id of plan.resetStats) this.dp.resetAppStats(id);
    for (const r of plan.results) {
      const byName = r.kind === 'app' ? this.#apps : this.#deliveries;
      const byKey = r.kind === 'app' ? this.#appByKey : this.#deliveryByKey;
      this.#unindex(byName, byKey, r.name);
      if (r.after) this.#index(byName, byKey, r.after.appId, r.after.meta);
    }
    for (const r of plan.results.slice(0, 1000)) {
      this.log.info({ who, op: r.op, name: r.name, before: r.beforeValue ?? null, after: r.afterValue ?? null }, 'entry changed');
    }
    if (plan.results.length > 1000) this.log.info({ who, more: plan.results.length - 1000 }, 'entry changes not logged one by one');
    if (plan.settled) this.log.info({ who, addresses: plan.settled }, 'whole-address port flags / placeholders updated');
  }
}

function countPortKey(counts: Map<string, number>, address: string, by: number): void {
  const n = (counts.get(address) ?? 0) + by;
  if (n > 0) counts.set(address, n);
  else counts.delete(address);
}

interface StagedResult {
  op: BatchOp['op'];
  kind: 'app' | 'delivery';
  name: string;
  after: Entry | undefined;
  beforeValue: RedirectValue | DeliverValue | undefined;
  afterValue: RedirectValue | DeliverValue | undefined;
}

/**
 * The staged effect of a request: works on copies of the indexes so ops
 * within one batch see each other, and produces the map changes.
 */
class Plan {
  readonly results: StagedResult[] = [];
  readonly resetStats: number[] = [];
  readonly #apps: Map<string, Entry>;
  readonly #deliveries: Map<string, Entry>;
  readonly #appByKey: Map<string, string>;
  readonly #deliveryByKey: Map<string, string>;
  readonly #usedIds: Set<number>;
  readonly #portKeys: Map<string, number>;
  /** Addresses whose whole-address flag/placeholder must be settled. */
  readonly #touched = new Set<string>();
  /** What this plan writes to rs_redirect, by key (null = delete). */
  readonly #staged = new Map<string, RedirectValue | null>();
  #settled = false;
  /** How many whole-address entries settling changed (for the log). */
  settled = 0;
  #nextId = 0;
  readonly #redirect: MapChange<AppKey, RedirectValue>;
  readonly #deliver: MapChange<AppKey, DeliverValue>;
  readonly #meta: MapChange<number, MetaValue>;

  constructor(
    private readonly dp: HostDatapath,
    private readonly links: LinkResolver,
    apps: Map<string, Entry>,
    deliveries: Map<string, Entry>,
    appByKey: Map<string, string>,
    deliveryByKey: Map<string, string>,
    usedIds: Set<number>,
    portKeys: Map<string, number>,
  ) {
    this.#portKeys = new Map(portKeys);
    this.#apps = new Map(apps);
    this.#deliveries = new Map(deliveries);
    this.#appByKey = new Map(appByKey);
    this.#deliveryByKey = new Map(deliveryByKey);
    this.#usedIds = new Set(usedIds);
    this.#redirect = new MapChange(dp.redirect, keyString);
    this.#deliver = new MapChange(dp.deliver, keyString);
    this.#meta = new MapChange(dp.meta, String);
  }

  /** Names first (meta), then the data plane; deletes of meta happen with the entry. */
  changes(): Applicable[] {
    if (!this.#settled) this.#settle();
    return [this.#meta, this.#redirect, this.#deliver];
  }

  /** Settle this address's whole-address entry when the plan is done. */
  touch(address: string): void {
    this.#touched.add(address);
  }

  #stageRedirect(key: AppKey, value: RedirectValue | null): void {
    if (value) this.#redirect.upsert(key, value);
    else this.#redirect.delete(key);
    this.#staged.set(keyString(key), value);
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
      const ports = this.#portKeys.has(address);
      const current = this.#staged.has(ks) ? this.#staged.get(ks)! : (this.dp.redirect.lookup(key) ?? null);
      let want: RedirectValue | null;
      if (this.#appByKey.has(ks)) {
        if (!current || current.action === 'ports-only') continue; // staged by the op itself; cannot happen
        want = withPorts(current, ports);
      } else {
        want = ports ? PORTS_ONLY : null;
      }
      if (!sameJson(current, want)) {
        this.#stageRedirect(key, want);
        this.settled++;
      }
    }
  }

  #allocId(field: string): number {
    while (this.#nextId < this.dp.capacity && this.#usedIds.has(this.#nextId)) this.#nextId++;
    if (this.#nextId >= this.dp.capacity) throw new ConflictError(`${field || 'request'}: all ${this.dp.capacity} application ids are in use`);
    const id = this.#nextId++;
    this.#usedIds.add(id);
    return id;
  }

  stage(op: BatchOp, field: string): void {
    const f = (name: string): string => (field ? `${field}.${name}` : name);
    switch (op.op) {
      case 'put-app':
        return this.#putEntry('app', op.name, op.spec, op.spec.action, f);
      case 'put-delivery':
        return this.#putEntry('delivery', op.name, op.spec, undefined, f);
      case 'set-action': {
        const e = this.#apps.get(op.name);
        if (!e) throw new NotFoundError(`${field ? `${field}: ` : ''}no app named ${JSON.stringify(op.name)}`);
        const spec: AppSpec = { key: e.meta.key, dev: e.meta.dev, mac: e.meta.mac ?? undefined, action: op.action };
        return this.#putEntry('app', op.name, spec, op.action, f);
      }
      case 'delete-app':
      case 'delete-delivery': {
        const kind = op.op === 'delete-app' ? 'app' : 'delivery';
        const byName = kind === 'app' ? this.#apps : this.#deliveries;
        const e = byName.get(op.name);
        if (!e) throw new NotFoundError(`${field ? `${field}: ` : ''}no ${kind} named ${JSON.stringify(op.name)}`);
        if (kind === 'app') {
          this.#stageRedirect(e.meta.key, null);
          if (isPortKey(e.meta.key)) countPortKey(this.#portKeys, e.meta.key.address, -1);
          this.touch(e.meta.key.address);
        } else {
          this.#deliver.delete(e.meta.key);
        }
        this.#meta.delete(e.appId);
        byName.delete(op.name);
        (kind === 'app' ? this.#appByKey : this.#deliveryByKey).delete(keyString(e.meta.key));
        this.#usedIds.delete(e.appId);
        const map = kind === 'app' ? this.dp.redirect : this.dp.deliver;
        this.results.push({ op: op.op, kind, name: op.name, after: undefined, beforeValue: map.lookup(e.meta.key), afterValue: undefined });
        return;
      }
    }
  }

  #putEntry(kind: 'app' | 'delivery', name: string, spec: EntrySpec, action: ActionSpec | undefined, f: (n: string) => string): void {
    const byName = kind === 'app' ? this.#apps : this.#deliveries;
    const byKey = kind === 'app' ? this.#appByKey : this.#deliveryByKey;
    const existing = byName.get(name);
    const ks = keyString(spec.key);
    const owner = byKey.get(ks);
    if (owner !== undefined && owner !== name) {
      throw new ConflictError(`${f('address')}: ${ks} already belongs to ${kind} ${JSON.stringify(owner)}`);
    }
    if (existing && keyString(existing.meta.key) !== ks) {
      throw new ConflictError(
        `${f('address')}: ${kind} ${JSON.stringify(name)} is ${keyString(existing.meta.key)}; delete it before giving the name another address`,
      );
    }
    const link = this.links.link(spec.dev, f('dev'));
    const needsMac = kind === 'delivery' || action?.type === 'local';
    const mac = spec.mac ?? (needsMac ? this.links.neighbourMac(spec.key.address, spec.dev, f('mac')) : (existing?.meta.mac ?? null));
    const appId = existing?.appId ?? this.#allocId(f('name'));
    const meta: MetaValue = { kind, key: spec.key, name, dev: spec.dev, mac };

    let value: RedirectValue | DeliverValue;
    if (kind === 'delivery') {
      value = { appId, ifindex: link.ifindex, dmac: mac!, smac: link.mac };
    } else if (action?.type === 'forward') {
      value = { action: 'forward', appId, tunnel: action.tunnel };
    } else {
      value = { action: 'local', appId, ifindex: link.ifindex, dmac: mac!, smac: link.mac };
    }
    if (kind === 'app') {
      // the whole-address entry says whether the address has port entries
      if (isPortKey(spec.key)) {
        if (!existing) countPortKey(this.#portKeys, spec.key.address, +1);
      } else {
        value = withPorts(value as RedirectValue, this.#portKeys.has(spec.key.address));
      }
      this.touch(spec.key.address);
    }
    const map = kind === 'app' ? this.dp.redirect : this.dp.deliver;
    const before = existing ? map.lookup(spec.key) : undefined;
    if (!existing || !sameJson(existing.meta, meta)) this.#meta.upsert(appId, meta);
    if (!sameJson(before, value)) {
      if (kind === 'app') this.#stageRedirect(spec.key, value as RedirectValue);
      else this.#deliver.upsert(spec.key, value as DeliverValue);
    }
    if (!existing) this.resetStats.push(appId);
    const entry = { appId, meta };
    byName.set(name, entry);
    byKey.set(ks, name);
    if (!existing || !sameJson(before, value) || !sameJson(existing.meta, meta)) {
      this.results.push({ op: kind === 'app' ? 'put-app' : 'put-delivery', kind, name, after: entry, beforeValue: before, afterValue: value });
    }
  }
}

export { FieldError };
