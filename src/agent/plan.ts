/**
 * The staged effect of one request (a Plan), and the invariant it keeps: an
 * address with port entries has a whole-address entry carrying the `ports`
 * flag — its app's, or a placeholder.
 */
import type { HostDatapath } from '../datapath/host.js';
import type { EntryKind, MetaValue } from '../datapath/meta.js';
import type { AppKey, DeliverValue, RedirectValue, Target } from '../datapath/structs.js';
import { ConflictError, FieldError, NotFoundError } from '../model/errors.js';
import { keyString, type Action, type AppSpec, type BatchOp, type EntrySpec } from '../model/entry.js';
import { isPortKey, nameId, wholeKey, type Catalog, type Entry } from './catalog.js';
import type { DeviceTarget, LinkResolver, NeighbourWant } from './links.js';
import type { Fingerprints } from './fingerprints.js';
import { MapChange, type Applicable } from './txn.js';

/** Stands for a MAC being resolved while a request is staged; never written to a map. */
const UNRESOLVED_MAC = '00:00:00:00:00:00';

/** Per-entry "entry changed" log lines a request writes; the rest are counted. */
export const LOGGED_CHANGES = 1000;

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

export interface StagedResult {
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
export class Plan {
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
  /** Entries staged before their app's MAC is known (no neighbour entry yet): filled by fillMacs(). */
  readonly #unresolved: { want: NeighbourWant; meta: MetaValue; value: Target }[] = [];
  #settled = false;
  /** How many whole-address entries settling changed (for the log). */
  settled = 0;
  #nextId: number;
  #tunnels: { tunnelAddr4: string | null; tunnelAddr6: string | null } | undefined;
  readonly #redirect: MapChange<AppKey, RedirectValue>;
  readonly #deliver: MapChange<AppKey, DeliverValue>;
  readonly #meta: MapChange<number, MetaValue>;
  readonly #names: MapChange<{ kind: EntryKind; name: string }, number>;
  /** The generation this plan's writes carry (the agent's write counter, one step per request), once one is staged. */
  #generation: number | undefined;
  /**
   * Record writes that only move an entry's generation (a set-action): they
   * need no crash intent of their own — a crash before one is applied
   * leaves the entry as written with its generation unmoved, which no one
   * was told otherwise about.
   */
  generationOnly = 0;

  constructor(
    private readonly dp: HostDatapath,
    private readonly catalog: Catalog,
    private readonly links: LinkResolver,
    /** The agent's own restaging (a device changed) keeps generations: they say who last wrote what was asked. */
    private readonly opts: { keepGenerations?: boolean } = {},
  ) {
    this.#nextId = catalog.idHint;
    const { present } = catalog;
    this.#redirect = new MapChange(dp.redirect, keyString, (id) => present.redirect.mayHave(id as string));
    this.#deliver = new MapChange(dp.deliver, keyString, (id) => present.deliver.mayHave(id as string));
    this.#meta = new MapChange(dp.meta, (id) => id, (id) => catalog.idUsed(id as number));
    this.#names = new MapChange(dp.names, (k) => nameId(k.kind, k.name), (id) => present.names.mayHave(id as string));
  }

  /** This host's tunnel addresses, read once per plan (a batch of forwards checks each op against them). */
  #config(): { tunnelAddr4: string | null; tunnelAddr6: string | null } {
    this.#tunnels ??= this.dp.getConfig();
    return this.#tunnels;
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

  /** The next hops whose MACs staged entries still need (no neighbour entry when staged). */
  unresolved(): NeighbourWant[] {
    return this.#unresolved.map((u) => u.want);
  }

  /** Fill in the MACs resolve() found; one that is still unknown fails the request, naming its field. */
  fillMacs(): void {
    for (const u of this.#unresolved) {
      const mac = this.links.neighbourMac(u.want.address, u.want.dev, u.want.field);
      u.meta.mac = mac;
      u.value.dmac = mac;
    }
    this.#unresolved.length = 0;
  }

  /**
   * In the order their puts are applied: the data plane first, then the
   * entry's record, its name last; deletes go in the reverse order. So a
   * read while a change is applied (store.ts) finds a new entry by its name
   * only once all of it is written, and a deleted one no longer by the time
   * its data-plane entry goes.
   */
  changes(): Applicable[] {
    if (!this.#settled) this.#settle();
    return [this.#redirect, this.#deliver, this.#meta, this.#names];
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
    // Which names and keys the maps hold now (catalog.ts `present`).
    const track = (change: MapChange<unknown, unknown>, set: Fingerprints): void => {
      for (const [id, added] of change.presence()) {
        if (added) set.add(id as string);
        else set.remove(id as string);
      }
    };
    track(this.#redirect as MapChange<unknown, unknown>, c.present.redirect);
    track(this.#deliver as MapChange<unknown, unknown>, c.present.deliver);
    track(this.#names as MapChange<unknown, unknown>, c.present.names);
    if (this.#generation !== undefined) c.generation = Math.max(c.generation, this.#generation);
  }

  /** `before`: what the map holds for the key, when already read (or known absent). */
  #stageRedirect(key: AppKey, value: RedirectValue | null, ks: string, before?: { value: RedirectValue | undefined }): void {
    if (value) this.#redirect.upsert(key, value, before, ks);
    else this.#redirect.delete(key, before, ks);
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
        // What the maps hold now, handed over so apply reads nothing again (ignored for keys this plan touched already).
        if (kind === 'app') {
          this.#stageRedirect(key, null, ks, { value: before as RedirectValue | undefined });
          if (isPortKey(key)) this.#countPortKey(key.address, -1);
          this.#touchIfPortsMatter(key, true);
          this.#countDelta.apps--;
        } else {
          this.#deliver.delete(key, { value: before as DeliverValue | undefined }, ks);
          this.#countDelta.deliveries--;
        }
        this.#meta.delete(e.appId, { value: e.meta });
        this.#names.delete({ kind, name: op.name }, { value: e.appId });
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
        const h = this.catalog.holder(kind, spec.key, ks);
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
    const needsMac = kind === 'delivery' || action?.type === 'local' || action?.type === 'preserve';
    let mac: string | null;
    let macSource: MetaValue['macSource'];
    if (spec.mac !== undefined) {
      mac = spec.mac;
      macSource = spec.macSource ?? 'given';
    } else if (needsMac) {
      // No neighbour entry yet: staged with a MAC to come, resolved for the whole request at once (fillMacs).
      mac = this.links.knownMac(spec.key.address, spec.dev) ?? UNRESOLVED_MAC;
      macSource = 'resolved';
    } else {
      mac = existing?.meta.mac ?? null;
      macSource = existing?.meta.macSource ?? 'resolved';
    }
    const appId = existing?.appId ?? this.#allocId(f('name'));
    const meta: MetaValue = { kind, key: spec.key, name, dev: spec.dev, mac, macSource, generation: existing?.meta.generation ?? 0 };
    const target = (): Target => ({ ifindex: link.ifindex, dmac: mac!, smac: link.mac, path: link.path, slowPath: link.slowPath });

    if (action?.type === 'forward' || action?.type === 'preserve') {
      const cfg = this.#config();
      if (action.tunnel === cfg.tunnelAddr4 || action.tunnel === cfg.tunnelAddr6) {
        throw new FieldError(f('action.tunnel'), `${action.tunnel} is this host's own tunnel address: forward to another host's`);
      }
    }
    let value: RedirectValue | DeliverValue;
    if (kind === 'delivery') {
      value = { appId, ...target() };
    } else if (action?.type === 'forward') {
      value = { action: 'forward', appId, tunnel: action.tunnel };
    } else if (action?.type === 'preserve') {
      value = { action: 'preserve', appId, tunnel: action.tunnel, ...target() };
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
    if (mac === UNRESOLVED_MAC && 'dmac' in value) {
      this.#unresolved.push({ want: { address: spec.key.address, dev: spec.dev, field: f('mac') }, meta, value });
    }
    // What the map holds for the key now (as this plan sees it): read once, and handed
    // to the map change so apply needs no second lookup. No owner does not mean no value
    // for an app key: a ports-only placeholder may hold it. (A key the plan has staged
    // has a planned owner, so `committed` is only set for keys the plan has not touched.)
    const before = committed ? committed.value : change.current(spec.key, ks);
    if (!this.opts.keepGenerations && (!existing || !sameJson(existing.meta, meta) || !sameJson(before, value))) {
      if (existing && sameJson(existing.meta, meta)) this.generationOnly++;
      this.#generation ??= this.catalog.generation + 1 > 0xffffffff ? 1 : this.catalog.generation + 1;
      meta.generation = this.#generation;
    }
    if (!existing) this.#meta.insert(appId, meta);
    else if (!sameJson(existing.meta, meta)) this.#meta.upsert(appId, meta, { value: existing.meta }); // the committed record (ignored once staged)
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

