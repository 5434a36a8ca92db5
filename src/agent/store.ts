/**
 * The one path for every entry change (docs/architecture.md, "One path for
 * every change"): typed ops → stage the desired entries (plan.ts) → resolve
 * the MACs they still need → apply them to the maps (single or batched
 * updates) → log before/after. The HTTP server parses requests into the
 * model's typed ops (src/model/entry.ts) and calls it; another source of
 * desired state can call it the same way.
 *
 * State lives in bpffs only: the data plane's maps plus pinned maps of the
 * agent's own (names by id, ids by name). The JS heap holds no copy of the
 * entries — an agent with a million entries stays small, a request costs
 * what it touches, and a restarted agent finds everything in place.
 */
import type { Logger } from 'pino';
import { isErrno } from '../bpf/native.js';
import type { HostDatapath } from '../datapath/host.js';
import { ConflictError } from '../model/errors.js';
import type { Action, AppSpec, AppView, BatchOp, DeliveryView, EntrySpec, PageQuery } from '../model/entry.js';
import { adopt } from './adopt.js';
import { Catalog } from './catalog.js';
import { Intent } from './intent.js';
import { SystemLinks, type LinkResolver } from './links.js';
import { Plan } from './plan.js';
import type { Applicable } from './txn.js';
import { EntryViews } from './views.js';

/** Who asked for a change, for the log. */
export type Source = 'api' | 'startup' | string;

/** The ops of a batch, read one at a time as they are staged (a drain of 100k ops keeps no second copy). */
export interface OpList {
  readonly length: number;
  /** Op i, typed; throws a FieldError naming `ops[i]` when it is invalid. */
  at(i: number): BatchOp;
}

/** A batch yields to the event loop after staging this many ops. */
const STAGE_SLICE = 1024;

export class EntryStore {
  readonly #catalog: Catalog;
  readonly #links: LinkResolver;
  readonly #views: EntryViews;
  /** A batch is being staged (across event-loop turns). */
  #staging = false;
  /**
   * Writes run one at a time, in the order they arrive: a batch stages
   * across event-loop turns (reads and /metrics answer meanwhile), MAC
   * resolution awaits answers, and the next write starts once it settled.
   */
  #writes: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly dp: HostDatapath,
    private readonly log: Logger,
    links: LinkResolver = new SystemLinks(dp.xdpMode),
  ) {
    this.#catalog = new Catalog(dp);
    this.#links = links;
    this.#views = new EntryViews(dp, this.#catalog);
    Intent.replay(dp, log); // a change the previous agent was applying when it stopped: completed first
    const settle = adopt(dp, this.#catalog, log);
    // maps pinned by an older agent may lack port flags / placeholders: settle those addresses
    const plan = new Plan(dp, this.#catalog, links);
    for (const address of settle) plan.touch(address);
    this.#apply(plan, 'startup');
  }

  get counts(): { apps: number; deliveries: number } {
    return { ...this.#catalog.counts };
  }

  // ------------------------------------------------------------ reads --

  listApps(query?: PageQuery): { apps: AppView[]; next: string | null } {
    return this.#views.listApps(query);
  }

  getApp(name: string): AppView {
    return this.#views.getApp(name);
  }

  listDeliveries(query?: PageQuery): { deliveries: DeliveryView[]; next: string | null } {
    return this.#views.listDeliveries(query);
  }

  getDelivery(name: string): DeliveryView {
    return this.#views.getDelivery(name);
  }

  counters(limit: number): ReturnType<EntryViews['counters']> {
    return this.#views.counters(limit);
  }

  paths(limit: number): ReturnType<EntryViews['paths']> {
    return this.#views.paths(limit);
  }

  /** The devices entries deliver into, with how many entries each (the path keeper watches them). */
  devices(): ReadonlyMap<string, number> {
    return this.#catalog.devices;
  }

  // ----------------------------------------------------------- writes --

  async putApp(name: string, spec: AppSpec, who: Source): Promise<{ app: AppView; created: boolean }> {
    return this.#serialized(async () => {
      const created = !this.#catalog.entry('app', name);
      await this.#commit([{ op: 'put-app', name, spec }], who);
      return { app: this.getApp(name), created };
    });
  }

  async setAction(name: string, action: Action, who: Source): Promise<AppView> {
    return this.#serialized(async () => {
      await this.#commit([{ op: 'set-action', name, action }], who);
      return this.getApp(name);
    });
  }

  async deleteApp(name: string, who: Source): Promise<void> {
    return this.#serialized(() => this.#commit([{ op: 'delete-app', name }], who));
  }

  async putDelivery(name: string, spec: EntrySpec, who: Source): Promise<{ delivery: DeliveryView; created: boolean }> {
    return this.#serialized(async () => {
      const created = !this.#catalog.entry('delivery', name);
      await this.#commit([{ op: 'put-delivery', name, spec }], who);
      return { delivery: this.getDelivery(name), created };
    });
  }

  async deleteDelivery(name: string, who: Source): Promise<void> {
    return this.#serialized(() => this.#commit([{ op: 'delete-delivery', name }], who));
  }

  /**
   * Many changes, all validated and staged before any is applied, then
   * applied with batched map updates, all or nothing. Staging yields to the
   * event loop every STAGE_SLICE ops, so /healthz and /metrics keep
   * answering during a batch that takes seconds.
   */
  async batch(ops: OpList, who: Source): Promise<number> {
    return this.#serialized(async () => {
      this.#staging = true;
      try {
        const plan = new Plan(this.dp, this.#catalog, this.#links);
        for (let i = 0; i < ops.length; i++) {
          plan.stage(ops.at(i), ops.length > 1 ? `ops[${i}]` : '');
          if (i % STAGE_SLICE === STAGE_SLICE - 1) await new Promise<void>((r) => setImmediate(r));
        }
        await this.#resolveMacs(plan);
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
    return this.#serialized(async () => {
      const ops: BatchOp[] = [];
      for (const [, meta] of this.dp.meta.entries()) {
        if (meta.dev !== dev) continue;
        let mac = meta.mac ?? undefined;
        if (meta.macSource === 'resolved') mac = this.#links.knownMac(meta.key.address, dev) ?? mac; // no answer now: keep the MAC it had
        const spec: EntrySpec = { key: meta.key, dev, mac, macSource: meta.macSource };
        if (meta.kind === 'delivery') ops.push({ op: 'put-delivery', name: meta.name, spec });
        else if (this.dp.redirect.lookup(meta.key)?.action === 'local') ops.push({ op: 'put-app', name: meta.name, spec: { ...spec, action: { type: 'local' } } });
      }
      if (ops.length) await this.#commit(ops, who);
      return ops.length;
    });
  }

  /** Refuse, before anything is written, a change that would not fit a map. */
  #checkRoom(changes: readonly Applicable[]): void {
    for (const c of changes) {
      const now = this.#catalog.entries[c.map.name];
      if (now === undefined || c.growth <= 0) continue;
      const max = c.map.info.maxEntries;
      if (now + c.growth > max) {
        throw new ConflictError(
          `${c.map.name} would hold ${now + c.growth} entries: E2BIG (map full, ${max} entries); nothing was changed. ` +
            'Addresses with port entries only also take a slot (a placeholder); ' +
            'free entries, or restart the agent with a larger --capacity after `routeshift agent --cleanup`',
        );
      }
    }
  }

  #serialized<T>(write: () => Promise<T> | T): Promise<T> {
    const run = this.#writes.then(write, write);
    this.#writes = run.catch(() => undefined);
    return run;
  }

  // -------------------------------------------------------- the path --

  async #commit(ops: readonly BatchOp[], who: Source): Promise<void> {
    if (this.#staging) throw new Error('internal: an entry change started while a batch was being staged (writes must be serialized)');
    const plan = new Plan(this.dp, this.#catalog, this.#links);
    ops.forEach((op, i) => plan.stage(op, ops.length > 1 ? `ops[${i}]` : ''));
    await this.#resolveMacs(plan);
    this.#apply(plan, who);
  }

  /** The MACs staged entries still need: ARP/ND for all of them at once, then into the plan. */
  async #resolveMacs(plan: Plan): Promise<void> {
    const wants = plan.unresolved();
    if (!wants.length) return;
    await this.#links.resolve(wants);
    plan.fillMacs();
  }

  /**
   * Apply a staged plan to the maps, crash-atomically: the room every map
   * needs is checked first (so no batched write can stop part-way on a full
   * map), a change of more than one entry pins its intent before the first
   * write (intent.ts: a restart completes it), and a write the kernel still
   * refuses is undone exactly. Then publish and log.
   */
  #apply(plan: Plan, who: Source): void {
    const changes = plan.changes();
    if (changes.every((c) => c.size === 0)) return; // idempotent: nothing differs
    for (const c of changes) c.prepare();
    this.#checkRoom(changes);
    const writes = changes.reduce((n, c) => n + c.size, 0) + plan.resetStats.length;
    const intent = writes > 1 ? Intent.write(this.dp.pinDir, changes, plan.resetStats) : undefined;
    const applied: Applicable[] = [];
    try {
      for (const c of changes) {
        // Listed before it runs: a batched update the kernel stops part-way has written some entries.
        applied.push(c);
        c.apply();
      }
    } catch (err) {
      intent?.remove();
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
    for (const c of changes) this.#catalog.entries[c.map.name] = (this.#catalog.entries[c.map.name] ?? 0) + c.growth;
    this.dp.resetAppStats(plan.resetStats);
    intent?.remove();
    for (const r of plan.results) {
      this.log.info({ who, op: r.op, name: r.name, before: r.before ?? null, after: r.after ?? null }, 'entry changed');
    }
    const more = plan.changed - plan.results.length;
    if (more > 0) this.log.info({ who, more }, 'entry changes not logged one by one');
    if (plan.settled) this.log.info({ who, addresses: plan.settled }, 'whole-address port flags / placeholders updated');
  }
}

