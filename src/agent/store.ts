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
 * entries, only 32-bit hashes of the names and keys the maps hold
 * (catalog.ts `present`, ≈ 4–8 bytes per entry: a new name or key is known
 * absent without a lookup) — an agent with a million entries stays small, a
 * request costs what it touches, and a restarted agent finds everything in place.
 */
import type { Logger } from 'pino';
import { isErrno } from '../bpf/native.js';
import type { HostDatapath } from '../datapath/host.js';
import { ConflictError, PreconditionFailedError } from '../model/errors.js';
import type { Action, AppSpec, AppView, BatchOp, DeliveryView, EntrySpec, PageQuery, WriteGuard } from '../model/entry.js';
import { adopt } from './adopt.js';
import { Catalog } from './catalog.js';
import { Intent } from './intent.js';
import type { NameGuard } from './lease.js';
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

/** A write yields to the event loop after staging (or scanning) this many ops (entries). */
const STAGE_SLICE = 1024;

/** Let the event loop run (I/O, timers) before going on with a long write. */
const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

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
    /** Who may write which name (the agent's leases); none: anyone may write anything. */
    private readonly names?: NameGuard,
  ) {
    this.#catalog = new Catalog(dp);
    this.#links = links;
    this.#views = new EntryViews(dp, this.#catalog);
    Intent.replay(dp, log); // a change the previous agent was applying when it stopped: completed first
    const settle = adopt(dp, this.#catalog, log);
    // maps pinned by an older agent may lack port flags / placeholders: settle those addresses
    const plan = new Plan(dp, this.#catalog, links);
    for (const address of settle) plan.touch(address);
    for (const _ of this.#applying(plan, 'startup')); // before the server starts: nothing to yield to
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

  // Each write first asks whether it may be made (#admit: the name's lease,
  // the entry's generation), inside the serialized section and before
  // anything is staged: a refused write changes nothing.

  async putApp(name: string, spec: AppSpec, who: Source, guard: WriteGuard = {}): Promise<{ app: AppView; created: boolean }> {
    return this.#serialized(async () => {
      const op: BatchOp = { op: 'put-app', name, spec };
      this.#admit(op, guard.owner, guard.ifGeneration, '');
      const created = !this.#catalog.entry('app', name);
      await this.#commit([op], who);
      return { app: this.getApp(name), created };
    });
  }

  async setAction(name: string, action: Action, who: Source, guard: WriteGuard = {}): Promise<AppView> {
    return this.#serialized(async () => {
      const op: BatchOp = { op: 'set-action', name, action };
      this.#admit(op, guard.owner, guard.ifGeneration, '');
      await this.#commit([op], who);
      return this.getApp(name);
    });
  }

  async deleteApp(name: string, who: Source, guard: WriteGuard = {}): Promise<void> {
    return this.#serialized(() => {
      const op: BatchOp = { op: 'delete-app', name };
      this.#admit(op, guard.owner, guard.ifGeneration, '');
      return this.#commit([op], who);
    });
  }

  async putDelivery(name: string, spec: EntrySpec, who: Source, guard: WriteGuard = {}): Promise<{ delivery: DeliveryView; created: boolean }> {
    return this.#serialized(async () => {
      const op: BatchOp = { op: 'put-delivery', name, spec };
      this.#admit(op, guard.owner, guard.ifGeneration, '');
      const created = !this.#catalog.entry('delivery', name);
      await this.#commit([op], who);
      return { delivery: this.getDelivery(name), created };
    });
  }

  async deleteDelivery(name: string, who: Source, guard: WriteGuard = {}): Promise<void> {
    return this.#serialized(() => {
      const op: BatchOp = { op: 'delete-delivery', name };
      this.#admit(op, guard.owner, guard.ifGeneration, '');
      return this.#commit([op], who);
    });
  }

  /** Run `fn` between writes (none is being staged or applied): a lease granted here is in force for every write after it. */
  async betweenWrites<T>(fn: () => T): Promise<T> {
    return this.#serialized(fn);
  }

  /** The generation of an entry now (0: none). */
  generation(kind: 'app' | 'delivery', name: string): number {
    return this.#catalog.entry(kind, name)?.meta.generation ?? 0;
  }

  /**
   * May this op be made: its name's lease (NameGuard) and its condition on
   * the entry's generation, compared with the committed entry (ops of one
   * batch do not see each other's generations). A missing entry answers
   * 404 for a set-action or delete as it would unconditionally.
   */
  #admit(op: BatchOp, owner: string | undefined, ifGeneration: number | undefined, field: string): void {
    this.names?.checkWrite(op.name, owner, field);
    if (ifGeneration === undefined) return;
    const kind = op.op === 'put-delivery' || op.op === 'delete-delivery' ? 'delivery' : 'app';
    const e = this.#catalog.entry(kind, op.name);
    if (!e && op.op !== 'put-app' && op.op !== 'put-delivery') return; // staging answers 404
    const now = e ? e.meta.generation : 0;
    if (ifGeneration === 0 ? !e : e !== undefined && now === ifGeneration) return;
    const at = field ? `${field}: ` : '';
    const is = e ? `is at generation ${now}` : 'does not exist';
    const wanted = ifGeneration === 0 ? 'the write was for a new entry' : `the write was conditional on generation ${ifGeneration}`;
    throw new PreconditionFailedError(`${at}${kind} ${JSON.stringify(op.name)} ${is}: ${wanted}; nothing was changed`, now);
  }

  /**
   * Many changes, all validated and staged before any is applied, then
   * applied with batched map updates, all or nothing. Staging yields to the
   * event loop every STAGE_SLICE ops, so /healthz and /metrics keep
   * answering during a batch that takes seconds.
   */
  async batch(ops: OpList, who: Source, opts: { owner?: string; generations?: number[] } = {}): Promise<number> {
    return this.#serialized(async () => {
      this.#staging = true;
      const written: { kind: 'app' | 'delivery'; name: string }[] | undefined = opts.generations ? [] : undefined;
      try {
        const plan = new Plan(this.dp, this.#catalog, this.#links);
        for (let i = 0; i < ops.length; i++) {
          const op = ops.at(i);
          const field = ops.length > 1 ? `ops[${i}]` : '';
          this.#admit(op, opts.owner, op.ifGeneration, field);
          plan.stage(op, field);
          written?.push({ kind: op.op === 'put-delivery' || op.op === 'delete-delivery' ? 'delivery' : 'app', name: op.name });
          if (i % STAGE_SLICE === STAGE_SLICE - 1) await new Promise<void>((r) => setImmediate(r));
        }
        await this.#resolveMacs(plan);
        for (const _ of this.#applying(plan, who)) await nextTurn();
      } finally {
        this.#staging = false;
      }
      // Each op's entry's generation after the batch (0: deleted), when asked.
      if (written && opts.generations) for (const w of written) opts.generations.push(this.generation(w.kind, w.name));
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
      // A page of the meta map at a time, its apps' entries read in one call; no write runs
      // meanwhile (serialized), so the scan may yield between pages: the maps stay as they are.
      let token: Buffer | null = null;
      do {
        const page = this.dp.meta.page(token, STAGE_SLICE);
        token = page.next;
        const mine = page.entries.filter(([, m]) => m.dev === dev).map(([, m]) => m);
        const values = this.dp.redirect.lookupMany(mine.filter((m) => m.kind === 'app').map((m) => m.key));
        let a = 0;
        for (const meta of mine) {
          const v = meta.kind === 'app' ? values[a++] : undefined;
          if (meta.kind === 'app' && v?.action !== 'local' && v?.action !== 'preserve') continue; // sends nothing into its device: not rewritten (and no MAC looked up)
          let mac = meta.mac ?? undefined;
          if (meta.macSource === 'resolved') mac = this.#links.knownMac(meta.key.address, dev) ?? mac; // no answer now: keep the MAC it had
          const spec: EntrySpec = { key: meta.key, dev, mac, macSource: meta.macSource };
          if (meta.kind === 'delivery') ops.push({ op: 'put-delivery', name: meta.name, spec });
          else if (v?.action === 'local') ops.push({ op: 'put-app', name: meta.name, spec: { ...spec, action: { type: 'local' } } });
          else if (v?.action === 'preserve') ops.push({ op: 'put-app', name: meta.name, spec: { ...spec, action: { type: 'preserve', tunnel: v.tunnel } } });
        }
        if (token) await nextTurn();
      } while (token);
      if (ops.length) await this.#commit(ops, who, { keepGenerations: true });
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

  async #commit(ops: readonly BatchOp[], who: Source, planOpts?: { keepGenerations?: boolean }): Promise<void> {
    if (this.#staging) throw new Error('internal: an entry change started while a batch was being staged (writes must be serialized)');
    const plan = new Plan(this.dp, this.#catalog, this.#links, planOpts);
    this.#staging = true;
    try {
      for (let i = 0; i < ops.length; i++) {
        plan.stage(ops[i]!, ops.length > 1 ? `ops[${i}]` : '');
        if (i % STAGE_SLICE === STAGE_SLICE - 1) await nextTurn(); // a retarget of a busy device stages thousands
      }
      await this.#resolveMacs(plan);
      for (const _ of this.#applying(plan, who)) await nextTurn();
    } finally {
      this.#staging = false;
    }
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
   *
   * A step (a yield) per batched write: a large change lets the event loop
   * run between them. Writes are serialized, so nothing else changes the
   * maps meanwhile; a read then sees part of the change, in an order that
   * keeps every entry whole by name (Plan.changes): a new entry is found
   * once its data-plane entry, record and name are all written, a deleted
   * one is gone once its name is, and an entry the change rewrites may for
   * a moment show its new data-plane value beside its old record (device,
   * MAC). Counts (/status) change when the apply is done.
   */
  *#applying(plan: Plan, who: Source): Generator<void, void, void> {
    const changes = plan.changes();
    if (changes.every((c) => c.size === 0)) return; // idempotent: nothing differs
    for (const c of changes) c.prepare();
    this.#checkRoom(changes);
    const writes = changes.reduce((n, c) => n + c.size, 0) + plan.resetStats.length - plan.generationOnly;
    const intent = writes > 1 ? yield* Intent.write(this.dp.pinDir, changes, plan.resetStats) : undefined;
    try {
      // The new entries' ids are free now (an id a plan frees is not reused in it): their counters are
      // zeroed before any entry carries them, so no read or packet meanwhile sees an earlier owner's.
      this.dp.resetAppStats(plan.resetStats);
      for (const c of [...changes].reverse()) yield* c.deleteSteps();
      for (const c of changes) yield* c.putSteps();
    } catch (err) {
      intent?.remove();
      // A batched update the kernel stops part-way has written some entries: every change that began is undone.
      const failures = [...changes].reverse().flatMap((c) => c.rollback());
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
    intent?.remove();
    for (const r of plan.results) {
      this.log.info({ who, op: r.op, name: r.name, before: r.before ?? null, after: r.after ?? null }, 'entry changed');
    }
    const more = plan.changed - plan.results.length;
    if (more > 0) this.log.info({ who, more }, 'entry changes not logged one by one');
    if (plan.settled) this.log.info({ who, addresses: plan.settled }, 'whole-address port flags / placeholders updated');
  }
}

